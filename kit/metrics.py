"""What a run's numbers mean: accuracy and log-loss of class probabilities, and the data
identity (data checksum, validation split) they were measured on.

Every model, the ensemble and the report compute their numbers here, so a validation
accuracy in one place is the same quantity as in every other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

EPS = 1e-12  # floor under a probability before its log: a member can say exactly 0

TARGET_ACCURACY = 0.994  # metrics.json reports the training seconds until val accuracy reached this

# The keys of metrics.json / config.json that say which data a run's predictions belong to.
IDENTITY = ("data_checksum", "split_hash")


def accuracy(proba: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose most probable class is the label. proba: (n, 10), y: (n,) ints."""
    return float(np.mean(proba.argmax(axis=1) == y))


def log_loss(proba: np.ndarray, y: np.ndarray, eps: float = EPS) -> float:
    """Mean negative log-likelihood of the labels, in nats. proba: (n, 10), y: (n,) ints."""
    y = np.asarray(y).astype(np.intp)
    return float(-np.mean(np.log(np.maximum(proba[np.arange(len(y)), y], eps))))


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
