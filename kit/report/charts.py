"""Everything the report draws with matplotlib, in one style; `kit scores --plot` draws its
leaderboard chart here too.

    figure(kind) -> matplotlib Figure       # FIGSIZE[kind] inches at DPI, constrained layout
    save_png(fig, path)                     # a PNG whose bytes depend on the pixels only
    plot_leaderboard(df, path, title)       # validation accuracy vs public score, per submission
    plot_curves, plot_confusion, plot_per_class, plot_calibration   # one run's charts
    plot_worst_errors, plot_disagreement, plot_augment               # grids of digits (grid_figsize)

Every chart is drawn under matplotlib.rc_context(STYLE), with no randomness and no date in the
PNG, so the same inputs give byte-identical PNGs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from kit import metrics

DPI = 100
# (width, height) in inches of every chart; pixels = inches * DPI.
FIGSIZE = {
    "curves": (11.0, 4.0),
    "confusion": (11.0, 5.0),
    "per_class": (5.5, 4.0),
    "calibration": (5.5, 6.0),
    "augment": (7.2, 9.0),
    "leaderboard": (11.0, 4.0),
}
LEADERBOARD_TICKS = 16  # at most this many labelled submissions on the x axis
LEADERBOARD_TITLE = "submissions: validation accuracy vs public leaderboard score"
GRID = (4, 8)  # at most rows x columns tiles in the worst-errors and disagreement grids
GRID_WIDTH = 11.0  # their width; height = GRID_TITLE + GRID_ROW * rows used (inches)
GRID_ROW = 1.5
GRID_TITLE = 0.4
VOTES_LISTED = 6  # disagreement tiles list up to this many members' votes one by one

COLORS = {
    "train": "#1f77b4",
    "val": "#d62728",
    "lr": "#7f7f7f",
    "ok": "#2ca02c",
    "bad": "#d62728",
    "bar": "#4c72b0",
    "score": "#ff7f0e",
}
STYLE = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "image.interpolation": "nearest",
}
# No Software/date chunks: the PNG bytes depend on the pixels only.
PNG_METADATA = {"Software": None}


def figure(kind: str, **kw):
    """A Figure of FIGSIZE[kind] inches at DPI (kw: more Figure arguments)."""
    from matplotlib.figure import Figure

    # Figure without pyplot: no global state, no GUI backend, nothing left open.
    return Figure(figsize=FIGSIZE[kind], dpi=DPI, layout="constrained", **kw)


def save_png(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA)


def plot_leaderboard(df, path: Path, title: str = LEADERBOARD_TITLE) -> None:
    """df: the ledger (kit.ledger.COLUMNS), oldest first. Validation accuracy and public
    score per submission, in submission order (evenly spaced: a burst of submissions in
    one hour and a gap of a month both stay readable); ticks carry the UTC date.

    The one drawing of this chart: the report's leaderboard section and `kit scores --plot`
    (kit.ledger.plot). It applies STYLE itself, so it looks the same from both.
    """
    import matplotlib

    with matplotlib.rc_context(STYLE):
        _draw_leaderboard(df, path, title)


def _draw_leaderboard(df, path: Path, title: str) -> None:
    import pandas as pd

    fig = figure("leaderboard")
    ax = fig.subplots()
    x = np.arange(len(df))
    for col, label, color, marker in (
        ("val_accuracy", "validation accuracy", COLORS["train"], "o"),
        ("public_score", "public leaderboard score", COLORS["score"], "s"),
    ):
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        ok = ~np.isnan(v)
        if ok.any():
            ax.plot(x[ok], v[ok], marker=marker, markersize=6, color=color, label=label)
    step = max(1, int(np.ceil(len(df) / LEADERBOARD_TICKS)))
    when = [str(c or "")[:16].replace("T", "\n") for c in df["created_utc"]]
    ax.set_xticks(x[::step], [f"#{i}\n{w}" for i, w in zip(df["id"].iloc[::step], when[::step])])
    ax.set_xlim(-0.5, len(df) - 0.5)
    ax.set_xlabel("submission (#ledger id, created UTC)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="best")
    save_png(fig, path)


# ----------------------------------------------------------------------------- a run's charts


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
    conf, acc, count, ece = metrics.reliability(proba, y)
    fig = figure("calibration")
    ax, ax_n = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    edges = np.linspace(0, 1, metrics.ECE_BINS + 1)
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
    ax.set_title(f"{title}\nECE = {ece:.4f}  ({metrics.ECE_BINS} bins)")
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
