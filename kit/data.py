"""The competition data: verified install, fast loading, and the shared validation split.

    install(source)   a Kaggle zip (or a folder of the three CSVs) -> verified files in
                      config.raw_dir(), with manifest.json; atomic, never destroys good data
    is_installed()    the manifest matches the files (sizes + sha256)
    load()            Dataset of uint8 arrays; parses the CSVs once, then reads a binary cache
    split(y)          the deterministic stratified train/validation split every model shares

Verification (the same code parses for `load`): exact header, the competition's row
count (declared by name in config.COMPETITIONS, never taken from the files), every cell
an integer, pixels 0-255, labels 0-9, sample_submission's ImageId 1..n_test. Errors name
file, line (1-based, as an editor shows it, the header being line 1) and column.

Layout of the data folder (config.data_dir()):

    raw/train.csv, raw/test.csv, raw/sample_submission.csv, raw/manifest.json
    cache/<checksum>/X_train.npy, y_train.npy, X_test.npy     binary copy of the parse
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from kit import config
from kit.errors import KitError
from kit.io import exclusive, read_json, save_npy, sha256_file, utc_iso, write_json

TRAIN, TEST, SAMPLE = "train.csv", "test.csv", "sample_submission.csv"
FILES = (TRAIN, TEST, SAMPLE)
MANIFEST = "manifest.json"
LOCK = ".lock"  # in the data folder: one install at a time (two terminals running `make download`)
MANIFEST_VERSION = 1
CACHE_VERSION = 1  # bump when the cache layout changes: old caches are then ignored
CHUNK = 1 << 20  # bytes per read when copying

PIXELS = [f"pixel{i}" for i in range(config.N_PIXELS)]
HEADERS = {TRAIN: ["label", *PIXELS], TEST: PIXELS, SAMPLE: ["ImageId", "Label"]}
PIXEL_MAX = 255
LABEL_MAX = config.N_CLASSES - 1
REDOWNLOAD = "Get a fresh copy of the competition files (kit download --force, or --from a good zip)."


# ----------------------------------------------------------------------------- verification


def _n_rows(name: str, comp: config.Competition) -> int:
    return comp.n_train if name == TRAIN else comp.n_test


def _bounds(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-column inclusive bounds (lo, hi) and how each column's rule reads in an error."""
    cols = HEADERS[name]
    lo = np.zeros(len(cols), np.int64)
    hi = np.full(len(cols), PIXEL_MAX, np.int64)
    rule = ["an integer 0–255"] * len(cols)
    if name == TRAIN:
        hi[0], rule[0] = LABEL_MAX, "a label, an integer 0–9"
    if name == SAMPLE:
        hi[1], rule[1] = LABEL_MAX, "a label, an integer 0–9"
        hi[0], rule[0] = np.iinfo(np.int64).max, "an integer"  # ImageId: checked against its row below
    return lo, hi, rule


def _where(name: str, line: int, col: int) -> str:
    """'train.csv line 7, column pixel12 (col 14)'; col is 0-based here, 1-based in the text."""
    cols = HEADERS[name]
    label = f"column {cols[col]} (col {col + 1})" if col < len(cols) else f"col {col + 1}"
    return f"{name} line {line}, {label}"  # no thousands separator: as an editor shows it


def _check_header(path: Path, name: str, comp: config.Competition) -> None:
    with open(path, "rb") as f:
        first = f.readline()
    if not first:
        raise KitError(
            f"{name} is empty: expected the header {_short(HEADERS[name])} and {_n_rows(name, comp):,} rows"
        )
    got = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n").split(",")
    want = HEADERS[name]
    if got == want:
        return
    for j, (g, w) in enumerate(zip(got, want)):
        if g != w:
            raise KitError(
                f"{name} line 1, col {j + 1}: expected header column {w!r}, got {g!r} "
                f"(the header must be {_short(want)})"
            )
    if len(got) > len(want):
        raise KitError(
            f"{name} line 1, col {len(want) + 1}: unexpected extra column {got[len(want)]!r} "
            f"(expected {len(want)} columns: {_short(want)})"
        )
    raise KitError(
        f"{name} line 1: missing column {want[len(got)]!r} (col {len(got) + 1}); "
        f"expected {len(want)} columns: {_short(want)}"
    )


def _short(cols: list[str]) -> str:
    return ",".join(cols) if len(cols) <= 3 else f"{cols[0]},{cols[1]},...,{cols[-1]}"


def _as_int(cell: str) -> int | None:
    """The integer a cell holds, as pandas' int parser reads it ('7', ' 7', '7.0'), else None."""
    try:
        return int(cell)
    except ValueError:
        try:
            f = float(cell)
        except ValueError:
            return None
        return int(f) if f.is_integer() else None


def _locate(path: Path, name: str, comp: config.Competition) -> None:
    """Slow path, only after the fast parse failed: raise a KitError at the first bad cell."""
    want = len(HEADERS[name])
    lo, hi, rule = _bounds(name)
    short = None  # a line with too few values: reported once we know whether it is the last
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        next(reader)  # the header: already checked
        try:
            for row in reader:
                line = reader.line_num
                if short is not None:
                    raise KitError(f"{short}: missing value (expected {want} values per line)")
                if len(row) == 0 or row == [""]:
                    raise KitError(f"{name} line {line} is empty: expected {want} comma-separated values")
                if len(row) > want:
                    raise KitError(
                        f"{_where(name, line, want)}: unexpected extra value {row[want]!r} "
                        f"(expected {want} values per line, got {len(row)})"
                    )
                if len(row) < want:
                    short = _where(name, line, len(row))
                    continue
                try:  # the common case, a good line, checked in C rather than cell by cell
                    values = np.fromiter(map(int, row), np.int64, count=want)
                    if not ((values < lo) | (values > hi)).any():
                        continue
                except (ValueError, OverflowError):
                    pass
                for j, cell in enumerate(row):  # a bad line: find its first bad cell
                    value = _as_int(cell)
                    if value is None or not lo[j] <= value <= hi[j]:
                        got = "an empty cell" if cell.strip() == "" else repr(cell)
                        raise KitError(f"{_where(name, line, j)}: expected {rule[j]}, got {got}")
        except csv.Error as e:
            raise KitError(f"{name} line {reader.line_num}: not a CSV line ({e})") from None
    if short is not None:
        raise KitError(f"{short}: missing value; the last line is cut short, the file looks truncated")


def read_csv(path: Path, name: str, comp: config.Competition | None = None) -> np.ndarray:
    """Parse and verify one competition file.

    Returns (n_rows, n_columns) int64, every rule in the module docstring checked;
    raises KitError naming file, line and column otherwise.
    """
    import pandas as pd

    comp = comp or config.competition()
    _check_header(path, name, comp)
    try:
        # int64 (not uint8) so that 256 or -1 survive the parse and are caught below
        frame = pd.read_csv(path, dtype=np.int64, engine="c", skip_blank_lines=False)
    except (ValueError, OverflowError, pd.errors.ParserError) as e:
        _locate(path, name, comp)
        raise KitError(f"{name} could not be read as CSV: {e}") from None
    values = frame.to_numpy()
    assert values.shape[1] == len(HEADERS[name])
    lo, hi, rule = _bounds(name)
    bad = (values < lo) | (values > hi)
    if bad.any():
        i, j = np.argwhere(bad)[0]  # row-major: the first bad cell in file order
        raise KitError(f"{_where(name, i + 2, j)}: expected {rule[j]}, got '{values[i, j]}'")
    n, want = len(values), _n_rows(name, comp)
    if n != want:
        others = [c.slug for c in config.COMPETITIONS.values() if _n_rows(name, c) == n]
        hint = (
            f"; that is the size of {others[0]}: is --competition / KIT_COMPETITION right?" if others else ""
        )
        raise KitError(f"{name} has {n:,} rows after the header, expected {want:,} for {comp.slug}{hint}")
    if name == SAMPLE:
        ids = values[:, 0]
        wrong = np.flatnonzero(ids != np.arange(1, n + 1))
        if len(wrong):
            i = wrong[0]
            raise KitError(f"{_where(name, i + 2, 0)}: expected ImageId {i + 1}, got '{ids[i]}'")
    return values


# ----------------------------------------------------------------------------- install


def _combined(shas: dict[str, str]) -> str:
    """The data checksum every run records: one short hash over train.csv and test.csv."""
    text = "".join(f"{name}:{shas[name]}\n" for name in (TRAIN, TEST))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe_member(name: str) -> bool:
    """False for absolute paths, drive letters and '..' anywhere (zip slip)."""
    p = PurePosixPath(name.replace("\\", "/"))
    return not (p.is_absolute() or ".." in p.parts or (p.parts and ":" in p.parts[0]))


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _unzip(zip_path: Path, dest: Path, comp: config.Competition) -> None:
    """Extract the three CSVs from a Kaggle zip into dest, refusing unsafe archives.

    Every check on the central directory runs before a single byte is written; the
    extraction itself is bounded too, in case an archive lies about its sizes.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise KitError(f"{zip_path} is not a readable zip file ({e}). {REDOWNLOAD}") from None
    with zf:
        infos = zf.infolist()
        unsafe = [i.filename for i in infos if not _safe_member(i.filename)]
        if unsafe:
            raise KitError(
                f"{zip_path}: unsafe member path {unsafe[0]!r} (absolute or with '..'); "
                f"refusing to extract anything from this archive. {REDOWNLOAD}"
            )
        total = sum(i.file_size for i in infos)
        if total > comp.max_unzipped_bytes:
            fits = [c.slug for c in config.COMPETITIONS.values() if total <= c.max_unzipped_bytes]
            hint = (
                f" (it would fit {fits[0]}: is --competition / KIT_COMPETITION right?)"
                if fits
                else " (zip bomb?)"
            )
            raise KitError(
                f"{zip_path} would unpack to {_mb(total)}, more than the "
                f"{_mb(comp.max_unzipped_bytes)} allowed for {comp.slug}; refusing to "
                f"extract it{hint}. {REDOWNLOAD}"
            )
        members = {i.filename: i for i in infos}
        missing = [n for n in FILES if n not in members]
        if missing:
            raise KitError(
                f"{zip_path} lacks {', '.join(missing)} (it holds: "
                f"{', '.join(sorted(members)) or 'nothing'}). {REDOWNLOAD}"
            )
        written = 0
        for name in FILES:
            try:
                with zf.open(members[name]) as src, open(dest / name, "wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > comp.max_unzipped_bytes:
                            raise KitError(
                                f"{zip_path} unpacks to more than the "
                                f"{_mb(comp.max_unzipped_bytes)} allowed for {comp.slug}; "
                                f"refusing it (zip bomb?). {REDOWNLOAD}"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                # a corrupted download: bad CRC, broken deflate stream, cut short, odd method
                raise KitError(
                    f"{zip_path} is damaged: {name} cannot be unpacked ({e}). {REDOWNLOAD}"
                ) from None


def _copy_folder(folder: Path, dest: Path, comp: config.Competition) -> None:
    missing = [n for n in FILES if not (folder / n).is_file()]
    if missing:
        raise KitError(
            f"{folder} lacks {', '.join(missing)}: expected {', '.join(FILES)} "
            f"or {comp.slug}.zip. {REDOWNLOAD}"
        )
    total = sum((folder / n).stat().st_size for n in FILES)
    if total > comp.max_unzipped_bytes:
        raise KitError(
            f"the CSVs in {folder} add up to {_mb(total)}, more than the "
            f"{_mb(comp.max_unzipped_bytes)} allowed for {comp.slug}. {REDOWNLOAD}"
        )
    for n in FILES:
        shutil.copyfile(folder / n, dest / n)


def _resolve_source(source: Path, comp: config.Competition) -> Path:
    """A zip, a folder with the CSVs, or a folder holding the competition's zip."""
    source = Path(source).expanduser()
    if not source.exists():
        raise KitError(
            f"{source} does not exist: pass the competition zip or a folder with {', '.join(FILES)}"
        )
    if source.is_dir() and not (source / TRAIN).exists() and (source / f"{comp.slug}.zip").is_file():
        return source / f"{comp.slug}.zip"
    return source


def _file_entry(path: Path, sha: str) -> dict:
    st = path.stat()
    return {"size": st.st_size, "sha256": sha, "mtime_ns": st.st_mtime_ns}


def _recover() -> None:
    """Finish or undo an install that was killed between its two renames, drop leftovers."""
    data, raw = config.data_dir(), config.raw_dir()
    olds = sorted(data.glob(".raw-old-*"))
    if not raw.exists() and olds:
        os.replace(olds[-1], raw)  # the swap was cut short: the old data is still good
        olds = olds[:-1]
    for leftover in [*olds, *data.glob(".raw-new-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def install(source: Path | str, force: bool = False, echo: Callable[[str], None] = print) -> str:
    """Verify the competition files in `source` (zip or folder) and install them into raw_dir.

    Everything is unpacked and verified in a temporary folder beside raw_dir, which
    replaces raw_dir only when all three files pass: a bad source leaves the data that
    was there untouched. With the same data already verified this returns at once
    (unless `force`). Returns a one-line summary.
    """
    comp = config.competition()
    source = _resolve_source(Path(source), comp)
    raw = config.raw_dir()
    with exclusive(config.data_dir() / LOCK):
        _recover()
        source_sha = sha256_file(source) if source.is_file() else None
        installed = None if force else _installed_from(source, source_sha)
        if installed is not None:
            return (
                f"already verified: {raw} holds {comp.slug} (checksum "
                f"{installed['checksum']}); nothing to do (--force verifies again)"
            )
        t0 = time.perf_counter()
        manifest, arrays = _install_new(source, source_sha, comp, echo)
        try:  # the parse is done: keep it, so the first load() is a cache hit
            _write_cache(_cache_path(manifest["checksum"]), arrays)
        except OSError:
            pass  # only an optimisation: load() parses and tries again
    seconds = time.perf_counter() - t0
    return (
        f"installed {comp.slug} into {raw}: {comp.n_train:,} train and {comp.n_test:,} test "
        f"images verified in {seconds:.1f}s (checksum {manifest['checksum']})"
    )


def _installed_from(source: Path, source_sha: str | None) -> dict | None:
    """The manifest of the installed data if it is intact and came from these very files
    (the same zip, by sha256, or a folder whose three CSVs hash as recorded), else None."""
    manifest = read_manifest()
    if not manifest or not is_installed():
        return None
    if source_sha is not None:
        same = manifest.get("source_sha256") == source_sha
    else:
        same = all(
            (source / n).is_file() and manifest["files"][n]["sha256"] == sha256_file(source / n)
            for n in FILES
        )
    return manifest if same else None


def _install_new(
    source: Path, source_sha: str | None, comp: config.Competition, echo: Callable[[str], None]
) -> tuple[dict, dict[str, np.ndarray]]:
    """Unpack and verify `source` in a temporary folder, then swap it in for raw_dir.

    Returns the new manifest and the parsed arrays (X_train, y_train, X_test, as `load` gives
    them). On any failure nothing is installed and the message says raw_dir is as it was.
    """
    raw = config.raw_dir()
    kept = f"{raw} is unchanged" if raw.exists() else f"{raw} was not created"
    tmp = Path(tempfile.mkdtemp(prefix=".raw-new-", dir=config.data_dir()))
    tmp.chmod(0o755)  # mkdtemp's 0700 would hide the data from the user's other accounts
    try:
        echo(f"unpacking {source} ...")
        if source.is_dir():
            _copy_folder(source, tmp, comp)
        else:
            _unzip(source, tmp, comp)
        shas, arrays = _verify(
            tmp, comp, echo, failed=f"\n(in {source}) Nothing was installed; {kept}. {REDOWNLOAD}"
        )
        manifest = {
            "version": MANIFEST_VERSION,
            "competition": comp.slug,
            "checksum": _combined(shas),
            "source": str(source),
            "source_sha256": source_sha,
            "verified_utc": utc_iso(),
            "files": {n: _file_entry(tmp / n, shas[n]) for n in FILES},
        }
        write_json(tmp / MANIFEST, manifest)
        _swap(tmp, raw)
    except OSError as e:  # disk full, permissions: the user's to fix, not a traceback
        raise KitError(
            f"installing into {config.data_dir()} failed: {e}. Nothing was installed; "
            f"{kept}. Free some space or choose another --data-dir."
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest, arrays


def _verify(
    folder: Path, comp: config.Competition, echo: Callable[[str], None], failed: str
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Verify the three CSVs in `folder` (read_csv's rules); `failed` is appended to the error.

    Returns each file's sha256 and the arrays parsed on the way (X_train, y_train, X_test).
    """
    shas, arrays = {}, {}
    for name in FILES:
        echo(f"verifying {name} ...")
        try:
            values = read_csv(folder / name, name, comp)
        except KitError as e:
            raise KitError(f"{e}{failed}") from None
        shas[name] = sha256_file(folder / name)
        if name == TRAIN:
            arrays["y_train"], arrays["X_train"] = values[:, 0].astype(np.uint8), _images(values[:, 1:])
        elif name == TEST:
            arrays["X_test"] = _images(values)
        del values  # int64, 8 bytes a cell: free it before parsing the next file
    return shas, arrays


def _swap(new: Path, raw: Path) -> None:
    """Put folder `new` in raw's place: two renames; _recover() finishes an interrupted one."""
    old = None
    if raw.exists():
        old = Path(tempfile.mkdtemp(prefix=".raw-old-", dir=raw.parent))
        os.rmdir(old)
        os.replace(raw, old)
    os.replace(new, raw)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- manifest


def read_manifest() -> dict | None:
    """raw_dir's manifest.json, or None if there is none (or it is unreadable)."""
    try:
        return read_json(config.raw_dir() / MANIFEST) or None
    except (OSError, UnicodeDecodeError, KitError):
        return None


def _check_files(manifest: dict, deep: bool) -> str | None:
    """None if every file matches the manifest, else what is wrong.

    Not deep: a file whose size and mtime are as recorded is trusted (as make and git do);
    one whose mtime moved is re-hashed, and if its content is the same the new mtime is
    recorded (a folder copied without keeping mtimes is re-hashed once, not on every load).
    Deep: always re-hash.
    """
    raw = config.raw_dir()
    moved = {}
    for name in FILES:
        entry, path = manifest["files"].get(name), raw / name
        if entry is None or not path.is_file():
            return f"{name} is missing"
        st = path.stat()
        if st.st_size != entry["size"]:
            return f"{name} changed size since it was verified"
        if deep or st.st_mtime_ns != entry["mtime_ns"]:
            if sha256_file(path) != entry["sha256"]:
                return f"{name} changed since it was verified (sha256 differs)"
            if st.st_mtime_ns != entry["mtime_ns"]:
                moved[name] = st.st_mtime_ns
    if moved:
        for name, mtime_ns in moved.items():
            manifest["files"][name]["mtime_ns"] = mtime_ns
        try:
            write_json(raw / MANIFEST, manifest)
        except OSError:
            pass  # a read-only data folder: correct, just slower next time
    return None


def is_installed(deep: bool = True) -> bool:
    """True if raw_dir holds this competition's verified files, unchanged since."""
    manifest = read_manifest()
    if not manifest or manifest.get("version") != MANIFEST_VERSION:
        return False
    if manifest.get("competition") != config.competition().slug:
        return False
    return _check_files(manifest, deep) is None


def _require_installed() -> dict:
    comp, raw = config.competition(), config.raw_dir()
    manifest = read_manifest()
    if not manifest or manifest.get("version") != MANIFEST_VERSION:
        raise KitError(f"no verified data in {raw}: run `make download` (or `kit download --from ZIP`)")
    if manifest.get("competition") != comp.slug:
        raise KitError(
            f"{raw} holds {manifest.get('competition')}, but {comp.slug} is selected "
            f"(--competition / KIT_COMPETITION): download it, or select the other one"
        )
    problem = _check_files(manifest, deep=False)
    if problem:
        raise KitError(f"{raw}/{problem}: run `kit download --force` to fetch and verify it again")
    return manifest


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True, eq=False)
class Dataset:
    """The competition's images.

    X_train: (n_train, 28, 28) uint8 in [0, 255];  y_train: (n_train,) uint8 in [0, 9]
    X_test:  (n_test, 28, 28) uint8, rows in test.csv order (ImageId = row + 1)
    checksum: short sha256 over train.csv and test.csv (recorded in every run's metrics)
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    checksum: str


def _images(pixels: np.ndarray) -> np.ndarray:
    """(N, 784) verified integers 0-255 -> (N, 28, 28) uint8."""
    return pixels.astype(np.uint8).reshape(-1, config.IMAGE_SIDE, config.IMAGE_SIDE)


def _cache_path(checksum: str) -> Path:
    return config.array_cache_dir() / f"v{CACHE_VERSION}-{checksum}"


ARRAYS = ("X_train", "y_train", "X_test")


def _write_cache(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    for name in ARRAYS:
        save_npy(folder / f"{name}.npy", arrays[name])
    # one cache at a time: drop those of data that is no longer installed
    for other in config.array_cache_dir().glob("v*-*"):
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)


def _read_cache(folder: Path, comp: config.Competition) -> dict[str, np.ndarray] | None:
    try:
        arrays = {name: np.load(folder / f"{name}.npy") for name in ARRAYS}
    except (OSError, ValueError):
        return None  # absent or damaged: parse again
    side = (config.IMAGE_SIDE, config.IMAGE_SIDE)
    ok = (
        arrays["X_train"].shape == (comp.n_train, *side)
        and arrays["y_train"].shape == (comp.n_train,)
        and arrays["X_test"].shape == (comp.n_test, *side)
        and all(a.dtype == np.uint8 for a in arrays.values())
    )
    return arrays if ok else None


def parse() -> dict[str, np.ndarray]:
    """Parse train.csv and test.csv from raw_dir (the slow path `load` caches)."""
    comp, raw = config.competition(), config.raw_dir()
    train = read_csv(raw / TRAIN, TRAIN, comp)
    arrays = {"y_train": train[:, 0].astype(np.uint8), "X_train": _images(train[:, 1:])}
    del train
    arrays["X_test"] = _images(read_csv(raw / TEST, TEST, comp))
    return arrays


def load() -> Dataset:
    """The installed competition data; from the binary cache when it is there.

    Raises KitError if nothing is installed or the files changed since verification.
    """
    comp = config.competition()
    manifest = _require_installed()
    folder = _cache_path(manifest["checksum"])
    arrays = _read_cache(folder, comp)
    if arrays is None:
        arrays = parse()
        try:
            _write_cache(folder, arrays)
        except OSError:
            pass  # a read-only or full data folder: the data is right, later loads parse again
    return Dataset(checksum=manifest["checksum"], **arrays)


# ----------------------------------------------------------------------------- split


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices into the training set: train_idx (n - n_val,), val_idx (n_val,), int64.

    Both are sorted ascending, so "split order" for validation predictions is train.csv
    order restricted to the validation rows.
    """

    train_idx: np.ndarray
    val_idx: np.ndarray
    seed: int
    val_fraction: float

    @property
    def hash(self) -> str:
        """Short sha256 of the index bytes: equal hashes = the very same validation rows."""
        h = hashlib.sha256()
        h.update(self.train_idx.astype("<i8").tobytes())
        h.update(b"|")
        h.update(self.val_idx.astype("<i8").tobytes())
        return h.hexdigest()[:16]


def split(y: np.ndarray, val_fraction: float = config.VAL_FRACTION, seed: int = config.SPLIT_SEED) -> Split:
    """Stratified split of labels y: (N,) into train and validation rows (deterministic)."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise KitError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    train_idx, val_idx = train_test_split(
        np.arange(len(y), dtype=np.int64), test_size=val_fraction, stratify=y, random_state=seed
    )
    return Split(np.sort(train_idx), np.sort(val_idx), seed, val_fraction)


def load_split(
    val_fraction: float = config.VAL_FRACTION, seed: int = config.SPLIT_SEED
) -> tuple[Dataset, Split]:
    """load() and split() of its labels: what every model starts from."""
    ds = load()
    return ds, split(ds.y_train, val_fraction, seed)
