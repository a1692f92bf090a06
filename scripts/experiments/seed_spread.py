"""The seed spread: one configuration trained on several seeds, tabulated.

Reproduces docs/decisions.md, "The seed spread" (and the README's headline CNN result): per
run its seed, training time, time to 99.4 %, validation errors as trained (history.csv's last
epoch, before the batch-norm refresh) and as shipped (metrics.json), accuracy, log-loss and
first-call test inference; then the total and the spread. Reads only run folders (no
TensorFlow). With `--train` it first trains the seeds with `kit train MODEL --seed N`, one
after the other (the shipped CNN: about 18 min a seed alone on a 2-core CPU).

    python scripts/experiments/seed_spread.py --train 5 6 7 8 9             # train, then tabulate
    python scripts/experiments/seed_spread.py --train 1 2 --args "--preset reference"
    python scripts/experiments/seed_spread.py RUN [RUN ...]                 # runs trained before
    python scripts/experiments/seed_spread.py --all [--model scratch]       # every finished run
"""

from __future__ import annotations

import argparse
import csv
import shlex
import statistics

import _common as c


def minutes(s) -> str:
    return "—" if s is None else f"{s / 60:.1f} min"


def as_trained_errors(run, n_val: int) -> int | None:
    """Errors of the last epoch in history.csv (what training logged, before any refresh)."""
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    if not rows or not rows[-1].get("val_accuracy"):
        return None
    return round((1 - float(rows[-1]["val_accuracy"])) * n_val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="run folders or names")
    ap.add_argument("--model", default="cnn", help="the model to train or collect [cnn]")
    ap.add_argument("--train", type=int, nargs="+", metavar="SEED", help="train these seeds first")
    ap.add_argument("--args", default="", help='more `kit train` options, e.g. "--preset reference"')
    ap.add_argument("--all", action="store_true", help="every finished run of --model under runs/")
    args = ap.parse_args()
    runs = [c.run_dir(r) for r in args.runs]
    for seed in args.train or []:
        runs.append(c.kit_train(args.model, ["--seed", str(seed), *shlex.split(args.args)]))
    if args.all:
        runs += c.finished_runs(args.model)
    if not runs:
        ap.error("give runs, --train SEEDS or --all")
    rows, errs, accs = [], [], []
    for run in runs:
        m = c.read(run, "metrics.json")
        n_val, acc = m["n_val"], m["val_accuracy"]
        e = round((1 - acc) * n_val)
        errs.append(e)
        accs.append(acc)
        rows.append(
            [
                m.get("seed"),
                run.name,
                minutes(m.get("train_time_s")),
                minutes(m.get("time_to_99_4_s")),
                as_trained_errors(run, n_val),
                e,
                f"{100 * acc:.2f} %",
                f"{m['val_loss']:.4f}",
                f"{m['inference_s']:.2f} s" if m.get("inference_s") else "—",
            ]
        )
    c.print_table(
        [
            "seed",
            "run",
            "training",
            "time to 99.4 %",
            "errors as trained",
            "errors",
            "val accuracy",
            "val log-loss",
            "test inference (first call)",
        ],
        rows,
    )
    spread = f", standard deviation {statistics.stdev(errs):.1f}" if len(errs) > 1 else ""
    print(
        f"\n{len(runs)} runs: {sum(errs)} errors in all ({min(errs)}-{max(errs)} a run{spread}); "
        f"accuracy mean {100 * statistics.mean(accs):.2f} %, median {100 * statistics.median(accs):.2f} %; "
        f"{sum(a >= 0.996 for a in accs)} of {len(accs)} at or above 99.6 %"
    )


if __name__ == "__main__":
    main()
