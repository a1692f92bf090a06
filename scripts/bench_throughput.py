"""`make bench` section `throughput`: the default CNN's training speed under each setting, against
this machine's matmul peak, side by side in one run.

    python scripts/bench.py throughput
    BENCH_THROUGHPUT=default,batch128 python scripts/bench.py throughput    # only some settings

For each setting, in a fresh process (threads and XLA are process-wide): the default network and
optimizer, fed as `kit train cnn` feeds it (kit.models.cnn.pipeline.TFData.train: shuffle, batch, scale,
augmentation with the clean fraction, parallel map, prefetch), WARMUP steps discarded, then STEPS
timed. Reported: images/s, GFLOP/s (3 x 2 x the forward multiply-adds per image: forward and the
two backward products) and the share of the float32 matmul peak, measured first in its own
process (TensorFlow, STEPS_PEAK products of PEAK_N x PEAK_N, the best one).

Settings: `default` (batch 64, one intra-op thread per core, 2 inter-op), `batch128`, `batch256`
(the learning rate is not part of a speed measurement), `inter1` (one inter-op thread), `noaug`
(augmentation off: what the input pipeline costs), `memory` (one batch held in memory, no
tf.data: the step alone), `keras_bn` (Keras's batch-norm instead of the fused kernel),
`growth5`, `width20`, `width24`, `width32` (wider networks: what width costs), `onednn_off`
(TensorFlow's Eigen kernels instead of oneDNN), `jax` and
`torch` (the same network and batch on those backends: NumPy batches, augmentation inside the
model; skipped where the backend is not installed), `mixed`, `jax_mixed`, `torch_mixed` (the
same under --mixed-precision). `warmup_s` is the first WARMUP steps' time: the step's compile
(tracing, XLA) and the pipeline's start. Each result records `jit_compile`: whether
Keras ran the step as one XLA program (JAX: yes; TensorFlow: no, since Keras refuses XLA while op
determinism is on; PyTorch: eager). XLA on TensorFlow is timed by
`scripts/experiments/speed_ab.py --xla`, which has to turn determinism off.

A virtual machine's speed swings by tens of percent from one minute to the next, so each setting
times REPEATS windows of STEPS steps and reports the best (and the median).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kit.models import backends

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "default": {},
    "batch128": {"batch_size": 128},
    "batch256": {"batch_size": 256},
    "inter1": {"inter_op": 1},
    "noaug": {"augment": False},
    "memory": {"memory": True},
    "onednn_off": {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}},
    "keras_bn": {"fused_bn": False},
    "growth5": {"growth": 5},
    "width20": {"width": 20},
    "width24": {"width": 24},
    "width32": {"width": 32},
    "jax": {"backend": "jax"},
    "torch": {"backend": "torch"},
    "mixed": {"mixed_precision": True},
    "jax_mixed": {"backend": "jax", "mixed_precision": True},
    "torch_mixed": {"backend": "torch", "mixed_precision": True},
}
WARMUP, STEPS, REPEATS = 10, 150, 3
PEAK_N, STEPS_PEAK = 2048, 10

PEAK_CHILD = """
import json, time
from kit.models import backends
tf = backends.tf()
a = tf.random.uniform((%d, %d)); b = tf.random.uniform((%d, %d))
best = 1e9
for _ in range(%d):
    t = time.perf_counter(); tf.linalg.matmul(a, b).numpy(); best = min(best, time.perf_counter() - t)
print("BENCH_RESULT " + json.dumps({"peak_matmul_gflops": 2 * %d ** 3 / best / 1e9}))
"""

CHILD = """
import json, sys, time
import numpy as np
from kit import data, models
from kit.models import backends
from kit.models.cnn import config as cnn_config
from kit.models.cnn import layers as cnn_layers
from kit.models.cnn import net, pipeline
from kit.models.cnn import train as cnn_train
opts = json.loads(sys.argv[1])
over = {k: v for k, v in opts.items() if k in ("batch_size", "width", "growth", "fused_bn", "augment", "backend", "mixed_precision")}
cfg = models.get("cnn").make_config("default", **over)
cfg = cnn_config.resolved(cfg)
cnn_config.setup(cfg)
feed = pipeline.pipeline(cfg.backend)
ds, sp = data.load_split()
X, y = ds.X_train[sp.train_idx], ds.y_train[sp.train_idx]
if feed.augments_in_model:  # jax, torch: NumPy batches, the augmentation inside the model
    layer = cnn_layers.augment_layer(cfg, cfg.batch_size, 0) if cfg.augment else None
    model = net.build_model(cfg, layer)
    pipe = feed.train(X, y, cfg, cfg.batch_size, 0)
else:
    tf = backends.tf()
    if "inter_op" in opts:
        tf.config.threading.set_inter_op_parallelism_threads(opts["inter_op"])
    aug = cnn_layers.augmentation(cfg) if cfg.augment else None
    pipe = feed.train(X, y, cfg, cfg.batch_size, 0, aug).repeat()
    if opts.get("memory"):
        xb, yb = next(iter(pipe))
        pipe = tf.data.Dataset.from_tensors((xb, yb)).repeat()
    model = net.build_model(cfg)
cnn_train.compile_model(model, cfg)
macs = net.multiply_adds(model)
rates = []
if opts.get("deterministic") is False and cfg.backend == "torch":
    import torch
    torch.use_deterministic_algorithms(False)  # what determinism costs (kit.models.backends.setup)
with backends.quiet_native_logs():
    t = time.perf_counter()
    model.fit(pipe, epochs=1, steps_per_epoch=%d, verbose=0)
    warmup_s = time.perf_counter() - t
    for _ in range(%d):
        t = time.perf_counter()
        model.fit(pipe, epochs=1, steps_per_epoch=%d, verbose=0)
        rates.append(%d * cfg.batch_size / (time.perf_counter() - t))
rate = max(rates)
print("BENCH_RESULT " + json.dumps({"batch_size": cfg.batch_size, "backend": cfg.backend,
      "device": backends.device(cfg.backend), "images_per_s": rate,
      "images_per_s_median": float(np.median(rates)), "jit_compile": bool(model.jit_compile),
      "forward_macs_per_image": macs, "gflops": rate * 6 * macs / 1e9, "warmup_s": round(warmup_s, 2)}))
"""


def _child(code: str, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, f"throughput bench child failed (exit {proc.returncode})"
    return json.loads(proc.stdout.split("BENCH_RESULT ")[-1])


def run() -> dict:
    chosen = [s for s in os.environ.get("BENCH_THROUGHPUT", ",".join(SETTINGS)).split(",") if s]
    unknown = set(chosen) - set(SETTINGS)
    assert not unknown, f"unknown BENCH_THROUGHPUT setting(s) {unknown}; choose from {list(SETTINGS)}"
    peak = _child(PEAK_CHILD % (PEAK_N, PEAK_N, PEAK_N, PEAK_N, STEPS_PEAK, PEAK_N))["peak_matmul_gflops"]
    print(f"peak float32 matmul: {peak:.1f} GFLOP/s")
    out: dict = {
        "peak_matmul_gflops": round(peak, 1),
        "warmup_steps": WARMUP,
        "timed_steps": STEPS,
        "repeats": REPEATS,
        "settings": {},
    }
    for name in chosen:
        opts = SETTINGS[name]
        if opts.get("backend", "tensorflow") != "tensorflow" and not backends.installed(opts["backend"]):
            print(f"{name}: skipped ({opts['backend']} is not installed)")
            continue
        env = {"KERAS_BACKEND": opts.get("backend", "tensorflow"), **opts.get("env", {})}
        res = _child(CHILD % (WARMUP, REPEATS, STEPS, STEPS), json.dumps(opts), env=env)
        res = {
            **res,
            "images_per_s": round(res["images_per_s"], 1),
            "gflops": round(res["gflops"], 1),
            "share_of_peak": round(res["gflops"] / peak, 3),
            "options": SETTINGS[name],
        }
        out["settings"][name] = res
        print(f"{name}: {res}")
    return out
