"""Every path and competition setting of the kit, in one place.

Paths are read from the environment on each call (not frozen at import) so that the
CLI's options and the tests can move them:

    KIT_DATA_DIR         the data folder (raw CSVs, manifest, binary cache)  [./data]
    KIT_RUNS_DIR         training runs                                        [./runs]
    KIT_SUBMISSIONS_DIR  submission CSVs, their records and the ledger       [./submissions]
    KIT_REPORTS_DIR      HTML reports                                         [./reports]
    KIT_CACHE_DIR        generated fixture competition, misc caches           [./.cache]
    KIT_COMPETITION      which competition spec applies        [digit-recognizer]
"""

from __future__ import annotations

import os
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
        "digit-recognizer", n_train=42_000, n_test=28_000,
        # the three CSVs unpack to ~128 MB; 4x leaves room and still stops a bomb
        max_unzipped_bytes=512 * 2**20,
    ),
    "digit-recognizer-fixture": Competition(
        "digit-recognizer-fixture", n_train=1_200, n_test=597,
        max_unzipped_bytes=32 * 2**20,
    ),
}
DEFAULT_COMPETITION = "digit-recognizer"


def competition(name: str | None = None) -> Competition:
    """The competition spec named by `name`, else $KIT_COMPETITION, else the real one."""
    name = name or os.environ.get("KIT_COMPETITION") or DEFAULT_COMPETITION
    try:
        return COMPETITIONS[name]
    except KeyError:
        known = ", ".join(sorted(COMPETITIONS))
        raise KitError(f"unknown competition {name!r}; known: {known}") from None


def _dir(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


def data_dir() -> Path:
    return _dir("KIT_DATA_DIR", ROOT / "data")


def raw_dir() -> Path:
    """The verified competition CSVs and their manifest.json."""
    return data_dir() / "raw"


def array_cache_dir() -> Path:
    """Binary copies of the parsed CSVs, keyed by the CSV checksum."""
    return data_dir() / "cache"


def runs_dir() -> Path:
    return _dir("KIT_RUNS_DIR", ROOT / "runs")


def submissions_dir() -> Path:
    return _dir("KIT_SUBMISSIONS_DIR", ROOT / "submissions")


def reports_dir() -> Path:
    return _dir("KIT_REPORTS_DIR", ROOT / "reports")


def cache_dir() -> Path:
    return _dir("KIT_CACHE_DIR", ROOT / ".cache")


def ledger_path() -> Path:
    return submissions_dir() / "ledger.db"
