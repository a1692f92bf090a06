"""Submissions end to end through the CLI and the real kaggle client against the local emulator.

Every fault the issue lists is survived with nothing lost (the CSV stays, the ledger holds a
'pending' record that `kit submit --retry` sends); malformed files never reach the network.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kit import config, ledger, runs
from kit import submit as sub
from kit.cli import cli
from kit.errors import KitError
from kit.kaggle import client, competitions

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
    run.finish(
        {
            "model": "cnn",
            "seed": 3,
            "val_accuracy": 0.9123,
            "val_loss": 0.3,
            "wall_time_s": 1.0,
            "data_checksum": "abc",
            "split_hash": "def",
            "n_val": 120,
            "n_test": N_TEST,
        }
    )
    return run


def expected_score(fixture_competition) -> float:
    y = answers(fixture_competition)
    return round(1 - len(y[::WRONG_EVERY]) / len(y), 5)


# ----------------------------------------------------------------------------- predict


def test_predict_writes_timestamped_csv_and_sidecar_never_overwriting(fake_run, fixture_competition):
    first = kit("predict", fake_run.name)
    assert first.exit_code == 0, first.output
    path = Path(first.output.splitlines()[-1])
    assert path.parent == config.submissions_dir()
    assert path.name.endswith(f"_{fake_run.name}.csv") and len(path.name.split("_")[0]) == 15
    df = pd.read_csv(path)
    assert list(df.columns) == ["ImageId", "Label"]
    assert df["ImageId"].tolist() == list(range(1, N_TEST + 1))
    y = answers(fixture_competition)
    assert np.mean(df["Label"].to_numpy() == y) == pytest.approx(
        expected_score(fixture_competition), abs=1e-5
    )
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert side["runs"] == [fake_run.name] and side["val_accuracy"] == 0.9123
    assert side["configs"][fake_run.name]["epochs"] == 1 and side["data_checksum"] == "abc"
    before = path.read_bytes()
    second = kit("predict", fake_run.name)  # same second, same run: a new name, the old file intact
    assert second.exit_code == 0, second.output
    assert Path(second.output.splitlines()[-1]) != path and path.read_bytes() == before
    assert not [p for p in config.submissions_dir().iterdir() if p.name.startswith(".")]  # no temp left


def _finished(model: str, seed: int, members: list[str] | None = None) -> runs.Run:
    """A finished run with test predictions, finishing now (after every run made before it)."""
    import time

    time.sleep(0.01)  # metrics.json's time orders runs finished within the same second
    run = runs.create(model, seed)
    run.write_config({"model": model, "seed": seed, **({"members": members} if members else {})})
    run.write_predictions(np.full((120, 10), 0.1, np.float32), np.full((N_TEST, 10), 0.1, np.float32))
    run.finish({"model": model, "seed": seed, "val_accuracy": 0.5 + seed / 100, "n_test": N_TEST})
    return run


def test_predict_uses_the_run_that_finished_last_not_an_older_ensemble(isolated_dirs):
    a, b = _finished("scratch", 1), _finished("cnn", 2)
    _finished("ensemble", 0, [a.name, b.name])
    today = _finished("scratch", 3)  # `make train-all` after yesterday's ensemble
    result = kit("predict")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"run {today.name}: val accuracy 0.5300"
    assert Path(lines[-1]).name.endswith(f"_{today.name}.csv") and len(lines) == 2


def test_predict_names_an_ensembles_members_and_warns_about_newer_runs_left_out(isolated_dirs):
    a, b = _finished("scratch", 1), _finished("cnn", 2)
    c = _finished("cnn", 4)  # finished after a and b, but the ensemble was made of a and b only
    ens = _finished("ensemble", 0, [a.name, b.name])
    result = kit("predict")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"run {ens.name}: val accuracy 0.5000, members {a.name}, {b.name}"
    assert lines[1] == (
        f"Warning: {c.name} finished after its newest member and is in none of it: `kit ensemble` to "
        f"include it, or name the run to submit: `kit predict RUN`"
    )
    assert Path(lines[2]).name.endswith(f"_{ens.name}.csv")


def test_predict_of_a_named_older_run_warns_about_every_newer_one(isolated_dirs):
    old, new1, new2 = _finished("cnn", 1), _finished("cnn", 2), _finished("scratch", 3)
    lines = kit("predict", old.name).output.splitlines()
    assert lines[0] == f"run {old.name}: val accuracy 0.5100"
    assert lines[1].startswith(f"Warning: {new1.name}, {new2.name} finished after it and are in none of it")


def test_predict_with_no_finished_run_says_what_to_do(isolated_dirs):
    result = kit("predict")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: no finished runs in {config.runs_dir()}; train one first (`kit train cnn`) or name a "
        f"run: `kit predict RUN`\n"
    )


def test_predict_refuses_a_run_for_another_competition(fake_run, monkeypatch):
    monkeypatch.setenv("KIT_COMPETITION", "digit-recognizer")
    result = kit("predict", fake_run.name)
    assert result.exit_code == 1
    assert (
        "test predictions have shape (597, 10), but digit-recognizer has 28000 test images" in result.output
    )


# ----------------------------------------------------------------------------- validation


def _good_rows() -> list[str]:
    return [f"{i},{i % 10}" for i in range(1, N_TEST + 1)]


MALFORMED = {
    "wrong header": (
        ["ImageID,Label", *_good_rows()],
        "line 1: header is 'ImageID,Label', expected 'ImageId,Label'",
    ),
    "n-1 rows": (
        ["ImageId,Label", *_good_rows()[:-1]],
        f"has {N_TEST - 1} data rows, expected exactly {N_TEST}",
    ),
    "duplicate ImageId": (
        ["ImageId,Label", *_good_rows()[:9], "3,9", *_good_rows()[10:]],
        "line 11, column 1 (ImageId): 3 repeats line 4; ImageId 10 is missing",
    ),
    "ImageId out of range": (
        ["ImageId,Label", *_good_rows()[:-1], f"{N_TEST + 1},1"],
        f"line {N_TEST + 1}, column 1 (ImageId): {N_TEST + 1} is outside 1..{N_TEST}",
    ),
    "label 10": (
        ["ImageId,Label", *_good_rows()[:4], "5,10", *_good_rows()[5:]],
        "line 6, column 2 (Label): '10' is not a digit 0-9",
    ),
    "non-integer label": (
        ["ImageId,Label", *_good_rows()[:4], "5,3.0", *_good_rows()[5:]],
        "line 6, column 2 (Label): '3.0' is not a digit 0-9",
    ),
    "non-integer ImageId": (
        ["ImageId,Label", "one,1", *_good_rows()[1:]],
        "line 2, column 1 (ImageId): 'one' is not a positive integer",
    ),
    "extra column": (
        ["ImageId,Label", "1,1", "2,2,2", *_good_rows()[2:]],
        "Expected 2 fields in line 3, saw 3",
    ),
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


# ----------------------------------------------------------------------------- upload


def uploads(emu) -> int:
    """Upload starts the emulator saw (each `kaggle competitions submit` begins with one)."""
    return sum("StartSubmissionUpload" in path for _, path in emu.requests)


@pytest.fixture
def csv_file(fake_run, kaggle_emulator) -> Path:
    return sub.write_submission(fake_run)


def test_full_submit_prints_and_records_the_score(csv_file, fake_run, kaggle_emulator, fixture_competition):
    result = kit("submit", str(csv_file))
    assert result.exit_code == 0, result.output
    score = expected_score(fixture_competition)
    assert f"public score: {score:.5f} (validation 0.9123)" in result.output
    (rec,) = ledger.records()
    assert rec["status"] == "complete" and rec["public_score"] == pytest.approx(score)
    assert rec["sha256"] == hashlib.sha256(csv_file.read_bytes()).hexdigest()
    assert json.loads(rec["runs"]) == [fake_run.name]
    assert rec["kaggle_ref"] == kaggle_emulator.submissions[0]["ref"]
    # the default message names the run and its validation accuracy
    assert kaggle_emulator.submissions[0]["description"] == rec["message"]
    assert rec["message"] == f"{fake_run.name} val 0.9123"
    assert uploads(kaggle_emulator) == 1


def test_submit_without_a_file_writes_one_from_the_latest_run(fake_run, kaggle_emulator):
    result = kit("submit", "--no-wait")
    assert result.exit_code == 0, result.output
    assert "wrote " in result.output and "not waiting for the score" in result.output
    (rec,) = ledger.records()
    assert rec["status"] == "submitted" and Path(rec["file"]).is_file()
    # a second plain `kit submit` finds the same file and refuses to send it twice
    again = kit("submit", "--no-wait")
    assert again.exit_code == 1 and "already submitted" in again.output
    assert uploads(kaggle_emulator) == 1


def test_duplicate_is_refused_unless_forced(csv_file, kaggle_emulator):
    assert kit("submit", str(csv_file)).exit_code == 0
    again = kit("submit", str(csv_file))
    assert again.exit_code == 1
    assert again.output.startswith(f"Error: {csv_file.name} was already submitted on ")
    assert (
        "(ledger #1, Kaggle ref " in again.output
        and "use --force to submit the same file again" in again.output
    )
    assert uploads(kaggle_emulator) == 1
    forced = kit("submit", str(csv_file), "--force", "-m", "again, on purpose")
    assert forced.exit_code == 0, forced.output
    assert uploads(kaggle_emulator) == 2 and len(ledger.records()) == 2


# (fault, opts, times, what the error says). With KIT_RETRY_ATTEMPTS=3 (the fixture), a fault
# that happens 3 times outlasts kit.kaggle's retries; once is retried away inside one `kit submit`.
FAULTS = {
    "401": ("401", {}, 1, "401"),
    "403 rules": ("403", {}, 1, "rules"),
    "429 Retry-After": ("429", {"retry_after": 1}, 3, "429"),
    "500": ("500", {}, 3, "500"),
    # the connection dropped while creating the submission (after the file's PUT). A PUT dropped
    # more often than urllib3's own retries makes the kaggle client hang (no timeout): not tested.
    "dropped upload": ("drop", {}, 3, "network error"),
}


@pytest.mark.parametrize("case", FAULTS)
def test_fault_leaves_file_and_pending_record_then_retry_sends_it(
    case, csv_file, kaggle_emulator, fixture_competition
):
    kind, opts, times, words = FAULTS[case]
    match = "CreateSubmission" if kind == "drop" else "StartSubmissionUpload"
    kaggle_emulator.fail(match, kind, times=times, **opts)
    failed = kit("submit", str(csv_file))
    assert failed.exit_code == 1, failed.output
    assert "\nError: " in failed.output and "Traceback" not in failed.output
    assert words.lower() in failed.output.lower(), failed.output
    assert (
        f"The file is kept ({csv_file}) and recorded as pending (ledger #1): "
        "run `kit submit --retry` to send it."
    ) in failed.output
    assert csv_file.is_file()
    (rec,) = ledger.records()
    assert rec["status"] == "pending" and rec["kaggle_ref"] is None and rec["error"]
    assert kaggle_emulator.submissions == []
    assert kaggle_emulator.key not in failed.output

    kaggle_emulator.clear_faults()
    retried = kit("submit", "--retry")
    assert retried.exit_code == 0, retried.output
    assert f"public score: {expected_score(fixture_competition):.5f}" in retried.output
    (rec,) = ledger.records()
    assert rec["status"] == "complete" and rec["error"] is None
    assert len(kaggle_emulator.submissions) == 1
    assert kit("submit", "--retry").output == "no pending submissions\n"


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
def test_a_single_transient_fault_is_retried_within_one_submit(kind, csv_file, kaggle_emulator):
    match = "/upload/" if kind == "drop" else "CreateSubmission"
    kaggle_emulator.fail(match, kind, times=1, retry_after=1)
    result = kit("submit", str(csv_file))
    assert result.exit_code == 0, result.output
    assert len(kaggle_emulator.submissions) == 1 and ledger.records()[0]["status"] == "complete"


def test_limit_reached_is_refused_before_uploading(csv_file, kaggle_emulator):
    kaggle_emulator.daily_limit = 1
    assert kit("submit", str(csv_file), "--no-wait").exit_code == 0
    other = sub.write_submission(
        runs.latest("cnn")
    )  # same content: --force, so only the limit stands in the way
    refused = kit("submit", str(other), "--force")
    assert refused.exit_code == 1
    assert "limit" in refused.output.lower() and "kit submit --retry" in refused.output
    assert uploads(kaggle_emulator) == 1
    assert [r["status"] for r in ledger.records()] == ["submitted", "pending"]


def test_retry_matches_an_upload_whose_answer_was_lost(csv_file, kaggle_emulator):
    """Kaggle took the file but the reply never came: --retry finds it instead of uploading twice."""
    kaggle_emulator.fail("StartSubmissionUpload", "500", times=3)
    assert kit("submit", str(csv_file)).exit_code == 1
    (rec,) = ledger.records()
    competitions.submit(csv_file, rec["message"])  # what Kaggle received, unknown to the ledger
    assert uploads(kaggle_emulator) == 4
    retried = kit("submit", "--retry")
    assert retried.exit_code == 0, retried.output
    assert f"ledger #1 {csv_file.name} was already uploaded (Kaggle ref " in retried.output
    assert uploads(kaggle_emulator) == 4 and len(kaggle_emulator.submissions) == 1
    assert ledger.records()[0]["status"] == "complete"


def test_wait_timeout_says_where_to_look_and_sync_fills_in_the_score(csv_file, kaggle_emulator):
    kaggle_emulator.scoring_delay_s = 2.0
    result = kit("submit", str(csv_file), "--timeout", "0.5")
    assert result.exit_code == 0, result.output
    assert "not scored after 0.5 s; it is recorded as submitted" in result.output
    assert "it is recorded as submitted (ledger #1" in result.output
    assert "https://www.kaggle.com/competitions/digit-recognizer-fixture/submissions" in result.output
    assert ledger.records()[0]["status"] == "submitted"
    import time

    time.sleep(2.0)
    synced = kit("scores", "--sync")
    assert synced.exit_code == 0, synced.output
    assert "synced with Kaggle: 0 new, 1 updated" in synced.output
    assert ledger.records()[0]["status"] == "complete"


# ----------------------------------------------------------------------------- scores, leaderboard


def test_scores_table_json_csv_sync_and_plot(csv_file, kaggle_emulator, fixture_competition):
    assert kit("submit", str(csv_file)).exit_code == 0
    # an upload made elsewhere (the website, another machine): only Kaggle knows it
    web = csv_file.parent.parent / "from-the-website.csv"
    web.write_bytes(csv_file.read_bytes())
    competitions.submit(web, "uploaded by hand")
    table = kit("scores", "--sync", "--plot")
    assert table.exit_code == 0, table.output
    assert "synced with Kaggle: 1 new, 0 updated" in table.output
    assert csv_file.name in table.output and "from-the-website.csv" in table.output
    assert f"plot: {config.submissions_dir() / 'scores.png'}" in table.output
    assert (config.submissions_dir() / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_json = json.loads(kit("scores", "--json").output)
    assert [r["file"].split("/")[-1] for r in as_json] == [csv_file.name, "from-the-website.csv"]
    assert list(as_json[0]) == ledger.COLUMNS
    import io

    as_csv = pd.read_csv(io.StringIO(kit("scores", "--csv").output))
    assert list(as_csv.columns) == ledger.COLUMNS and len(as_csv) == 2
    assert as_csv["public_score"].iloc[0] == pytest.approx(expected_score(fixture_competition))


def test_scores_with_an_empty_ledger(isolated_dirs):
    assert kit("scores").output == "no submissions yet (`kit submit`)\n"


def test_leaderboard_shows_our_rank(csv_file, kaggle_emulator, fixture_competition):
    assert kit("submit", str(csv_file)).exit_code == 0
    result = kit("leaderboard")
    assert result.exit_code == 0, result.output
    score = expected_score(fixture_competition)
    # the fixture's teams: alice 0.99, bob 0.5; ours lies between
    assert f"you (demo) are ranked 2 of 3 with {score:.5f}" in result.output


def test_a_stalled_upload_times_out_instead_of_hanging(csv_file, kaggle_emulator, monkeypatch):
    """The client PUTs the file with no timeout and urllib3 retrying it 10 times; kit.kaggle gives
    every request a timeout (KIT_NET_TIMEOUT_S) and leaves the retrying to its own policy."""
    import time

    monkeypatch.setenv("KIT_NET_TIMEOUT_S", "0.5")
    kaggle_emulator.fail("/upload/", "slow", times=1000, seconds=5)
    start = time.monotonic()
    with pytest.raises(
        client.KaggleTransientError, match="gave up after 3 attempts: the upload of .*Read timed out"
    ):
        competitions.submit(csv_file, "stalled")
    assert time.monotonic() - start < 30
    puts = [path for method, path in kaggle_emulator.requests if method == "PUT"]
    assert len(puts) == 3  # one PUT an attempt (the client's own retries made it 11)
    assert kaggle_emulator.submissions == []


def test_the_timeout_is_per_session_not_process_wide(csv_file, kaggle_emulator, monkeypatch):
    """While a stalled upload times out in one thread, requests is as it was for the rest of the
    process: its classes unpatched, and a session of someone else's, with no timeout, waits
    longer than KIT_NET_TIMEOUT_S for its answer. The upload still gives up with kit's message."""
    import threading
    import time

    import requests
    from requests.adapters import HTTPAdapter

    def methods():
        return requests.Session.request, requests.Session.send, HTTPAdapter.send

    before = methods()
    monkeypatch.setenv("KIT_NET_TIMEOUT_S", "0.5")
    kaggle_emulator.fail("/upload/", "slow", times=1000, seconds=5)
    kaggle_emulator.fail("/data/", "slow", seconds=1)  # only the other session's request
    raised: list[Exception] = []

    def stalled_submit():
        try:
            competitions.submit(csv_file, "stalled")
        except Exception as e:
            raised.append(e)

    call = threading.Thread(target=stalled_submit)
    call.start()
    deadline = time.monotonic() + 20
    while not any(method == "PUT" for method, _ in kaggle_emulator.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    during = methods()  # the upload is in flight: the emulator sits on the PUT
    other = requests.get(f"{kaggle_emulator.url}/data/{kaggle_emulator.slug}.zip")
    call.join(30)
    assert not call.is_alive()
    assert during == before and methods() == before
    assert other.status_code == 200 and other.content == kaggle_emulator.zip_bytes
    assert len(raised) == 1 and isinstance(raised[0], client.KaggleGaveUpError)
    assert re.match(r"gave up after 3 attempts: the upload of .*Read timed out", str(raised[0]))


def test_scores_sync_without_kaggle_warns_and_shows_the_local_ledger(csv_file, kaggle_emulator, monkeypatch):
    assert kit("submit", str(csv_file)).exit_code == 0
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key-at-all")
    result = kit("scores", "--sync")
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(
        "Warning: could not sync with Kaggle, showing the local ledger: Kaggle rejected the credentials"
    )
    assert "synced with Kaggle" not in result.stdout and csv_file.name in result.stdout
    assert "not-the-key-at-all" not in result.output
