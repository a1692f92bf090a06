"""`make demo` end to end (tiny budgets): every step runs, the score reaches the ledger and the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_offline_from_download_to_score(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out), "--fast"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for n, what in enumerate(
        [
            "fixture",
            "emulator",
            "download",
            "scratch",
            "Keras CNN",
            "ensemble",
            "submission CSV",
            "public score",
            "ledger",
            "leaderboard",
            "report",
            "stop the emulator",
        ],
        start=1,
    ):
        assert f"== {n}. " in result.stdout and what in result.stdout, (n, what)
    assert "public score: " in result.stdout and "you (demo) are ranked" in result.stdout
    assert "emulator served" in result.stdout and "scored 1 submission(s)" in result.stdout
    assert (out / "submissions" / "scores.png").is_file()
    assert list((out / "reports").glob("*/index.html"))
    # the run folders it trained and the ledger it filled
    names = sorted(p.name.split("-")[0] for p in (out / "runs").iterdir())
    assert names == ["cnn", "ensemble", "scratch"]
    ledger_json = subprocess.run(
        [sys.executable, "-m", "kit.cli", "scores", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"KIT_SUBMISSIONS_DIR": str(out / "submissions"), "PATH": "/usr/bin:/bin"},
    )
    (rec,) = json.loads(ledger_json.stdout)
    assert rec["status"] == "complete" and 0 < rec["public_score"] <= 1


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "is not a demo folder" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
