"""Pseudo-labels: test images that an earlier model labels with high confidence, added to a
run's training rows with the label it gave them.

Allowed in this competition: the test images are given to everyone, their labels never are.
The teacher must not have seen the rows the student is judged on, or the yardstick lies:
  * a fixed-split run learns from a fixed-split teacher (a run or ensemble on the same split,
    which never saw the validation rows);
  * a member of a cross-validated group learns from a group with the same folds, each member
    from the teacher member of its own fold and repeat (which never saw that fold), so the
    out-of-fold yardstick stays out of fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit import groups, metrics, runs
from kit.errors import KitError

DEFAULT_THRESHOLD = 0.99  # the teacher's probability a test image needs to be taken


@dataclass(frozen=True)
class PseudoLabels:
    """source: a run (folder or name) or a group's name; threshold: in (0.5, 1]."""

    source: str
    threshold: float = DEFAULT_THRESHOLD

    def record(self) -> dict:
        """What config.json records of them (read back by from_record on resume)."""
        return {"pseudo_labels": self.source, "pseudo_threshold": self.threshold}

    @staticmethod
    def from_record(saved: dict) -> PseudoLabels | None:
        src = saved.get("pseudo_labels")
        return PseudoLabels(src, saved["pseudo_threshold"]) if src else None


def _teacher_member(source: str, group: groups.Group, member: groups.Member) -> runs.Run:
    teacher = groups.load(source)
    same = ("folds", "repeats", "fold_seed", "same_folds", "data_checksum")
    if any(getattr(teacher, k) != getattr(group, k) for k in same):
        raise KitError(
            f"pseudo-labels for group {group.name} must come from a group with the same folds "
            f"(--folds, --repeats, --fold-seed, data); {teacher.name} has other folds"
        )
    found = [
        r
        for m, r in zip(teacher.members, teacher.runs(finished=False))
        if (m.fold, m.repeat) == (member.fold, member.repeat)
    ]
    if not found or not found[0].finished:
        raise KitError(
            f"group {teacher.name} is not finished: `kit train {teacher.model} --resume {teacher.name}`"
        )
    return found[0]


def teacher_proba(
    source: str, member: tuple[groups.Group, groups.Member] | None, identity: dict
) -> np.ndarray:
    """(n_test, 10): the teacher's test probabilities for this run (see the module docstring)."""
    if member is not None:
        if not groups.is_group(source):
            raise KitError(
                f"a group's members take pseudo-labels from a group with the same folds (each from "
                f"the member that never saw its fold); {source} is a single run, which saw them"
            )
        return _teacher_member(source, *member).test_proba()
    if groups.is_group(source):
        raise KitError(
            f"{source} is a group: its pseudo-labels are for a group with the same folds (--folds)"
        )
    run = runs.require_run(runs.resolve(source))
    diff = metrics.mismatch(run.metrics, identity)
    if diff:
        raise KitError(
            f"{run.name} was trained on other data or another split ({diff}): it cannot teach this run"
        )
    return run.test_proba()


def rows(
    pl: PseudoLabels, X_test: np.ndarray, member: tuple[groups.Group, groups.Member] | None, identity: dict
) -> tuple[np.ndarray, np.ndarray]:
    """The test images whose teacher probability is >= pl.threshold, with its labels:
    X (n, 28, 28) uint8 and y (n,) uint8."""
    p = teacher_proba(pl.source, member, identity)
    if p.shape[0] != len(X_test):
        raise KitError(f"{pl.source} predicted {p.shape[0]} test images; this data has {len(X_test)}")
    keep = p.max(axis=1) >= pl.threshold
    return X_test[keep], p[keep].argmax(axis=1).astype(np.uint8)
