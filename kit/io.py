"""File plumbing, written once: atomic writes, hashing, locks, free names, UTC timestamps.

Nothing here knows about runs, data or Kaggle; every module that writes a file comes here,
so "nothing is half-written" and "never overwrite" hold in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import filelock
import numpy as np

from kit.errors import KitError

T = TypeVar("T")
MAX_NAME_TRIES = 1000  # "-2", "-3", ... before we conclude something is wrong with the folder


# ----------------------------------------------------------------------------- timestamps


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc_stamp(now: datetime | None = None) -> str:
    """UTC time as YYYYmmdd-HHMMSS, the kit's timestamp in every file and folder name."""
    return (now or utc_now()).strftime("%Y%m%d-%H%M%S")


def utc_iso(now: datetime | None = None) -> str:
    """UTC time as ISO 8601 to the second, e.g. 2026-12-01T11:10:18+00:00."""
    return (now or utc_now()).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The temporary name (`.tmp-XXXX-<name>`) ends with the whole real name, because np.save and
    Keras look at the suffix (`.npy`, `.keras`, `.weights.h5`); it is hidden, so a crash never
    leaves a file that looks finished. Files get ordinary 0644 permissions, not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> dict:
    """A JSON file's object, {} when the file does not exist; a KitError naming line and
    column when it is not valid JSON."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise KitError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})") from None


# ----------------------------------------------------------------------------- hashing


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB pieces (the data CSVs are ~120 MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- free names


def free_name(make: Callable[[str], T], stem: str, suffix: str = "") -> T:
    """Call `make(name)` with `stem+suffix`, then `stem-2+suffix`, `stem-3+suffix`, ... until it
    does not raise FileExistsError; return its result. `make` must claim the name atomically
    (mkdir, os.link, open 'x'), so two processes never get the same one."""
    for i in range(1, MAX_NAME_TRIES + 1):
        name = f"{stem}{suffix}" if i == 1 else f"{stem}-{i}{suffix}"
        try:
            return make(name)
        except FileExistsError:
            continue
    raise AssertionError(f"no free name for {stem}{suffix} after {MAX_NAME_TRIES} tries")


# ----------------------------------------------------------------------------- locks


class LockHeld(KitError):
    """Another process holds the lock; `holder` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by {holder or 'another process'}")
        self.path, self.holder = path, holder


@contextmanager
def exclusive(path: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing, never removed) for the block.

    The holder writes its pid and command line into the file, so a refusal can name it.
    wait=False raises LockHeld at once instead of waiting (wait=True polls every 0.05 s). The OS
    drops the lock when its process dies, so a crashed holder never blocks anyone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # filelock's lock on our own descriptor: flock on POSIX, LockFileEx on byte 0 on Windows, where
    # fcntl does not exist. Unlike filelock.FileLock it never truncates or deletes the file, and
    # never falls back to a soft lock that a crashed process would leave held.
    with open(path, "a+b") as f:
        if not filelock.lock_descriptor(f.fileno(), blocking=wait):
            f.seek(1)  # Windows refuses reads of the locked byte 0, so the holder's line starts at 1
            raise LockHeld(path, f.read().decode(errors="replace").strip())
        try:
            f.seek(0)
            f.truncate()
            f.write(f" process {os.getpid()} ({' '.join(sys.argv)[:200]})\n".encode())
            f.flush()
            yield
        finally:
            f.seek(0)
            f.truncate()
            filelock.unlock_descriptor(f.fileno())
