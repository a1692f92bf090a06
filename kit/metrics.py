"""What a run's numbers mean: accuracy and log-loss of class probabilities, the confusion
matrix and calibration (reliability, ECE) of its predictions, and the data identity (data
checksum, validation split) they were measured on.

Every model, the ensemble and the report compute their numbers here, so a validation
accuracy in one place is the same quantity as in every other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kit import config

EPS = 1e-12  # floor under a probability before its log: a member can say exactly 0

TARGET_ACCURACY = 0.994  # metrics.json reports the training seconds until val accuracy reached this

# The keys of metrics.json / config.json that say which data a run's predictions belong to.
IDENTITY = ("data_checksum", "split_hash")

ECE_BINS = 15  # equal-width confidence bins (Guo et al. 2017 use 15)


def accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose most probable class is the label. proba: (n, 10), y: (n,) ints."""
    return float(np.mean(proba.argmax(axis=1) == y))


def log_loss(proba: np.ndarray, y: np.ndarray, eps: float = EPS) -> float:
    """Mean negative log-likelihood of the labels, in nats. proba: (n, 10), y: (n,) ints."""
    y = np.asarray(y).astype(np.intp)
    return float(-np.mean(np.log(np.maximum(proba[np.arange(len(y)), y], eps))))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = config.N_CLASSES) -> np.ndarray:
    """(k, k) int64 counts: row = true class, column = predicted class."""
    C = np.zeros((k, k), dtype=np.int64)
    np.add.at(C, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return C


def reliability(proba: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS):
    """Calibration of the top-class confidence.

    proba: (N, K) probabilities, y: (N,) int labels. Bins (0, 1] into `n_bins` equal widths.
    Returns (confidence, accuracy, count) per bin, each (n_bins,) (NaN where a bin is empty),
    and the expected calibration error  ECE = sum_b n_b/N * |accuracy_b - confidence_b|.
    """
    conf = proba.max(axis=1).astype(np.float64)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    # bin b holds (b/n, (b+1)/n]; a confidence of exactly 0 cannot happen for a top class
    b = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        acc = np.bincount(b, weights=correct, minlength=n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] / len(y) * np.abs(acc[filled] - mean_conf[filled])))
    return mean_conf, acc, count.astype(np.int64), ece


def identity(checksum: str, split_hash: str) -> dict:
    """The identity record every run stores: {'data_checksum': ..., 'split_hash': ...}."""
    return {"data_checksum": checksum, "split_hash": split_hash}


def mismatch(recorded: Mapping, current: Mapping, keys: tuple[str, ...] = IDENTITY) -> str | None:
    """None when `recorded` and `current` agree on `keys`, else the first difference as
    'data_checksum 1a2b... vs 3c4d...'. A key `recorded` lacks (runs from older kits) is not compared."""
    for key in keys:
        if recorded.get(key) is not None and recorded.get(key) != current.get(key):
            return f"{key} {recorded.get(key)!r} vs {current.get(key)!r}"
    return None


def seconds_to(history: list[dict], target: float) -> float | None:
    """Training seconds (the epochs' `seconds`, summed) until val_accuracy first reached
    `target`; None if it never did."""
    total = 0.0
    for row in history:
        total += row["seconds"]
        if row["val_accuracy"] >= target:
            return round(total, 3)
    return None
