"""The ensemble: weight fitting (checked by finite differences), the rule that keeps equal weights
unless fitted ones are better beyond their noise, member checks, the run folder."""

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


def test_build_writes_an_ensemble_run_with_its_decision(labels):
    y, n_test = labels
    rng = np.random.default_rng(1)
    members = [
        fake_run(m, s, _noisy_proba(y, skill, rng), _noisy_proba(rng.integers(0, K, n_test), skill, rng))
        for m, s, skill in (("scratch", 0, 0.35), ("cnn", 1, 0.5), ("cnn", 2, 0.45))
    ]
    result = CliRunner().invoke(cli, ["ensemble", *[r.name for r in members]])
    assert result.exit_code == 0, result.output
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
        "method",
        "reason",
        "fitted_log_loss_gain_interval",
        "val_accuracy_interval",
    ):
        assert key in m, key
    # recompute from the files, independently of the ensemble's own bookkeeping
    val = run.val_proba()
    acc = float(np.mean(val.argmax(1) == y))
    assert acc == pytest.approx(m["val_accuracy"])
    expected = ensemble.combine(
        np.stack([r.val_proba() for r in members]), np.array([w["weights"][r.name] for r in members])
    )
    np.testing.assert_allclose(val, expected, atol=1e-6)
    assert run.test_proba().shape == (n_test, K)
    # the output: a line per member, the ensemble, then the decision with its evidence
    lines = result.output.splitlines()
    for r, line in zip(members, lines):
        lo, hi = ensemble.accuracy_interval(r.val_proba(), y)
        assert line.split() == [
            r.name,
            "val",
            "accuracy",
            f"{r.metrics['val_accuracy']:.4f}",
            f"[{lo:.4f},",
            f"{hi:.4f}]",
            "weight",
            f"{w['weights'][r.name]:.3f}",
        ]
    assert lines[3].split()[:4] == ["ensemble", "val", "accuracy", f"{acc:.4f}"]
    assert lines[4] == f"  {m['reason']} (95% intervals, 5 folds)"
    assert lines[5] == f"ensemble run: {run.path}"


def _alike(y, rng, k=3, skill=0.3):
    return np.stack([_noisy_proba(y, skill, rng) for _ in range(k)]).astype(np.float64)


@pytest.mark.parametrize("seed", range(6))
def test_members_alike_but_for_chance_keep_the_average(labels, seed):
    """Same underlying skill; on these validation rows one of them happens to look best."""
    y, _ = labels
    val = _alike(y, np.random.default_rng(seed))
    d = ensemble.decide(val, y, ensemble.EnsembleConfig())
    reason = d.reason(["a", "b", "c"])
    assert d.method == "equal" and list(d.weights) == [1 / 3] * 3 and d.dropped == [], reason
    assert reason.startswith("equal weights: fitted weights, cross-fitted, make ")
    assert reason.endswith(": not clearly fewer errors")


def test_a_member_that_is_noise_ends_with_a_weight_near_zero(labels):
    """A broken run: confident, random probabilities. Averaged in equally it costs many errors."""
    y, _ = labels
    rng = np.random.default_rng(7)
    noise = rng.dirichlet(np.full(K, 0.05), size=(1, len(y)))
    val = np.concatenate([_alike(y, rng, skill=0.2), noise])
    d = ensemble.decide(val, y, ensemble.EnsembleConfig())
    reason = d.reason(["a", "b", "c", "noise"])
    assert d.weights[3] < 0.02 and d.dropped == [3], (d.weights, reason)
    assert reason.startswith(f"{d.method} weights without noise (harmful beyond noise): ")
    # the good members keep their share: none is dropped with it
    assert min(d.weights[:3]) > 0.2


def test_on_held_out_halves_the_rule_does_at_least_as_well_as_the_best_member_most_of_the_time():
    """Simulated splits with alike members: choose on one half, score on the other. Picking the
    member that looks best on the first half chases noise; the rule should not lose to it."""
    rng = np.random.default_rng(11)
    n, trials, at_least_as_good = 600, 40, 0
    cfg = ensemble.EnsembleConfig(bootstrap=500)
    for _ in range(trials):
        y = rng.integers(0, K, n)
        val = _alike(y, rng, k=3, skill=0.25)
        a, b = np.arange(n) < n // 2, np.arange(n) >= n // 2
        w = ensemble.decide(val[:, a], y[a], cfg).weights
        best = max(range(3), key=lambda k: ensemble.accuracy(val[k, a], y[a]))
        rule, single = (
            ensemble.accuracy(ensemble.combine(val[:, b], w), y[b]),
            ensemble.accuracy(val[best, b], y[b]),
        )
        at_least_as_good += rule >= single
    assert at_least_as_good / trials >= 0.85, at_least_as_good


def test_identical_members_keep_equal_weights(labels):
    y, _ = labels
    p = _noisy_proba(y, 0.4, np.random.default_rng(3)).astype(np.float64)
    d = ensemble.decide(np.stack([p, p]), y, ensemble.EnsembleConfig())
    assert d.method == "equal" and list(d.weights) == [0.5, 0.5]


def test_the_bootstrap_interval_covers_the_mean_and_narrows_with_more_rows():
    rng = np.random.default_rng(0)
    cfg = ensemble.EnsembleConfig()
    small, large = rng.normal(0.1, 1.0, 100), rng.normal(0.1, 1.0, 10_000)
    (lo_s, hi_s), (lo_l, hi_l) = (
        ensemble.bootstrap_interval(small, cfg),
        ensemble.bootstrap_interval(large, cfg),
    )
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # the percentile interval of a mean is about 2 * 1.96 standard errors wide
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * large.std() / 100, rel=0.1)


def test_accuracy_interval_is_wilsons():
    y = np.zeros(100, int)
    proba = np.eye(K)[np.r_[np.zeros(90, int), np.ones(10, int)]]
    lo, hi = ensemble.accuracy_interval(proba, y)
    # Wilson's interval for 90/100 at 95 %, computed by hand: 0.8256 .. 0.9448
    assert (round(lo, 4), round(hi, 4)) == (0.8256, 0.9448)


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


def test_cross_fitted_predictions_of_identical_members_are_theirs(labels):
    y, _ = labels
    p = _noisy_proba(y, 0.3, np.random.default_rng(6)).astype(np.float64)
    np.testing.assert_allclose(
        ensemble.cross_fitted(np.stack([p, p, p]), y, ensemble.EnsembleConfig()), p, atol=1e-9
    )
