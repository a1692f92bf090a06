"""`kit report`: a static HTML report of training runs and submissions, the charts people look at.

    build(run_refs=None, out=None) -> Path      # path of the report's index.html

writes `reports/<UTC YYYYmmdd-HHMMSS>/index.html` with PNGs beside it (no server, no JS,
opens from disk):

    summary      one row per run: model, preset/arch, seed, epochs, wall time, val accuracy
    leaderboard  validation accuracy against public score per submission (from the ledger)
    augment      the CNN's augmentation pipeline applied to one validation image per digit
    per run      training curves (loss and accuracy, train and val; learning rate on a
                 second axis), confusion matrix (counts and row-normalised), per-class
                 accuracy, the most confident validation errors, calibration (reliability
                 diagram and ECE), and for an ensemble the images where its members disagree

A run with missing pieces (crashed, no history yet, no predictions) gives what there is and
a note saying what is missing; a folder that is not a run is a KitError. Charts are drawn
with one fixed style (kit.charts), fixed sizes and dpi and no randomness, and PNGs carry
no date, so the same runs give byte-identical PNGs. The report is written into a temporary
folder and renamed into place: a crash never leaves half a report.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from kit import config, metrics, runs
from kit.charts import COLORS, DPI, FIGSIZE, STYLE, figure, plot_leaderboard, save_png
from kit.errors import KitError
from kit.io import free_name, read_json, utc_iso, utc_stamp

# ----------------------------------------------------------------------------- layout

GRID = (4, 8)  # at most rows x columns tiles in the worst-errors and disagreement grids
GRID_WIDTH = 11.0  # their width; height = GRID_TITLE + GRID_ROW * rows used (inches)
GRID_ROW = 1.5
GRID_TITLE = 0.4
AUGMENT_VARIANTS = 7  # augmented copies shown beside each original
AUGMENT_SEED = 0  # fixed, so the augmentation grid is the same every time
VOTES_LISTED = 6  # disagreement tiles list up to this many members' votes one by one
ECE_BINS = 15  # equal-width confidence bins (Guo et al. 2017 use 15)


# ----------------------------------------------------------------------------- confusion and calibration


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
    import pandas as pd

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
    from kit import models

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


def _load_val() -> tuple[ValData | None, str | None]:
    """The installed data's validation split, or None and why not."""
    from kit import data

    try:
        ds, sp = data.load_split()
    except KitError as e:
        return None, f"validation images unavailable ({e}): charts that need labels are skipped"
    return ValData(ds.X_train[sp.val_idx], ds.y_train[sp.val_idx], sp.hash, ds.checksum), None


def _check_split(v: RunView, val: ValData | None) -> bool:
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


# ----------------------------------------------------------------------------- charts


def plot_curves(history, title: str, path: Path) -> None:
    """history: DataFrame with epoch and any of loss, accuracy, val_loss, val_accuracy, lr."""
    fig = figure("curves")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epoch = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    for ax, name, label in ((ax_loss, "loss", "loss (cross-entropy)"), (ax_acc, "accuracy", "accuracy")):
        for split, col in (("train", name), ("val", f"val_{name}")):
            if col in history and history[col].notna().any():
                ax.plot(epoch, history[col], marker="o", color=COLORS[split], label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    handles, labels = ax_loss.get_legend_handles_labels()
    if "lr" in history and history["lr"].notna().any():
        # the learning rate shares the loss panel on its own (log) axis: schedule next to effect
        ax_lr = ax_loss.twinx()
        ax_lr.plot(epoch, history["lr"], color=COLORS["lr"], linestyle="--", label="learning rate")
        ax_lr.set_ylabel("learning rate", color=COLORS["lr"])
        ax_lr.tick_params(axis="y", colors=COLORS["lr"])
        ax_lr.grid(False)
        ax_lr.spines["right"].set_visible(True)
        lr = history["lr"].dropna()
        if (lr > 0).all() and lr.max() / lr.min() > 10:
            ax_lr.set_yscale("log")
        h, l = ax_lr.get_legend_handles_labels()
        handles, labels = handles + h, labels + l
    fig.suptitle(title)
    if handles:  # one legend for both panels, outside them: never on top of a curve
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles))
    save_png(fig, path)


def _percent(x: float) -> str:
    """A row share in %, short: '98', '4.5', '0.2' (a 1-in-400 mistake must not print as 0)."""
    return f"{x:.0f}" if x >= 9.95 else f"{x:.1f}"


def plot_confusion(C: np.ndarray, title: str, path: Path) -> None:
    """C: (10, 10) int counts, rows = true class. Left: counts; right: % of each true class.

    Colour is the row share in both panels: blue on the diagonal (right answers), red off it,
    the reds scaled to the largest off-diagonal share, so at 99 % accuracy the confusions
    that matter still stand out instead of all being near-white."""
    fig = figure("confusion")
    axes = fig.subplots(1, 2)
    rows = C.sum(axis=1, keepdims=True)
    norm = np.divide(C, rows, out=np.zeros(C.shape, dtype=np.float64), where=rows > 0)
    k = C.shape[0]
    diag = np.eye(k, dtype=bool)
    off_max = max(norm[~diag].max(initial=0.0), 1e-12)
    shade = np.where(diag, norm, norm / off_max)  # each in [0, 1] on its own colour map
    for ax, values, name in (
        (axes[0], C, "counts"),
        (axes[1], norm * 100, "% of true class (row-normalised)"),
    ):
        ax.imshow(np.ma.masked_where(~diag, shade), cmap="Blues", vmin=0, vmax=1)
        ax.imshow(np.ma.masked_where(diag | (C == 0), shade), cmap="Reds", vmin=0, vmax=1.25)
        for i in range(k):
            for j in range(k):
                if C[i, j] == 0:
                    continue
                text = str(int(values[i, j])) if values is C else _percent(values[i, j])
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if shade[i, j] > 0.55 else "black",
                )
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        ax.grid(False)
    fig.suptitle(title)
    save_png(fig, path)


def plot_per_class(C: np.ndarray, title: str, path: Path) -> None:
    """Per-class accuracy (recall) from a confusion matrix, with each class's count."""
    fig = figure("per_class")
    ax = fig.subplots()
    n = C.sum(axis=1)
    acc = np.divide(np.diag(C), n, out=np.zeros(len(n)), where=n > 0)
    k = len(n)
    ax.barh(range(k), acc, color=COLORS["bar"])
    # zoom on where the bars differ (the label says the axis does not start at 0); every bar
    # keeps at least 0.05 of the axis, room for its value written inside it
    lo = max(0.0, np.floor((acc[n > 0].min() if (n > 0).any() else 0) * 20) / 20 - 0.05)
    for i in range(k):
        ax.text(acc[i], i, f"{acc[i]:.3f} ", va="center", ha="right", fontsize=8, color="white")
    ax.set_xlim(lo, 1.0)
    ax.set_yticks(range(k), [f"{i} (n={n[i]})" for i in range(k)])
    ax.invert_yaxis()
    ax.set_xlabel("accuracy on the class" + (f"  (axis starts at {lo:.2f})" if lo > 0 else ""))
    ax.set_title(title)
    ax.grid(axis="y", visible=False)
    save_png(fig, path)


def plot_calibration(proba: np.ndarray, y: np.ndarray, title: str, path: Path) -> float:
    """Reliability diagram (top) and confidence histogram (bottom). Returns the ECE."""
    conf, acc, count, ece = reliability(proba, y)
    fig = figure("calibration")
    ax, ax_n = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    edges = np.linspace(0, 1, ECE_BINS + 1)
    width = edges[1] - edges[0]
    filled = count > 0
    ax.bar(
        edges[:-1][filled],
        acc[filled],
        width=width,
        align="edge",
        color=COLORS["bar"],
        edgecolor="white",
        label="accuracy in bin",
    )
    # the gap from accuracy up (or down) to the bin's mean confidence: what ECE averages
    ax.bar(
        edges[:-1][filled],
        (conf - acc)[filled],
        bottom=acc[filled],
        width=width,
        align="edge",
        facecolor="none",
        edgecolor=COLORS["val"],
        hatch="///",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE = {ece:.4f}  ({ECE_BINS} bins)")
    fig.legend(loc="outside upper center", ncols=3, fontsize=8)  # outside: never hides a bar
    ax_n.bar(edges[:-1], count, width=width, align="edge", color=COLORS["lr"], edgecolor="white")
    ax_n.set_yscale("symlog")
    ax_n.set_ylabel("images")
    ax_n.set_xlabel("confidence of the predicted class")
    save_png(fig, path)
    return ece


def grid_figsize(n: int) -> tuple[float, float]:
    """Size in inches of a worst-errors / disagreement grid of n tiles (n >= 1)."""
    rows = min(GRID[0], -(-n // GRID[1]))
    return GRID_WIDTH, GRID_TITLE + GRID_ROW * rows


def _digit_grid(
    kind: str,
    images: np.ndarray,
    titles: list[str],
    colors: list[str],
    suptitle: str,
    path: Path,
    shape: tuple[int, int] | None = None,
) -> None:
    """images: (n, 28, 28) uint8 or [0,1] float, n <= rows*cols; ink dark on white.

    Without `shape`: GRID's columns and as many rows as the tiles need (grid_figsize)."""
    if shape is None:
        from matplotlib.figure import Figure

        rows, cols = min(GRID[0], -(-len(images) // GRID[1])), GRID[1]
        fig = Figure(figsize=grid_figsize(len(images)), dpi=DPI, layout="constrained")
    else:
        rows, cols = shape
        fig = figure(kind)
    axes = fig.subplots(rows, cols, squeeze=False)
    vmax = 255 if images.dtype == np.uint8 else 1.0
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(images):
            ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=vmax)
            ax.set_title(titles[i], fontsize=8, color=colors[i], pad=2)
    fig.suptitle(suptitle)
    save_png(fig, path)


def plot_worst_errors(X, y, proba, title: str, path: Path) -> int:
    """The most confident mistakes, most confident first. Returns how many errors there are."""
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    conf = proba[wrong, pred[wrong]]
    # stable sort: ties keep split order, so the grid is the same every time
    order = wrong[np.argsort(-conf, kind="stable")][: GRID[0] * GRID[1]]
    if len(order):
        titles = [f"true {y[i]} → {pred[i]}\n{proba[i, pred[i]]:.1%} sure" for i in order]
        _digit_grid(
            "errors",
            X[order],
            titles,
            [COLORS["bad"]] * len(order),
            f"{title}: most confident validation errors ({len(wrong)} in all)",
            path,
        )
    return len(wrong)


def plot_disagreement(
    X, y, ens_proba, member_preds: np.ndarray, names: list[str], title: str, path: Path
) -> int:
    """Images where the members' predicted classes differ, least agreement first.

    member_preds: (n_members, n_val) int. Returns how many images the members disagree on.
    """
    ens = ens_proba.argmax(axis=1)
    agree = np.array([Counter(col).most_common(1)[0][1] for col in member_preds.T])
    split = np.flatnonzero(agree < len(member_preds))
    order = split[np.lexsort((ens_proba[split, ens[split]], agree[split]))][: GRID[0] * GRID[1]]
    if len(order):
        titles = []
        for i in order:
            # each member's vote in member order while that fits a tile; counts beyond
            votes = (
                " ".join(str(c) for c in member_preds[:, i])
                if len(member_preds) <= VOTES_LISTED
                else " ".join(f"{c}×{n}" for c, n in Counter(member_preds[:, i]).most_common())
            )
            titles.append(f"true {y[i]}, ens {ens[i]}\nvotes {votes}")
        colors = [COLORS["ok"] if ens[i] == y[i] else COLORS["bad"] for i in order]
        _digit_grid(
            "disagree",
            X[order],
            titles,
            colors,
            f"{title}: members disagree on {len(split)} images (green: ensemble right, red: wrong)",
            path,
        )
    return len(split)


def plot_augment(X: np.ndarray, aug: np.ndarray, path: Path) -> None:
    """X: (n, 28, 28) uint8 originals; aug: (n, V, 28, 28) float32 [0, 1] augmented copies."""
    n, V = aug.shape[:2]
    images = np.concatenate([X[:, None].astype(np.float32) / 255, aug], axis=1).reshape(-1, 28, 28)
    titles = [
        ("original" if j == 0 else f"aug {j}") if i == 0 else "" for i in range(n) for j in range(V + 1)
    ]
    _digit_grid(
        "augment",
        images,
        titles,
        ["black"] * len(titles),
        "one validation image per digit, then augmented copies",
        path,
        shape=(n, V + 1),
    )


# ----------------------------------------------------------------------------- the page's context

# The page is kit/templates/report.html.j2; the functions below only gather what it shows into
# plain dicts of text and numbers. Autoescape: a run name, note or ledger message is text, never
# markup, wherever it lands in the page.
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("kit", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt key is an error, not an empty cell
    trim_blocks=True,  # these three: the template's lines are the page's lines
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
PAGE = "report.html.j2"


def _img(name: str, size: str | tuple[float, float], alt: str) -> dict:
    """An image with its pixel size (a FIGSIZE kind or inches), so the page lays out before it loads."""
    w, h = (round(s * DPI) for s in (FIGSIZE[size] if isinstance(size, str) else size))
    return {"src": name, "width": w, "height": h, "alt": alt}


def _table(
    header: list[str], rows: list[list], num: set[int] = frozenset(), wrap: set[int] = frozenset()
) -> dict:
    """Cells stay on one line except columns in `wrap`; `num` columns align right."""
    return {"header": header, "rows": rows, "num": set(num), "wrap": set(wrap)}


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


# ----------------------------------------------------------------------------- sections


def _run_section(v: RunView, val: ValData | None, out: Path) -> dict:
    name = v.run.name
    usable = _check_split(v, val)  # first: its notes belong at the top with the others
    section = {"slug": v.slug, "name": name, "path": str(v.run.path), "notes": list(v.notes)}
    section |= {"curves": None, "validation": None, "augment": None}
    if not v.history.empty:
        f = f"{v.slug}-curves.png"
        plot_curves(v.history, f"{name}: training curves", out / f)
        section["curves"] = _img(f, "curves", f"training curves of {name}")
    if usable:
        section["validation"] = _validation(v, val, out)
    if v.model == "cnn":
        section["augment"] = _augment(v, val, out)
    return section


def _validation(v: RunView, val: ValData, out: Path) -> dict:
    """Confusion, per-class accuracy, calibration, worst errors, member disagreement."""
    name = v.run.name
    P, y, X = v.val_proba, val.y, val.X
    C = confusion(y, P.argmax(axis=1))
    acc = metrics.accuracy(P, y)
    f_cm, f_pc, f_cal = f"{v.slug}-confusion.png", f"{v.slug}-per-class.png", f"{v.slug}-calibration.png"
    plot_confusion(C, f"{name}: validation confusion ({len(y)} images, accuracy {acc:.4f})", out / f_cm)
    plot_per_class(C, "per-class accuracy", out / f_pc)
    ece = plot_calibration(P, y, "calibration", out / f_cal)
    f_err = f"{v.slug}-errors.png"
    n_wrong = plot_worst_errors(X, y, P, name, out / f_err)
    members = v.config.get("members")
    return {
        "confusion": _img(f_cm, "confusion", f"confusion matrix of {name}"),
        "ece": f"{ece:.4f}",
        "per_class": _img(f_pc, "per_class", f"per-class accuracy of {name}"),
        "calibration": _img(f_cal, "calibration", f"reliability diagram of {name}"),
        "n_wrong": n_wrong,
        "n_val": len(y),
        "errors": _img(f_err, grid_figsize(n_wrong), f"most confident errors of {name}") if n_wrong else None,
        "disagreement": _disagreement(v, members, val, out) if members else None,
    }


def _disagreement(v: RunView, members: list[str], val: ValData, out: Path) -> dict:
    """Notes on members that cannot be compared; with two or more that can, their table, the
    order of their votes and the grid of images they disagree on (None if they never do)."""
    preds, names, notes = [], [], []
    for ref in members:
        try:
            m = runs.resolve(ref)
            runs.require_run(m, finished=False)
        except KitError as e:
            notes.append(f"member {ref}: {e}")
            continue
        p = m.path / runs.VAL_PROBA
        if not p.exists():
            notes.append(f"member {m.name} has no {runs.VAL_PROBA}")
            continue
        P = m.val_proba()
        if P.shape != v.val_proba.shape:
            notes.append(f"member {m.name}: {runs.VAL_PROBA} shape {P.shape} ≠ {v.val_proba.shape}")
            continue
        preds.append(P.argmax(axis=1))
        names.append(m.name)
    if len(preds) < 2:
        notes.append("fewer than two members with validation predictions: nothing to compare")
        return {"notes": notes, "members": None}
    f = f"{v.slug}-disagree.png"
    n = plot_disagreement(val.X, val.y, v.val_proba, np.stack(preds), names, v.run.name, out / f)
    return {
        "notes": notes,
        "members": _members_table(v, names),
        "order": "in this order" if len(names) <= VOTES_LISTED else "(vote counts: class×members)",
        "names": names,
        "image": _img(f, grid_figsize(n), f"images where members of {v.run.name} disagree") if n else None,
    }


def _members_table(v: RunView, names: list[str]) -> dict:
    """Each member's ensemble weight (weights.json) and validation accuracy (metrics.json)."""
    from kit.ensemble import WEIGHTS

    try:
        weights = read_json(v.run.path / WEIGHTS).get("weights", {})
    except KitError:
        weights = {}
    accs = v.metrics.get("member_val_accuracy", {})
    fmt = lambda x: "—" if x is None else f"{float(x):.4f}"  # noqa: E731
    return _table(
        ["member", "weight", "val accuracy"],
        [[n, fmt(weights.get(n)), fmt(accs.get(n))] for n in names],
        num={1, 2},
    )


def _augment(v: RunView, val: ValData | None, out: Path) -> dict:
    """The CNN's own augmentation pipeline, with this run's settings, on one validation image
    per digit: to see at a glance that what the network trains on still looks like digits."""
    if val is None:
        return {"note": "no validation images installed: cannot show augmentation"}
    try:
        from kit import models
        from kit.models import cnn_input
    except ImportError as e:
        return {"note": f"augmentation samples unavailable ({e})"}
    try:
        cfg = models.get("cnn").run_config(v.run.config)
    except KitError as e:  # a hand-edited config.json: say so, show the rest of the report
        return {"note": f"augmentation samples unavailable ({e})"}
    # the first validation image of each digit, in split order (deterministic)
    idx = [int(np.flatnonzero(val.y == d)[0]) for d in range(config.N_CLASSES) if (val.y == d).any()]
    X = val.X[idx]
    aug = np.asarray(cnn_input.augmented_examples(X, AUGMENT_VARIANTS, AUGMENT_SEED, cfg))
    assert aug.shape == (len(idx), AUGMENT_VARIANTS, 28, 28), aug.shape
    f = f"{v.slug}-augment.png"
    plot_augment(X, aug, out / f)
    return {
        "note": None,
        "rotation": f"{cfg.rotation:g}",
        "zoom": f"{cfg.zoom:g}",
        "shift": f"{cfg.shift:g}",
        "augmented": bool(cfg.augment),
        "image": _img(f, "augment", f"augmented samples of {v.run.name}"),
    }


def _leaderboard(out: Path) -> dict:
    """The ledger's chart and table; notes instead where there is nothing (yet) to show."""
    lb = {"image": None, "notes": [], "table": None}
    try:
        from kit import ledger

        df = ledger.read_all()
    except KitError as e:
        return lb | {"notes": [f"cannot read the submission ledger: {e}"]}
    if df.empty:
        no_rows = (
            f"no submissions yet ({config.ledger_path()} is empty or missing): `kit submit` records them"
        )
        return lb | {"notes": [no_rows]}
    plot_leaderboard(df, out / "leaderboard.png")
    lb["image"] = _img("leaderboard.png", "leaderboard", "validation accuracy vs public score")
    if df["public_score"].isna().all():
        lb["notes"].append("no public scores yet: `kit scores --sync` fetches them")
    rows = []
    for _, r in df.iterrows():
        try:
            run_names = ", ".join(json.loads(r["runs"] or "[]"))
        except (TypeError, json.JSONDecodeError):
            run_names = str(r["runs"])
        fmt = lambda x: "—" if x is None or x != x else f"{float(x):.5f}"  # noqa: E731 (x != x: NaN)
        created = str(r["created_utc"] or "")[:16].replace("T", " ")  # minutes are enough to read
        rows.append(
            [
                r["id"],
                created,
                r["message"] or "",
                run_names,
                fmt(r["val_accuracy"]),
                fmt(r["public_score"]),
                r["status"],
            ]
        )
    header = ["#", "created (UTC)", "message", "runs", "val accuracy", "public score", "status"]
    lb["table"] = _table(header, rows, num={4, 5}, wrap={2, 3})
    return lb


# ----------------------------------------------------------------------------- build


def _out_dir(out: Path | None) -> Path:
    """`out` if it is new or an empty folder; by default a new, empty reports/<UTC stamp>/,
    claimed now (-2, -3, ... when other reports took this second)."""
    if out is not None:
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise KitError(f"{out} already exists and is not an empty folder; choose another --out")
        return out
    root = config.reports_dir()
    root.mkdir(parents=True, exist_ok=True)

    def claim(name: str) -> Path:
        (root / name).mkdir()  # atomic: of two reports started in the same second, one gets it
        return root / name

    return free_name(claim, utc_stamp())


def _views(run_refs: list | None) -> list[RunView]:
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


def build(run_refs: list | None = None, out: Path | None = None) -> Path:
    """Write the report for `run_refs` (paths, run names or model names; default: the latest
    finished run of each model) into `out` (default reports/<UTC stamp>/). Returns index.html."""
    import matplotlib

    views = _views(run_refs)  # before any work or any folder is made
    chosen_out, out = out is not None, _out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        val, val_note = (None, None)
        if any(v.val_proba is not None for v in views) or _wants_augment(views):
            val, val_note = _load_val()
        with matplotlib.rc_context(STYLE):
            context = _context(out.name, views, val, val_note, tmp)
        (tmp / "index.html").write_text(TEMPLATES.get_template(PAGE).render(context), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a report is meant to be shared
        out = _move(tmp, out, chosen_out)
    except BaseException:
        if not chosen_out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # the name we claimed: nothing of a failed report stays
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out / "index.html"


def _move(tmp: Path, out: Path, chosen_out: bool) -> Path:
    """Rename the finished folder `tmp` onto the empty folder `out` (atomic); returns where it
    landed. Should the default folder have filled up meanwhile, the next free name is used."""
    try:
        os.replace(tmp, out)  # atomic; replaces only an empty folder
        return out
    except OSError as e:
        if not chosen_out and e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            out = _out_dir(None)
            os.replace(tmp, out)
            return out
        raise KitError(f"cannot write the report to {out}: {e.strerror}") from None


def _wants_augment(views: list[RunView]) -> bool:
    """A CNN run's section shows its augmentation (kit.models.cnn loads TensorFlow)."""
    return any(v.model == "cnn" for v in views)


def _context(name: str, views: list[RunView], val: ValData | None, val_note: str | None, out: Path) -> dict:
    """Everything the page shows, drawing its charts into `out` on the way."""
    return {
        "title": name,
        "competition": config.competition().slug,
        "generated": utc_iso(),
        "summary": _table(SUMMARY_HEADER, [summary_row(v) for v in views], num={3, 4, 5, 6, 7}),
        "val_note": val_note,
        "leaderboard": _leaderboard(out),
        "runs": [_run_section(v, val, out) for v in views],
    }
