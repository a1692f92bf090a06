"""The charts' one style, and the leaderboard chart that `kit report` and `kit scores --plot` both draw.

    figure(kind) -> matplotlib Figure       # FIGSIZE[kind] inches at DPI, constrained layout
    save_png(fig, path)                     # a PNG whose bytes depend on the pixels only
    plot_leaderboard(df, path, title)       # validation accuracy vs public score, per submission

Every chart is drawn under matplotlib.rc_context(STYLE), with no randomness and no date in the
PNG, so the same inputs give byte-identical PNGs. kit.report draws the other charts with these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
