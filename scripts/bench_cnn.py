"""`make bench` section `cnn`: the Keras CNN's accuracy, training time and inference speed.

    python scripts/bench.py cnn
    BENCH_CNN=inference python scripts/bench.py cnn        # only some parts
    BENCH_CNN_SEED=1 ...                                   # the training seed (default 1)

Parts (in this order, all by default):
    onednn     training images/s (default arch, batch 128, augmented tf.data input) and test
               inference seconds with TensorFlow's oneDNN kernels off and on, fresh process each
    default    `kit train cnn` with the `default` preset on the real data: val accuracy, val loss,
               training seconds, seconds to reach 99.4 % val accuracy, epochs, test inference
    reference  the `reference` preset (the kernel this kit grew from, its schedule fixed), the same numbers
    inference  seconds to predict the 28,000 test images with the default model as trained and
               with batch-norm folded into the convolutions (what `train` predicts with); weights
               do not change the time, so an untrained model is used; best of 3 after a warm-up
    blur       validation errors of trained CNN runs with the eval blur at 0 (sharp images),
               0.15, 0.2, 0.25, 0.3, 1/3, and with 4 TTA passes on top: the default run of this
               bench invocation, else BENCH_CNN_RUNS (comma-separated run folders)
    precision  GPU only: training images/s with mixed precision off and on (skipped on a CPU)

Each training part runs in a fresh Python process (seeds, threads and precision are process-wide)
and keeps its run folder under bench/runs/ (not the user's runs/, so `kit ensemble` never picks a
bench run by accident). Each training part is one full training run (docs/benchmarks.md has times).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ["onednn", "inference", "default", "reference", "blur", "precision"]
BLURS = [0.0, 0.15, 0.2, 0.25, 0.3, 1 / 3]
RUNS = ROOT / "bench" / "runs"
INFERENCE_REPEATS = 3
PRECISION_STEPS = 50
ONEDNN_STEPS = 40

ONEDNN_CHILD = """
import json, time, numpy as np
from kit import data, models
from kit.models import backends
from kit.models.cnn import config as cnn_config, layers as cnn_layers, net, pipeline, train as cnn_train
cfg = models.get("cnn").make_config("default")
cnn_config.setup(cfg)
ds, sp = data.load_split()
X, y = ds.X_train[sp.train_idx], ds.y_train[sp.train_idx]
pipe = pipeline.TFData.train(X, y, cfg, cfg.batch_size, 0, cnn_layers.augmentation(cfg)).repeat()
m = net.build_model(cfg); cnn_train.compile_model(m, cfg)
m.fit(pipe, epochs=1, steps_per_epoch=5, verbose=0, shuffle=False)
t = time.perf_counter(); m.fit(pipe, epochs=1, steps_per_epoch=%d, verbose=0, shuffle=False)
train = %d * cfg.batch_size / (time.perf_counter() - t)
folded = net.inference_model(m); net.predict_proba(folded, ds.X_test[:2048], cfg=cfg)
t = time.perf_counter(); net.predict_proba(folded, ds.X_test, cfg=cfg); infer = time.perf_counter() - t
print("BENCH_RESULT " + json.dumps({"train_images_per_s": round(train), "test_inference_s": round(infer, 3)}))
"""

CHILD = """
import json, sys
from kit.models import backends, cnn
from kit import models, training
run = training.train("cnn", models.get("cnn").make_config(sys.argv[1], seed=int(sys.argv[2])))
print("BENCH_RESULT " + json.dumps({"run": str(run.path), "metrics": run.metrics,
                                    "history": run.history().to_dict("list")}))
"""


def _train(preset: str, seed: int) -> dict:
    env = {**os.environ, "KIT_RUNS_DIR": str(RUNS)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, preset, str(seed)], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.returncode == 0, f"training {preset} failed (exit {proc.returncode})"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")][-1]
    res = json.loads(line.removeprefix("BENCH_RESULT "))
    m = res["metrics"]
    return {
        "run": res["run"],
        "val_accuracy": m["val_accuracy"],
        "val_loss": round(m["val_loss"], 4),
        "train_time_s": m["train_time_s"],
        "time_to_99_4_s": m["time_to_99_4_s"],
        "epochs_run": m["epochs_run"],
        "best_epoch": m["best_epoch"],
        "kept_epoch": m.get("kept_epoch"),
        "bn_refresh_s": m.get("bn_refresh_s"),
        "n_params": m["n_params"],
        "inference_s": m["inference_s"],
        "device": m["device"],
        "val_accuracy_per_epoch": res["history"]["val_accuracy"],
        "lr_per_epoch": res["history"]["lr"],
    }


def onednn() -> dict:
    """Training images/s and test inference seconds with TensorFlow's oneDNN kernels off, then on
    (TF_ENABLE_ONEDNN_OPTS is read when TensorFlow loads: one fresh process each)."""
    out = {}
    for flag in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": flag}
        code = ONEDNN_CHILD % (ONEDNN_STEPS, ONEDNN_STEPS)
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert proc.returncode == 0, "onednn bench failed"
        out["on" if flag == "1" else "off"] = json.loads(proc.stdout.split("BENCH_RESULT ")[-1])
    out["train_speedup"] = round(out["on"]["train_images_per_s"] / out["off"]["train_images_per_s"], 2)
    out["inference_speedup"] = round(out["off"]["test_inference_s"] / out["on"]["test_inference_s"], 2)
    return out


def inference() -> dict:
    from kit import data, models
    from kit.models.cnn import config as cnn_config
    from kit.models.cnn import net

    cfg = models.get("cnn").make_config("default")
    cnn_config.setup(cfg)
    ds = data.load()
    trained = net.build_model(cfg)
    out = {"n_test": len(ds.X_test)}
    for name, model in (("as_trained", trained), ("batchnorm_folded", net.inference_model(trained))):
        net.predict_proba(model, ds.X_test[:2048], cfg=cfg)  # trace the predict function once
        times = []
        for _ in range(INFERENCE_REPEATS):
            t = time.perf_counter()
            net.predict_proba(model, ds.X_test, cfg=cfg)  # with the blur, as train() predicts
            times.append(time.perf_counter() - t)
        out[name] = {
            "seconds_best": round(min(times), 3),
            "seconds_all": [round(t, 3) for t in times],
            "images_per_s": round(len(ds.X_test) / min(times)),
        }
    out["speedup_folded"] = round(
        out["as_trained"]["seconds_best"] / out["batchnorm_folded"]["seconds_best"], 2
    )
    return out


def blur(paths: list[str]) -> dict:
    """Errors on the validation split per eval blur, for each run in `paths` (its own config)."""
    import dataclasses

    from kit import data, models, runs
    from kit.models.cnn import net
    from kit.models.cnn import train as cnn_train

    ds, sp = data.load_split()
    X, y = ds.X_train[sp.val_idx], ds.y_train[sp.val_idx]
    out = {}
    for path in paths:
        run = runs.require_run(runs.resolve(str(path)), model="cnn")
        cfg = models.get("cnn").run_config(run.config)
        folded = net.inference_model(net.load_keras(run.file(cnn_train.MODEL_FILE), compile=False))
        errors = {}
        for b in BLURS:
            p = net.predict_proba(folded, X, 0, dataclasses.replace(cfg, blur=b, augment=True))
            errors[f"blur_{b:.3g}"] = int((p.argmax(1) != y).sum())
        # augment=True above and here: eval_blur only blurs for runs trained with augmentation
        p = net.predict_proba(folded, X, 4, dataclasses.replace(cfg, augment=True))
        errors[f"blur_{cfg.blur:.3g}_tta_4"] = int((p.argmax(1) != y).sum())
        out[run.path.name] = {
            "filters": [cfg.width, cfg.growth * cfg.width],
            "n_val": len(y),
            "errors": errors,
        }
    return out


def precision() -> dict:
    from kit.models import backends

    if not backends.accelerators("tensorflow"):
        return {"skipped": "no GPU visible to TensorFlow"}
    out = {}
    for mixed in (False, True):
        code = f"""
import json, time, numpy as np
from kit import data, models
from kit.models import backends
from kit.models.cnn import config as cnn_config, layers as cnn_layers, net, pipeline, train as cnn_train
cfg = models.get("cnn").make_config("default", mixed_precision={mixed})
cnn_config.setup(cfg)
import tensorflow as tf
ds, sp = data.load_split()
X, y = ds.X_train[sp.train_idx], ds.y_train[sp.train_idx]
pipe = pipeline.TFData.train(X, y, cfg, cfg.batch_size, 0, cnn_layers.augmentation(cfg)).repeat()
m = net.build_model(cfg); cnn_train.compile_model(m, cfg)
m.fit(pipe, epochs=1, steps_per_epoch=10, verbose=0)
t = time.perf_counter(); m.fit(pipe, epochs=1, steps_per_epoch={PRECISION_STEPS}, verbose=0)
print("BENCH_RESULT " + json.dumps({PRECISION_STEPS} * cfg.batch_size / (time.perf_counter() - t)))
"""
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.returncode == 0, "precision bench failed"
        rate = json.loads(proc.stdout.split("BENCH_RESULT ")[-1])
        out["mixed_images_per_s" if mixed else "float32_images_per_s"] = round(rate)
    out["gpu"] = backends.accelerators("tensorflow")
    return out


def run() -> dict:
    parts = [p for p in os.environ.get("BENCH_CNN", ",".join(PARTS)).split(",") if p]
    unknown = set(parts) - set(PARTS)
    assert not unknown, f"unknown BENCH_CNN part(s) {unknown}; choose from {PARTS}"
    seed = int(os.environ.get("BENCH_CNN_SEED", "1"))
    out: dict = {"cpu_cores": os.cpu_count()}
    for part in parts:
        if part in ("default", "reference"):
            out[part] = _train(part, seed)
        elif part == "blur":
            paths = (
                [out["default"]["run"]]
                if "default" in out
                else [p for p in os.environ.get("BENCH_CNN_RUNS", "").split(",") if p]
            )
            out[part] = blur(paths) if paths else {"skipped": "no default run here and no BENCH_CNN_RUNS"}
        else:
            out[part] = globals()[part]()
    if "default" in out and "reference" in out:
        out["val_accuracy_gain_default_over_reference"] = round(
            out["default"]["val_accuracy"] - out["reference"]["val_accuracy"], 4
        )
    return out
