"""The fused batch-norm against Keras's own, in one process, in alternating windows.

Reproduces docs/decisions.md, "Fused batch-norm, and what the time saved buys". A virtual
machine's speed swings by tens of percent from one minute to the next, so two settings timed one
after the other (as `make bench ARGS=throughput` does, a process each) can swap places. Here both
networks (the default, `--fused-bn` and `--no-fused-bn`) train in the same process on the kit's
own tf.data pipeline (shuffle, augmentation with the clean fraction, prefetch), taking turns:
--windows windows of --steps steps each, after a warm-up. Reported: images/s of each (best and
median) and the ratio of the medians, and the ratio window by window.

    python scripts/experiments/fused_bn_ab.py [--windows 8] [--steps 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import _common as c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    cnn = c.cnn()
    cfg = c.cnn_preset("default")
    cnn.setup(cfg)
    pipe = c.train_pipeline(cfg, 0).repeat()
    models = {}
    for name, fused in (("fused", True), ("keras", False)):
        model = cnn.build_model(dataclasses.replace(cfg, fused_bn=fused))
        cnn.compile_model(model, cfg)
        model.fit(pipe, epochs=1, steps_per_epoch=10, verbose=0)  # trace and warm
        models[name] = model
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.windows):
        for name, model in models.items():
            t = time.perf_counter()
            model.fit(pipe, epochs=1, steps_per_epoch=args.steps, verbose=0)
            rates[name].append(args.steps * cfg.batch_size / (time.perf_counter() - t))
    c.print_table(
        ["batch-norm", "images/s best", "median"],
        [[n, f"{max(r):,.0f}", f"{statistics.median(r):,.0f}"] for n, r in rates.items()],
    )
    pairs = [f / k for f, k in zip(rates["fused"], rates["keras"], strict=True)]
    print(
        f"\nfused / keras: {statistics.median(rates['fused']) / statistics.median(rates['keras']):.2f}x "
        f"(medians); window by window {min(pairs):.2f}-{max(pairs):.2f}x, "
        f"fused faster in {sum(p > 1 for p in pairs)} of {len(pairs)}"
    )


if __name__ == "__main__":
    main()
