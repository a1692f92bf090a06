"""Which diversity pays, judged out of fold.

Reproduces docs/decisions.md, "Ensembles judged out of fold" (its rules were written before
these runs).

    KIT_DATA_DIR=... KIT_RUNS_DIR=... python scripts/experiments/cv_diversity.py \
        [--folds 3] [--repeats 2] [--budget "--width 8 --epochs 3"] [--only folds,seeds]

Trains groups one after another (`kit train cnn --folds ...`, each in its own process, so one
variant's memory never carries into the next), then judges every variant on all labelled rows:
  seeds       --same-folds: a row's members differ by seed only
  folds       each repeat its own fold assignment (the reference)
  anchor      --preset anchor, the same folds
  two recipes folds + anchor, averaged
  blur off    the folds group's networks predicting their folds again with blur 0
  tta 4       ... and with 4 test-time augmentation passes
  pseudo      folds + --pseudo-labels <the folds group> --pseudo-threshold 0.99
Prints the table and writes docs/studies/cv-diversity-<UTC stamp>.json. Groups already trained
(same name in the state file, runs dir/cv-diversity.json) are reused: a cut-short study resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kit import config, data, ensemble, groups, models, runs
from kit.io import utc_stamp, write_json

ROOT = Path(__file__).resolve().parents[2]
TRAINED = ("folds", "seeds", "anchor", "pseudo")


def _train(label: str, args: list[str], state: dict, state_path: Path) -> str:
    """Train one group with `kit train cnn ARGS` (or reuse the one of a previous pass): its name."""
    if label in state:
        return state[label]["group"]
    before = {g.name for g in groups.all_groups()}
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "kit", "train", "cnn", *args, "--quiet"]
    print(f"[{label}] {shlex.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True, env=config.environment())
    (name,) = {g.name for g in groups.all_groups()} - before
    state[label] = {"group": name, "minutes": (time.perf_counter() - t0) / 60, "args": args}
    write_json(state_path, state)
    return name


def _repredict(group: groups.Group, X: np.ndarray, y: np.ndarray, **changes):
    """val_of(run) for ensemble.out_of_fold: a member's fold predicted again by its own network
    with its config's `changes` (prediction settings only: the weights are the trained ones)."""
    model = models.get(group.model)
    by_run = {m.run: m for m in group.members}

    def val_of(run: runs.Run) -> np.ndarray:
        cfg = dataclasses.replace(model.run_config(run.config), **changes)
        rows = groups.member_split(group, by_run[run.name], y).val_idx
        return model.module.predict(model.module.load(run, cfg), X[rows])

    return val_of


def _judge(gs: list[groups.Group], y: np.ndarray, val_of=runs.Run.val_proba) -> tuple[dict, np.ndarray]:
    oof, _, members = ensemble.out_of_fold(gs, y, val_of)
    p = oof.proba
    return {
        "oof_accuracy": float(np.mean(p.argmax(1) == y)),
        "oof_log_loss": float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))),
        "oof_errors": int(np.sum(p.argmax(1) != y)),
        "one_member_accuracy": oof.single_accuracy,
        "shared_error_share": oof.shared_error_share,
        "members": len(members),
        "members_per_row": int(oof.n_members.min()),
    }, p.argmax(1) != y


def _versus(wrong: np.ndarray, reference: np.ndarray) -> dict:
    """Errors saved against the reference (> 0: fewer), with the paired bootstrap interval."""
    d = reference.astype(np.float64) - wrong
    lo, hi = ensemble.bootstrap_interval(d, ensemble.EnsembleConfig())
    n = len(d)
    return {"errors_saved": float(d.sum()), "interval": [lo * n, hi * n], "beats_folds": bool(lo > 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--budget", default="--width 8 --epochs 3", help="options every recipe trains with")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.99, help="the pseudo-labels' threshold")
    ap.add_argument("--only", default=",".join(TRAINED), help="the trained variants to run")
    a = ap.parse_args()
    base = [
        "--folds",
        str(a.folds),
        "--repeats",
        str(a.repeats),
        "--seed",
        str(a.seed),
        *shlex.split(a.budget),
    ]
    state_path = config.runs_dir() / "cv-diversity.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    only = a.only.split(",")
    names = {}
    for label, extra in (
        ("folds", []),
        ("seeds", ["--same-folds"]),
        ("anchor", ["--preset", "anchor"]),
    ):
        if label in only:
            names[label] = _train(label, [*base, *extra], state, state_path)
    if "pseudo" in only and "folds" in names:
        pl = ["--pseudo-labels", names["folds"], "--pseudo-threshold", str(a.threshold)]
        names["pseudo"] = _train("pseudo", [*base, *pl], state, state_path)

    ds = data.load()
    y = ds.y_train.astype(np.int64)
    rows, wrongs = {}, {}
    for label, name in names.items():
        rows[label], wrongs[label] = _judge([groups.load(name)], y)
    if "folds" in names and "anchor" in names:
        rows["two recipes"], wrongs["two recipes"] = _judge(
            [groups.load(names[k]) for k in ("folds", "anchor")], y
        )
    if "folds" in names:
        g = groups.load(names["folds"])
        for label, changes in (("blur off", dict(blur=0.0)), ("tta 4", dict(tta=4))):
            t0 = time.perf_counter()
            rows[label], wrongs[label] = _judge([g], y, _repredict(g, ds.X_train, y, **changes))
            rows[label]["predict_minutes"] = (time.perf_counter() - t0) / 60
        for label in rows:
            rows[label]["vs_folds"] = _versus(wrongs[label], wrongs["folds"])
    for label, s in state.items():
        if label in rows:
            rows[label].update(group=s["group"], train_minutes=s["minutes"], args=s["args"])
    out = {
        "study": "cv-diversity",
        "budget": {"folds": a.folds, "repeats": a.repeats, "options": a.budget, "seed": a.seed},
        "cpu": _cpu(),
        "rows": rows,
    }
    path = ROOT / "docs" / "studies" / f"cv-diversity-{utc_stamp()}.json"
    write_json(path, out)
    _print(rows)
    print(f"written: {path}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"unknown x{os.cpu_count()}"


def _print(rows: dict) -> None:
    print(
        f"{'variant':12s} {'OOF acc':>8s} {'log-loss':>8s} {'errors':>6s} {'one':>7s} {'shared':>6s} "
        f"{'members':>7s} {'minutes':>7s}  vs folds"
    )
    for label, r in rows.items():
        v = r.get("vs_folds", {})
        vs = f"{v['errors_saved']:+.0f} [{v['interval'][0]:+.0f}, {v['interval'][1]:+.0f}]" if v else ""
        minutes = r.get("train_minutes", r.get("predict_minutes", 0.0))
        print(
            f"{label:12s} {r['oof_accuracy']:8.4f} {r['oof_log_loss']:8.4f} {r['oof_errors']:6d} "
            f"{r['one_member_accuracy']:7.4f} {r['shared_error_share']:6.0%} {r['members']:7d} {minutes:7.1f}  {vs}"
        )


if __name__ == "__main__":
    main()
