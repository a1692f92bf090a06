"""Submissions end to end through the CLI and the real kaggle client against the local emulator.

Every fault the issue lists is survived with nothing lost (the CSV stays, the ledger holds a
'pending' record that `kit submit --retry` sends); malformed files never reach the network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kit import config, ledger, runs
from kit import submit as sub
from kit.cli import cli
from kit.errors import KitError

N_TEST = 597  # the fixture competition's test rows (config.COMPETITIONS)
WRONG_EVERY = 7  # the fake run gets every 7th test image wrong: a known score


def kit(*args: str):
    return CliRunner().invoke(cli, list(args))


def answers(fixture_competition: Path) -> np.ndarray:
    return pd.read_csv(fixture_competition / "answers.csv").sort_values("ImageId")["Label"].to_numpy()


@pytest.fixture
def fake_run(isolated_dirs, fixture_competition) -> runs.Run:
    """A finished run whose test predictions are the answers, wrong on every 7th row."""
    y = answers(fixture_competition)
    assert len(y) == N_TEST == config.competition().n_test
    pred = y.copy()
    pred[::WRONG_EVERY] = (pred[::WRONG_EVERY] + 1) % 10
    test = np.eye(10, dtype=np.float32)[pred]
    run = runs.create("cnn", 3)
    run.write_config({"model": "cnn", "seed": 3, "epochs": 1})
    run.write_predictions(np.eye(10, dtype=np.float32)[np.zeros(120, int)], test)
    run.finish({"model": "cnn", "seed": 3, "val_accuracy": 0.9123, "val_loss": 0.3, "wall_time_s": 1.0,
                "data_checksum": "abc", "split_hash": "def", "n_val": 120, "n_test": N_TEST})
    return run


def expected_score(fixture_competition) -> float:
    y = answers(fixture_competition)
    return round(1 - len(y[::WRONG_EVERY]) / len(y), 5)


# ----------------------------------------------------------------------------- predict

def test_predict_writes_timestamped_csv_and_sidecar_never_overwriting(fake_run, fixture_competition):
    first = kit("predict", fake_run.name)
    assert first.exit_code == 0, first.output
    path = Path(first.output.strip())
    assert path.parent == config.submissions_dir()
    assert path.name.endswith(f"_{fake_run.name}.csv") and len(path.name.split("_")[0]) == 15
    df = pd.read_csv(path)
    assert list(df.columns) == ["ImageId", "Label"]
    assert df["ImageId"].tolist() == list(range(1, N_TEST + 1))
    y = answers(fixture_competition)
    assert np.mean(df["Label"].to_numpy() == y) == pytest.approx(expected_score(fixture_competition), abs=1e-5)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert side["runs"] == [fake_run.name] and side["val_accuracy"] == 0.9123
    assert side["configs"][fake_run.name]["epochs"] == 1 and side["data_checksum"] == "abc"
    before = path.read_bytes()
    second = kit("predict", fake_run.name)  # same second, same run: a new name, the old file intact
    assert second.exit_code == 0, second.output
    assert Path(second.output.strip()) != path and path.read_bytes() == before
    assert not [p for p in config.submissions_dir().iterdir() if p.name.startswith(".")]  # no temp left


def test_predict_refuses_a_run_for_another_competition(fake_run, monkeypatch):
    monkeypatch.setenv("KIT_COMPETITION", "digit-recognizer")
    result = kit("predict", fake_run.name)
    assert result.exit_code == 1
    assert "test predictions have shape (597, 10), but digit-recognizer has 28000 test images" in result.output


# ----------------------------------------------------------------------------- validation

def _good_rows() -> list[str]:
    return [f"{i},{i % 10}" for i in range(1, N_TEST + 1)]


MALFORMED = {
    "wrong header": (["ImageID,Label", *_good_rows()],
                     "line 1: header is 'ImageID,Label', expected 'ImageId,Label'"),
    "n-1 rows": (["ImageId,Label", *_good_rows()[:-1]],
                 f"has {N_TEST - 1} data rows, expected exactly {N_TEST}"),
    "duplicate ImageId": (["ImageId,Label", *_good_rows()[:9], "3,9", *_good_rows()[10:]],
                          "line 11, column 1 (ImageId): 3 repeats line 4; ImageId 10 is missing"),
    "ImageId out of range": (["ImageId,Label", *_good_rows()[:-1], f"{N_TEST + 1},1"],
                             f"line {N_TEST + 1}, column 1 (ImageId): {N_TEST + 1} is outside 1..{N_TEST}"),
    "label 10": (["ImageId,Label", *_good_rows()[:4], "5,10", *_good_rows()[5:]],
                 "line 6, column 2 (Label): '10' is not a digit 0-9"),
    "non-integer label": (["ImageId,Label", *_good_rows()[:4], "5,3.0", *_good_rows()[5:]],
                          "line 6, column 2 (Label): '3.0' is not a digit 0-9"),
    "non-integer ImageId": (["ImageId,Label", "one,1", *_good_rows()[1:]],
                            "line 2, column 1 (ImageId): 'one' is not a positive integer"),
    "extra column": (["ImageId,Label", "1,1", "2,2,2", *_good_rows()[2:]], "Expected 2 fields in line 3, saw 3"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_csv_is_refused_before_any_request(case, isolated_dirs, kaggle_emulator):
    lines, message = MALFORMED[case]
    bad = isolated_dirs / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = kit("submit", str(bad))
    assert result.exit_code == 1
    assert result.output == f"Error: {bad}: {message}\n" or message in result.output, result.output
    assert result.output.startswith(f"Error: {bad}: ")
    assert kaggle_emulator.requests == []  # never reached the network
    assert ledger.read_all().empty


def test_validate_accepts_a_good_file_in_any_order(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("ImageId,Label\n" + "\n".join(reversed(_good_rows())) + "\n")
    assert sub.validate(good, N_TEST) == N_TEST
    with pytest.raises(KitError, match="no such submission file"):
        sub.validate(tmp_path / "missing.csv", N_TEST)
