"""The default CNN against variants of its config, in one process, in alternating windows.

Reproduces docs/decisions.md, "Fused batch-norm, and what the time saved buys" and
"Width in the time left, and one resampling". A virtual machine's speed swings by tens of percent from one minute to the
next, so two settings timed one after the other (as `make bench ARGS=throughput` does, a process
each) can swap places. Here the default and each variant train in the same process on the kit's
own tf.data pipeline (shuffle, augmentation with the clean fraction, prefetch), taking turns:
--windows rounds of --steps steps each, after a warm-up. Reported: images/s of each (best and
median), each variant's ratio to the default (of the medians, and window by window), and the
28-epoch training time the ratio implies from --minutes, the default's.

    python scripts/experiments/speed_ab.py fused_bn=false             # Keras's batch-norm
    python scripts/experiments/speed_ab.py growth=5 width=20 --minutes 12
    python scripts/experiments/speed_ab.py "width=24 batch_size=128"  # one variant, two fields
    python scripts/experiments/speed_ab.py --xla                      # the default under XLA
    python scripts/experiments/speed_ab.py --bf16                     # bfloat16 compute

--bf16 adds the default built under Keras's "mixed_bfloat16" policy (bfloat16 compute, float32
weights), for CPUs with AVX-512 BF16 (oneDNN's bfloat16 kernels); the kit has no option for it.
--xla adds the default compiled by XLA (`jit_compile=True`). Keras refuses XLA while TensorFlow's
op determinism is on (the kit turns it on for reproducible runs), so --xla turns it off for the
whole process, the default's timing included: a speed measurement only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import _common as c


def variant(spec: str) -> dict:
    """'width=24 batch_size=128' -> {'width': 24, 'batch_size': 128} (values as JSON, else text)."""
    fields = {}
    for item in spec.split():
        key, _, value = item.partition("=")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
    return fields


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", help="config fields to change, e.g. growth=5")
    ap.add_argument("--xla", action="store_true", help="also the default under XLA (jit_compile=True)")
    ap.add_argument("--bf16", action="store_true", help="also the default in bfloat16 (mixed_bfloat16)")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--minutes", type=float, help="the default's 28-epoch training time, to project from")
    args = ap.parse_args()
    cnn = c.cnn()
    base = c.cnn_preset("default")
    cnn.setup(base)
    if args.xla:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    pipes, models = {}, {}
    keras = cnn._keras()
    for name in ["default", *args.variants, *(["xla"] if args.xla else []), *(["bf16"] if args.bf16 else [])]:
        cfg = base if name in ("default", "xla", "bf16") else dataclasses.replace(base, **variant(name))
        pipe = pipes.setdefault(cfg.batch_size, c.train_pipeline(cfg, 0).repeat())
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if name == "bf16" else "float32")
        model = cnn.build_model(cfg)
        cnn.compile_model(model, cfg)
        keras.mixed_precision.set_global_policy("float32")
        if name == "xla":
            model.jit_compile = True
            assert model.jit_compile, "Keras refused XLA for this model"
        model.fit(pipe, epochs=1, steps_per_epoch=10, verbose=0)  # trace and warm
        models[name] = (model, pipe, cfg.batch_size)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.windows):
        for name, (model, pipe, batch) in models.items():
            t = time.perf_counter()
            model.fit(pipe, epochs=1, steps_per_epoch=args.steps, verbose=0)
            rates[name].append(args.steps * batch / (time.perf_counter() - t))
    base_rate = statistics.median(rates["default"])
    rows = []
    for name, r in rates.items():
        ratio = statistics.median(r) / base_rate
        pairs = [v / d for v, d in zip(r, rates["default"], strict=True)]
        by_window = [f"{min(pairs):.2f}-{max(pairs):.2f}x", f"{sum(p > 1 for p in pairs)} of {len(pairs)}"]
        rows.append(
            [
                name,
                f"{max(r):,.0f}",
                f"{statistics.median(r):,.0f}",
                f"{ratio:.2f}x",
                *(by_window if name != "default" else ["", ""]),
                f"{args.minutes / ratio:.1f} min" if args.minutes else "",
            ]
        )
    c.print_table(
        ["config", "images/s best", "median", "/ default", "window by window", "faster in", "28 epochs"], rows
    )


if __name__ == "__main__":
    main()
