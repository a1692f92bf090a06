"""The runs a report shows, as it sees them: what each holds, what it lacks, and whether its
validation predictions can be compared with the installed data.

    load(run_refs) -> list[RunView]      # the chosen runs (default_runs()), each once, with a slug
    default_runs() -> list[runs.Run]     # the latest finished run of each model
    load_val() -> (ValData | None, note)  # the installed data's validation split
    check_split(view, val) -> bool       # may view.val_proba be compared with val's labels?
    summary_row(view)                    # one row of the summary table (SUMMARY_HEADER)

A run with missing pieces (crashed, no history yet, no predictions) gives what there is and a
note saying what is missing; a folder that is not a run is a KitError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from kit import config, data, metrics, models, runs
from kit.errors import KitError

# ----------------------------------------------------------------------------- what a run holds


@dataclass
class RunView:
    """One run as the report sees it: what it has, and notes on what it lacks."""

    run: runs.Run
    config: dict
    metrics: dict
    history: object  # pandas DataFrame, empty if none
    val_proba: np.ndarray | None
    has_test: bool
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.run.model

    slug: str = ""  # the run name made safe for file names, unique in the report


def _view(run: runs.Run) -> RunView:
    runs.require_run(run, finished=False)
    p = run.path
    notes = []
    try:
        recorded = run.metrics
    except KitError as e:  # a damaged metrics.json: say so, show the rest
        recorded = {}
        notes.append(str(e))
    if not run.finished:
        notes.append(
            f"unfinished: no {runs.METRICS} (it crashed or is still running); what it wrote so far is shown"
        )
    import pandas as pd  # lazy like everywhere in kit: heavy, and `kit --help` needs none of it

    try:
        history = run.history().apply(pd.to_numeric, errors="coerce")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        history = pd.DataFrame()
        notes.append(f"{p / runs.HISTORY} is unreadable ({str(e).strip()}): no training curves")
    else:
        if history.empty:
            notes.append(f"no {runs.HISTORY} yet: no training curves")
    val_proba = None
    if (p / runs.VAL_PROBA).exists():
        try:
            val_proba = run.val_proba()
        except (ValueError, OSError, EOFError) as e:
            notes.append(f"{p / runs.VAL_PROBA} is unreadable ({e}): validation charts skipped")
        else:
            if val_proba.ndim != 2 or val_proba.shape[1] != config.N_CLASSES:
                notes.append(
                    f"{runs.VAL_PROBA} has shape {val_proba.shape}, not (n_val, "
                    f"{config.N_CLASSES}): validation charts skipped"
                )
                val_proba = None
            elif not np.isfinite(val_proba).all():
                notes.append(f"{runs.VAL_PROBA} holds NaN or infinite values: validation charts skipped")
                val_proba = None
    else:
        notes.append(f"no {runs.VAL_PROBA}: no confusion matrix, errors or calibration")
    has_test = (p / runs.TEST_PROBA).exists()
    if not has_test:
        notes.append(f"no {runs.TEST_PROBA}: no test predictions, nothing to submit from this run")
    return RunView(run, run.config, recorded, history, val_proba, has_test, notes)


def default_runs() -> list[runs.Run]:
    """The latest finished run of each model: the registry's models in their order, then the
    ensemble, then any other model found under runs/."""
    found = runs.all_runs()
    present = {r.model for r in found}
    known = (*models.names(), "ensemble")
    order = [m for m in known if m in present] + sorted(present - set(known))
    latest = [[r for r in found if r.model == m][-1] for m in order]
    if not latest:
        raise KitError(
            f"no finished runs in {config.runs_dir()}: train one first "
            "(`kit train scratch`), or name a run folder: `kit report RUN`"
        )
    return latest


# ----------------------------------------------------------------------------- validation data


@dataclass
class ValData:
    """The validation split: images (n_val, 28, 28) uint8, labels (n_val,) uint8, split_hash."""

    X: np.ndarray
    y: np.ndarray
    split_hash: str
    checksum: str


def load_val() -> tuple[ValData | None, str | None]:
    """The installed data's validation split, or None and why not."""
    try:
        ds, sp = data.load_split()
    except KitError as e:
        return None, f"validation images unavailable ({e}): charts that need labels are skipped"
    return ValData(ds.X_train[sp.val_idx], ds.y_train[sp.val_idx], sp.hash, ds.checksum), None


def out_of_fold(v: RunView) -> bool:
    """Whether the run is a cross-validated group's ensemble, judged on every labelled row."""
    return v.metrics.get("yardstick") == "out-of-fold"


def rows_judged(v: RunView, val: ValData | None) -> ValData | None:
    """The labelled rows the run's val_proba.npy predicts: the validation split `val`, or, for a
    group's ensemble, every labelled row in train.csv order (None if the data is not installed)."""
    if not out_of_fold(v):
        return val
    try:
        ds = data.load()
    except KitError:
        return None
    return ValData(ds.X_train, ds.y_train, "out-of-fold", ds.checksum)


def check_split(v: RunView, val: ValData | None) -> bool:
    """Can this run's val_proba be compared with `val`'s labels? Adds a note if not."""
    if v.val_proba is None or val is None:
        return False
    installed = metrics.identity(val.checksum, val.split_hash)
    want = v.metrics.get("split_hash")
    if metrics.mismatch(v.metrics, installed, keys=("split_hash",)):
        v.notes.append(
            f"trained on another validation split (run split_hash {want}, installed "
            f"data {val.split_hash}): validation charts skipped"
        )
        return False
    if len(v.val_proba) != len(val.y):
        v.notes.append(
            f"{runs.VAL_PROBA} has {len(v.val_proba)} rows but the validation split "
            f"has {len(val.y)}: validation charts skipped"
        )
        return False
    if want is None:
        v.notes.append("split not verified (no split_hash in metrics.json)")
    if metrics.mismatch(v.metrics, installed, keys=("data_checksum",)):
        v.notes.append(
            f"the data changed since training (run data_checksum "
            f"{v.metrics['data_checksum']}, installed {val.checksum})"
        )
    return True


def _seconds(s) -> str:
    if s is None:
        return "—"
    s = float(s)
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:02.0f} s"


def summary_row(v: RunView) -> list[str]:
    """Run, model, preset/arch, seed, epochs, wall time, val accuracy, val loss, status."""
    c, m = v.config, v.metrics
    members = c.get("members")
    setting = c.get("preset") or c.get("arch") or (f"{len(members)} members" if members else "—")
    planned, done = c.get("epochs"), (len(v.history) if not v.history.empty else None)
    if v.run.finished:
        epochs = m.get("epochs_run", done if done is not None else planned)
    else:  # how far it got, of how many
        epochs = f"{done or 0} of {planned}" if planned is not None else done
    acc, loss = m.get("val_accuracy"), m.get("val_loss")
    status = "finished" if v.run.finished else "unfinished"
    return [
        v.run.name,
        v.model,
        str(setting),
        str(c.get("seed", m.get("seed", "—"))),
        "—" if epochs is None else str(epochs),
        _seconds(m.get("wall_time_s")),
        "—" if acc is None else f"{acc:.4f}",
        "—" if loss is None else f"{loss:.4f}",
        status,
    ]


SUMMARY_HEADER = [
    "run",
    "model",
    "preset / arch",
    "seed",
    "epochs",
    "wall time",
    "val accuracy",
    "val loss",
    "status",
]


def load(run_refs: list | None) -> list[RunView]:
    """The runs to report on (default: the latest finished run of each model), each once,
    with a file-name slug unique in the report. KitError on a folder that is not a run."""
    chosen = [runs.resolve(r) for r in run_refs] if run_refs else default_runs()
    unique = list({r.path.resolve(): r for r in chosen}.values())  # "cnn" and its name: once
    views = [_view(r) for r in unique]
    seen: set[str] = set()
    for i, v in enumerate(views):  # same-named runs from two folders must not share PNGs
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", v.run.name)
        v.slug = slug if slug not in seen else f"{slug}-{i + 1}"
        seen.add(v.slug)
    return views
