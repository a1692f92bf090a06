"""How steady this machine's speed is: the same training steps on the same batches, timed again and again.

Reproduces docs/decisions.md, "The seed spread" (why epoch times vary): the default CNN trains
on `--steps` batches drawn once from the kit's input pipeline and kept in memory, `--repeats`
times over; each timing's images/s is printed. On a machine whose speed is steady they agree
to a few per cent. Real data; about a minute on a 2-core CPU.

    python scripts/experiments/step_speed.py [--steps 80] [--repeats 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import _common as c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80, help="training steps per timing")
    ap.add_argument("--repeats", type=int, default=8, help="timings")
    args = ap.parse_args()
    import tensorflow as tf

    cnn = c.cnn()
    cfg = c.cnn_preset("default")
    cnn.setup(cfg)
    pipe = c.train_pipeline(cfg, cfg.seed)
    batches = [(xb.numpy(), yb.numpy()) for xb, yb in pipe.take(args.steps)]
    memory = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    ).batch(cfg.batch_size)
    model = cnn.build_model(cfg)
    cnn.compile_model(model, cfg)
    model.fit(memory.take(5), epochs=1, verbose=0, shuffle=False)  # trace and warm up
    rates = []
    for i in range(args.repeats):
        t = time.perf_counter()
        model.fit(memory, epochs=1, verbose=0, shuffle=False)
        rates.append(args.steps * cfg.batch_size / (time.perf_counter() - t))
        print(f"timing {i + 1}: {rates[-1]:,.0f} images/s")
    print(f"min {min(rates):,.0f}, max {max(rates):,.0f} images/s: max/min {max(rates) / min(rates):.2f}")


if __name__ == "__main__":
    main()
