"""`make bench` section `scratch`: the NumPy network's speed and accuracy claims, in one run.

    python scripts/bench.py scratch
    BENCH_SCRATCH=peak,step,default python scripts/bench.py scratch    # only some parts

Parts (in this order, all by default):
    peak     float32 matmul peak of this machine (GFLOP/s, all cores, best of several)
    step     achieved GFLOP/s of the `default` training step (forward + backward + Adam) vs the peak
    reference  the recipe this kit grew from (`--preset reference`): val accuracy, training time
    default    `--preset default`: val accuracy, training time, peak RSS, time to reach the
               reference's accuracy and the speed-up over it (needs `reference` in the same run)
    best       `--preset best`: val accuracy, training time

Each training part runs `kit.training.train("scratch", ...)` in a fresh Python process (so its peak RSS is its own)
on the real data, writing its run folder to a temporary runs directory that is deleted after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["peak", "step", "reference", "default", "best"]
PEAK_N = 2048  # matmul side for the peak (large enough for BLAS to reach its best)
STEP_WARMUP, STEP_COUNT = 10, 60  # training steps: discarded, then timed

CHILD = """
import json, resource, sys, time
from kit import models, training
cfg = models.get("scratch").make_config(sys.argv[1])
run = training.train("scratch", cfg, progress=False)
print(json.dumps({"metrics": run.metrics, "history": run.history().to_dict("list"),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _threads() -> int:
    from kit import config

    return config.cpu_cores()


def peak_gflops(repeats: int = 7) -> float:
    """Best float32 GEMM rate (GFLOP/s) of an n x n x n product on all cores."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    A, B = rng.random((2, PEAK_N, PEAK_N), dtype=np.float32)
    C = np.empty_like(A)
    best = np.inf
    with threadpool_limits(limits=_threads(), user_api="blas"):
        np.matmul(A, B, out=C)
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(A, B, out=C)
            best = min(best, time.perf_counter() - t)
    return 2 * PEAK_N**3 / best / 1e9


def step_gflops() -> dict:
    """GFLOP/s of the `default` preset's training step (forward, backward, Adam) on random data
    of the real shapes, median of STEP_COUNT timed steps."""
    from threadpoolctl import threadpool_limits

    from kit import config, models
    from kit.models.scratch import net, train

    cfg = models.get("scratch").make_config("default")
    sizes = [config.N_PIXELS, *cfg.hidden, config.N_CLASSES]
    rng = np.random.default_rng(0)
    params = net.init_params(rng, sizes)
    grads = {k: np.empty_like(p) for k, p in params.items()}
    opt = net.make_optimizer(cfg, params)
    X = rng.random((cfg.batch_size, sizes[0]), dtype=np.float32)
    y = rng.integers(0, 10, cfg.batch_size)
    train.keep_freed_memory()
    times = []
    with threadpool_limits(limits=_threads(), user_api="blas"):
        for i in range(STEP_WARMUP + STEP_COUNT):
            t = time.perf_counter()
            _, _, grads = net.loss_and_grads(params, X, y, None, cfg.weight_decay, grads)
            opt.step(params, grads, 1e-6)
            if i >= STEP_WARMUP:
                times.append(time.perf_counter() - t)
    flops = net.flops_per_example(sizes) * cfg.batch_size
    return {
        "step_gflops": flops / float(np.median(times)) / 1e9,
        "step_ms": 1e3 * float(np.median(times)),
        "batch_size": cfg.batch_size,
        "sizes": sizes,
    }


def train_preset(preset: str, runs_dir: str) -> dict:
    """Train `preset` in a fresh process; its metrics, history and peak RSS (MB)."""
    env = {**os.environ, "KIT_RUNS_DIR": runs_dir}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, preset], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"training --preset {preset} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_to_accuracy(history: dict, target: float) -> float | None:
    """Training seconds (the epochs' own, summed) until the first epoch whose val accuracy
    reaches `target`."""
    from kit import metrics

    rows = [dict(val_accuracy=a, seconds=s) for a, s in zip(history["val_accuracy"], history["seconds"])]
    return metrics.seconds_to(rows, target)


def run() -> dict:
    from kit import data

    parts = [p for p in os.environ.get("BENCH_SCRATCH", ",".join(PARTS)).split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"BENCH_SCRATCH: unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    if set(parts) & {"reference", "default", "best"} and not data.is_installed(deep=False):
        raise SystemExit("the scratch bench trains on the real data: run `make download` first")

    res: dict = {"threads": _threads(), "load_average_start": os.getloadavg()}
    if "peak" in parts:
        res["peak_matmul_gflops"] = round(peak_gflops(), 1)
        print(f"peak float32 matmul: {res['peak_matmul_gflops']} GFLOP/s")
    if "step" in parts:
        step = step_gflops()
        res["default_step"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in step.items()}
        if "peak_matmul_gflops" in res:
            res["default_step"]["fraction_of_peak"] = round(
                step["step_gflops"] / res["peak_matmul_gflops"], 3
            )
        print(f"default training step: {res['default_step']}")

    histories = {}
    with tempfile.TemporaryDirectory(prefix="bench-scratch-") as runs_dir:
        for preset in ("reference", "default", "best"):
            if preset not in parts:
                continue
            out = train_preset(preset, runs_dir)
            m, h = out["metrics"], out["history"]
            histories[preset] = h
            res[preset] = {
                "val_accuracy": m["val_accuracy"],
                "val_loss": round(m["val_loss"], 5),
                "train_time_s": m["train_time_s"],
                "epochs_run": m["epochs_run"],
                "best_epoch": m["best_epoch"],
                "peak_rss_mb": round(out["max_rss_mb"], 1),
                "samples_per_s_median": float(np.median(h["samples_per_s"])),
            }
            print(f"{preset}: {res[preset]}")

    if "default" in res:
        from kit import config, models
        from kit.models.scratch import net

        cfg = models.get("scratch").make_config("default")
        sizes = [config.N_PIXELS, *cfg.hidden, config.N_CLASSES]
        n_train = config.competition().n_train - round(config.competition().n_train * config.VAL_FRACTION)
        # end to end: every training FLOP of the run over its wall time (augmentation, shuffling,
        # per-epoch validation included), against the same peak
        e2e = (
            net.flops_per_example(sizes)
            * n_train
            * res["default"]["epochs_run"]
            / res["default"]["train_time_s"]
            / 1e9
        )
        res["default"]["end_to_end_gflops"] = round(e2e, 1)
        if "peak_matmul_gflops" in res:
            res["default"]["end_to_end_fraction_of_peak"] = round(e2e / res["peak_matmul_gflops"], 3)
    if "reference" in res and "default" in res:
        # how long `default` takes to match what the reference reaches after all its iterations
        tta = time_to_accuracy(histories["default"], res["reference"]["val_accuracy"])
        res["default"]["time_to_reference_accuracy_s"] = tta
        res["default"]["speedup_vs_reference"] = (
            round(res["reference"]["train_time_s"] / tta, 1) if tta else None
        )
    res["load_average_end"] = os.getloadavg()
    return res
