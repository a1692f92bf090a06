"""The from-scratch network: a multi-layer perceptron in plain NumPy, no deep-learning library.

    x (B, 784) in [0, 1] -> [dense -> ReLU -> dropout] x L -> dense -> softmax -> cross-entropy

Read top to bottom, as Nielsen's network.py: hyper-parameters, layers (forward next to
backward, names after the maths), the network, optimizers (SGD with (Nesterov) momentum,
Adam), the learning-rate schedule (warm-up + cosine), prediction, and the training loop
(early stopping on validation loss keeping the best weights, random shifts / small affine
distortions from kit.models.scratch_augment). Everything is float32.

Reproducible: one `np.random.Generator` (PCG64, seeded from `seed`) is threaded through
initialisation, shuffling, augmentation and dropout, and BLAS runs with a fixed thread
count (threadpoolctl), so the same seed and data give bit-identical weights. Its state is
saved in the per-epoch checkpoint, so `--resume` ends exactly where an uninterrupted
run would.

The run folder around it (config, data identity, predictions, metrics) is kit.training's.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit import config, io
from kit.errors import KitError
from kit.hparams import ModelConfig, param
from kit.models.scratch_augment import augment

WEIGHTS = "weights.npz"  # the trained network (best epoch), for predict_proba
CHECKPOINT = "checkpoint.npz"  # the last finished epoch, for --resume; removed when the run finishes
RESUME_FILES = (CHECKPOINT,)
PREDICT_BATCH = 4096  # rows per forward pass at prediction time (bounds memory)


# ============================================================================ hyper-parameters


def _widths_ok(hidden) -> bool:
    return bool(hidden) and all(int(h) > 0 for h in hidden)


@dataclass
class Config(ModelConfig):
    """Every hyper-parameter of the network and its training; saved in config.json."""

    hidden: tuple[int, ...] = param(
        (1024,),
        "hidden layer widths, comma-separated (e.g. 1024,1024)",
        check=_widths_ok,
        rule="must be one or more positive layer widths, e.g. 1024 or 1024,1024",
    )
    init: str = param(
        "he",
        "weight init: he = randn*sqrt(2/fan_in); small = randn*0.01 (the reference)",
        choices=("he", "small"),
    )
    raw_pixels: bool = param(False, "feed raw 0-255 pixels instead of scaling to [0, 1] (the reference)")
    optimizer: str = param(
        "adam",
        "sgd (momentum 0 = plain gradient descent), nesterov, or adam",
        choices=("sgd", "nesterov", "adam"),
    )
    lr: float = param(3e-3, "peak learning rate", gt=0)
    momentum: float = param(0.9, "momentum of sgd / nesterov", ge=0, lt=1)
    beta1: float = param(0.9, "Adam: decay of the gradient mean", ge=0, lt=1)
    beta2: float = param(0.999, "Adam: decay of the squared-gradient mean", ge=0, lt=1)
    eps: float = param(1e-8, "Adam: added to sqrt(v) against division by zero", gt=0)
    batch_size: int = param(512, "examples per step; 0 = the whole training set (full-batch GD)", ge=0)
    epochs: int = param(24, "passes over the training set (the cosine schedule spans them all)", ge=1)
    warmup_epochs: float = param(1.0, "epochs of linear learning-rate warm-up", ge=0)
    schedule: str = param(
        "cosine",
        "after warm-up: cosine decay to min_lr_ratio*lr, or constant",
        choices=("cosine", "constant"),
    )
    min_lr_ratio: float = param(0.0, "final learning rate of the cosine schedule, as a fraction of lr", ge=0)
    weight_decay: float = param(
        0.0, "L2 coefficient lambda: loss += lambda/2 * sum(W**2) (biases exempt)", ge=0
    )
    dropout: float = param(
        0.0,
        "probability of dropping a hidden unit (inverted dropout), in [0, 1)",
        ge=0,
        lt=1,
        why="it is the probability of dropping a hidden unit",
    )
    shift: float = param(2.0, "augmentation: random shift of up to this many pixels (0 = off)", ge=0)
    rotate: float = param(0.0, "augmentation: random rotation of up to this many degrees (0 = off)", ge=0)
    scale: float = param(
        0.0,
        "augmentation: random zoom of up to this fraction, e.g. 0.1 = +-10% (0 = off)",
        ge=0,
        lt=1,
        why="a fraction of the image size",
    )
    patience: int = param(
        0, "early stopping: stop after this many epochs without a better val loss (0 = off)", ge=0
    )
    checkpoint_every: int = param(1, "write the resume checkpoint every this many epochs", ge=1)
    threads: int = param(
        0, "BLAS threads (fixed, for bit-identical results); 0 = all cores of this machine", ge=0
    )


# fmt: off
PRESETS: dict[str, dict] = {
    # The recipe this kit grew from, bias-gradient bug fixed: 784-256-10, randn*0.01, full-batch
    # gradient descent on raw pixels. Kept to show what the rest buys.
    "reference": dict(hidden=(256,), init="small", raw_pixels=True, optimizer="sgd", momentum=0.0,
                      lr=0.0024, batch_size=0, epochs=1200, warmup_epochs=0.0, schedule="constant",
                      shift=0.0, checkpoint_every=50),
    # Fast and strong: the kit's everyday network.
    "default": dict(),
    # The most this family reaches in reasonable time on a laptop CPU: two hidden layers,
    # dropout and random rotation/zoom on top of the shifts.
    "best": dict(hidden=(1024, 1024), dropout=0.1, epochs=40, lr=1e-3, batch_size=256,
                 shift=2.0, rotate=10.0, scale=0.1),
}
# fmt: on


def resolved(cfg: Config) -> Config:
    """cfg with the machine's choices fixed, as config.json records them: threads=0 -> the cores."""
    from dataclasses import replace

    return replace(cfg, threads=cfg.threads or cpu_cores())


# ============================================================================ layers: forward next to backward
# Shapes: B examples, D inputs, H outputs. The *_forward functions may overwrite the
# temporaries they are given (never parameters); that halves memory traffic on the hot path.


def dense_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Z = X W + b.   X: (B, D), W: (D, H), b: (H,) -> Z: (B, H)."""
    Z = X @ W
    Z += b
    return Z


def dense_backward(
    dZ: np.ndarray,
    X: np.ndarray,
    W: np.ndarray,
    need_dX: bool = True,
    dW: np.ndarray | None = None,
    db: np.ndarray | None = None,
):
    """Gradients of Z = X W + b:  dW = X^T dZ,  db = sum_rows dZ,  dX = dZ W^T.

    dZ: (B, H) -> dX: (B, D) or None (the input layer needs none), dW: (D, H), db: (H,).
    dW, db: optional preallocated outputs (a fresh weight-sized array page-faults every step).
    """
    dW = np.matmul(X.T, dZ, out=dW)
    db = dZ.sum(axis=0, out=db)
    dX = dZ @ W.T if need_dX else None
    return dX, dW, db


def relu_forward(Z: np.ndarray) -> np.ndarray:
    """A = max(Z, 0), in place on Z.   Z: (B, H) -> A: (B, H)."""
    return np.maximum(Z, 0, out=Z)


def relu_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    """dZ = dA * [A > 0] (A > 0 exactly where Z > 0), in place on dA."""
    return np.multiply(dA, A > 0, out=dA)


def dropout_mask(rng: np.random.Generator, shape: tuple[int, int], p: float, dtype=np.float32) -> np.ndarray:
    """Inverted dropout mask: 0 with probability p, else 1/(1-p), so E[mask] = 1 and
    evaluation needs no rescaling.   -> (B, H) of `dtype`."""
    keep = rng.random(shape, dtype=np.float32) >= p
    return keep.astype(dtype) * dtype(1.0 / (1.0 - p))


def dropout_forward(A: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A * mask, in place on A."""
    return np.multiply(A, mask, out=A)


def dropout_backward(dA: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """d(A * mask)/dA = mask, in place on dA."""
    return np.multiply(dA, mask, out=dA)


def softmax(Z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable (subtract the row max).   Z: (B, 10) -> P: (B, 10), rows sum to 1."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    E /= E.sum(axis=1, keepdims=True)
    return E


def softmax_cross_entropy(Z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(Z) against labels, computed through log-sum-exp.

    Z: (B, 10) logits, y: (B,) ints -> (loss: float, P: (B, 10) probabilities).
    loss = mean_i [ log sum_k exp(Z_ik) - Z_i,y_i ]
    """
    Zs = Z - Z.max(axis=1, keepdims=True)  # logits shifted so exp cannot overflow
    log_sum_exp = np.log(np.exp(Zs).sum(axis=1, keepdims=True))
    log_P = Zs - log_sum_exp
    loss = -float(log_P[np.arange(len(y)), y].mean(dtype=np.float64))
    return loss, np.exp(log_P, out=log_P)


def softmax_cross_entropy_backward(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fused gradient of mean CE(softmax(Z), y) w.r.t. Z: (P - onehot(y)) / B, in place on P."""
    P[np.arange(len(y)), y] -= 1
    P /= len(y)
    return P


def l2_penalty(params: Mapping[str, np.ndarray], lam: float) -> float:
    """lambda/2 * sum of squared weights (biases are not decayed)."""
    return 0.5 * lam * sum(float(np.vdot(W, W)) for k, W in params.items() if k.startswith("W"))


def l2_backward(W: np.ndarray, lam: float) -> np.ndarray:
    """d(lambda/2 |W|^2)/dW = lambda W."""
    return lam * W


# ============================================================================ the network


def n_layers(params: Mapping[str, np.ndarray]) -> int:
    return len(params) // 2


def init_params(rng: np.random.Generator, sizes: list[int], init: str = "he", dtype=np.float32) -> dict:
    """Weights W1..WL: (fan_in, fan_out), biases b1..bL: (fan_out,) zeros.

    he:    W ~ N(0, 2/fan_in), which keeps the variance of ReLU activations constant with depth.
    small: W ~ N(0, 1) * 0.01, the reference recipe.
    """
    params = {}
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        std = math.sqrt(2.0 / fan_in) if init == "he" else 0.01
        params[f"W{l}"] = (rng.standard_normal((fan_in, fan_out), dtype=np.float64) * std).astype(dtype)
        params[f"b{l}"] = np.zeros(fan_out, dtype)
    return params


def forward(params: Mapping[str, np.ndarray], X: np.ndarray, masks: list | None = None):
    """Logits of the network.   X: (B, 784) -> Z: (B, 10), and the layer inputs backward needs.

    masks: one dropout mask (B, H_l) per hidden layer, or None (evaluation).
    Returns (Z, acts) with acts[l] the input of layer l+1: acts[0] = X, acts[l] = dropout(ReLU(...)).
    """
    L = n_layers(params)
    acts = [X]
    A = X
    for l in range(1, L + 1):
        Z = dense_forward(A, params[f"W{l}"], params[f"b{l}"])
        if l == L:
            return Z, acts
        A = relu_forward(Z)
        if masks is not None:
            A = dropout_forward(A, masks[l - 1])
        acts.append(A)
    raise AssertionError("a network has at least one layer")


def backward(
    params: Mapping[str, np.ndarray],
    acts: list,
    masks: list | None,
    dZ: np.ndarray,
    weight_decay: float = 0.0,
    grads: dict | None = None,
) -> dict:
    """Gradients of the loss w.r.t. every parameter, from dZ = dLoss/dlogits: (B, 10).

    Walks the layers in reverse: dense_backward, then through dropout and ReLU of the layer below.
    Overwrites dZ and the hidden activations. grads: optional preallocated outputs, filled in place.
    """
    L = n_layers(params)
    grads = {} if grads is None else grads
    for l in range(L, 0, -1):
        W = params[f"W{l}"]
        dA, grads[f"W{l}"], grads[f"b{l}"] = dense_backward(
            dZ, acts[l - 1], W, l > 1, grads.get(f"W{l}"), grads.get(f"b{l}")
        )
        if weight_decay:
            grads[f"W{l}"] += l2_backward(W, weight_decay)
        if l > 1:
            if masks is not None:
                dA = dropout_backward(dA, masks[l - 2])
            dZ = relu_backward(dA, acts[l - 1])  # acts[l-1] > 0 exactly where ReLU (and the mask) passed
    return grads


def loss_and_grads(params, X, y, masks=None, weight_decay=0.0, grads=None):
    """(loss incl. L2, number correct, grads) on one batch.   X: (B, 784), y: (B,) ints.
    grads: optional preallocated gradient arrays, filled in place."""
    Z, acts = forward(params, X, masks)
    n_correct = int((Z.argmax(axis=1) == y).sum())
    loss, P = softmax_cross_entropy(Z, y)
    if weight_decay:
        loss += l2_penalty(params, weight_decay)
    grads = backward(params, acts, masks, softmax_cross_entropy_backward(P, y), weight_decay, grads)
    return loss, n_correct, grads


# ============================================================================ optimizers


class SGD:
    """Gradient descent with optional (Nesterov) momentum, the Sutskever et al. (2013) form.

        plain:     p <- p - lr g
        momentum:  v <- mu v - lr g;   p <- p + v
        nesterov:  v <- mu v - lr g;   p <- p + mu v - lr g

    Updates run in place through one preallocated scratch array per parameter: a fresh
    temporary of a weight matrix's size would page-fault on every step.
    """

    def __init__(self, params, momentum: float = 0.0, nesterov: bool = False):
        self.momentum, self.nesterov = momentum, nesterov
        self.v = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}
        self.tmp = {k: np.empty_like(p) for k, p in params.items()}

    def step(self, params, grads, lr: float) -> None:
        mu = self.momentum
        for k, p in params.items():
            lr_g = np.multiply(grads[k], lr, out=self.tmp[k])
            if not mu:
                p -= lr_g
                continue
            v = self.v[k]
            v *= mu
            v -= lr_g
            if self.nesterov:
                p -= lr_g
                p += np.multiply(v, mu, out=lr_g)
            else:
                p += v

    def state(self) -> dict:
        return {f"v.{k}": v for k, v in self.v.items()}

    def load_state(self, state: Mapping) -> None:
        for k in self.v:
            self.v[k][...] = state[f"v.{k}"]


class Adam:
    """Adam (Kingma & Ba, 2015), as in the paper:

        t <- t + 1;   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        p <- p - lr * m_hat / (sqrt(v_hat) + eps),   m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)

    In place, through one preallocated scratch array per parameter (see SGD).
    """

    def __init__(self, params, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self.tmp = {k: np.empty_like(p) for k, p in params.items()}
        self.t = 0

    def step(self, params, grads, lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        bias1, bias2 = 1 - b1**self.t, 1 - b2**self.t
        for k, p in params.items():
            g, m, v, tmp = grads[k], self.m[k], self.v[k], self.tmp[k]
            m *= b1
            m += np.multiply(g, 1 - b1, out=tmp)
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.multiply(v, 1 / bias2, out=tmp)  # v_hat
            np.sqrt(tmp, out=tmp)
            tmp += self.eps
            np.divide(m, tmp, out=tmp)  # m / (sqrt(v_hat) + eps)
            tmp *= lr / bias1  # lr m_hat / (sqrt(v_hat) + eps)
            p -= tmp

    def state(self) -> dict:
        return {
            "t": np.array(self.t),
            **{f"m.{k}": m for k, m in self.m.items()},
            **{f"v.{k}": v for k, v in self.v.items()},
        }

    def load_state(self, state: Mapping) -> None:
        self.t = int(state["t"])
        for k in self.m:
            self.m[k][...] = state[f"m.{k}"]
            self.v[k][...] = state[f"v.{k}"]


def make_optimizer(cfg: Config, params):
    if cfg.optimizer == "adam":
        return Adam(params, cfg.beta1, cfg.beta2, cfg.eps)
    return SGD(params, cfg.momentum, nesterov=cfg.optimizer == "nesterov")


def learning_rate(step: int, total_steps: int, warmup_steps: int, cfg: Config) -> float:
    """lr at optimizer step `step` (0-based): linear warm-up, then cosine decay (or constant)."""
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ============================================================================ prediction


def to_inputs(X: np.ndarray, input_scale: float) -> np.ndarray:
    """(N, 28, 28) or (N, 784) pixels 0-255 -> (N, 784) float32 network inputs (times input_scale)."""
    return X.reshape(len(X), -1).astype(np.float32) * np.float32(input_scale)


def predict_proba(weights: Mapping[str, np.ndarray] | Path | str, X: np.ndarray) -> np.ndarray:
    """Class probabilities of images under a trained network.

    weights: a weights.npz (path) or its arrays (W1, b1, ..., and input_scale);
    X: (N, 28, 28) or (N, 784) pixels 0-255 -> (N, 10) float32, rows sum to 1.
    """
    if isinstance(weights, (str, Path)):
        with np.load(weights) as f:
            weights = dict(f)
    params = {k: v for k, v in weights.items() if k[0] in "Wb"}
    scale = float(weights.get("input_scale", 1 / 255))
    out = np.empty((len(X), config.N_CLASSES), np.float32)
    for i in range(0, len(X), PREDICT_BATCH):
        Z, _ = forward(params, to_inputs(X[i : i + PREDICT_BATCH], scale))
        out[i : i + PREDICT_BATCH] = softmax(Z)
    return out


def evaluate(params, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the network on X: (N, 784) float32 inputs, y: (N,)."""
    total, correct = 0.0, 0
    for i in range(0, len(X), PREDICT_BATCH):
        Z, _ = forward(params, X[i : i + PREDICT_BATCH])
        yb = y[i : i + PREDICT_BATCH]
        correct += int((Z.argmax(axis=1) == yb).sum())
        loss, _ = softmax_cross_entropy(Z, yb)
        total += loss * len(yb)
    return total / len(X), correct / len(X)


def flops_per_example(sizes: list[int]) -> int:
    """Multiply-add FLOPs of one training example: forward X W (2 D H per layer), backward
    dW = X^T dZ (2 D H) and dX = dZ W^T (2 D H, not for the input layer)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * d * h * (3 if l > 0 else 2) for l, (d, h) in enumerate(layers))


# ============================================================================ training


@dataclass
class Trained:
    """A trained network: the kept (best-epoch) parameters and what the training loop saw.

    params: W1, b1, ..., WL, bL float32;  input_scale: what pixels 0-255 are multiplied by;
    threads: the BLAS threads every product of this run uses (results depend on it).
    """

    params: dict
    input_scale: float
    threads: int
    history: list
    best_epoch: int
    n_train: int = 0

    @property
    def kept_epoch(self) -> int:
        return self.best_epoch

    @property
    def extra(self) -> dict:
        """This model's own metrics.json entries."""
        return {"threads": self.threads}

    def weights(self) -> dict:
        """What weights.npz holds: the parameters and the input scale."""
        return {**self.params, "input_scale": np.float32(self.input_scale)}


def input_scale(cfg: Config) -> float:
    return 1.0 if cfg.raw_pixels else 1 / 255


def check_resumable(run) -> None:
    """KitError unless `run` has a checkpoint to continue from."""
    if not run.file(CHECKPOINT).exists():
        raise KitError(
            f"{run.path} has no {CHECKPOINT} (it stopped before its first epoch ended); "
            f"start a new run instead"
        )


def fit(cfg: Config, run, data, progress) -> Trained:
    """Train on data.X_train (N, 28, 28) uint8 / data.y_train (N,), choosing the best epoch on
    data.X_val / data.y_val; continue from `run`'s checkpoint when it has one. Checkpoints
    and history.csv go to `run`; every step and epoch is reported to `progress` (a
    kit.training.Progress). Ctrl-C leaves the last checkpoint and raises KitError saying how
    to resume."""
    from threadpoolctl import threadpool_limits

    _keep_freed_memory()
    scale = input_scale(cfg)
    y = data.y_train.astype(np.intp)
    X_val, y_val = to_inputs(data.X_val, scale), data.y_val.astype(np.intp)
    with threadpool_limits(limits=cfg.threads, user_api="blas"):
        state = _train_loop(cfg, run, data.X_train, y, X_val, y_val, scale, progress)
    return Trained(state["best_params"], scale, cfg.threads, state["history"], state["best_epoch"], len(y))


def save(trained: Trained, run) -> None:
    with io.atomic_path(run.file(WEIGHTS)) as tmp:
        np.savez(tmp, **trained.weights())


def load(run, cfg: Config) -> Trained:
    """A finished run's network, from its weights.npz (history and epochs from the run)."""
    with np.load(run.file(WEIGHTS)) as f:
        weights = dict(f)
    scale = float(weights.pop("input_scale"))
    return Trained(
        weights,
        scale,
        cfg.threads or cpu_cores(),
        run.history().to_dict("records"),
        int(run.metrics.get("kept_epoch") or run.metrics.get("best_epoch") or 0),
    )


def predict(trained: Trained, X: np.ndarray) -> np.ndarray:
    """X: (N, 28, 28) uint8 -> (N, 10) float32 probabilities, with the run's BLAS threads."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=trained.threads, user_api="blas"):
        return predict_proba(trained.weights(), X)


def cpu_cores() -> int:
    """Cores this process may run on (its affinity where the OS tells, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in the heap instead of returning it to the OS.

    Every step allocates activations of a few MB and frees them; by default glibc hands such
    blocks back to the kernel, so the next step page-faults them in again, which costs more
    than the matrix products for wide layers. A no-op where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # blocks up to 32 MB (glibc's maximum) come from the heap
        libc.mallopt(M_TRIM_THRESHOLD, 1024 * 2**20)  # and stay there once freed
    except (OSError, AttributeError):
        pass


def _initial_state(cfg: Config, run, sizes: list[int]):
    """(rng, params, optimizer, state) at epoch 0, or where `run`'s checkpoint left them."""
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    params = init_params(rng, sizes, cfg.init)
    optimizer = make_optimizer(cfg, params)
    state = {
        "epoch": 0,
        "best_epoch": 0,
        "best_val_loss": math.inf,
        "history": [],
        "elapsed": 0.0,
        "best_params": {k: p.copy() for k, p in params.items()},
    }
    if run.file(CHECKPOINT).exists():
        _load_checkpoint(run.file(CHECKPOINT), rng, params, optimizer, state)
    return rng, params, optimizer, state


def _train_loop(cfg, run, X_img, y, X_val, y_val, input_scale, progress) -> dict:
    """The epochs. X_img: (N, 28, 28) uint8 train images, y: (N,) labels;
    X_val: (V, 784) float32 inputs. Returns the final state (best params, history, ...)."""
    sizes = [X_val.shape[1], *map(int, cfg.hidden), config.N_CLASSES]
    rng, params, optimizer, state = _initial_state(cfg, run, sizes)
    grads = {k: np.empty_like(p) for k, p in params.items()}  # reused every step
    # without augmentation the inputs never change: convert them once
    static = not (cfg.shift or cfg.rotate or cfg.scale)
    X_static = to_inputs(X_img, input_scale) if static else None
    progress.start(cfg.epochs, state["epoch"])
    try:
        while state["epoch"] < cfg.epochs:
            t0 = time.perf_counter()
            loss, acc, lr = _epoch(
                cfg,
                rng,
                params,
                optimizer,
                grads,
                X_img,
                X_static,
                y,
                input_scale,
                sizes,
                state["epoch"],
                progress,
            )
            stop = _end_epoch(
                cfg,
                run,
                state,
                params,
                rng,
                optimizer,
                (X_val, y_val),
                dict(loss=loss, accuracy=acc, lr=lr),
                time.perf_counter() - t0,
                len(y),
            )
            progress.epoch(state["history"][-1])
            if stop:
                break
    except KeyboardInterrupt:
        progress.close()
        done = _checkpoint_epoch(run.file(CHECKPOINT))
        where = f"the checkpoint of epoch {done} is kept" if done else "no epoch had finished"
        raise KitError(
            f"interrupted during epoch {state['epoch'] + 1}; {where} in {run.path}. "
            f"Continue it with: kit train scratch --resume {run.path}"
        ) from None
    return state


def _epoch(cfg, rng, params, optimizer, grads, X_img, X_static, y, input_scale, sizes, epoch, progress):
    """One pass over the training rows in a fresh order (and fresh distortions).
    Returns (mean loss, accuracy, the last step's learning rate)."""
    n = len(y)
    batch = cfg.batch_size or n
    steps_per_epoch = math.ceil(n / batch)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    order = rng.permutation(n) if batch < n else np.arange(n)
    if X_static is not None:
        X_epoch = X_static if batch >= n else X_static[order]
    else:
        X_epoch = to_inputs(augment(X_img[order], rng, cfg.shift, cfg.rotate, cfg.scale), input_scale)
    y_epoch = y[order]
    loss_sum, correct, lr = 0.0, 0, cfg.lr
    for s in range(steps_per_epoch):
        Xb, yb = X_epoch[s * batch : (s + 1) * batch], y_epoch[s * batch : (s + 1) * batch]
        masks = [dropout_mask(rng, (len(yb), h), cfg.dropout) for h in sizes[1:-1]] if cfg.dropout else None
        loss, n_correct, grads = loss_and_grads(params, Xb, yb, masks, cfg.weight_decay, grads)
        lr = learning_rate(epoch * steps_per_epoch + s, total_steps, warmup_steps, cfg)
        optimizer.step(params, grads, lr)
        loss_sum += loss * len(yb)
        correct += n_correct
        progress.step(1 / steps_per_epoch)
    return loss_sum / n, correct / n, lr


def _end_epoch(cfg, run, state, params, rng, optimizer, val, row: dict, seconds: float, n_train: int) -> bool:
    """Score the epoch on validation, keep the best weights, log it, checkpoint it.
    Returns True when early stopping says stop."""
    val_loss, val_acc = evaluate(params, *val)
    state["elapsed"] += seconds
    state["epoch"] += 1
    if val_loss < state["best_val_loss"]:
        state.update(
            best_val_loss=val_loss,
            best_epoch=state["epoch"],
            best_params={k: p.copy() for k, p in params.items()},
        )
    state["history"].append(
        {
            "epoch": state["epoch"],
            "loss": row["loss"],
            "accuracy": row["accuracy"],
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": row["lr"],
            "seconds": round(seconds, 4),
            "samples_per_s": round(n_train / seconds, 1),
        }
    )
    stop = bool(cfg.patience) and state["epoch"] - state["best_epoch"] >= cfg.patience
    if state["epoch"] % cfg.checkpoint_every == 0 or stop or state["epoch"] == cfg.epochs:
        _save_checkpoint(run.file(CHECKPOINT), rng, params, optimizer, state)
        run.write_history(state["history"])
    return stop


def _save_checkpoint(path: Path, rng, params, optimizer, state) -> None:
    """Everything needed to continue bit-identically: parameters, best parameters, optimizer
    state, the generator's state and the history so far. Atomic: the old one or the new one."""
    meta = {k: state[k] for k in ("epoch", "best_epoch", "best_val_loss", "history", "elapsed")}
    meta["rng"] = rng.bit_generator.state
    arrays = {
        **{f"p.{k}": v for k, v in params.items()},
        **{f"best.{k}": v for k, v in state["best_params"].items()},
        **{f"opt.{k}": v for k, v in optimizer.state().items()},
        "meta": np.array(json.dumps(meta)),
    }
    with io.atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _load_checkpoint(path: Path, rng, params, optimizer, state) -> None:
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        for k in params:
            params[k][...] = f[f"p.{k}"]
        state["best_params"] = {k: f[f"best.{k}"].copy() for k in params}
        optimizer.load_state({k[4:]: f[k] for k in f.files if k.startswith("opt.")})
    rng.bit_generator.state = meta.pop("rng")
    state.update(meta)


def _checkpoint_epoch(path: Path) -> int:
    if not path.exists():
        return 0
    with np.load(path) as f:
        return int(json.loads(str(f["meta"]))["epoch"])
