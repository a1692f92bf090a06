"""`kit download` end to end: the real kaggle client against the local emulator (kit.emulator).

Every fault the issue lists: success, idempotence, 401, 403, missing credentials, 500 then
success, 429 with Retry-After, a connection dropped mid-download (resumed with Range; no
file passes as complete while the fault lasts), and the CLI's exact output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from fixtures_kaggle import EMULATOR_KEY
from kit import config, data
from kit.cli import cli
from kit.errors import KitError
from kit.kaggle import client, competitions

SLUG = "digit-recognizer-fixture"
RPC = "/api/v1/competitions.CompetitionApiService/"
ZIP_URL_PATH = f"/data/{SLUG}.zip"
TOKEN_HELP = client.TOKEN_HELP


def _calls(emu, path):
    return sum(1 for _, p in emu.requests if p == path)


def _no_stray_zip():
    """Nothing that looks like competition data outside the resumable partial folder."""
    return [p for p in config.data_dir().rglob("*.zip") if ".download-" not in str(p.parent)]


def test_download_installs_data_that_loads(kaggle_emulator):
    lines = []
    result = competitions.download(echo=lines.append)

    assert lines[0] == f"Downloading {SLUG} from Kaggle as demo ..."
    assert result.startswith(f"installed {SLUG} into {config.raw_dir()}")
    assert kaggle_emulator.requests[:2] == [("POST", RPC + "DownloadDataFiles"), ("GET", ZIP_URL_PATH)]
    ds = data.load()
    spec = config.competition()
    assert ds.X_train.shape == (spec.n_train, 28, 28) and ds.X_train.dtype == np.uint8
    assert ds.X_test.shape == (spec.n_test, 28, 28)
    assert set(np.unique(ds.y_train)) == set(range(10))
    # the temporary download folder is gone once the data is installed
    assert not (config.data_dir() / f".download-{SLUG}").exists()


def test_second_download_makes_no_request(kaggle_emulator):
    competitions.download(echo=lambda s: None)
    kaggle_emulator.requests.clear()
    t0 = time.perf_counter()
    result = competitions.download(echo=lambda s: None)
    assert kaggle_emulator.requests == []
    assert result == (
        f"{SLUG}: data already installed and verified in {config.raw_dir()} (use --force to download again)"
    )
    assert time.perf_counter() - t0 < 2.0


def test_force_downloads_again(kaggle_emulator):
    competitions.download(echo=lambda s: None)
    kaggle_emulator.requests.clear()
    competitions.download(force=True, echo=lambda s: None)
    assert _calls(kaggle_emulator, ZIP_URL_PATH) == 1


def test_wrong_key_is_401_with_clear_message_and_no_key(kaggle_emulator, monkeypatch):
    bad_key = "wrong-secret-key-987654"
    monkeypatch.setenv("KAGGLE_KEY", bad_key)
    with pytest.raises(client.KaggleAuthError) as err:
        competitions.download(echo=lambda s: None)
    assert str(err.value) == (
        "Kaggle rejected the credentials from KAGGLE_USERNAME/KAGGLE_KEY (HTTP 401, user 'demo') "
        f"while downloading {SLUG}. The key is wrong or was revoked: {TOKEN_HELP}."
    )
    assert _calls(kaggle_emulator, RPC + "DownloadDataFiles") == 1  # a 401 is not retried
    assert not data.is_installed()


def test_wrong_key_via_cli_exact_output(kaggle_emulator, monkeypatch):
    bad_key = "wrong-secret-key-987654"
    monkeypatch.setenv("KAGGLE_KEY", bad_key)
    result = CliRunner().invoke(cli, ["download"])
    assert result.exit_code == 1
    assert result.stdout == f"Downloading {SLUG} from Kaggle as demo ...\n"
    assert result.stderr == (
        "Error: Kaggle rejected the credentials from KAGGLE_USERNAME/KAGGLE_KEY (HTTP 401, user 'demo') "
        f"while downloading {SLUG}. The key is wrong or was revoked: {TOKEN_HELP}.\n"
    )
    assert bad_key not in result.output and "Traceback" not in result.output


def test_rules_not_accepted_is_403_message(kaggle_emulator):
    kaggle_emulator.fail("DownloadDataFiles", "403")
    with pytest.raises(client.KaggleRulesError) as err:
        competitions.download(echo=lambda s: None)
    assert str(err.value) == (
        f"Kaggle refused access to competition '{SLUG}' (HTTP 403) while downloading {SLUG}: the "
        "competition rules are not accepted for this account. Accept them at "
        f"https://www.kaggle.com/competitions/{SLUG}/rules, then run the command again."
    )
    assert _calls(kaggle_emulator, RPC + "DownloadDataFiles") == 1


def test_missing_credentials(kaggle_emulator, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(client.KaggleAuthError) as err:
        competitions.download(echo=lambda s: None)
    config_dir = tmp_path / "kaggle-config"
    assert str(err.value) == (
        f"no Kaggle credentials found (KAGGLE_CONFIG_DIR points at {config_dir}, so kaggle.json is "
        f"looked for there): {TOKEN_HELP}."
    )
    assert kaggle_emulator.requests == []


def test_kaggle_json_credentials_and_permission_warning(kaggle_emulator, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    path = tmp_path / "kaggle-config" / "kaggle.json"
    path.write_text(json.dumps({"username": "demo", "key": EMULATOR_KEY}))
    path.chmod(0o644)
    client._warned_permissions.discard(str(path))

    competitions.download(echo=lambda s: None)
    assert data.is_installed()
    err = capsys.readouterr().err
    warning = f"Warning: {path} is readable by other users of this machine; run `chmod 600 {path}`."
    assert err.count(warning) == 1
    assert EMULATOR_KEY not in err
    client.username()  # warned once per process, not on every call
    assert warning not in capsys.readouterr().err


def test_server_error_then_success_after_retry(kaggle_emulator, capsys):
    kaggle_emulator.fail("DownloadDataFiles", "500")
    competitions.download(echo=lambda s: None)
    assert data.is_installed()
    assert _calls(kaggle_emulator, RPC + "DownloadDataFiles") == 2
    assert "HTTP 500 from Kaggle while downloading" in capsys.readouterr().err


def test_persistent_server_error_gives_up_clearly(kaggle_emulator):
    kaggle_emulator.fail("DownloadDataFiles", "500", times=10)
    with pytest.raises(client.KaggleTransientError) as err:
        competitions.download(echo=lambda s: None)
    assert str(err.value).startswith("gave up after 3 attempts: HTTP 500 from Kaggle while downloading")
    assert _calls(kaggle_emulator, RPC + "DownloadDataFiles") == 3  # KIT_RETRY_ATTEMPTS
    assert not data.is_installed()


def test_429_retry_after_is_honoured(kaggle_emulator):
    kaggle_emulator.fail("DownloadDataFiles", "429", retry_after=1)
    t0 = time.perf_counter()
    competitions.download(echo=lambda s: None)
    # the backoff alone would be 0.01 s (KIT_RETRY_BASE_S): the wait came from Retry-After
    assert time.perf_counter() - t0 >= 1.0
    assert data.is_installed()


def test_dropped_connection_never_leaves_complete_looking_data_then_resumes(kaggle_emulator):
    kaggle_emulator.fail(ZIP_URL_PATH, "drop", times=10)
    with pytest.raises(client.KaggleTransientError) as err:
        competitions.download(echo=lambda s: None)
    assert "network error while downloading" in str(err.value)
    assert not data.is_installed()
    with pytest.raises(KitError):
        data.load()
    assert not config.raw_dir().exists() or not any(config.raw_dir().iterdir())
    assert _no_stray_zip() == []
    partial = config.data_dir() / f".download-{SLUG}" / f"{SLUG}.zip"
    assert partial.stat().st_size < len(kaggle_emulator.zip_bytes)  # kept only to resume from
    assert _calls(kaggle_emulator, ZIP_URL_PATH) == 3

    kaggle_emulator.clear_faults()
    competitions.download(echo=lambda s: None)
    assert data.is_installed() and data.load().X_test.shape[0] == config.competition().n_test


def test_single_drop_is_retried(kaggle_emulator):
    # (the client writes in 1 MiB chunks, so half of this small zip leaves nothing to
    # resume from; Range resume of a bigger file is tested in test_emulator.py)
    kaggle_emulator.fail(ZIP_URL_PATH, "drop")
    competitions.download(echo=lambda s: None)
    assert data.is_installed()
    assert _calls(kaggle_emulator, ZIP_URL_PATH) == 2


def test_cli_download_exact_output(kaggle_emulator):
    runner = CliRunner()
    first = runner.invoke(cli, ["download"])
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert lines[0] == f"Downloading {SLUG} from Kaggle as demo ..."
    assert lines[-1].startswith(f"installed {SLUG} into {config.raw_dir()}: 1,200 train and 597 test images")

    second = runner.invoke(cli, ["download"])
    assert second.exit_code == 0
    assert second.stdout == (
        f"{SLUG}: data already installed and verified in {config.raw_dir()} (use --force to download again)\n"
    )


def test_two_concurrent_downloads_fetch_once(kaggle_emulator):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "kit.cli", "download"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert _calls(kaggle_emulator, ZIP_URL_PATH) == 1  # the second waited, then found it installed
    assert data.is_installed()


def test_missing_credentials_in_a_fresh_process(kaggle_emulator, monkeypatch, tmp_path):
    # kaggle 2.x authenticates at `import kaggle` and prints its own help: a fresh process
    # shows that only our one-line error comes out
    env = {k: v for k, v in os.environ.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", "download"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"Error: no Kaggle credentials found (KAGGLE_CONFIG_DIR points at {tmp_path / 'kaggle-config'}, "
        f"so kaggle.json is looked for there): {TOKEN_HELP}.\n"
    )
    assert kaggle_emulator.requests == []


def test_scrub_hides_every_credential(kaggle_emulator, monkeypatch, tmp_path):
    (tmp_path / "kaggle-config" / "kaggle.json").write_text(
        json.dumps({"username": "u", "key": "file-key-123"})
    )
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token-456789")
    text = f"a {EMULATOR_KEY} b file-key-123 c token-456789 d"
    assert client.scrub(text) == "a *** b *** c *** d"
