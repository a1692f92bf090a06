"""The fixture competition: a small, offline stand-in for Kaggle's Digit Recognizer.

Built deterministically from the handwritten digits scikit-learn ships
(`sklearn.datasets.load_digits`: 1,797 images, 8x8, values 0-16), scaled the way MNIST
was made: the digit is resized to 20x20 and centred in a 28x28 frame, intensities 0-255.
The output folder holds

    digit-recognizer-fixture.zip   train.csv, test.csv, sample_submission.csv, in Kaggle's
                                   exact format (the first n_train shuffled images are
                                   train, the other n_test are test)
    answers.csv                    ImageId,Label: the hidden test labels (the emulator's key)

Same inputs, same bytes: the shuffle is seeded and every zip member carries a fixed
timestamp, so two builds are byte-identical. Nothing generated is committed; it is
rebuilt on first use into `config.cache_dir()/fixture`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from kit import config
from kit.io import write_bytes

NAME = "digit-recognizer-fixture"
ZIP_NAME = f"{NAME}.zip"
ANSWERS = "answers.csv"
SHUFFLE_SEED = 0
DIGIT_SIDE = 20  # MNIST fits each digit in a 20x20 box, centred in 28x28
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date zip can store: fixed so builds are byte-identical

TRAIN_HEADER = "label," + ",".join(f"pixel{i}" for i in range(config.N_PIXELS))
TEST_HEADER = ",".join(f"pixel{i}" for i in range(config.N_PIXELS))


def digits_28() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as MNIST-like images.

    Returns X: (1797, 28, 28) uint8 in [0, 255], y: (1797,) uint8 in [0, 9].
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float64) / 16.0  # (1797, 8, 8) in [0, 1]
    scale = DIGIT_SIDE / images.shape[1]
    big = zoom(images, (1, scale, scale), order=1)  # bilinear, (1797, 20, 20)
    big = np.clip(np.rint(big * 255), 0, 255).astype(np.uint8)
    pad = (config.IMAGE_SIDE - DIGIT_SIDE) // 2
    X = np.pad(big, ((0, 0), (pad, pad), (pad, pad)))
    assert X.shape[1:] == (config.IMAGE_SIDE, config.IMAGE_SIDE)
    return X, digits.target.astype(np.uint8)


def _csv(header: str, rows: np.ndarray) -> bytes:
    """rows: (N, C) integers -> CSV bytes with `header`, '\\n' line endings (as Kaggle's)."""
    buf = io.StringIO()
    np.savetxt(buf, rows, fmt="%d", delimiter=",", header=header, comments="")
    return buf.getvalue().encode("ascii")


def contents() -> dict[str, bytes]:
    """Every file of the fixture competition, by name (zip members and answers.csv)."""
    spec = config.COMPETITIONS[NAME]
    X, y = digits_28()
    assert len(y) == spec.n_train + spec.n_test
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(y))
    X, y = X[order].reshape(len(y), -1).astype(np.int64), y[order].astype(np.int64)
    n = spec.n_train
    image_id = np.arange(1, spec.n_test + 1)
    return {
        "train.csv": _csv(TRAIN_HEADER, np.column_stack([y[:n], X[:n]])),
        "test.csv": _csv(TEST_HEADER, X[n:]),
        "sample_submission.csv": _csv("ImageId,Label", np.column_stack([image_id, np.zeros_like(image_id)])),
        ANSWERS: _csv("ImageId,Label", np.column_stack([image_id, y[n:]])),
    }


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name], compresslevel=6)
    return buf.getvalue()


def build(out: Path | None = None) -> Path:
    """Write the fixture competition into `out` (default: cache_dir()/fixture); return `out`.

    Idempotent: files already there with the right bytes are left alone (not rewritten),
    so concurrent readers never see a file change.
    """
    out = Path(out) if out is not None else config.cache_dir() / "fixture"
    files = contents()
    answers = files.pop(ANSWERS)
    wanted = {ZIP_NAME: _zip(files), ANSWERS: answers}
    out.mkdir(parents=True, exist_ok=True)
    for name, data in wanted.items():
        path = out / name
        if not (path.is_file() and path.read_bytes() == data):
            write_bytes(path, data)
    return out
