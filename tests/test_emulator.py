"""The local Kaggle service (kit.emulator), exercised through the real kaggle client (kit.kaggle).

The scores are checked against accuracies computed here from the answer key; HTTP Range
semantics are checked with plain `requests`, independently of the kaggle client.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import requests

from fixtures_kaggle import EMULATOR_KEY
from kit.emulator import competitions as emulator_competitions
from kit.emulator import server
from kit.emulator.server import Emulator
from kit.errors import KitError
from kit.kaggle import client, competitions

SLUG = "digit-recognizer-fixture"
RPC = "/api/v1/competitions.CompetitionApiService/"


def _answers(emu) -> list[tuple[int, int]]:
    with open(emu.zip_path.parent / "answers.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    return [(int(i), int(y)) for i, y in rows]


def _write(path, rows, header="ImageId,Label"):
    path.write_text(header + "\n" + "".join(f"{i},{y}\n" for i, y in rows))
    return path


def _wait_scored(ref, timeout=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        sub = next(s for s in competitions.list_submissions() if s.ref == ref)
        if sub.status != "pending":
            return sub
        time.sleep(0.1)
    raise AssertionError(f"submission {ref} still pending after {timeout} s")


def _count(emu, rpc):
    return sum(1 for _, p in emu.requests if p == RPC + rpc)


# ============================================================================ lifecycle


def test_starts_and_stops_in_well_under_a_second(fixture_competition):
    t0 = time.perf_counter()
    emu = Emulator(fixture_competition / f"{SLUG}.zip", fixture_competition / "answers.csv").start()
    port = emu.port
    started = time.perf_counter() - t0
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    t1 = time.perf_counter()
    emu.stop()
    stopped = time.perf_counter() - t1
    assert started < 1.0 and stopped < 1.0, (started, stopped)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_unknown_fault_kind_is_refused(kaggle_emulator):
    with pytest.raises(ValueError, match="unknown fault kind 'boom'"):
        kaggle_emulator.fail("x", "boom")


def test_env_points_only_at_localhost(kaggle_emulator, tmp_path):
    env = kaggle_emulator.env(tmp_path)
    assert env["KAGGLE_API_ENVIRONMENT"] == "LOCALHOST"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == kaggle_emulator.url and kaggle_emulator.url.startswith("http://127.0.0.1:")
    assert env["NO_PROXY"] == "" and env["KAGGLE_CONFIG_DIR"] == str(tmp_path)


# ============================================================================ submissions


def test_submit_is_pending_then_scored_against_the_answer_key(kaggle_emulator, tmp_path):
    answers = _answers(kaggle_emulator)
    # 37 deliberately wrong labels: accuracy (n - 37) / n, computed here independently
    wrong = set(range(0, 3 * 37, 3))
    rows = [(i, (y + 1) % 10 if k in wrong else y) for k, (i, y) in enumerate(answers)]
    path = _write(tmp_path / "sub.csv", rows)

    ref = competitions.submit(path, "37 wrong")
    first = competitions.list_submissions()
    assert [(s.ref, s.status, s.file_name, s.description) for s in first] == [
        (ref, "pending", "sub.csv", "37 wrong")
    ]
    assert first[0].date.endswith("Z")

    scored = _wait_scored(ref)
    assert scored.status == "complete" and scored.error is None
    assert scored.public_score == pytest.approx((len(answers) - 37) / len(answers), abs=5e-6)
    assert kaggle_emulator.submissions[0]["sha256"]  # the emulator kept what was uploaded


@pytest.mark.parametrize(
    "header, rows_fn, message",
    [
        ("ImageId,Lable", lambda a: a, "Submission must have the header ImageId,Label"),
        ("ImageId,Label", lambda a: a[:-1], "Submission must have 597 rows, found 596"),
        ("ImageId,Label", lambda a: [a[0]] + a[:-1], "Line 3: duplicate ImageId 1"),
        (
            "ImageId,Label",
            lambda a: [(a[0][0], "x")] + a[1:],
            "Line 2: ImageId and Label must be integers, found '1','x'",
        ),
    ],
)
def test_malformed_submission_ends_in_error(kaggle_emulator, tmp_path, header, rows_fn, message):
    path = _write(tmp_path / "bad.csv", rows_fn(_answers(kaggle_emulator)), header=header)
    ref = competitions.submit(path, "bad")
    scored = _wait_scored(ref)
    assert (scored.status, scored.public_score, scored.error) == ("error", None, message)


def test_remaining_submissions_and_daily_limit(kaggle_emulator, tmp_path):
    kaggle_emulator.daily_limit = 2
    path = _write(tmp_path / "s.csv", _answers(kaggle_emulator))
    assert competitions.remaining_submissions() == 2
    competitions.submit(path, "one")
    assert competitions.remaining_submissions() == 1
    competitions.submit(path, "two")
    assert competitions.remaining_submissions() == 0
    with pytest.raises(client.KaggleLimitError) as err:
        competitions.submit(path, "three")
    assert str(err.value).startswith(
        f"daily submission limit reached for '{SLUG}': Submission not allowed: Your team has used its daily "
        "Submission allowance (2) today, please try again tomorrow UTC ("
    )
    assert str(err.value).endswith("Nothing was submitted; try again after 00:00 UTC.")
    assert len(kaggle_emulator.submissions) == 2
    assert _count(kaggle_emulator, "CreateSubmission") == 3  # the refusal is not retried


def test_leaderboard_ranks_our_best_score_among_the_teams(kaggle_emulator, tmp_path):
    answers = _answers(kaggle_emulator)
    half = [(i, y if k % 2 == 0 else (y + 1) % 10) for k, (i, y) in enumerate(answers)]
    _wait_scored(competitions.submit(_write(tmp_path / "half.csv", half), "half"))
    board = competitions.leaderboard()
    assert [(e.rank, e.team_name) for e in board] == [(1, "alice"), (2, "demo"), (3, "bob")]
    assert board[1].score == pytest.approx(np.ceil(len(answers) / 2) / len(answers), abs=5e-6)

    _wait_scored(competitions.submit(_write(tmp_path / "all.csv", answers), "perfect"))
    board = competitions.leaderboard()
    assert [(e.rank, e.team_name, e.score) for e in board] == [
        (1, "demo", 1.0),
        (2, "alice", 0.99),
        (3, "bob", 0.5),
    ]


def test_leaderboard_pages(kaggle_emulator):
    kaggle_emulator.teams = [(f"team{i:03d}", 0.5 + i / 1000) for i in range(250)]
    board = competitions.leaderboard()
    assert len(board) == 250 and board[0].team_name == "team249" and board[-1].rank == 250
    assert _count(kaggle_emulator, "GetLeaderboard") == 3  # 100 a page


def test_username_is_the_credentials_user(kaggle_emulator):
    assert client.username() == "demo"


def test_api_token_credentials(kaggle_emulator, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", EMULATOR_KEY)
    assert client.username() == "demo"  # learnt from the token introspection
    assert competitions.list_submissions() == []


def test_wrong_key_on_submit_is_401(kaggle_emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key-at-all")
    with pytest.raises(client.KaggleAuthError) as err:
        competitions.submit(_write(tmp_path / "s.csv", _answers(kaggle_emulator)), "m")
    assert "HTTP 401" in str(err.value) and "not-the-key-at-all" not in str(err.value)
    assert kaggle_emulator.submissions == []


def test_rules_not_accepted_on_submit_is_403(kaggle_emulator, tmp_path):
    kaggle_emulator.fail("StartSubmissionUpload", "403")
    with pytest.raises(client.KaggleRulesError, match=f"https://www.kaggle.com/competitions/{SLUG}/rules"):
        competitions.submit(_write(tmp_path / "s.csv", _answers(kaggle_emulator)), "m")


def test_wrong_competition_is_404(kaggle_emulator, monkeypatch):
    monkeypatch.setenv("KIT_COMPETITION", "digit-recognizer")
    with pytest.raises(KitError, match="404 Not Found while listing submissions of digit-recognizer"):
        competitions.list_submissions()


# ============================================================================ faults on the submission side


def test_create_submission_500_then_success(kaggle_emulator, tmp_path):
    kaggle_emulator.fail("CreateSubmission", "500")
    ref = competitions.submit(_write(tmp_path / "s.csv", _answers(kaggle_emulator)), "m")
    assert [s["ref"] for s in kaggle_emulator.submissions] == [ref]
    assert _count(kaggle_emulator, "CreateSubmission") == 2


@pytest.mark.parametrize("after", [False, True])
def test_lost_create_submission_answer_never_submits_twice(kaggle_emulator, tmp_path, after):
    # after=False: the connection drops before the server acts; after=True: the server
    # created the submission and only its answer was lost, so a blind retry would duplicate it
    kaggle_emulator.fail("CreateSubmission", "drop", after=after)
    ref = competitions.submit(_write(tmp_path / "s.csv", _answers(kaggle_emulator)), "m")
    assert [s["ref"] for s in kaggle_emulator.submissions] == [ref]
    assert _count(kaggle_emulator, "CreateSubmission") == (1 if after else 2)


def test_failed_upload_could_not_submit_is_detected_and_retried(kaggle_emulator, tmp_path):
    # the client answers a refused PUT with "Could not submit to competition", not an exception
    kaggle_emulator.fail("/upload/", "500")
    ref = competitions.submit(_write(tmp_path / "s.csv", _answers(kaggle_emulator)), "m")
    assert _count(kaggle_emulator, "StartSubmissionUpload") == 2
    assert _wait_scored(ref).public_score == 1.0


def test_failed_upload_gives_up_clearly_and_submits_nothing(kaggle_emulator, tmp_path):
    kaggle_emulator.fail("/upload/", "500", times=10)
    with pytest.raises(
        client.KaggleTransientError, match="gave up after 3 attempts: the upload of s.csv failed"
    ):
        competitions.submit(_write(tmp_path / "s.csv", _answers(kaggle_emulator)), "m")
    assert kaggle_emulator.submissions == [] and _count(kaggle_emulator, "CreateSubmission") == 0


def test_dropped_upload_is_survived_and_the_whole_file_arrives(kaggle_emulator, tmp_path):
    kaggle_emulator.fail("/upload/", "drop")
    path = _write(tmp_path / "s.csv", _answers(kaggle_emulator))
    ref = competitions.submit(path, "m")
    assert kaggle_emulator.submissions[0]["total_bytes"] == path.stat().st_size
    assert _wait_scored(ref).public_score == 1.0


def test_429_on_listing_honours_retry_after(kaggle_emulator):
    kaggle_emulator.fail("ListSubmissions", "429", retry_after=1)
    t0 = time.perf_counter()
    assert competitions.list_submissions() == []
    assert time.perf_counter() - t0 >= 1.0
    assert _count(kaggle_emulator, "ListSubmissions") == 2


def test_slow_response_is_waited_for(kaggle_emulator):
    kaggle_emulator.fail("GetSubmissionLimits", "slow", seconds=0.5)
    t0 = time.perf_counter()
    assert competitions.remaining_submissions() == 5
    assert time.perf_counter() - t0 >= 0.5


def test_an_answer_slower_than_the_timeout_is_retried_then_given_up(kaggle_emulator, monkeypatch):
    """RPCs time out too (KIT_NET_TIMEOUT_S), not only the upload: kagglesdk sends them with none."""
    monkeypatch.setenv("KIT_NET_TIMEOUT_S", "0.5")
    kaggle_emulator.fail("GetSubmissionLimits", "slow", seconds=2)
    assert competitions.remaining_submissions() == 5  # the second attempt is answered at once
    assert _count(kaggle_emulator, "GetSubmissionLimits") == 2
    kaggle_emulator.fail("GetSubmissionLimits", "slow", times=3, seconds=2)
    with pytest.raises(client.KaggleGaveUpError) as err:
        competitions.remaining_submissions()
    assert str(err.value).startswith(
        f"gave up after 3 attempts: network error while reading the submission limits of {SLUG} "
        "(ReadTimeout: "
    )
    assert "Read timed out. (read timeout=0.5)" in str(err.value)


# ============================================================================ data download details


@pytest.fixture
def big_emulator(tmp_path, kaggle_emulator, monkeypatch):
    """An emulator whose zip is 3 MiB (incompressible), so a half download leaves whole 1 MiB chunks."""
    payload = np.random.default_rng(0).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes()
    zip_path = tmp_path / "big.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("blob.bin", payload)
    emu = Emulator(
        zip_path,
        kaggle_emulator.zip_path.parent / "answers.csv",
        slug="big",
        username="demo",
        key=EMULATOR_KEY,
    ).start()
    for name, value in emu.env(tmp_path / "kaggle-config").items():
        monkeypatch.setenv(name, value)
    yield emu
    emu.stop()


def test_dropped_download_resumes_with_range(big_emulator, tmp_path):
    emu = big_emulator
    emu.fail("/data/big.zip", "drop")
    api = client._client()
    out = tmp_path / "dl"
    client._with_retries(
        lambda: api.competition_download_files("big", path=str(out), quiet=True), "downloading"
    )
    assert (out / "big.zip").read_bytes() == emu.zip_bytes
    gets = [e["range"] for e in emu.log if e["path"] == "/data/big.zip"]
    # the retry's redirect opens a full GET, which the client drops for a Range request
    # once it sees a resumable partial: it kept the first whole MiB
    assert gets[0] is None and gets[-1] == f"bytes={2**20}-"


def test_http_range_semantics(kaggle_emulator):
    emu = kaggle_emulator
    url = f"{emu.url}/data/{SLUG}.zip"
    session = requests.Session()
    session.trust_env = False  # straight to the server, not via the proxy variables
    full = session.get(url)
    assert full.status_code == 200 and full.content == emu.zip_bytes
    assert full.headers["Accept-Ranges"] == "bytes" and full.headers["ETag"] == emu.etag
    part = session.get(url, headers={"Range": "bytes=1000-", "If-Range": emu.etag})
    assert part.status_code == 206 and part.content == emu.zip_bytes[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(emu.zip_bytes) - 1}/{len(emu.zip_bytes)}"
    changed = session.get(url, headers={"Range": "bytes=1000-", "If-Range": '"other"'})
    assert changed.status_code == 200 and changed.content == emu.zip_bytes
    past = session.get(url, headers={"Range": f"bytes={len(emu.zip_bytes)}-"})
    assert past.status_code == 416
    # the RPCs want credentials; the data URL stands for a signed storage URL and does not
    rpc = session.post(f"{emu.url}{RPC}ListDataFiles", json={"competitionName": SLUG})
    assert rpc.status_code == 401 and rpc.json() == {"code": 401, "message": "Unauthenticated"}


def test_list_data_files_via_client(kaggle_emulator):
    api = client._client()
    with client._quiet():
        files = api.competition_list_files(SLUG).files
    with zipfile.ZipFile(io.BytesIO(kaggle_emulator.zip_bytes)) as zf:
        expected = {i.filename: i.file_size for i in zf.infolist()}
    assert {f.name: f.total_bytes for f in files} == expected


# ============================================================================ CLI


def test_cli_emulator_needs_zip_and_answers_together(fixture_competition):
    from click.testing import CliRunner

    from kit.cli import cli

    result = CliRunner().invoke(cli, ["emulator", "--zip", str(fixture_competition / f"{SLUG}.zip")])
    assert result.exit_code == 1
    assert result.output == (
        "Error: --zip and --answers go together: the competition zip and its answer key (ImageId,Label)\n"
    )


def test_export_lines_name_kit_competition_only_for_a_known_one(fixture_competition):
    zip_path, answers, slug = emulator_competitions.competition_files(
        fixture_competition / f"{SLUG}.zip", fixture_competition / "answers.csv"
    )
    assert slug == SLUG
    with Emulator(zip_path, answers, slug=slug) as known, Emulator(zip_path, answers, slug="other") as other:
        assert known.port != other.port
        assert server.export_lines(known)[-1] == f"export KIT_COMPETITION={SLUG}"
        assert not any("KIT_" in line for line in server.export_lines(other))
        assert f"export HTTP_PROXY={other.url}" in server.export_lines(other)


def test_cli_emulator_prints_working_exports(tmp_path, fixture_competition):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["KIT_CACHE_DIR"] = str(fixture_competition.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", "emulator", "--scoring-delay", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith(f"Kaggle emulator serving {SLUG} on http://127.0.0.1:")
        exports = {}
        while "KIT_COMPETITION" not in exports:
            line = proc.stdout.readline().strip()
            assert line.startswith("export "), line
            name, _, value = line[len("export ") :].partition("=")
            exports[name] = value.strip("'")
        assert exports["KAGGLE_API_ENVIRONMENT"] == "LOCALHOST" and exports["KIT_COMPETITION"] == SLUG
        port = int(exports["HTTP_PROXY"].rsplit(":", 1)[1])
        r = requests.post(
            f"http://127.0.0.1:{port}{RPC}GetSubmissionLimits",
            json={"competitionName": SLUG},
            auth=(exports["KAGGLE_USERNAME"], exports["KAGGLE_KEY"]),
        )
        assert r.json()["numAllowedNow"] == 5
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "emulator stopped" in err
