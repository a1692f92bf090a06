"""The from-scratch network's maths: a multi-layer perceptron in plain NumPy, no deep-learning
library, and no files.

    x (B, 784) in [0, 1] -> [dense -> ReLU -> dropout] x L -> dense -> softmax -> cross-entropy

Read top to bottom, as Nielsen's network.py: layers (forward next to backward, names after the
maths), the network, optimizers (SGD with (Nesterov) momentum, Adam), the learning-rate
schedule (warm-up + cosine), prediction. Everything is float32; every random draw comes from
the `np.random.Generator` the caller passes in. The training loop around it (epochs,
checkpoints, early stopping) is kit.models.scratch.train's, the random shifts and distortions
kit.models.scratch.augment's, the hyper-parameters kit.models.scratch.config's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from kit import config
from kit.models.scratch.config import Config

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


def predict_proba(weights: Mapping[str, np.ndarray], X: np.ndarray, batch: int) -> np.ndarray:
    """Class probabilities of images under a trained network, `batch` rows per forward pass.

    weights: the arrays of a weights.npz (W1, b1, ..., and input_scale);
    X: (N, 28, 28) or (N, 784) pixels 0-255 -> (N, 10) float32, rows sum to 1.
    """
    params = {k: v for k, v in weights.items() if k[0] in "Wb"}
    scale = float(weights.get("input_scale", 1 / 255))
    out = np.empty((len(X), config.N_CLASSES), np.float32)
    for i in range(0, len(X), batch):
        Z, _ = forward(params, to_inputs(X[i : i + batch], scale))
        out[i : i + batch] = softmax(Z)
    return out


def evaluate(params, X: np.ndarray, y: np.ndarray, batch: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the network on X: (N, 784) float32 inputs, y: (N,),
    `batch` rows per forward pass."""
    total, correct = 0.0, 0
    for i in range(0, len(X), batch):
        Z, _ = forward(params, X[i : i + batch])
        yb = y[i : i + batch]
        correct += int((Z.argmax(axis=1) == yb).sum())
        loss, _ = softmax_cross_entropy(Z, yb)
        total += loss * len(yb)
    return total / len(X), correct / len(X)


def flops_per_example(sizes: list[int]) -> int:
    """Multiply-add FLOPs of one training example: forward X W (2 D H per layer), backward
    dW = X^T dZ (2 D H) and dX = dZ W^T (2 D H, not for the input layer)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * d * h * (3 if l > 0 else 2) for l, (d, h) in enumerate(layers))
