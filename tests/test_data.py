"""kit.data: install, verification, loading cache, split."""

import numpy as np

from kit import config, data


def test_load_shapes_and_dtypes(fixture_data):
    ds = data.load()
    spec = config.competition()
    assert ds.X_train.shape == (spec.n_train, 28, 28) and ds.X_train.dtype == np.uint8
    assert ds.y_train.shape == (spec.n_train,) and ds.y_train.dtype == np.uint8
    assert ds.X_test.shape == (spec.n_test, 28, 28) and ds.X_test.dtype == np.uint8
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert len(ds.checksum) == 16


def test_second_install_does_nothing(fixture_data, fixture_competition):
    out = data.install(fixture_competition / "digit-recognizer-fixture.zip", echo=lambda s: None)
    assert out.startswith("already verified:")


def test_split_is_stratified_and_deterministic(fixture_data):
    ds = data.load()
    s1, s2 = data.split(ds.y_train), data.split(ds.y_train)
    assert s1.hash == s2.hash and np.array_equal(s1.val_idx, s2.val_idx)
    assert len(np.intersect1d(s1.train_idx, s1.val_idx)) == 0
    assert len(s1.train_idx) + len(s1.val_idx) == len(ds.y_train)
    whole = np.bincount(ds.y_train, minlength=10) / len(ds.y_train)
    val = np.bincount(ds.y_train[s1.val_idx], minlength=10) / len(s1.val_idx)
    assert np.abs(whole - val).max() < 0.01
    assert data.split(ds.y_train, seed=1).hash != s1.hash
