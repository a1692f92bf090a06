"""Every path and competition setting of the kit, in one place.

The settings live in one frozen `Settings`, built from the environment by `Settings.from_env`,
the only code that reads the KIT_* variables:

    KIT_DATA_DIR         the data folder (raw CSVs, manifest, binary cache)  [./data]
    KIT_RUNS_DIR         training runs                                        [./runs]
    KIT_SUBMISSIONS_DIR  submission CSVs, their records and the ledger       [./submissions]
    KIT_REPORTS_DIR      HTML reports                                         [./reports]
    KIT_CACHE_DIR        generated fixture competition, misc caches           [./.cache]
    KIT_COMPETITION      which competition spec applies        [digit-recognizer]
    KIT_RETRY_ATTEMPTS   attempts in all for a failing Kaggle request         [5]
    KIT_RETRY_BASE_S     first backoff between them, seconds (doubles)        [1.0]
    KIT_NET_TIMEOUT_S    seconds one request may wait for the server          [60]

The CLI builds one Settings per command (the environment plus --data-dir / --competition)
and `activate`s it for the command's duration; `settings()` returns it. With none active
(the library used from a script, tests that set the variables) `settings()` reads the
environment afresh on every call, so a changed variable takes effect at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError

ROOT = Path(__file__).resolve().parent.parent

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE  # 784
N_CLASSES = 10

# The validation split every model and the ensemble share.
SPLIT_SEED = 42
VAL_FRACTION = 0.10


@dataclass(frozen=True)
class Competition:
    """What a competition's files must look like.

    slug:     the Kaggle slug the data is downloaded from and submissions go to
    n_train:  rows (images) in train.csv, header excluded
    n_test:   rows in test.csv; a submission has exactly this many rows
    max_unzipped_bytes: an archive that unpacks to more than this is refused (zip bomb)
    """

    slug: str
    n_train: int
    n_test: int
    max_unzipped_bytes: int


# The real competition, and the small fixture built from scikit-learn's digits
# (kit.fixture) that the tests and the offline demo use. A competition's size is
# declared here, by name, never by the files themselves: a file cannot vouch for itself.
COMPETITIONS = {
    "digit-recognizer": Competition(
        "digit-recognizer",
        n_train=42_000,
        n_test=28_000,
        # the three CSVs unpack to ~128 MB; 4x leaves room and still stops a bomb
        max_unzipped_bytes=512 * 2**20,
    ),
    "digit-recognizer-fixture": Competition(
        "digit-recognizer-fixture",
        n_train=1_200,
        n_test=597,
        max_unzipped_bytes=32 * 2**20,
    ),
}
DEFAULT_COMPETITION = "digit-recognizer"


# Kaggle request policy (kit.kaggle.client). The client sends some requests, the submission file's
# PUT among them, with no timeout at all: one stalled connection would hang `kit submit` for
# ever, so every request gets NET_TIMEOUT_S (connect, or between bytes read).
RETRY_ATTEMPTS = 5
RETRY_BASE_S = 1.0
NET_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Settings:
    """Where the kit reads and writes, which competition applies, how Kaggle is retried.

    data_dir, runs_dir, submissions_dir, reports_dir, cache_dir: folders (see the module docstring)
    competition:    the name of a COMPETITIONS entry (checked when `competition()` is asked)
    retry_attempts: attempts in all for a Kaggle request that keeps failing transiently (>= 1)
    retry_base_s:   seconds before the first retry; each later wait doubles
    net_timeout_s:  seconds one request may wait for the server
    """

    data_dir: Path
    runs_dir: Path
    submissions_dir: Path
    reports_dir: Path
    cache_dir: Path
    competition: str
    retry_attempts: int
    retry_base_s: float
    net_timeout_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides) -> Settings:
        """Settings from the KIT_* variables of `environ` (defaults for those unset or empty),
        with `overrides` (field=value) on top; an override of None counts as not given."""
        unknown = set(overrides) - set(_ENV)
        assert not unknown, f"not a setting: {sorted(unknown)}"
        values = {name: environ.get(var) or None for name, var in _ENV.items()}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(
            **{name: _path(values[name], ROOT / default) for name, default in _DIR_DEFAULTS.items()},
            competition=str(values["competition"] or DEFAULT_COMPETITION),
            retry_attempts=max(1, _number(values, "retry_attempts", int, RETRY_ATTEMPTS)),
            retry_base_s=_number(values, "retry_base_s", float, RETRY_BASE_S),
            net_timeout_s=_number(values, "net_timeout_s", float, NET_TIMEOUT_S),
        )


_ENV = {  # Settings field -> the variable it is read from
    "data_dir": "KIT_DATA_DIR",
    "runs_dir": "KIT_RUNS_DIR",
    "submissions_dir": "KIT_SUBMISSIONS_DIR",
    "reports_dir": "KIT_REPORTS_DIR",
    "cache_dir": "KIT_CACHE_DIR",
    "competition": "KIT_COMPETITION",
    "retry_attempts": "KIT_RETRY_ATTEMPTS",
    "retry_base_s": "KIT_RETRY_BASE_S",
    "net_timeout_s": "KIT_NET_TIMEOUT_S",
}
_DIR_DEFAULTS = {
    "data_dir": "data",
    "runs_dir": "runs",
    "submissions_dir": "submissions",
    "reports_dir": "reports",
    "cache_dir": ".cache",
}  # under ROOT


def _path(value, default: Path) -> Path:
    return Path(value).expanduser() if value is not None else default


def _number(values: dict, name: str, kind: type, default):
    value = values[name]
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise KitError(
            f"{_ENV[name]} must be {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None


# The active settings, innermost last: a plain list, not a ContextVar, so that threads a
# command starts (data loaders, the emulator) see the same settings as the command.
_active: list[Settings] = []


@contextmanager
def activate(s: Settings) -> Iterator[Settings]:
    """Make `s` what `settings()` returns inside the block (nestable; the previous one is back after)."""
    _active.append(s)
    try:
        yield s
    finally:
        _active.pop()  # `with` blocks nest, so the innermost one is ours


def environment() -> dict[str, str]:
    """os.environ with the active settings as KIT_* variables: what a `kit` child process
    needs to read and write where this one does (--data-dir and the like included), and this
    kit first on PYTHONPATH (a Kaggle kernel's kit is unpacked, not installed)."""
    s = settings()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, **{var: str(getattr(s, name)) for name, var in _ENV.items()}, "PYTHONPATH": path}


def cpu_cores() -> int:
    """Cores this process may run on (its affinity where the OS tells, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def settings() -> Settings:
    """The active Settings, or, with none active, Settings.from_env() read now."""
    return _active[-1] if _active else Settings.from_env()


def competition(name: str | None = None) -> Competition:
    """The competition spec named by `name`, else by the settings (KIT_COMPETITION), else the real one."""
    name = name or settings().competition
    try:
        return COMPETITIONS[name]
    except KeyError:
        known = ", ".join(sorted(COMPETITIONS))
        raise KitError(f"unknown competition {name!r}; known: {known}") from None


def data_dir() -> Path:
    return settings().data_dir


def raw_dir() -> Path:
    """The verified competition CSVs and their manifest.json."""
    return data_dir() / "raw"


def array_cache_dir() -> Path:
    """Binary copies of the parsed CSVs, keyed by the CSV checksum."""
    return data_dir() / "cache"


def runs_dir() -> Path:
    return settings().runs_dir


def submissions_dir() -> Path:
    return settings().submissions_dir


def reports_dir() -> Path:
    return settings().reports_dir


def cache_dir() -> Path:
    return settings().cache_dir


def ledger_path() -> Path:
    return submissions_dir() / "ledger.db"
