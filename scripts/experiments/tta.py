"""The test-time augmentation study: plain prediction against k augmented passes, per run.

Reproduces docs/decisions.md, "Test-time augmentation": each CNN run's network predicts the
validation split plainly (the shipped `--tta 0`), then averaged with k augmented passes, as
`--tta k` does, at the training augmentation's strength ("full") and at half of it ("half").
Deterministic per run (the passes draw from the run's seed). Nothing is trained; a pass over
the 4,200 validation images takes about a second on a 2-core CPU, so k = 8 for seven runs is
a few minutes.

    python scripts/experiments/tta.py RUN [RUN ...] [--k 1 2 4 8]
    python scripts/experiments/tta.py --all
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import _common as c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_cnn_runs(ap)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of augmented passes")
    args = ap.parse_args()
    runs = c.cnn_runs(ap, args)
    cnn = c.cnn()
    X, y, _ = c.validation(runs)
    results: dict[str, list[tuple[int, float]]] = {}
    for run in runs:
        cfg = c.cnn_config(run)
        net = cnn.inference_model(c.load_net(run))
        settings = [("plain", 0, cfg)]
        for strength, f in (("full", 1.0), ("half", 0.5)):
            weaker = dataclasses.replace(
                cfg, rotation=cfg.rotation * f, zoom=cfg.zoom * f, shift=cfg.shift * f
            )
            settings += [(f"{strength}, k = {k}", k, weaker) for k in args.k]
        for name, k, cfg_k in settings:
            p = cnn.predict_proba(net, X, k, cfg_k)
            results.setdefault(name, []).append((c.errors(p, y), c.log_loss(p, y)))
    c.print_table(
        ["prediction", f"errors per run ({', '.join(r.name for r in runs)})", "total", "mean val log-loss"],
        [
            [
                name,
                ", ".join(str(e) for e, _ in res),
                sum(e for e, _ in res),
                f"{np.mean([ll for _, ll in res]):.4f}",
            ]
            for name, res in results.items()
        ],
    )


if __name__ == "__main__":
    main()
