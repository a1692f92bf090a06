"""kit.data: verified install (every malformed input), loading cache, split, `kit download --from`.

Malformed inputs are made from the fixture competition's own files by editing one cell,
line or member; each must fail with its exact message and leave the installed data
(installed by the `fixture_data` fixture) byte for byte as it was.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kit import config, data
from kit.cli import cli
from kit.errors import KitError

ZIP = "digit-recognizer-fixture.zip"
quiet = lambda s: None  # noqa: E731


# ----------------------------------------------------------------------------- helpers


def members(fixture_competition) -> dict[str, bytes]:
    with zipfile.ZipFile(fixture_competition / ZIP) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder (hidden leftovers included) -> sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def edit_lines(content: bytes, fn) -> bytes:
    lines = content.decode().split("\n")
    assert lines[-1] == ""  # the file ends with a newline
    lines = fn(lines[:-1])
    return ("\n".join(lines) + "\n").encode()


def set_cell(line: int, col: int, value: str):
    """Edit: the cell at 1-based (line, col), as an editor counts."""

    def fn(lines):
        cells = lines[line - 1].split(",")
        cells[col - 1] = value
        lines[line - 1] = ",".join(cells)
        return lines

    return fn


def each_line(fn):
    return lambda lines: [fn(line) for line in lines]


def truncate_last_line(keep: int):
    """Keep the first `keep` values of the last line and drop its newline."""

    def fn(content: bytes) -> bytes:
        lines = content.decode().rstrip("\n").split("\n")
        lines[-1] = ",".join(lines[-1].split(",")[:keep])
        return "\n".join(lines).encode()

    return fn


HEADER = "label,pixel0,...,pixel783"
BAD_CSVS = {
    # id: (file, edit of the file's bytes, exact first line of the error)
    "256": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(7, 14, "256")),
        "train.csv line 7, column pixel12 (col 14): expected an integer 0–255, got '256'",
    ),
    "-1": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(7, 14, "-1")),
        "train.csv line 7, column pixel12 (col 14): expected an integer 0–255, got '-1'",
    ),
    "non-integer": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(9, 300, "12a")),
        "train.csv line 9, column pixel298 (col 300): expected an integer 0–255, got '12a'",
    ),
    "fraction": (
        "test.csv",
        lambda b: edit_lines(b, set_cell(2, 1, "0.5")),
        "test.csv line 2, column pixel0 (col 1): expected an integer 0–255, got '0.5'",
    ),
    "huge": (
        "test.csv",
        lambda b: edit_lines(b, set_cell(3, 784, "99999999999999999999999")),
        "test.csv line 3, column pixel783 (col 784): expected an integer 0–255, "
        "got '99999999999999999999999'",
    ),
    "empty-cell": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(7, 14, "")),
        "train.csv line 7, column pixel12 (col 14): expected an integer 0–255, got an empty cell",
    ),
    "label-10": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(3, 1, "10")),
        "train.csv line 3, column label (col 1): expected a label, an integer 0–9, got '10'",
    ),
    "wrong-header": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(1, 14, "pixel12x")),
        f"train.csv line 1, col 14: expected header column 'pixel12', got 'pixel12x' "
        f"(the header must be {HEADER})",
    ),
    "extra-column": (
        "train.csv",
        lambda b: edit_lines(b, lambda ls: [ls[0] + ",extra"] + [x + ",0" for x in ls[1:]]),
        f"train.csv line 1, col 786: unexpected extra column 'extra' (expected 785 columns: {HEADER})",
    ),
    "missing-column": (
        "train.csv",
        lambda b: edit_lines(b, each_line(lambda x: x.rsplit(",", 1)[0])),
        f"train.csv line 1: missing column 'pixel783' (col 785); expected 785 columns: {HEADER}",
    ),
    "extra-value": (
        "train.csv",
        lambda b: edit_lines(b, set_cell(5, 785, "0,0")),
        "train.csv line 5, col 786: unexpected extra value '0' (expected 785 values per line, got 786)",
    ),
    "missing-value": (
        "train.csv",
        lambda b: edit_lines(b, lambda ls: ls[:4] + [ls[4].rsplit(",", 1)[0]] + ls[5:]),
        "train.csv line 5, column pixel783 (col 785): missing value (expected 785 values per line)",
    ),
    "blank-line": (
        "train.csv",
        lambda b: edit_lines(b, lambda ls: ls[:3] + [""] + ls[3:]),
        "train.csv line 4 is empty: expected 785 comma-separated values",
    ),
    "truncated": (
        "test.csv",
        truncate_last_line(300),
        "test.csv line 598, column pixel300 (col 301): missing value; the last line is cut short, "
        "the file looks truncated",
    ),
    "empty-file": (
        "train.csv",
        lambda b: b"",
        f"train.csv is empty: expected the header {HEADER} and 1,200 rows",
    ),
    "header-only": (
        "train.csv",
        lambda b: b.split(b"\n")[0] + b"\n",
        "train.csv has 0 rows after the header, expected 1,200 for digit-recognizer-fixture",
    ),
    "row-count": (
        "test.csv",
        lambda b: edit_lines(b, lambda ls: ls[:-1]),
        "test.csv has 596 rows after the header, expected 597 for digit-recognizer-fixture",
    ),
    "sample-ids": (
        "sample_submission.csv",
        lambda b: edit_lines(b, set_cell(3, 1, "3")),
        "sample_submission.csv line 3, column ImageId (col 1): expected ImageId 2, got '3'",
    ),
    "sample-header": (
        "sample_submission.csv",
        lambda b: edit_lines(b, set_cell(1, 2, "label")),
        "sample_submission.csv line 1, col 2: expected header column 'Label', got 'label' "
        "(the header must be ImageId,Label)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_malformed_csv_is_refused_and_good_data_kept(case, fixture_data, fixture_competition, tmp_path):
    name, edit, expected = BAD_CSVS[case]
    files = members(fixture_competition)
    files[name] = edit(files[name])
    source = make_zip(tmp_path / "bad.zip", files)
    before = snapshot(fixture_data)
    with pytest.raises(KitError) as e:
        data.install(source, echo=quiet)
    lines = str(e.value).splitlines()
    assert lines[0] == expected
    assert lines[1] == (
        f"(in {source}) Nothing was installed; {config.raw_dir()} is unchanged. {data.REDOWNLOAD}"
    )
    assert snapshot(fixture_data) == before  # the good data, its cache and no leftovers
    assert data.is_installed()


def test_malformed_folder_is_refused_too(fixture_data, fixture_competition, tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    for name, content in members(fixture_competition).items():
        (folder / name).write_bytes(content)
    (folder / "test.csv").write_bytes(edit_lines((folder / "test.csv").read_bytes(), set_cell(5, 2, "x")))
    before = snapshot(fixture_data)
    with pytest.raises(
        KitError,
        match=r"^test.csv line 5, column pixel1 \(col 2\): expected an integer "
        r"0–255, got 'x'\n",
    ):
        data.install(folder, echo=quiet)
    assert snapshot(fixture_data) == before


def bad_archives(fixture_competition, tmp_path):
    good = members(fixture_competition)
    limit = config.competition().max_unzipped_bytes
    pad = limit + 1 - sum(len(v) for v in good.values())
    total = limit + 1
    mib = lambda n: f"{n / 2**20:,.1f} MiB"  # noqa: E731
    return {
        "zip-slip": (
            {**good, "../evil.csv": b"x"},
            "{zip}: unsafe member path '../evil.csv' (absolute or with '..'); refusing to extract "
            "anything from this archive.",
        ),
        "absolute": (
            {**good, "/tmp/evil.csv": b"x"},
            "{zip}: unsafe member path '/tmp/evil.csv' (absolute or with '..'); refusing to extract "
            "anything from this archive.",
        ),
        "oversized": (
            {**good, "padding.bin": bytes(pad)},
            f"{{zip}} would unpack to {mib(total)}, more than the {mib(limit)} allowed for "
            f"digit-recognizer-fixture; refusing to extract it (zip bomb?).",
        ),
        "other-competition": (
            {**good, "padding.bin": bytes(pad)},
            f"{{zip}} would unpack to {mib(total)}, more than the {mib(limit)} allowed for "
            f"digit-recognizer-fixture; refusing to extract it (it would fit "
            f"digit-recognizer: is --competition / KIT_COMPETITION right?).",
        ),
        "missing-member": (
            {k: v for k, v in good.items() if k != "sample_submission.csv"},
            "{zip} lacks sample_submission.csv (it holds: test.csv, train.csv).",
        ),
    }


@pytest.mark.parametrize("case", ["zip-slip", "absolute", "oversized", "other-competition", "missing-member"])
def test_unsafe_archive_is_refused_before_extracting(
    case, fixture_data, fixture_competition, tmp_path, monkeypatch
):
    files, expected = bad_archives(fixture_competition, tmp_path)[case]
    if case == "oversized":  # too big for every declared competition: a bomb, not a mix-up
        fixture_spec = config.COMPETITIONS["digit-recognizer-fixture"]
        monkeypatch.setattr(config, "COMPETITIONS", {"digit-recognizer-fixture": fixture_spec})
    source = make_zip(tmp_path / "bad.zip", files)
    before = snapshot(fixture_data)
    with pytest.raises(KitError) as e:
        data.install(source, echo=quiet)
    assert str(e.value) == expected.format(zip=source) + " " + data.REDOWNLOAD
    assert snapshot(fixture_data) == before
    assert not (tmp_path / "evil.csv").exists() and not Path("/tmp/evil.csv").exists()


def test_bad_file_on_a_fresh_install_creates_nothing(isolated_dirs, fixture_competition, tmp_path):
    files = members(fixture_competition)
    files["train.csv"] = edit_lines(files["train.csv"], set_cell(2, 2, "x"))
    source = make_zip(tmp_path / "bad.zip", files)
    with pytest.raises(KitError) as e:
        data.install(source, echo=quiet)
    assert str(e.value).splitlines()[1] == (
        f"(in {source}) Nothing was installed; {config.raw_dir()} was not created. {data.REDOWNLOAD}"
    )
    assert [p.name for p in config.data_dir().iterdir()] == [".lock"]


def test_disk_full_is_a_clean_error(fixture_data, fixture_competition, monkeypatch):
    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data, "_unzip", full)
    before = snapshot(fixture_data)
    with pytest.raises(KitError) as e:
        data.install(fixture_competition / ZIP, force=True, echo=quiet)
    assert str(e.value) == (
        f"installing into {config.data_dir()} failed: [Errno 28] No space left on device. "
        f"Nothing was installed; {config.raw_dir()} is unchanged. Free some space or "
        f"choose another --data-dir."
    )
    assert snapshot(fixture_data) == before


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_damaged_archive_is_a_clean_error(method, fixture_data, fixture_competition, tmp_path):
    source = tmp_path / "damaged.zip"
    with zipfile.ZipFile(source, "w", method) as zf:
        for name, content in members(fixture_competition).items():
            zf.writestr(name, content)
    with zipfile.ZipFile(source) as zf:
        info = zf.getinfo("train.csv")
    damaged = bytearray(source.read_bytes())
    damaged[info.header_offset + 30 + len("train.csv") + info.compress_size // 2] ^= 0xFF  # mid-member
    source.write_bytes(bytes(damaged))
    before = snapshot(fixture_data)
    with pytest.raises(KitError) as e:
        data.install(source, echo=quiet)
    assert re.fullmatch(
        rf"{re.escape(str(source))} is damaged: train.csv cannot be unpacked \(.+\)\. "
        rf"{re.escape(data.REDOWNLOAD)}",
        str(e.value),
    )
    assert snapshot(fixture_data) == before


def test_not_a_zip(isolated_dirs, tmp_path):
    source = tmp_path / "x.zip"
    source.write_text("<html>rate limited</html>")
    with pytest.raises(KitError, match=r"x\.zip is not a readable zip file \(File is not a zip file\)"):
        data.install(source, echo=quiet)
    assert not config.raw_dir().exists()
    assert [p.name for p in config.data_dir().iterdir()] == [".lock"]  # nothing half-written


# ----------------------------------------------------------------------------- install


def test_fresh_install_then_noop_then_force(isolated_dirs, fixture_competition):
    source = fixture_competition / ZIP
    out = data.install(source, echo=quiet)
    manifest = data.read_manifest()
    assert re.fullmatch(
        rf"installed digit-recognizer-fixture into {re.escape(str(config.raw_dir()))}: "
        rf"1,200 train and 597 test images verified in \d+\.\ds "
        rf"\(checksum {manifest['checksum']}\)",
        out,
    )
    assert sorted(p.name for p in config.raw_dir().iterdir()) == sorted([*data.FILES, data.MANIFEST])
    with zipfile.ZipFile(source) as zf:
        for name in data.FILES:
            content = zf.read(name)
            assert (config.raw_dir() / name).read_bytes() == content
            assert manifest["files"][name]["sha256"] == hashlib.sha256(content).hexdigest()
            assert manifest["files"][name]["size"] == len(content)
    assert manifest["competition"] == "digit-recognizer-fixture"
    assert manifest["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()

    assert data.install(source, echo=quiet) == (
        f"already verified: {config.raw_dir()} holds digit-recognizer-fixture "
        f"(checksum {manifest['checksum']}); nothing to do (--force verifies again)"
    )
    assert data.read_manifest() == manifest  # not even re-stamped
    assert data.install(source, force=True, echo=quiet).startswith("installed ")
    assert data.read_manifest()["verified_utc"] >= manifest["verified_utc"]


def test_different_good_data_replaces_old(fixture_data, fixture_competition, tmp_path):
    old = data.load()
    files = members(fixture_competition)
    files["test.csv"] = edit_lines(files["test.csv"], set_cell(2, 1, "7"))
    data.install(make_zip(tmp_path / "new.zip", files), echo=quiet)
    new = data.load()
    assert new.checksum != old.checksum
    assert new.X_test[0, 0, 0] == 7 and old.X_test[0, 0, 0] == 0
    assert [p.name for p in config.array_cache_dir().iterdir()] == [f"v{data.CACHE_VERSION}-{new.checksum}"]


def test_interrupted_swap_is_recovered(fixture_data, fixture_competition):
    before = snapshot(config.raw_dir())
    os.replace(config.raw_dir(), config.data_dir() / ".raw-old-x")  # killed between the renames
    (config.data_dir() / ".raw-new-y").mkdir()
    data.install(fixture_competition / ZIP, echo=quiet)
    assert snapshot(config.raw_dir()) == before
    assert sorted(p.name for p in config.data_dir().iterdir()) == [".lock", "cache", "raw"]


# ----------------------------------------------------------------------------- loading


def test_load_shapes_and_dtypes(fixture_data):
    ds = data.load()
    spec = config.competition()
    assert ds.X_train.shape == (spec.n_train, 28, 28) and ds.X_train.dtype == np.uint8
    assert ds.y_train.shape == (spec.n_train,) and ds.y_train.dtype == np.uint8
    assert ds.X_test.shape == (spec.n_test, 28, 28) and ds.X_test.dtype == np.uint8
    assert ds.checksum == data.read_manifest()["checksum"] and len(ds.checksum) == 16


def test_load_matches_the_csv_independently_parsed(fixture_data):
    raw = np.loadtxt(config.raw_dir() / "train.csv", delimiter=",", skiprows=1, dtype=np.int64)
    ds = data.load()
    assert np.array_equal(ds.y_train, raw[:, 0])
    assert np.array_equal(ds.X_train.reshape(len(raw), -1), raw[:, 1:])  # row-major 28x28, as Kaggle's


def test_cache_miss_parses_then_hit_does_not(fixture_data, monkeypatch):
    import shutil

    shutil.rmtree(config.array_cache_dir())
    calls = []
    real = data.read_csv
    monkeypatch.setattr(data, "read_csv", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    first = data.load()
    assert calls == ["train.csv", "test.csv"]  # miss: parsed
    second = data.load()
    assert calls == ["train.csv", "test.csv"]  # hit: the parser is not called again
    for name in ("X_train", "y_train", "X_test"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    # a damaged cache file is a miss, not a crash
    (config.array_cache_dir() / f"v{data.CACHE_VERSION}-{first.checksum}" / "X_test.npy").write_bytes(b"junk")
    assert np.array_equal(data.load().X_test, first.X_test)
    assert calls[-2:] == ["train.csv", "test.csv"]


def test_load_without_data_says_what_to_do(isolated_dirs):
    with pytest.raises(KitError) as e:
        data.load()
    assert str(e.value) == (
        f"no verified data in {config.raw_dir()}: run `make download` (or `kit download --from ZIP`)"
    )
    assert not data.is_installed()


def test_changed_file_is_detected(fixture_data):
    path = config.raw_dir() / "test.csv"
    content = bytearray(path.read_bytes())
    content[-2] = ord("1") if content[-2] != ord("1") else ord("2")  # same size, new mtime
    path.write_bytes(bytes(content))
    assert not data.is_installed()
    with pytest.raises(KitError) as e:
        data.load()
    assert str(e.value) == (
        f"{config.raw_dir()}/test.csv changed since it was verified (sha256 differs): "
        f"run `kit download --force` to fetch and verify it again"
    )


def test_other_competition_selected(fixture_data, monkeypatch):
    monkeypatch.setenv("KIT_COMPETITION", "digit-recognizer")
    assert not data.is_installed()
    with pytest.raises(KitError, match=r"holds digit-recognizer-fixture, but digit-recognizer is selected"):
        data.load()


# ----------------------------------------------------------------------------- split


def test_split_is_stratified_and_deterministic(fixture_data):
    y = data.load().y_train
    s = data.split(y)
    assert s.hash == data.split(y).hash and np.array_equal(s.val_idx, data.split(y).val_idx)
    assert s.train_idx.dtype == s.val_idx.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([s.train_idx, s.val_idx])), np.arange(len(y)))
    assert len(s.val_idx) == round(config.VAL_FRACTION * len(y))
    # stratified: each class's validation count is its share of the whole, to within one image
    per_class, in_val = np.bincount(y, minlength=10), np.bincount(y[s.val_idx], minlength=10)
    assert np.all(np.abs(in_val - config.VAL_FRACTION * per_class) <= 1)
    assert data.split(y, seed=1).hash != s.hash
    assert len(data.split(y, val_fraction=0.2).val_idx) == round(0.2 * len(y))


def test_split_is_identical_in_another_process(fixture_data):
    ds, s = data.load_split()
    code = "from kit import data; print(data.load_split()[1].hash)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == s.hash


# ----------------------------------------------------------------------------- CLI


def test_cli_download_from_zip_exact_output(isolated_dirs, fixture_competition, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    source = fixture_competition / ZIP
    args = [
        "download",
        "--from",
        str(source),
        "--data-dir",
        str(elsewhere),
        "--competition",
        "digit-recognizer-fixture",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # the options held for that command only: the environment and the settings are as before
    assert os.environ["KIT_DATA_DIR"] == str(isolated_dirs / "data")
    assert config.data_dir() == isolated_dirs / "data"
    raw = elsewhere / "raw"
    checksum = json.loads((raw / data.MANIFEST).read_text())["checksum"]
    assert re.sub(r"in \d+\.\ds", "in Ts", result.output) == (
        f"unpacking {source} ...\n"
        "verifying train.csv ...\n"
        "verifying test.csv ...\n"
        "verifying sample_submission.csv ...\n"
        f"installed digit-recognizer-fixture into {raw}: 1,200 train and 597 test images verified in Ts "
        f"(checksum {checksum})\n"
    )
    # --data-dir moved everything: raw files, manifest and cache live there, nothing elsewhere
    assert sorted(p.name for p in elsewhere.iterdir()) == [".lock", "cache", "raw"]
    assert not (isolated_dirs / "data").exists()
    result = CliRunner().invoke(cli, args)
    assert result.output == (
        f"already verified: {raw} holds digit-recognizer-fixture (checksum {checksum}); "
        f"nothing to do (--force verifies again)\n"
    )


def test_cli_download_bad_file_is_one_clean_error(fixture_data, fixture_competition, tmp_path):
    files = members(fixture_competition)
    files["train.csv"] = edit_lines(files["train.csv"], set_cell(7, 14, "256"))
    source = make_zip(tmp_path / "bad.zip", files)
    before = snapshot(fixture_data)
    result = CliRunner().invoke(cli, ["download", "--from", str(source)])
    assert result.exit_code == 1
    assert result.output.endswith(
        "Error: train.csv line 7, column pixel12 (col 14): expected an integer 0–255, got '256'\n"
        f"(in {source}) Nothing was installed; {config.raw_dir()} is unchanged. {data.REDOWNLOAD}\n"
    )
    assert "Traceback" not in result.output
    assert snapshot(fixture_data) == before


def test_copied_folder_is_rehashed_once(fixture_data, monkeypatch):
    raw = config.raw_dir()
    for name in data.FILES:
        os.utime(raw / name, ns=(0, 10**18))  # as after `cp` without -p: new mtimes, same bytes
    hashed = []
    real = data.sha256_file
    monkeypatch.setattr(data, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    data.load()
    assert sorted(hashed) == sorted(data.FILES)  # re-hashed, found unchanged, mtimes recorded
    data.load()
    assert len(hashed) == 3  # the next load trusts size + mtime again


def test_cli_fixture(tmp_path, fixture_competition):
    result = CliRunner().invoke(cli, ["fixture", "--out", str(tmp_path / "fx")])
    assert result.exit_code == 0
    assert result.output == f"fixture competition in {tmp_path / 'fx'}\n"
    for name in (ZIP, "answers.csv"):
        assert (tmp_path / "fx" / name).read_bytes() == (fixture_competition / name).read_bytes()
