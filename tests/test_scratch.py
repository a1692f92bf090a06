"""The from-scratch NumPy network: gradients against finite differences, optimizers against
hand-computed updates, fitting, determinism, resume, augmentation and the CLI's errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from kit import models, runs, training
from kit.cli import cli
from kit.errors import KitError
from kit.models.scratch import augment, config, net, train

RTOL = 1e-6  # relative error allowed between analytic and central-difference gradients (float64)


# ============================================================================ finite differences


def numeric_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences (f(x + h e_i) - f(x - h e_i)) / 2h for every entry of x (float64)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_dense_gradients(rng):
    X, W, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    G = rng.normal(size=(5, 3))  # the upstream gradient: f = sum(G * Z)

    def f():
        return float((G * net.dense_forward(X, W, b)).sum())

    dX, dW, db = net.dense_backward(G, X, W)
    for analytic, x in [(dX, X), (dW, W), (db, b)]:
        assert rel_error(analytic, numeric_grad(f, x)) < RTOL


def test_relu_gradient(rng):
    Z = rng.normal(size=(6, 5))
    Z[np.abs(Z) < 1e-3] = 0.5  # keep away from the kink, where the derivative is undefined
    G = rng.normal(size=Z.shape)

    def f():
        return float((G * net.relu_forward(Z.copy())).sum())

    dZ = net.relu_backward(G.copy(), net.relu_forward(Z.copy()))
    assert rel_error(dZ, numeric_grad(f, Z)) < RTOL


def test_softmax_cross_entropy_gradient(rng):
    Z, y = rng.normal(size=(7, 10)) * 3, rng.integers(0, 10, 7)

    def f():
        return net.softmax_cross_entropy(Z.copy(), y)[0]

    loss, P = net.softmax_cross_entropy(Z.copy(), y)
    assert np.allclose(P.sum(axis=1), 1)
    # against the textbook definition, computed independently
    expected = -np.mean(np.log(np.exp(Z) / np.exp(Z).sum(1, keepdims=True))[np.arange(7), y])
    assert loss == pytest.approx(expected, rel=1e-12)
    dZ = net.softmax_cross_entropy_backward(P, y)
    assert rel_error(dZ, numeric_grad(f, Z)) < RTOL


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    Z = np.array([[1000.0, 0.0, -1000.0] + [0.0] * 7], dtype=np.float32)
    loss, P = net.softmax_cross_entropy(Z, np.array([0]))
    assert np.isfinite(loss) and loss == pytest.approx(0.0, abs=1e-6) and np.isfinite(P).all()


def test_dropout_gradient_with_a_fixed_mask(rng):
    A = rng.normal(size=(6, 5))
    mask = net.dropout_mask(np.random.default_rng(1), A.shape, p=0.3, dtype=np.float64)
    assert set(np.unique(mask)) <= {0.0, 1 / 0.7}
    G = rng.normal(size=A.shape)

    def f():
        return float((G * net.dropout_forward(A.copy(), mask)).sum())

    dA = net.dropout_backward(G.copy(), mask)
    assert rel_error(dA, numeric_grad(f, A)) < RTOL


def test_dropout_mask_keeps_the_expected_value():
    mask = net.dropout_mask(np.random.default_rng(2), (400, 500), p=0.25)
    assert mask.dtype == np.float32
    assert mask.mean() == pytest.approx(1.0, abs=0.01)
    assert (mask == 0).mean() == pytest.approx(0.25, abs=0.01)


def test_l2_gradient(rng):
    params = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=3)}

    def f():
        return net.l2_penalty(params, 0.01)

    assert rel_error(net.l2_backward(params["W1"], 0.01), numeric_grad(f, params["W1"])) < RTOL
    assert np.allclose(numeric_grad(f, params["b1"]), 0)  # biases are not decayed


def test_whole_network_gradients_with_dropout_and_l2(rng):
    """Every parameter of a 2-hidden-layer net: backprop through dense, ReLU, dropout, CE and L2."""
    params = net.init_params(rng, [6, 5, 4, 10], init="he", dtype=np.float64)
    for k in params:
        params[k] += rng.normal(size=params[k].shape) * 0.1  # non-zero biases too
    X, y = rng.normal(size=(8, 6)), rng.integers(0, 10, 8)
    masks = [net.dropout_mask(rng, (8, h), 0.2, dtype=np.float64) for h in (5, 4)]

    def f():
        return net.loss_and_grads(params, X.copy(), y, masks, weight_decay=0.01)[0]

    _, _, grads = net.loss_and_grads(params, X.copy(), y, masks, weight_decay=0.01)
    for k, p in params.items():
        assert rel_error(grads[k], numeric_grad(f, p)) < RTOL, k


# ============================================================================ optimizers
# One parameter p0 = 1, gradients g1 = 2 then g2 = -1, lr = 0.1: the updates worked by hand.

G1, G2, LR = 2.0, -1.0, 0.1


def two_steps(opt_cls, **kw) -> tuple[float, float]:
    p = {"w": np.array([1.0])}
    opt = opt_cls(p, **kw)
    opt.step(p, {"w": np.array([G1])}, LR)
    p1 = float(p["w"][0])
    opt.step(p, {"w": np.array([G2])}, LR)
    return p1, float(p["w"][0])


def test_sgd_plain():
    # p1 = 1 - 0.1*2 = 0.8;  p2 = 0.8 - 0.1*(-1) = 0.9
    assert two_steps(net.SGD) == pytest.approx((0.8, 0.9), abs=1e-12)


def test_sgd_momentum():
    # v1 = -0.2, p1 = 0.8;  v2 = 0.9*(-0.2) + 0.1 = -0.08, p2 = 0.72
    assert two_steps(net.SGD, momentum=0.9) == pytest.approx((0.8, 0.72), abs=1e-12)


def test_sgd_nesterov():
    # v1 = -0.2, p1 = 1 + 0.9*(-0.2) - 0.2 = 0.62;  v2 = -0.08, p2 = 0.62 + 0.9*(-0.08) + 0.1 = 0.648
    assert two_steps(net.SGD, momentum=0.9, nesterov=True) == pytest.approx((0.62, 0.648), abs=1e-12)


def test_adam():
    # step 1: m = 0.2, v = 0.004, m_hat = 2, v_hat = 4 -> p1 = 1 - 0.1*2/(2 + 1e-8) = 0.9
    # step 2: m = 0.08, v = 0.004996, m_hat = 0.08/0.19, v_hat = 0.004996/0.001999
    #         p2 = 0.9 - 0.1 * 0.4210526 / 1.5809015 = 0.8733663
    p1, p2 = two_steps(net.Adam, beta1=0.9, beta2=0.999, eps=1e-8)
    assert p1 == pytest.approx(1 - 0.1 * 2 / (2 + 1e-8), abs=1e-12)
    assert p2 == pytest.approx(p1 - 0.1 * (0.08 / 0.19) / (np.sqrt(0.004996 / 0.001999) + 1e-8), abs=1e-12)
    assert p2 == pytest.approx(0.8733663, abs=1e-7)


def test_learning_rate_warmup_then_cosine():
    cfg = models.get("scratch").make_config("default", lr=1.0, min_lr_ratio=0.0)
    lrs = [net.learning_rate(s, 110, 10, cfg) for s in range(110)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


# ============================================================================ augmentation


def digits(n=16) -> np.ndarray:
    """(n, 28, 28) uint8 MNIST-like digits (scikit-learn's, as the fixture competition makes them)."""
    from kit.fixture import digits_28

    return digits_28()[0][:n]


def test_zero_shift_is_the_identity():
    X = digits()
    zero = np.zeros(len(X), int)
    assert np.array_equal(augment.shift_images(X, zero, zero, 2), X)
    zf = np.zeros(len(X), np.float32)
    assert np.array_equal(augment.affine_images(X, zf, zf + 1, zf, zf), X)
    assert augment.augment(X, np.random.default_rng(0), shift=0) is X


def test_shift_moves_pixels_by_whole_pixels():
    X = digits(2)
    out = augment.shift_images(X, np.array([2, -1]), np.array([-2, 1]), 2)
    assert np.array_equal(out[0, 2:, :-2], X[0, :-2, 2:]) and not out[0, :2].any()
    assert np.array_equal(out[1, :-1, 1:], X[1, 1:, :-1])
    # the affine path agrees with the exact shift for a pure translation
    one = np.ones(2, np.float32)
    assert np.array_equal(
        augment.affine_images(X, 0 * one, one, np.array([2, -1], np.float32), np.array([-2, 1], np.float32)),
        out,
    )


def test_random_shifts_keep_shape_dtype_and_order():
    X = digits(32)
    out = augment.augment(X, np.random.default_rng(5), shift=2)
    assert out.shape == X.shape and out.dtype == np.uint8
    # each output is its own input moved by some (dy, dx) in [-2, 2]^2: order (and labels) kept
    for i in range(len(X)):
        candidates = [
            augment.shift_images(X[i : i + 1], np.array([dy]), np.array([dx]), 2)[0]
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        ]
        assert any(np.array_equal(out[i], c) for c in candidates), i
    assert not np.array_equal(out, X)


def centre_of_mass(X: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 2) intensity-weighted mean (row, column)."""
    w = X.astype(float)
    r = np.arange(28)
    return np.stack([(w.sum(2) * r).sum(1), (w.sum(1) * r).sum(1)], 1) / w.sum((1, 2))[:, None]


def test_random_affine_keeps_shape_dtype_and_order():
    X = digits(32)
    out = augment.augment(X, np.random.default_rng(5), shift=2, rotate=10, scale=0.1)
    assert out.shape == X.shape and out.dtype == np.uint8
    # image i stays digit i: ink within +-25 % (zoom 1 +- 0.1 scales area by at most 21 %),
    # centre moved by at most the shift plus what a 10-degree turn and 10 % zoom move it
    ink_ratio = out.reshape(32, -1).sum(1) / X.reshape(32, -1).sum(1)
    assert ((ink_ratio > 0.75) & (ink_ratio < 1.25)).all()
    moved = np.linalg.norm(centre_of_mass(out) - centre_of_mass(X), axis=1)
    assert (moved < 2 * np.sqrt(2) + 1.5).all()
    assert not np.array_equal(out, X)


# ============================================================================ training on the fixture

TINY = dict(hidden=(32,), epochs=3, batch_size=64, dropout=0.1, shift=2.0, warmup_epochs=0.5, threads=1)


def tiny(**kw) -> config.Config:
    return models.get("scratch").make_config("default", **{**TINY, **kw})


def test_small_network_fits_200_samples(fixture_data):
    from kit import data

    ds, sp = data.load_split()
    idx = sp.train_idx[:200]
    X, y = net.to_inputs(ds.X_train[idx], 1 / 255), ds.y_train[idx].astype(np.intp)
    rng = np.random.default_rng(0)
    params = net.init_params(rng, [784, 64, 10])
    opt = net.Adam(params)
    losses = []
    for _ in range(150):
        loss, correct, grads = net.loss_and_grads(params, X, y)
        opt.step(params, grads, 3e-3)
        losses.append(loss)
    assert net.evaluate(params, X, y, train.PREDICT_BATCH)[1] == 1.0
    assert losses[-1] < losses[0] / 20
    assert np.mean(np.diff(losses) < 0) > 0.9  # loss goes (almost always) down


def test_run_folder_in_the_shared_format(fixture_data):
    run = training.train("scratch", tiny(), progress=False)
    assert run.finished and run.name.startswith("scratch-")
    m = run.metrics
    for key in (
        "model",
        "seed",
        "preset",
        "val_accuracy",
        "val_loss",
        "wall_time_s",
        "train_time_s",
        "data_checksum",
        "split_hash",
        "n_val",
        "n_test",
        "epochs_run",
        "best_epoch",
    ):
        assert key in m, key
    assert m["model"] == "scratch" and m["n_val"] == 120 and m["n_test"] == 597 and m["epochs_run"] == 3
    cfg = run.config
    assert cfg["model"] == "scratch" and cfg["hidden"] == [32] and cfg["preset"] == "default"
    h = run.history()
    assert list(h.columns[:7]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert len(h) == 3 and h["val_loss"].iloc[m["best_epoch"] - 1] == pytest.approx(m["val_loss"], rel=1e-5)
    val, test = run.val_proba(), run.test_proba()
    assert val.shape == (120, 10) and test.shape == (597, 10) and val.dtype == np.float32
    assert np.allclose(val.sum(1), 1, atol=1e-5)
    # predict_proba on the saved weights reproduces the saved predictions
    from kit import data

    ds, sp = data.load_split()
    assert np.allclose(
        net.predict_proba(
            train.read_weights(run.file(train.WEIGHTS)), ds.X_train[sp.val_idx], train.PREDICT_BATCH
        ),
        val,
    )
    accuracy = (val.argmax(1) == ds.y_train[sp.val_idx]).mean()
    assert accuracy == pytest.approx(m["val_accuracy"])
    assert not run.file(train.CHECKPOINT).exists()


def arrays(run: runs.Run) -> dict:
    with np.load(run.file(train.WEIGHTS)) as f:
        out = dict(f)
    return {**out, "val": run.val_proba(), "test": run.test_proba()}


def test_same_seed_same_bits_different_seed_differs(fixture_data):
    a, b, c = (arrays(training.train("scratch", tiny(seed=s), progress=False)) for s in (7, 7, 8))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W1"], c["W1"]) and not np.array_equal(a["val"], c["val"])


def test_resume_after_interrupt_equals_the_uninterrupted_run(fixture_data, monkeypatch):
    cfg = tiny(epochs=4, optimizer="nesterov", lr=0.05)
    whole = training.train("scratch", cfg, progress=False)

    # Ctrl-C at the end of epoch 3, before its checkpoint: the resume must redo epoch 3
    real_evaluate, calls = net.evaluate, []

    def interrupt(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(net, "evaluate", interrupt)
    with pytest.raises(KitError, match=r"interrupted during epoch 3; the checkpoint of epoch 2 is kept") as e:
        training.train("scratch", cfg, progress=False)
    monkeypatch.setattr(net, "evaluate", real_evaluate)
    broken = runs.all_runs(finished=False)[-1]
    assert not broken.finished and f"--resume {broken.path}" in str(e.value)

    resumed = training.train("scratch", resume=broken.path, progress=False)
    assert resumed.path == broken.path and resumed.finished
    a, b = arrays(whole), arrays(resumed)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    cols = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert whole.history()[cols].equals(resumed.history()[cols])


# ============================================================================ CLI


def invoke(*args):
    return CliRunner().invoke(cli, ["train", "scratch", *args])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "Error: unknown preset 'huge'; choose one of: reference, default, best\n"),
        (["--lr", "0"], "Error: --lr must be > 0 (got 0.0)\n"),
        (["--epochs", "-3"], "Error: --epochs must be at least 1 (got -3)\n"),
        (
            ["--hidden", "512,0"],
            "Error: --hidden must be one or more positive layer widths, "
            "e.g. 1024 or 1024,1024 (got (512, 0))\n",
        ),
        (["--batch-size", "-1"], "Error: --batch-size must be 0 or more (got -1)\n"),
        (
            ["--dropout", "1"],
            "Error: --dropout must be in [0, 1): it is the probability of dropping a hidden unit (got 1.0)\n",
        ),
        (
            ["--dropout", "-0.1"],
            "Error: --dropout must be in [0, 1): it is the probability of dropping "
            "a hidden unit (got -0.1)\n",
        ),
    ],
)
def test_cli_rejects_bad_hyperparameters(isolated_dirs, args, message):
    result = invoke(*args)
    assert result.exit_code == 1 and result.output == message


def test_cli_resume_rejects_a_run_of_another_model(isolated_dirs):
    cnn = runs.create("cnn", 1)
    cnn.write_config({"model": "cnn", "seed": 1})
    result = invoke("--resume", str(cnn.path))
    assert result.exit_code == 1
    assert result.output == f"Error: {cnn.path} is a 'cnn' run, not a 'scratch' run\n"


def test_cli_resume_refuses_new_settings(isolated_dirs):
    result = invoke("--resume", "somewhere", "--lr", "0.1")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --resume continues a run with the settings it was started with; "
        "drop --lr (or start a new run without --resume)\n"
    )


def test_cli_trains_and_reports_the_run(fixture_data):
    result = invoke("--hidden", "16", "--epochs", "2", "--batch-size", "128", "--quiet", "--seed", "3")
    assert result.exit_code == 0, result.output
    run = runs.latest("scratch")
    assert run.config["hidden"] == [16] and run.config["seed"] == 3 and run.config["epochs"] == 2
    assert f"run folder: {run.path}\n" in result.output
    assert result.output.startswith(f"val accuracy {run.metrics['val_accuracy']:.4f}")
    assert json.loads(run.file("config.json").read_text())["batch_size"] == 128


def test_resume_refuses_a_finished_run_and_other_data(fixture_data):
    run = training.train("scratch", tiny(epochs=1), progress=False)
    with pytest.raises(KitError, match="already finished; there is nothing to resume"):
        training.train("scratch", resume=run.path, progress=False)
    # an unfinished run whose data was another competition's
    broken = runs.create("scratch", 1)
    broken.write_config({**run.config, "data_checksum": "0123456789abcdef"})
    (broken.path / train.CHECKPOINT).write_bytes(b"")
    with pytest.raises(KitError, match="was trained on other data"):
        training.train("scratch", resume=broken.path, progress=False)


def test_early_stopping_keeps_the_best_epochs_weights(fixture_data, monkeypatch):
    # validation losses scripted: best at epoch 2, then worse for `patience` = 2 epochs -> stop at 4
    def scripted(losses):
        it = iter(losses)
        return lambda params, X, y, batch: (next(it, 9.0), 0.5)

    common = dict(patience=2, schedule="constant", warmup_epochs=0.0)
    monkeypatch.setattr(net, "evaluate", scripted([1.0, 0.5, 0.6, 0.7, 0.8]))
    stopped = training.train("scratch", tiny(epochs=10, **common), progress=False)
    assert (stopped.metrics["epochs_run"], stopped.metrics["best_epoch"]) == (4, 2)
    assert len(stopped.history()) == 4
    # a constant learning rate makes epochs 1-2 of any run the same: a 2-epoch run ends on them
    monkeypatch.setattr(net, "evaluate", scripted([1.0, 0.5]))
    two = training.train("scratch", tiny(epochs=2, **common), progress=False)
    a, b = arrays(stopped), arrays(two)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_interrupt_while_writing_predictions_resumes_to_the_same_run(fixture_data, monkeypatch):
    cfg = tiny(epochs=2)
    whole = training.train("scratch", cfg, progress=False)
    real = net.predict_proba

    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(net, "predict_proba", interrupt)
    with pytest.raises(KitError, match="interrupted after training, while writing predictions"):
        training.train("scratch", cfg, progress=False)
    monkeypatch.setattr(net, "predict_proba", real)
    resumed = training.train("scratch", resume=runs.all_runs(finished=False)[-1].path, progress=False)
    a, b = arrays(whole), arrays(resumed)
    assert all(np.array_equal(a[k], b[k]) for k in a)
