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

The runs come from kit.report.views, the charts from kit.report.charts; this module gathers
what the page shows into the context of the template templates/report.html.j2. The report is
written into a temporary folder and renamed into place: a crash never leaves half a report.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import jinja2
import numpy as np

from kit import config, ensemble, ledger, metrics, models, runs
from kit.errors import KitError
from kit.io import free_name, read_json, utc_iso, utc_stamp
from kit.models.cnn import layers
from kit.report import charts, views

AUGMENT_VARIANTS = 7  # augmented copies shown beside each original
AUGMENT_SEED = 0  # fixed, so the augmentation grid is the same every time

# ----------------------------------------------------------------------------- the page's context

# The page is kit/report/templates/report.html.j2; the functions below only gather what it shows into
# plain dicts of text and numbers. Autoescape: a run name, note or ledger message is text, never
# markup, wherever it lands in the page.
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("kit.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt key is an error, not an empty cell
    trim_blocks=True,  # these three: the template's lines are the page's lines
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
PAGE = "report.html.j2"


def _img(name: str, size: str | tuple[float, float], alt: str) -> dict:
    """An image with its pixel size (a FIGSIZE kind or inches), so the page lays out before it loads."""
    w, h = (round(s * charts.DPI) for s in (charts.FIGSIZE[size] if isinstance(size, str) else size))
    return {"src": name, "width": w, "height": h, "alt": alt}


def _table(
    header: list[str], rows: list[list], num: set[int] = frozenset(), wrap: set[int] = frozenset()
) -> dict:
    """Cells stay on one line except columns in `wrap`; `num` columns align right."""
    return {"header": header, "rows": rows, "num": set(num), "wrap": set(wrap)}


# ----------------------------------------------------------------------------- sections


def _run_section(v: views.RunView, val: views.ValData | None, out: Path) -> dict:
    name = v.run.name
    val = views.rows_judged(v, val)
    usable = views.check_split(v, val)  # first: its notes belong at the top with the others
    section = {"slug": v.slug, "name": name, "path": str(v.run.path), "notes": list(v.notes)}
    section |= {"curves": None, "validation": None, "augment": None}
    if not v.history.empty:
        f = f"{v.slug}-curves.png"
        charts.plot_curves(v.history, f"{name}: training curves", out / f)
        section["curves"] = _img(f, "curves", f"training curves of {name}")
    if usable:
        section["validation"] = _validation(v, val, out)
    if v.model == "cnn":
        section["augment"] = _augment(v, val, out)
    return section


def _validation(v: views.RunView, val: views.ValData, out: Path) -> dict:
    """Confusion, per-class accuracy, calibration, worst errors, member disagreement."""
    name = v.run.name
    P, y, X = v.val_proba, val.y, val.X
    C = metrics.confusion(y, P.argmax(axis=1))
    acc = metrics.accuracy(P, y)
    f_cm, f_pc, f_cal = f"{v.slug}-confusion.png", f"{v.slug}-per-class.png", f"{v.slug}-calibration.png"
    charts.plot_confusion(
        C, f"{name}: validation confusion ({len(y)} images, accuracy {acc:.4f})", out / f_cm
    )
    charts.plot_per_class(C, "per-class accuracy", out / f_pc)
    ece = charts.plot_calibration(P, y, "calibration", out / f_cal)
    f_err = f"{v.slug}-errors.png"
    n_wrong = charts.plot_worst_errors(X, y, P, name, out / f_err)
    # a group's members predict their own folds only: no row has every member's vote
    members = None if views.out_of_fold(v) else v.config.get("members")
    return {
        "confusion": _img(f_cm, "confusion", f"confusion matrix of {name}"),
        "ece": f"{ece:.4f}",
        "per_class": _img(f_pc, "per_class", f"per-class accuracy of {name}"),
        "calibration": _img(f_cal, "calibration", f"reliability diagram of {name}"),
        "n_wrong": n_wrong,
        "n_val": len(y),
        "errors": _img(f_err, charts.grid_figsize(n_wrong), f"most confident errors of {name}")
        if n_wrong
        else None,
        "disagreement": _disagreement(v, members, val, out) if members else None,
    }


def _disagreement(v: views.RunView, members: list[str], val: views.ValData, out: Path) -> dict:
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
    n = charts.plot_disagreement(val.X, val.y, v.val_proba, np.stack(preds), names, v.run.name, out / f)
    return {
        "notes": notes,
        "members": _members_table(v, names),
        "order": "in this order" if len(names) <= charts.VOTES_LISTED else "(vote counts: class×members)",
        "names": names,
        "image": _img(f, charts.grid_figsize(n), f"images where members of {v.run.name} disagree")
        if n
        else None,
    }


def _members_table(v: views.RunView, names: list[str]) -> dict:
    """Each member's ensemble weight (weights.json) and validation accuracy (metrics.json)."""
    try:
        weights = read_json(v.run.path / ensemble.WEIGHTS).get("weights", {})
    except KitError:
        weights = {}
    accs = v.metrics.get("member_val_accuracy", {})
    fmt = lambda x: "—" if x is None else f"{float(x):.4f}"  # noqa: E731
    return _table(
        ["member", "weight", "val accuracy"],
        [[n, fmt(weights.get(n)), fmt(accs.get(n))] for n in names],
        num={1, 2},
    )


def _augment(v: views.RunView, val: views.ValData | None, out: Path) -> dict:
    """The CNN's own augmentation pipeline, with this run's settings, on one validation image
    per digit: to see at a glance that what the network trains on still looks like digits."""
    if val is None:
        return {"note": "no validation images installed: cannot show augmentation"}
    try:
        cfg = models.get("cnn").run_config(v.run.config)
    except KitError as e:  # a hand-edited config.json: say so, show the rest of the report
        return {"note": f"augmentation samples unavailable ({e})"}
    # the first validation image of each digit, in split order (deterministic)
    idx = [int(np.flatnonzero(val.y == d)[0]) for d in range(config.N_CLASSES) if (val.y == d).any()]
    X = val.X[idx]
    aug = np.asarray(layers.augmented_examples(X, AUGMENT_VARIANTS, AUGMENT_SEED, cfg))
    assert aug.shape == (len(idx), AUGMENT_VARIANTS, 28, 28), aug.shape
    f = f"{v.slug}-augment.png"
    charts.plot_augment(X, aug, out / f)
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
        df = ledger.read_all()
    except KitError as e:
        return lb | {"notes": [f"cannot read the submission ledger: {e}"]}
    if df.empty:
        no_rows = (
            f"no submissions yet ({config.ledger_path()} is empty or missing): `kit submit` records them"
        )
        return lb | {"notes": [no_rows]}
    charts.plot_leaderboard(df, out / "leaderboard.png")
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


def build(run_refs: list | None = None, out: Path | None = None) -> Path:
    """Write the report for `run_refs` (paths, run names or model names; default: the latest
    finished run of each model) into `out` (default reports/<UTC stamp>/). Returns index.html."""
    import matplotlib  # lazy: `kit --help` and the other commands need none of it

    chosen = views.load(run_refs)  # before any work or any folder is made
    chosen_out, out = out is not None, _out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        val, val_note = (None, None)
        if any(v.val_proba is not None for v in chosen) or _wants_augment(chosen):
            val, val_note = views.load_val()
        with matplotlib.rc_context(charts.STYLE):
            context = _context(out.name, chosen, val, val_note, tmp)
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


def _wants_augment(chosen: list[views.RunView]) -> bool:
    """A CNN run's section shows its augmentation (kit.models.cnn loads TensorFlow)."""
    return any(v.model == "cnn" for v in chosen)


def _context(
    name: str, chosen: list[views.RunView], val: views.ValData | None, val_note: str | None, out: Path
) -> dict:
    """Everything the page shows, drawing its charts into `out` on the way."""
    return {
        "title": name,
        "competition": config.competition().slug,
        "generated": utc_iso(),
        "summary": _table(views.SUMMARY_HEADER, [views.summary_row(v) for v in chosen], num={3, 4, 5, 6, 7}),
        "val_note": val_note,
        "leaderboard": _leaderboard(out),
        "runs": [_run_section(v, val, out) for v in chosen],
    }
