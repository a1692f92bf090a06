"""The fixture competition: Kaggle's format and sizes, byte-identical builds."""

import hashlib
import io
import zipfile

import numpy as np
import pandas as pd

from kit import config, fixture


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_byte_identical_and_idempotent(tmp_path, fixture_competition):
    a = fixture.build(tmp_path / "a")
    b = fixture.build(tmp_path / "b")
    for name in (fixture.ZIP_NAME, fixture.ANSWERS):
        assert _sha(a / name) == _sha(b / name) == _sha(fixture_competition / name)
    mtime = (a / fixture.ZIP_NAME).stat().st_mtime_ns
    fixture.build(a)  # already built: not rewritten
    assert (a / fixture.ZIP_NAME).stat().st_mtime_ns == mtime


def test_files_match_the_declared_competition(fixture_competition):
    spec = config.COMPETITIONS[fixture.NAME]
    with zipfile.ZipFile(fixture_competition / fixture.ZIP_NAME) as zf:
        assert sorted(zf.namelist()) == ["sample_submission.csv", "test.csv", "train.csv"]
        assert all(i.date_time == fixture.ZIP_DATE for i in zf.infolist())
        train = pd.read_csv(io.BytesIO(zf.read("train.csv")))
        test = pd.read_csv(io.BytesIO(zf.read("test.csv")))
        sample = pd.read_csv(io.BytesIO(zf.read("sample_submission.csv")))
    answers = pd.read_csv(fixture_competition / fixture.ANSWERS)
    assert list(train.columns) == ["label"] + [f"pixel{i}" for i in range(784)]
    assert list(test.columns) == [f"pixel{i}" for i in range(784)]
    assert train.shape == (spec.n_train, 785) and test.shape == (spec.n_test, 784)
    assert list(sample.columns) == list(answers.columns) == ["ImageId", "Label"]
    assert sample.ImageId.tolist() == answers.ImageId.tolist() == list(range(1, spec.n_test + 1))
    assert (sample.Label == 0).all()
    # every class in both parts, roughly balanced (the source has ~180 of each)
    assert np.bincount(train.label, minlength=10).min() > 90
    assert np.bincount(answers.Label, minlength=10).min() > 40
    assert train.values.min() == 0 and train.values[:, 1:].max() == 255


def test_images_look_like_mnist():
    X, y = fixture.digits_28()
    assert X.shape == (1797, 28, 28) and X.dtype == np.uint8
    # ink only inside the central 20x20 box, none on the 4-pixel border, as in MNIST
    assert X[:, :4].max() == X[:, -4:].max() == X[:, :, :4].max() == X[:, :, -4:].max() == 0
    # the test images are the held-out labels' images: answers agree with sklearn's targets
    from sklearn.datasets import load_digits

    assert (y == load_digits().target).all()
