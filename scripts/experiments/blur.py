"""The eval blur study: validation errors of trained CNN runs per blur strength b.

Reproduces docs/decisions.md, "The eval blur": each run's network (model.keras, its own config)
predicts the validation split with its images smoothed by the 3x3 kernel [b, 1-2b, b] in each
axis, for b = 0 (sharp), 0.15, 0.2, 0.25, 0.3, 1/3, then with 4 test-time augmentation passes on
top of the run's own blur. Nothing is trained; about a minute per run on a 2-core CPU.

    python scripts/experiments/blur.py RUN [RUN ...]          # run folders or names under runs/
    python scripts/experiments/blur.py --all                  # every finished CNN run
"""

from __future__ import annotations

import argparse
import dataclasses

import _common as c

BLURS = (0.0, 0.15, 0.2, 0.25, 0.3, 1 / 3)
TTA = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_cnn_runs(ap)
    args = ap.parse_args()
    runs = c.cnn_runs(ap, args)
    cnn = c.cnn()
    X, y, _ = c.validation(runs)
    rows = []
    for run in runs:
        cfg = c.cnn_config(run, augment=True)  # eval_blur only blurs for runs trained augmented
        net = cnn.inference_model(c.load_net(run))
        row = [run.name, f"{cfg.width}/{cfg.growth * cfg.width}"]
        for b in BLURS:
            row.append(c.errors(cnn.predict_proba(net, X, 0, dataclasses.replace(cfg, blur=b)), y))
        row.append(c.errors(cnn.predict_proba(net, X, TTA, cfg), y))
        rows.append(row)
    c.print_table(
        ["run", "filters", *(f"b = {b:.3g}" for b in BLURS), f"b = {cfg.blur:.3g} + {TTA} TTA"], rows
    )


if __name__ == "__main__":
    main()
