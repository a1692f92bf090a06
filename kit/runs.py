"""Run folders: the one format every model, the ensemble, submissions and reports share.

A run lives in `runs/<model>-<UTC YYYYmmdd-HHMMSS>-s<seed>/` and holds

    config.json      the model's hyper-parameter dataclass, as trained (plus `model`, `seed`)
    history.csv      one row per epoch: epoch, loss, accuracy, val_loss, val_accuracy, lr, seconds
    val_proba.npy    (n_val, 10) float32, validation rows in split order (`Split.val_idx`)
    test_proba.npy   (n_test, 10) float32, test rows in file order
    <model file>     weights.npz (scratch), model.keras (cnn), weights.json (ensemble)
    metrics.json     written LAST: val_accuracy, val_loss, wall_time_s, data_checksum,
                     split_hash, n_val, n_test, finished_utc, ...

A run is *finished* exactly when metrics.json exists. Every file is written to a temporary
name and renamed, so a crash mid-write leaves the old file or none, never half of one; a
crashed run has no metrics.json and is skipped by `latest()` (but can be `--resume`d).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kit import config
from kit.errors import KitError
from kit.io import free_name, read_json, save_npy, utc_iso, utc_stamp, write_json, write_text

METRICS = "metrics.json"
CONFIG = "config.json"
HISTORY = "history.csv"
VAL_PROBA = "val_proba.npy"
TEST_PROBA = "test_proba.npy"

# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """A run folder. Cheap to construct; files are read on demand."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        return self.config.get("model") or self.name.split("-")[0]

    @property
    def finished(self) -> bool:
        return (self.path / METRICS).exists()

    @property
    def config(self) -> dict:
        return read_json(self.path / CONFIG)

    @property
    def metrics(self) -> dict:
        return read_json(self.path / METRICS)

    def file(self, name: str) -> Path:
        return self.path / name

    def val_proba(self) -> np.ndarray:
        """(n_val, 10) float32 class probabilities of the validation rows, split order."""
        return np.load(self.path / VAL_PROBA)

    def test_proba(self) -> np.ndarray:
        """(n_test, 10) float32 class probabilities of the test rows, file order."""
        return np.load(self.path / TEST_PROBA)

    def history(self):
        """The per-epoch history as a pandas DataFrame (empty if none yet)."""
        import pandas as pd

        p = self.path / HISTORY
        return pd.read_csv(p) if p.exists() and p.stat().st_size else pd.DataFrame()

    # writers ---------------------------------------------------------------
    def write_config(self, cfg: dict) -> None:
        write_json(self.path / CONFIG, cfg)

    def write_history(self, rows: list[dict]) -> None:
        import pandas as pd

        write_text(self.path / HISTORY, pd.DataFrame(rows).to_csv(index=False))

    def write_predictions(self, val_proba: np.ndarray, test_proba: np.ndarray | None) -> None:
        assert val_proba.ndim == 2 and val_proba.shape[1] == config.N_CLASSES, val_proba.shape
        save_npy(self.path / VAL_PROBA, val_proba.astype(np.float32))
        if test_proba is not None:
            assert test_proba.ndim == 2 and test_proba.shape[1] == config.N_CLASSES, test_proba.shape
            save_npy(self.path / TEST_PROBA, test_proba.astype(np.float32))

    def finish(self, metrics: dict) -> None:
        """Write metrics.json last: from now on the run counts as finished."""
        write_json(self.path / METRICS, {"finished_utc": utc_iso(), **metrics})


def create(model: str, seed: int, root: Path | None = None, now: datetime | None = None) -> Run:
    """Make a new, empty run folder `<root>/<model>-<UTC stamp>-s<seed>/` and return it.

    Two runs started in the same second (tests, scripts) get `-2`, `-3`, ... after the seed.
    """
    root = Path(root or config.runs_dir())
    root.mkdir(parents=True, exist_ok=True)

    def make(name: str) -> Run:
        (root / name).mkdir()  # atomic: of two processes, one gets the name
        return Run(root / name)

    return free_name(make, f"{model}-{utc_stamp(now)}-s{seed}")


def all_runs(root: Path | None = None, model: str | None = None, finished: bool = True) -> list[Run]:
    """Runs under `root`, oldest first (names sort by time), optionally one model's only.
    A run folder has a config.json from its first moment; other folders (runs/remote/) are not runs."""
    root = Path(root or config.runs_dir())
    if not root.exists():
        return []
    runs = [
        Run(p)
        for p in sorted(root.iterdir(), key=lambda p: (_stamp_of(p.name), p.name))
        if p.is_dir() and not p.name.startswith(".") and (p / CONFIG).exists()
    ]
    if model:
        runs = [r for r in runs if r.name.startswith(model + "-")]
    if finished:
        runs = [r for r in runs if r.finished]
    return runs


def _stamp_of(name: str) -> str:
    parts = name.split("-")
    return "-".join(parts[1:3]) if len(parts) >= 3 else name


def latest(model: str, root: Path | None = None) -> Run | None:
    """The most recent finished run of `model`, or None."""
    runs = all_runs(root, model=model)
    return runs[-1] if runs else None


def resolve(ref: str | Path, root: Path | None = None) -> Run:
    """A run given as a path, a folder name under runs/, or a model name (its latest run)."""
    p = Path(ref)
    if p.is_dir():
        return Run(p)
    root = Path(root or config.runs_dir())
    if (root / str(ref)).is_dir():
        return Run(root / str(ref))
    run = latest(str(ref), root)
    if run is not None:
        return run
    raise KitError(
        f"no run {str(ref)!r}: not a folder, not a run under {root}, "
        f"and no finished run of a model by that name (see `kit runs`)"
    )


def require_run(run: Run, model: str | None = None, finished: bool = True) -> Run:
    """Check `run` is a run folder (of `model`, if given); a clear error otherwise."""
    if not (run.path / CONFIG).exists():
        raise KitError(f"{run.path} is not a run folder (it has no {CONFIG})")
    if model is not None and run.model != model:
        raise KitError(f"{run.path} is a {run.model!r} run, not a {model!r} run")
    if finished and not run.finished:
        raise KitError(f"{run.path} did not finish (no {METRICS}); resume it or pick another run")
    return run
