"""Where a PyTorch training step of the default CNN goes: host work, syncs, kernel launches.

Reproduces docs/decisions.md, "PyTorch at GPU speed". The default network and batch, fed as
`kit train cnn --backend torch` feeds it (NumPy batches, the augmentation inside the model), on
the GPU when PyTorch sees one, else the CPU. Each mode in turn, in this one process: images/s
(the best of 3 windows of --steps steps, after 10), then --profile steps under torch.profiler
-> per step the ATen operators run, the host syncs (`aten::_local_scalar_dense`: a tensor read
back as a Python number, which on a GPU waits for the device) and, on a GPU, the kernel launches
and the host's waits on the device (cuda*Synchronize); then
the operators that take the most self time (CPU, and CUDA on a GPU).

Modes: `batched` (the kit: kit/models/cnn/layers.py's BatchedResampling resamples each batch in one gather) and
`keras` (Keras's own PyTorch affine_transform, one image at a time in Python: the kit before).

    python scripts/experiments/torch_profile.py [--steps 50] [--profile 10] [--batch 64]
        [--mixed-precision] [--modes batched,keras] [--top 12]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["KERAS_BACKEND"] = "torch"  # before Keras loads

import _common as c  # noqa: E402

SYNC = "aten::_local_scalar_dense"
LAUNCH = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC")
WAIT = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")  # the host waits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--profile", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mixed-precision", action="store_true")
    ap.add_argument("--modes", default="batched,keras")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from kit.models import backends
    from kit.models.cnn import layers as cnn_layers
    from kit.models.cnn import pipeline

    cnn = c.cnn()
    cfg = c.cnn_preset(
        "default", backend="torch", batch_size=args.batch, mixed_precision=args.mixed_precision
    )
    cnn.setup(cfg)
    ds, sp = c.split()
    X, y = ds.X_train[sp.train_idx], ds.y_train[sp.train_idx]
    gpu = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    print(
        f"# PyTorch {torch.__version__} on {backends.device('torch')}; batch {args.batch}, mixed precision {args.mixed_precision}"
    )
    summary = []
    for mode in args.modes.split(","):
        layer = cnn_layers.augment_layer(cfg, args.batch, 0)
        if mode == "keras":
            for random_layer in layer.random:
                random_layer.backend = random_layer.backend._backend  # Keras's own ops
        model = cnn.build_model(cfg, layer)
        cnn.compile_model(model, cfg)
        pipe = pipeline.NumpyData.train(X, y, cfg, args.batch, 0)
        model.fit(pipe, epochs=1, steps_per_epoch=10, verbose=0)
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            model.fit(pipe, epochs=1, steps_per_epoch=args.steps, verbose=0)
            rates.append(args.steps * args.batch / (time.perf_counter() - t))
        with profile(activities=activities) as prof:
            model.fit(pipe, epochs=1, steps_per_epoch=args.profile, verbose=0)
        events = prof.key_averages()
        per_step = {
            "aten ops": sum(e.count for e in events if e.key.startswith("aten::")) / args.profile,
            "host syncs": sum(e.count for e in events if e.key == SYNC) / args.profile,
            "kernel launches": sum(e.count for e in events if e.key in LAUNCH) / args.profile,
            "device waits": sum(e.count for e in events if e.key in WAIT) / args.profile,
        }
        summary.append([mode, f"{max(rates):,.0f}", *(f"{v:,.0f}" for v in per_step.values())])
        print(f"\n## {mode}: {max(rates):,.0f} images/s; per step: {per_step}")
        sort = "self_cuda_time_total" if gpu else "self_cpu_time_total"
        print(events.table(sort_by=sort, row_limit=args.top))
    print()
    c.print_table(
        [
            "mode",
            "images/s",
            "aten ops / step",
            "host syncs / step",
            "kernel launches / step",
            "device waits / step",
        ],
        summary,
    )


if __name__ == "__main__":
    main()
