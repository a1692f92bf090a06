"""The ensemble: weight fitting (checked by finite differences), member checks, never worse than the best."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from kit import config, data, ensemble, runs
from kit.cli import cli
from kit.errors import KitError

K = config.N_CLASSES


def _noisy_proba(y: np.ndarray, skill: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 10) rows on the simplex: the truth gets `skill` extra mass over Dirichlet noise."""
    noise = rng.dirichlet(np.ones(K), size=len(y))
    p = (1 - skill) * noise
    p[np.arange(len(y)), y] += skill
    return p.astype(np.float32)


def fake_run(model: str, seed: int, val: np.ndarray, test: np.ndarray, **overrides) -> runs.Run:
    """A finished run folder with the given probabilities, matching the installed fixture data."""
    ds, sp = data.load_split()
    y = ds.y_train[sp.val_idx]
    run = runs.create(model, seed)
    run.write_config({"model": model, "seed": seed})
    run.write_predictions(val, test)
    run.finish(
        {
            "model": model,
            "seed": seed,
            "val_accuracy": ensemble.accuracy(val, y),
            "val_loss": ensemble.log_loss(val, y),
            "wall_time_s": 1.0,
            "data_checksum": ds.checksum,
            "split_hash": sp.hash,
            "n_val": len(val),
            "n_test": len(test),
            **overrides,
        }
    )
    return run


@pytest.fixture
def labels(fixture_data):
    ds, sp = data.load_split()
    return ds.y_train[sp.val_idx].astype(np.int64), config.competition().n_test


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, size=50)
    probas = np.stack([_noisy_proba(y, s, rng) for s in (0.2, 0.5, 0.7)]).astype(np.float64)

    def loss(w):
        return ensemble.log_loss(ensemble.combine(probas, w).astype(np.float64), y)

    w = ensemble.fit_weights(probas, y)
    assert w.min() >= 0 and abs(w.sum() - 1) < 1e-9
    # the optimum of a convex function on the simplex: no random simplex point does better
    for _ in range(200):
        assert loss(w) <= loss(rng.dirichlet(np.ones(3))) + 1e-6
    # and the analytic gradient used by the fit agrees with central differences in weight space
    q = probas[:, np.arange(len(y)), y]
    w0 = np.array([0.2, 0.3, 0.5])
    analytic = -(q / (w0 @ q)).mean(axis=1)
    h = 1e-6
    numeric = [
        (-np.log((w0 + h * e) @ q).mean() + np.log((w0 - h * e) @ q).mean()) / (2 * h) for e in np.eye(3)
    ]
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_build_writes_an_ensemble_run_never_worse_than_the_best_member(labels):
    y, n_test = labels
    rng = np.random.default_rng(1)
    members = [
        fake_run(m, s, _noisy_proba(y, skill, rng), _noisy_proba(rng.integers(0, K, n_test), skill, rng))
        for m, s, skill in (("scratch", 0, 0.35), ("cnn", 1, 0.5), ("cnn", 2, 0.45))
    ]
    result = CliRunner().invoke(cli, ["ensemble", *[r.name for r in members]])
    assert result.exit_code == 0, result.output
    for r in members:
        assert r.name in result.output
    run = runs.latest("ensemble")
    assert run is not None and run.config["members"] == [r.name for r in members]
    w = json.loads(run.file(ensemble.WEIGHTS).read_text())
    assert set(w["weights"]) == {r.name for r in members}
    m = run.metrics
    for key in (
        "model",
        "seed",
        "val_accuracy",
        "val_loss",
        "wall_time_s",
        "data_checksum",
        "split_hash",
        "n_val",
        "n_test",
    ):
        assert key in m
    # recompute from the files, independently of the ensemble's own bookkeeping
    val = run.val_proba()
    acc = float(np.mean(val.argmax(1) == y))
    assert acc == pytest.approx(m["val_accuracy"])
    assert acc >= max(float(np.mean(r.val_proba().argmax(1) == y)) for r in members)
    assert run.test_proba().shape == (n_test, K)
    assert f"val accuracy {acc:.4f}" in result.output


@pytest.mark.parametrize("seed", range(5))
def test_never_worse_than_best_member_on_random_members(labels, seed):
    y, _ = labels
    rng = np.random.default_rng(seed)
    val = np.stack([_noisy_proba(y, rng.uniform(0.05, 0.6), rng) for _ in range(rng.integers(2, 5))])
    w, method = ensemble.choose_weights(val.astype(np.float64), y, ensemble.EnsembleConfig())
    ens = ensemble.combine(val, w)
    best = max(ensemble.accuracy(v, y) for v in val)
    assert ensemble.accuracy(ens, y) >= best
    assert method in ("fitted", "equal", "best-member")
    # fitted weights are only kept when they do not cost accuracy against equal weights
    equal = ensemble.combine(val, np.full(len(val), 1 / len(val)))
    if method == "fitted":
        assert ensemble.accuracy(ens, y) >= ensemble.accuracy(equal, y)


def test_falls_back_to_the_best_member_when_mixing_costs_accuracy(labels):
    """A timid member that is always right vs a bold one that is right 90% of the time:
    the log-loss optimum leans on the bold one and loses accuracy, so keep the timid one alone."""
    y, _ = labels
    n = len(y)
    timid = np.full((n, K), 0.8 / 9)
    timid[np.arange(n), y] = 0.2
    bold = np.full((n, K), 0.005 / 9)
    bold[np.arange(n), y] = 0.995
    wrong = np.arange(n) % 10 == 0
    other = (y + 1) % K
    bold[wrong] = 0.005 / 8
    bold[wrong, y[wrong]] = 0.005
    bold[wrong, other[wrong]] = 0.99
    w, method = ensemble.choose_weights(np.stack([timid, bold]), y, ensemble.EnsembleConfig())
    assert method == "best-member" and list(w) == [1.0, 0.0]


def test_identical_members_keep_equal_weights(labels):
    y, _ = labels
    p = _noisy_proba(y, 0.4, np.random.default_rng(3)).astype(np.float64)
    w, method = ensemble.choose_weights(np.stack([p, p]), y, ensemble.EnsembleConfig())
    assert method == "equal" and list(w) == [0.5, 0.5]


@pytest.mark.parametrize("key", ["data_checksum", "split_hash"])
def test_refuses_members_from_different_data(labels, key):
    y, n_test = labels
    rng = np.random.default_rng(4)
    a = fake_run("scratch", 0, _noisy_proba(y, 0.4, rng), _noisy_proba(np.zeros(n_test, int), 0.4, rng))
    b = fake_run(
        "cnn",
        0,
        _noisy_proba(y, 0.4, rng),
        _noisy_proba(np.zeros(n_test, int), 0.4, rng),
        **{key: "0123456789abcdef"},
    )
    result = CliRunner().invoke(cli, ["ensemble", a.name, b.name])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: runs {a.name} and {b.name} were trained on a different")
    assert f"{key} {a.metrics[key]!r} vs '0123456789abcdef'" in result.output
    assert runs.latest("ensemble") is None


def test_needs_two_runs(labels):
    y, n_test = labels
    rng = np.random.default_rng(5)
    fake_run("cnn", 0, _noisy_proba(y, 0.4, rng), _noisy_proba(np.zeros(n_test, int), 0.4, rng))
    with pytest.raises(KitError, match="at least two finished runs; found 1"):
        ensemble.build(echo=lambda s: None)
    with pytest.raises(KitError, match="asked for 3 CNN runs"):
        ensemble.build(cnn_seeds=3, echo=lambda s: None)


def test_cross_fitted_accuracy_of_identical_members_is_theirs(labels):
    y, _ = labels
    p = _noisy_proba(y, 0.3, np.random.default_rng(6)).astype(np.float64)
    val = np.stack([p, p, p])
    assert ensemble.cross_fitted_accuracy(val, y, ensemble.EnsembleConfig()) == ensemble.accuracy(p, y)
