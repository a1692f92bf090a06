"""The first-block width study: the cost and the accuracy of each filter count.

Reproduces docs/decisions.md, "The default network's widths". For each (first block, second
block) filter pair it builds the default network and reports its parameters, multiply-adds
per image and the seconds to predict the 28,000 test images with batch-norm folded (untrained
weights: weights do not change the time; best of `--repeats`, after a warm-up). With `--train`
it also trains each with `kit train cnn --width W --growth G` (about 18 min each alone on a
2-core CPU) and scores the runs like blur.py: errors on sharp images, with the eval blur, and
with 4 TTA passes on top.

    python scripts/experiments/widths.py                          # 32/64 16/48 24/48 16/64, timing only
    python scripts/experiments/widths.py --pairs 16/64 24/48 --train --seed 1 --epochs 30
    python scripts/experiments/widths.py --runs RUN [RUN ...]     # score runs trained before
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import _common as c

PAIRS = ("32/64", "16/48", "24/48", "16/64")


def timing(cfg, X_test, repeats: int) -> float:
    cnn = c.cnn()
    net = cnn.inference_model(cnn.build_model(cfg))
    cnn.predict_proba(net, X_test[:2048], 0, cfg)  # trace once
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        cnn.predict_proba(net, X_test, 0, cfg)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", nargs="+", default=list(PAIRS), help="first/second block filters, e.g. 16/64")
    ap.add_argument("--repeats", type=int, default=2, help="timed predictions per pair (best kept)")
    ap.add_argument("--train", action="store_true", help="also train each pair with kit train cnn")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="[the default preset's]")
    ap.add_argument("--runs", nargs="*", default=[], help="score these CNN runs (instead of --pairs)")
    args = ap.parse_args()
    cnn = c.cnn()
    ds, _ = c.split()
    base = c.cnn_preset("default")
    cnn.setup(base)
    if args.runs:
        runs = [c.run_dir(r) for r in args.runs]
        pairs = [(c.cnn_config(r).width, c.cnn_config(r).growth * c.cnn_config(r).width) for r in runs]
    else:
        pairs = [tuple(int(x) for x in p.split("/")) for p in args.pairs]
        runs = [None] * len(pairs)
    rows = []
    for (w1, w2), run in zip(pairs, runs):
        if w2 % w1:
            raise SystemExit(f"{w1}/{w2}: the second block must be a multiple of the first (--growth)")
        cfg = dataclasses.replace(base, width=w1, growth=w2 // w1)
        model = cnn.build_model(cfg)
        row = [
            f"{w1} / {w2}",
            f"{model.count_params():,}",
            f"{cnn.multiply_adds(model) / 1e6:.1f}M",
            f"{timing(cfg, ds.X_test, args.repeats):.2f} s",
        ]
        if args.train and run is None:
            extra = ["--epochs", str(args.epochs)] if args.epochs else []
            run = c.kit_train(
                "cnn", ["--width", str(w1), "--growth", str(w2 // w1), "--seed", str(args.seed), *extra]
            )
        if run is not None:
            X, y, _ = c.validation([run])
            cfg_run = c.cnn_config(run, augment=True)
            net = cnn.inference_model(c.load_net(run))
            row += [run.name, f"{c.read(run, 'metrics.json')['train_time_s'] / 60:.1f} min"]
            row += [
                c.errors(cnn.predict_proba(net, X, tta, dataclasses.replace(cfg_run, blur=b)), y)
                for b, tta in ((0.0, 0), (cfg_run.blur, 0), (cfg_run.blur, 4))
            ]
        rows.append(row)
    head = ["filters", "params", "multiply-adds / image", "test inference (folded, untrained)"]
    if any(len(r) > 4 for r in rows):
        head += ["run", "training", "errors, sharp", "errors, eval blur", "+ 4 TTA passes"]
    c.print_table(head, [r + [""] * (len(head) - len(r)) for r in rows])


if __name__ == "__main__":
    main()
