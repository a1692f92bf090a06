"""kit.config.Settings: read from the environment in one place, activated per CLI command, never leaked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from kit import config
from kit.cli import cli
from kit.errors import KitError

ENV = {
    "KIT_DATA_DIR": "/d",
    "KIT_RUNS_DIR": "/r",
    "KIT_SUBMISSIONS_DIR": "/s",
    "KIT_REPORTS_DIR": "/p",
    "KIT_CACHE_DIR": "/c",
    "KIT_COMPETITION": "digit-recognizer-fixture",
    "KIT_RETRY_ATTEMPTS": "7",
    "KIT_RETRY_BASE_S": "0.5",
    "KIT_NET_TIMEOUT_S": "9",
}


def test_from_env_reads_every_variable():
    s = config.Settings.from_env(ENV)
    assert (s.data_dir, s.runs_dir, s.submissions_dir, s.reports_dir, s.cache_dir) == tuple(
        map(Path, ("/d", "/r", "/s", "/p", "/c"))
    )
    assert (s.competition, s.retry_attempts, s.retry_base_s, s.net_timeout_s) == (
        "digit-recognizer-fixture",
        7,
        0.5,
        9.0,
    )


def test_defaults_overrides_and_bad_numbers():
    s = config.Settings.from_env({"KIT_DATA_DIR": "", "KIT_RETRY_ATTEMPTS": "0"})
    assert s.data_dir == config.ROOT / "data" and s.cache_dir == config.ROOT / ".cache"
    assert s.competition == config.DEFAULT_COMPETITION
    assert s.retry_attempts == 1 and s.net_timeout_s == config.NET_TIMEOUT_S  # at least one attempt
    s = config.Settings.from_env(ENV, data_dir=Path("~/elsewhere"), competition=None)
    assert s.data_dir == Path("~/elsewhere").expanduser() and s.competition == ENV["KIT_COMPETITION"]
    with pytest.raises(KitError, match=r"^KIT_RETRY_BASE_S must be a number, got 'soon'$"):
        config.Settings.from_env({"KIT_RETRY_BASE_S": "soon"})


def test_settings_follow_the_environment_until_activated(isolated_dirs, monkeypatch, tmp_path):
    assert config.data_dir() == isolated_dirs / "data"
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "moved"))
    assert config.data_dir() == tmp_path / "moved"  # read afresh on each call
    outer = config.Settings.from_env(data_dir=tmp_path / "outer")
    with config.activate(outer):
        monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "ignored"))
        assert config.data_dir() == tmp_path / "outer" and config.settings() is outer
        with config.activate(config.Settings.from_env(runs_dir=tmp_path / "inner")):
            assert config.runs_dir() == tmp_path / "inner"
        assert config.settings() is outer
    assert config.data_dir() == tmp_path / "ignored"


@pytest.mark.parametrize(
    "args",
    [
        ["download", "--data-dir", "{tmp}/one", "--from", "{tmp}"],  # the command fails (no CSVs there)
        ["download", "--data-dir", "{tmp}/one", "--no-such-option"],  # parsing fails after --data-dir
    ],
)
def test_cli_options_never_outlive_the_command(args, isolated_dirs, tmp_path):
    before = dict(os.environ)
    result = CliRunner().invoke(cli, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert dict(os.environ) == before
    assert config._active == [] and config.data_dir() == isolated_dirs / "data"


def test_python_dash_m_kit_is_the_kit_command():
    """A machine with the kit on PYTHONPATH only (no console script: scripts/device_gpu.sh) runs
    `python -m kit`; it is the same CLI, with the same exit status for a user error."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "kit", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == "Usage: kit [OPTIONS] COMMAND [ARGS]..."
    listed = {
        line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line.startswith("  ")
    }
    assert listed == set(cli.commands)
    bad = subprocess.run(
        [sys.executable, "-m", "kit", "train", "nope"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
