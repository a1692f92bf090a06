"""Where a training step of the default CNN spends its time, layer by layer (TensorFlow, CPU).

Reproduces docs/decisions.md, "Where the step's time goes". For one batch of real training
images (batch 64 unless --batch), each layer of the default network is timed alone: forward in
training mode plus the backward pass (gradients for its input and its weights), compiled with
tf.function, median of --reps calls. Beside them: the optimizer's update of every weight (Adam),
the augmentation of one batch (what tf.data runs beside the step), and the whole step as
`model.train_on_batch` runs it. The share is of the sum of the parts; the layers' GFLOP/s are
against the matmul peak measured in the same process.

    python scripts/experiments/step_profile.py [--batch 64] [--reps 30] [--keras-bn]

`--keras-bn`: Keras's own batch-norm (`--no-fused-bn`) instead of the fused kernel.
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common as c


def median_s(fn, reps: int) -> float:
    fn()  # trace and warm
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--keras-bn", action="store_true", help="Keras's batch-norm, not the fused kernel")
    args = ap.parse_args()
    cnn = c.cnn()
    cfg = c.cnn_preset("default", batch_size=args.batch, fused_bn=not args.keras_bn)
    cnn.setup(cfg)
    tf = c.tf()
    keras = cnn._keras()
    aug = cnn.augmentation(cfg)
    xb, yb = next(iter(c.train_pipeline(cfg, 0, rows=args.batch)))
    model = cnn.build_model(cfg)
    cnn.compile_model(model, cfg)

    a = tf.random.uniform((2048, 2048))
    peak = 2 * 2048**3 / min(median_s(lambda: tf.linalg.matmul(a, a).numpy(), 5) for _ in range(2)) / 1e9

    rows, x = [], xb
    for layer in model.layers[1:]:
        x_in = tf.constant(x)

        @tf.function
        def fwd_bwd(x_in=x_in, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x_in)
                out = layer(x_in, training=True)
            grads = tape.gradient(out, [x_in, *layer.trainable_weights])
            return out, grads

        seconds = median_s(lambda f=fwd_bwd: [g.numpy() for g in f()[1] if g is not None], args.reps)
        macs = cnn.layer_multiply_adds(layer) * args.batch
        rows.append([layer.name, type(layer).__name__, str(tuple(layer.output.shape[1:])), macs, seconds])
        x = layer(x_in, training=True)

    grads = [tf.random.normal(w.shape) * 1e-6 for w in model.trainable_weights]
    opt = keras.optimizers.Adam(1e-9)
    opt.build(model.trainable_weights)

    @tf.function
    def update():
        opt.apply(grads, model.trainable_weights)

    rows.append(["(optimizer)", "Adam update", "all weights", 0, median_s(update, args.reps)])

    @tf.function
    def augment():
        return aug(xb, training=True)

    rows.append(
        ["(input)", "augmentation of one batch", str(tuple(xb.shape[1:])), 0, median_s(augment, args.reps)]
    )
    step = median_s(lambda: model.train_on_batch(xb, yb), args.reps)
    total = sum(r[4] for r in rows)

    print(
        f"# batch {args.batch}; matmul peak {peak:.0f} GFLOP/s; whole step (train_on_batch) {step * 1e3:.1f} ms"
    )
    print(f"# sum of the parts {total * 1e3:.1f} ms ({args.batch / step:.0f} images/s as one step)")
    by_kind: dict[str, float] = {}
    table = []
    for name, kind, shape, macs, s in rows:
        gflops = 3 * 2 * macs / s / 1e9 if macs else None
        by_kind[kind] = by_kind.get(kind, 0.0) + s
        table.append(
            [
                name,
                kind,
                shape,
                f"{s * 1e3:.2f}",
                f"{100 * s / total:.1f} %",
                "—" if gflops is None else f"{gflops:.0f} ({100 * gflops / peak:.0f} % of peak)",
            ]
        )
    c.print_table(["layer", "kind", "output", "fwd+bwd ms", "share", "GFLOP/s"], table)
    print()
    c.print_table(
        ["kind", "ms", "share"],
        [
            [k, f"{v * 1e3:.2f}", f"{100 * v / total:.1f} %"]
            for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
        ],
    )


if __name__ == "__main__":
    main()
