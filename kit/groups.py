"""Cross-validated groups: one model and recipe trained K x R times, so that every labelled row
is out of fold (unseen in training) for exactly R members, and all the rows are learnt from.

    group = training.train_group("cnn", cfg, folds=5, repeats=3, fold_seed=42)
    # runs/groups/<name>.json, then each member trained; kit.ensemble.build_groups judges it

Repeat r draws its own stratified assignment of the rows to K folds (scikit-learn's
RepeatedStratifiedKFold, from the recorded `fold_seed`); with `same_folds` every repeat uses the
first assignment, so the repeats differ only by their seeds (the seeds-only baseline). Member
m = r * K + k trains on the rows outside fold k of repeat r with seed `cfg.seed + m`, and its
"validation" rows are fold k: its run folder is an ordinary run (val_proba.npy holds its fold's
rows in train.csv order) whose config.json and metrics.json also record `group`, `fold`, `repeat`.

The group record (runs/groups/<name>.json) is written when the group starts, naming every
member's run folder (each made, with its config.json, before any member trains), so an
interrupted group resumes where it stopped (`kit train cnn --resume GROUP`). A group a `kit remote`
job trains names its members' folders as they are installed here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit import config, data, runs
from kit.errors import KitError
from kit.io import free_name, read_json, utc_iso, utc_stamp, write_json

GROUPS = "groups"  # runs/groups/: one JSON record per group
MAX_FOLDS = 20


@dataclass
class Member:
    """One member of a group: fold `fold` of repeat `repeat`, trained with `seed`; `run` is its
    run folder's name once started (None before)."""

    fold: int
    repeat: int
    seed: int
    run: str | None = None


@dataclass
class Group:
    """A cross-validated group: what runs/groups/<name>.json holds."""

    name: str
    model: str
    folds: int
    repeats: int
    fold_seed: int
    same_folds: bool
    config: dict  # the members' shared config (config.json's fields), seed = the first member's
    data_checksum: str
    members: list[Member] = field(default_factory=list)
    created_utc: str = ""

    @property
    def path(self) -> Path:
        return groups_dir() / f"{self.name}.json"

    def save(self) -> None:
        write_json(self.path, dataclasses.asdict(self))

    def runs(self, finished: bool = True) -> list[runs.Run]:
        """The members' run folders (finished ones only, by default), in member order."""
        out = [runs.Run(config.runs_dir() / m.run) for m in self.members if m.run]
        return [r for r in out if r.finished] if finished else out

    @property
    def complete(self) -> bool:
        return len(self.runs()) == len(self.members)

    def finish_command(self) -> str:
        """What finishes the group: members a `kit remote` job trains have no run folder here
        until they are pulled; a local group names every member's folder from its start."""
        if any(m.run is None for m in self.members):
            return "`kit remote pull` (its other members are trained on Kaggle)"
        return f"`kit train {self.model} --resume {self.name}`"

    def unfinished(self) -> list[Member]:
        done = {r.name for r in self.runs()}
        return [m for m in self.members if m.run not in done]


def groups_dir() -> Path:
    return config.runs_dir() / GROUPS


def assignment(y: np.ndarray, folds: int, repeats: int, seed: int, same_folds: bool = False) -> np.ndarray:
    """(repeats, N) int64: the fold of every row in each repeat, stratified by the labels y: (N,)."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    if not 2 <= folds <= MAX_FOLDS:
        raise KitError(f"--folds must be between 2 and {MAX_FOLDS} (got {folds})")
    if np.bincount(y).min() < folds:
        raise KitError(
            f"--folds {folds} is more than the rarest class has rows ({np.bincount(y).min()}); use fewer folds"
        )
    n_draws = 1 if same_folds else repeats
    out = np.empty((n_draws, len(y)), np.int64)
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=n_draws, random_state=seed)
    for i, (_, val_idx) in enumerate(cv.split(np.zeros(len(y)), y)):
        out[i // folds, val_idx] = i % folds
    return np.repeat(out, repeats, axis=0) if same_folds else out


def member_split(group: Group, member: Member, y: np.ndarray) -> data.Split:
    """The rows member `member` trains on (outside its fold) and validates on (its fold)."""
    fold_of = assignment(y, group.folds, group.repeats, group.fold_seed, group.same_folds)[member.repeat]
    rows = np.arange(len(y), dtype=np.int64)
    return data.Split(
        rows[fold_of != member.fold], rows[fold_of == member.fold], group.fold_seed, 1 / group.folds
    )


def create(
    model: str, cfg_dict: dict, folds: int, repeats: int, fold_seed: int, same_folds: bool, checksum: str
) -> Group:
    """A new group record (saved), its members listed in training order (repeat-major)."""
    if repeats < 1:
        raise KitError(f"--repeats must be at least 1 (got {repeats})")
    seed = int(cfg_dict["seed"])
    members = [Member(k, r, seed + r * folds + k) for r in range(repeats) for k in range(folds)]
    groups_dir().mkdir(parents=True, exist_ok=True)
    base = f"{model}-cv{folds}x{repeats}-{utc_stamp()}-s{seed}"

    def make(name: str) -> Group:
        path = groups_dir() / f"{name}.json"
        path.open("x").close()  # atomic: of two processes, one gets the name
        return Group(
            name, model, folds, repeats, fold_seed, same_folds, cfg_dict, checksum, members, utc_iso()
        )

    group = free_name(make, base)
    group.save()
    return group


def load(name: str) -> Group:
    """The group `name` (a name under runs/groups/ or a path to its .json); KitError if none."""
    p = Path(name)
    path = p if p.suffix == ".json" and p.is_file() else groups_dir() / f"{name}.json"
    if not path.is_file():
        raise KitError(f"no group {name!r} in {groups_dir()} (see `kit runs`)")
    raw = read_json(path)
    raw["members"] = [Member(**m) for m in raw["members"]]
    return Group(**raw)


def is_group(ref: str) -> bool:
    return (groups_dir() / f"{ref}.json").is_file() or (Path(ref).suffix == ".json" and Path(ref).is_file())


def all_groups() -> list[Group]:
    """Every group under runs/groups/, oldest first (names carry the start time)."""
    if not groups_dir().is_dir():
        return []
    found = [load(str(p)) for p in groups_dir().glob("*.json")]
    return sorted(found, key=lambda g: (g.created_utc, g.name))


def latest_complete() -> Group | None:
    done = [g for g in all_groups() if g.complete]
    return done[-1] if done else None


def group_of(run: runs.Run) -> str | None:
    """The group a run belongs to (its config.json's `group`), or None for a fixed-split run."""
    return run.config.get("group")
