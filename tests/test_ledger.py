"""The submission ledger: concurrent writers, sync with Kaggle's list, the report's view."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from kit import ledger

N_PROCS = 8
ROWS_PER_PROC = 20


def _writer(args: tuple[str, int]) -> None:
    path, proc = args
    for j in range(ROWS_PER_PROC):
        rid = ledger.add(
            f"p{proc}-{j}.csv", f"{proc:02d}{j:02d}", "msg", [f"run-{proc}"], 0.5, path=Path(path)
        )
        ledger.update(rid, status="submitted", kaggle_ref=proc * 1000 + j, path=Path(path))


def test_eight_processes_lose_no_row(tmp_path):
    path = tmp_path / "ledger.db"
    # spawn, not fork: each writer is a fresh process with its own connection, like 8 `kit submit`s
    with mp.get_context("spawn").Pool(N_PROCS) as pool:
        pool.map(_writer, [(str(path), p) for p in range(N_PROCS)])
    df = ledger.read_all(path)
    assert len(df) == N_PROCS * ROWS_PER_PROC
    assert sorted(df["id"]) == list(range(1, N_PROCS * ROWS_PER_PROC + 1))
    expected = {f"p{p}-{j}.csv" for p in range(N_PROCS) for j in range(ROWS_PER_PROC)}
    assert set(df["file"]) == expected
    assert set(df["status"]) == {"submitted"}
    assert sorted(df["kaggle_ref"]) == sorted(
        p * 1000 + j for p in range(N_PROCS) for j in range(ROWS_PER_PROC)
    )


def test_read_all_columns_and_missing_ledger(tmp_path):
    path = tmp_path / "ledger.db"
    empty = ledger.read_all(path)
    assert list(empty.columns) == ledger.COLUMNS and empty.empty
    assert not path.exists()  # reading never creates it
    rid = ledger.add("a.csv", "abc", "first", ["cnn-1", "scratch-2"], 0.97, path=path)
    ledger.update(rid, status="complete", kaggle_ref=7, public_score=0.96, scored_utc="t", path=path)
    df = ledger.read_all(path)
    assert list(df.columns) == ledger.COLUMNS
    row = df.iloc[0]
    assert (row["id"], row["file"], row["status"], row["kaggle_ref"]) == (1, "a.csv", "complete", 7)
    assert json.loads(row["runs"]) == ["cnn-1", "scratch-2"]
    assert row["public_score"] == 0.96 and row["val_accuracy"] == 0.97


class _Sub:  # the fields of kit.kaggle.competitions.Submission that sync reads
    def __init__(self, ref, status, score=None, file_name="web.csv", error=None):
        self.ref, self.status, self.public_score, self.error = ref, status, score, error
        self.file_name, self.description, self.date = file_name, "from the website", "2026-01-01T00:00:00"
        self.private_score = None


def test_sync_updates_ours_and_adds_uploads_made_elsewhere(tmp_path):
    path = tmp_path / "ledger.db"
    rid = ledger.add("ours.csv", "s1", "m", ["cnn-1"], 0.9, status="submitted", kaggle_ref=1, path=path)
    added, updated = ledger.sync([_Sub(1, "complete", 0.91), _Sub(2, "pending")], path=path)
    assert (added, updated) == (1, 1)
    ours, web = ledger.records(path)
    assert ours["id"] == rid and ours["status"] == "complete" and ours["public_score"] == 0.91
    assert ours["scored_utc"] is not None
    assert web["file"] == "web.csv" and web["status"] == "submitted" and web["sha256"] is None
    # a second sync with nothing new changes nothing
    assert ledger.sync([_Sub(1, "complete", 0.91), _Sub(2, "pending")], path=path) == (0, 0)
    assert ledger.sync([_Sub(2, "error", error="bad csv")], path=path) == (0, 1)
    assert ledger.records(path)[1]["error"] == "bad csv"


def test_corrupt_ledger_is_a_clear_error(tmp_path):
    import pytest

    from kit.errors import KitError

    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(KitError, match="not a usable SQLite ledger"):
        ledger.read_all(path)


def test_attach_ref_folds_in_a_row_sync_added_meanwhile(tmp_path):
    path = tmp_path / "ledger.db"
    rid = ledger.add("ours.csv", "s1", "m", ["cnn-1"], 0.9, path=path)
    ledger.sync([_Sub(42, "pending", file_name="ours.csv")], path=path)  # sync saw the upload first
    assert len(ledger.records(path)) == 2
    ledger.attach_ref(rid, 42, "m", path=path)
    (row,) = ledger.records(path)
    assert (row["id"], row["kaggle_ref"], row["status"], row["sha256"]) == (rid, 42, "submitted", "s1")


def test_rank_among_counts_strictly_better_scores():
    board = [0.99, 0.98, 0.98, 0.5]
    assert [ledger.rank_among(s, board) for s in (1.0, 0.99, 0.985, 0.98, 0.1)] == [1, 1, 2, 2, 5]
    assert ledger.rank_among(0.7, []) == 1
