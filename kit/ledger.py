"""The submission ledger: one SQLite table in submissions/ledger.db, one row per submission.

    id           INTEGER  our own number, 1, 2, ...
    created_utc  TEXT     when the CSV was recorded (ISO 8601, UTC)
    file         TEXT     the CSV's path (or, for uploads made elsewhere, Kaggle's file name)
    sha256       TEXT     hex digest of the CSV bytes (NULL for uploads made elsewhere)
    message      TEXT     the submission description
    runs         TEXT     JSON list of the run names behind the CSV
    val_accuracy REAL     their validation accuracy (NULL if unknown)
    kaggle_ref   INTEGER  Kaggle's submission id, once uploaded
    status       TEXT     'pending'   recorded, not (yet) uploaded: `kit submit --retry` sends it
                          'submitted' uploaded, waiting for its score
                          'complete'  scored; public_score is set
                          'error'     Kaggle refused to score it (see `error`)
    public_score REAL     the leaderboard score (accuracy on the public part of test.csv)
    scored_utc   TEXT     when the score was seen
    error        TEXT     Kaggle's or the upload's error message, if any

Safe with many writers: WAL journal (readers never block the writer), a generous busy
timeout, and every write in its own `BEGIN IMMEDIATE` transaction, so concurrent `kit submit`
processes wait their turn instead of losing rows or failing with "database is locked".
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit import config
from kit.errors import KitError
from kit.io import atomic_path, utc_iso
from kit.kaggle import competitions
from kit.report import charts

STATUSES = ("pending", "submitted", "complete", "error")
# The columns `read_all` returns, in order (kit.report reads exactly these).
COLUMNS = [
    "id",
    "created_utc",
    "file",
    "sha256",
    "message",
    "runs",
    "val_accuracy",
    "kaggle_ref",
    "status",
    "public_score",
    "scored_utc",
]
# How long a writer waits for another process's transaction before giving up (ms).
BUSY_TIMEOUT_MS = 60_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc  TEXT NOT NULL,
    file         TEXT NOT NULL,
    sha256       TEXT,
    message      TEXT NOT NULL DEFAULT '',
    runs         TEXT NOT NULL DEFAULT '[]',
    val_accuracy REAL,
    kaggle_ref   INTEGER UNIQUE,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'complete', 'error')),
    public_score REAL,
    scored_utc   TEXT,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS submissions_sha256 ON submissions (sha256);
"""


def _path(path: Path | None) -> Path:
    return Path(path) if path else config.ledger_path()


def connect(path: Path | None = None) -> sqlite3.Connection:
    """Open (creating if needed) the ledger with WAL and a busy timeout. Caller closes it."""
    path = _path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as e:
        raise KitError(f"cannot open the submission ledger {path}: {e}") from None
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Switching to WAL needs a moment of exclusive access; with several processes opening a
    # new ledger at once the busy handler does not cover it, so retry for a bounded time.
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            with _transaction(conn):
                for stmt in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(stmt)
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                conn.close()
                raise KitError(f"cannot open the submission ledger {path}: {e}") from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as e:
            conn.close()
            raise KitError(
                f"{path} is not a usable SQLite ledger ({e}); move it aside and run "
                f"`kit scores --sync` to rebuild the list from Kaggle"
            ) from None
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front so two writers never deadlock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def _write(path: Path | None) -> Iterator[sqlite3.Connection]:
    with closing(connect(path)) as conn, _transaction(conn):
        yield conn


# ----------------------------------------------------------------------------- writing


def add(
    file: str | Path,
    sha256: str | None,
    message: str,
    runs: Iterable[str],
    val_accuracy: float | None,
    status: str = "pending",
    kaggle_ref: int | None = None,
    path: Path | None = None,
) -> int:
    """Record a submission; returns its ledger id."""
    assert status in STATUSES, status
    with _write(path) as conn:
        cur = conn.execute(
            "INSERT INTO submissions (created_utc, file, sha256, message, runs, val_accuracy,"
            " kaggle_ref, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (utc_iso(), str(file), sha256, message, json.dumps(list(runs)), val_accuracy, kaggle_ref, status),
        )
        return int(cur.lastrowid)


def update(id: int, path: Path | None = None, **fields) -> None:
    """Set some columns of record `id` (status, kaggle_ref, public_score, scored_utc, error, ...)."""
    unknown = set(fields) - set(COLUMNS) - {"error"}
    assert not unknown, unknown
    assert fields.get("status", "pending") in STATUSES, fields
    sets = ", ".join(f"{k} = ?" for k in fields)
    with _write(path) as conn:
        cur = conn.execute(f"UPDATE submissions SET {sets} WHERE id = ?", (*fields.values(), id))
        assert cur.rowcount == 1, f"no ledger record {id}"


def attach_ref(id: int, kaggle_ref: int, message: str, path: Path | None = None) -> None:
    """Record that ledger `id` was uploaded as Kaggle submission `kaggle_ref` (status 'submitted').

    A `kit scores --sync` running between the upload and this call may already have added the
    submission as one "made elsewhere" (no sha256): that row is folded into ours, not duplicated.
    """
    with _write(path) as conn:
        conn.execute(
            "DELETE FROM submissions WHERE kaggle_ref = ? AND id != ? AND sha256 IS NULL", (kaggle_ref, id)
        )
        cur = conn.execute(
            "UPDATE submissions SET status = 'submitted', kaggle_ref = ?, message = ?,"
            " error = NULL WHERE id = ?",
            (kaggle_ref, message, id),
        )
        assert cur.rowcount == 1, f"no ledger record {id}"


def sync(kaggle_submissions: list, path: Path | None = None) -> tuple[int, int]:
    """Merge Kaggle's submission list (kit.kaggle.competitions.Submission objects) into the ledger.

    Records we know (same kaggle_ref) get Kaggle's status and scores; uploads made elsewhere
    (website, another machine) are added. Returns (added, updated).
    """
    added = updated = 0
    now = utc_iso()
    with _write(path) as conn:
        for s in kaggle_submissions:
            status = {"pending": "submitted"}.get(s.status, s.status)
            row = conn.execute("SELECT * FROM submissions WHERE kaggle_ref = ?", (s.ref,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO submissions (created_utc, file, sha256, message, runs, kaggle_ref,"
                    " status, public_score, scored_utc, error) VALUES (?, ?, NULL, ?, '[]', ?, ?, ?, ?, ?)",
                    (
                        s.date or now,
                        s.file_name,
                        s.description or "",
                        s.ref,
                        status,
                        s.public_score,
                        now if s.public_score is not None else None,
                        s.error,
                    ),
                )
                added += 1
            elif (row["status"], row["public_score"]) != (status, s.public_score):
                conn.execute(
                    "UPDATE submissions SET status = ?, public_score = ?, error = ?,"
                    " scored_utc = COALESCE(scored_utc, ?) WHERE id = ?",
                    (status, s.public_score, s.error, now if s.public_score is not None else None, row["id"]),
                )
                updated += 1
    return added, updated


@dataclass(frozen=True)
class Synced:
    """What `sync_from_kaggle` did: ledger rows added and updated, or, when Kaggle could not be
    read, `warning` (why, and what to fix) with the ledger left as it was."""

    added: int = 0
    updated: int = 0
    warning: str | None = None

    def __str__(self) -> str:
        if self.warning is not None:
            return f"Warning: {self.warning}"
        return f"synced with Kaggle: {self.added} new, {self.updated} updated"


def sync_from_kaggle(path: Path | None = None) -> Synced:
    """`sync` with Kaggle's submission list as it is now (`kit scores --sync`).

    A fault (offline, credentials, rules, a damaged ledger) is not raised: the caller still
    shows the local ledger, and the warning says what went wrong.
    """
    try:
        added, updated = sync(competitions.list_submissions(), path)
    except KitError as e:
        return Synced(warning=f"could not sync with Kaggle, showing the local ledger: {e}")
    return Synced(added, updated)


# ----------------------------------------------------------------------------- reading


def records(path: Path | None = None, where: str = "1", params: tuple = ()) -> list[dict]:
    """Ledger rows as dicts (all columns, `error` included), oldest first."""
    if not _path(path).exists():
        return []
    with closing(connect(path)) as conn:
        rows = conn.execute(f"SELECT * FROM submissions WHERE {where} ORDER BY id", params).fetchall()
    return [dict(r) for r in rows]


def get(id: int, path: Path | None = None) -> dict | None:
    found = records(path, "id = ?", (id,))
    return found[0] if found else None


def by_sha256(sha256: str, path: Path | None = None) -> list[dict]:
    return records(path, "sha256 = ?", (sha256,))


def pending(path: Path | None = None) -> list[dict]:
    """Records that were never uploaded (a failed or interrupted upload)."""
    return records(path, "status = 'pending'")


def read_all(path: Path | None = None):
    """Every submission as a pandas DataFrame with columns `COLUMNS`, oldest first.

    `runs` stays a JSON list (string). A missing ledger gives an empty frame (no file created).
    """
    import pandas as pd

    rows = records(path)
    return pd.DataFrame([{k: r[k] for k in COLUMNS} for r in rows], columns=COLUMNS)


# ----------------------------------------------------------------------------- views


def table(path: Path | None = None):
    """The ledger as a compact DataFrame for `kit scores` (file names, not paths)."""
    import pandas as pd

    rows = records(path)
    df = pd.DataFrame(rows, columns=COLUMNS + ["error"])
    if df.empty:
        return df
    df["file"] = df["file"].map(lambda f: Path(f).name)
    df["created_utc"] = df["created_utc"].str.slice(0, 19).str.replace("T", " ")
    df["kaggle_ref"] = df["kaggle_ref"].astype("Int64")
    return df[
        ["id", "created_utc", "file", "val_accuracy", "public_score", "status", "kaggle_ref", "message"]
    ]


def plot(path: Path | None = None, out: Path | None = None) -> Path:
    """Validation accuracy and public score of every submission, in order -> PNG (default
    submissions/scores.png): the chart of the report's leaderboard section (kit.report.charts)."""
    df = read_all(path)
    if df.empty:
        raise KitError("no submissions in the ledger yet: nothing to plot (`kit submit` first)")
    out = Path(out or config.submissions_dir() / "scores.png")
    with atomic_path(out) as tmp:
        charts.plot_leaderboard(df, tmp, title=f"{config.competition().slug}: validation vs leaderboard")
    return out


def rank_among(score: float, board: Iterable[float]) -> int:
    """The rank `score` would have on a leaderboard of `board` scores (higher is better):
    1 + the number of strictly better entries, so a tie shares the better rank."""
    return 1 + sum(s > score for s in board)
