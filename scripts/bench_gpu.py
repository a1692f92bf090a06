"""`make bench` section `gpu`: the default CNN on each GPU backend, for a machine with a GPU.

    python scripts/bench.py gpu
    BENCH_GPU_SEEDS=1,2 python scripts/bench.py gpu      # then 45 epochs of each seed, per backend
    BENCH_GPU_SPEED=0 BENCH_GPU_BACKENDS=jax BENCH_GPU_SEEDS=1 python scripts/bench.py gpu
    BENCH_GPU_SPEED=0 BENCH_GPU_TOGETHER=jax:best:21,jax:best:22,torch:default:1 python scripts/bench.py gpu

Speed: for every backend installed that sees a GPU (tensorflow, jax, torch), each batch of
BENCH_GPU_BATCHES (default 64 and 512), mixed precision off and on, a fresh process each, the
throughput bench's child (bench_throughput.CHILD: the kit's own pipeline and network, WARMUP
steps discarded, the best of REPEATS windows of STEPS steps) -> images/s, seconds per epoch of
the 37,800 training rows, and `warmup_s`, the first WARMUP steps (the step's compile); then, after
the first batch's two, one variant row per backend (VARIANTS): JAX's mixed precision with XLA's GPU autotuning off (what
the autotuning costs its compile), PyTorch with deterministic algorithms off (what determinism
costs). Accuracy (BENCH_GPU_SEEDS): `kit train cnn --backend B --epochs 45 --seed N --quiet`
per seed -> validation accuracy, log-loss and training minutes. Side by side
(BENCH_GPU_TOGETHER, `backend:preset:seed[:mixed]`, comma-separated): those `kit train cnn`
runs started together on the one card (XLA_PYTHON_CLIENT_PREALLOCATE=false, so JAX processes
share it) -> per run the first epoch (compile), the median later epoch, epochs done,
validation accuracy and its run folder; a run cut short by SIGTERM keeps the epochs it logged.
BENCH_GPU_BACKENDS (e.g. `jax,torch`) keeps only those backends; BENCH_GPU_SPEED=0 skips the
speed grid; BENCH_GPU_CPU=1 takes the CPU for the GPU (a dry run of scripts/device_gpu.sh). A row whose process fails is recorded with its exit status and the rest go on:
a device's minutes are too few to lose a whole run to one setting. SIGTERM (`timeout`, as
scripts/device_gpu.sh runs it) stops the section and keeps what it measured so far, marked
`cut_short`, so the result file is still written.

Needs the competition data installed (`kit download`). A machine without TensorFlow runs the
jax and torch rows; Keras and the kit's own dependencies must be there (the device tool's
machines lack keras: carry its wheel with namex and optree, per its README;
scripts/device_gpu.sh is that call, prepared).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bench_throughput as bt
from kit.models import backends

BATCHES = tuple(int(b) for b in os.environ.get("BENCH_GPU_BATCHES", "64,512").split(",") if b)
# One extra row per backend (batch 64): (label, options of the child, environment).
VARIANTS = {
    "jax": ("mixed, autotune off", {"mixed_precision": True}, {"XLA_FLAGS": "--xla_gpu_autotune_level=0"}),
    "torch": ("float32, not deterministic", {"mixed_precision": False, "deterministic": False}, {}),
}
EPOCH_ROWS = 37_800  # the training rows of the competition's 90/10 split
ACCURACY_EPOCHS = 45


def _gpu_backends() -> list[str]:
    found = []
    for name in backends.BACKENDS:
        if not backends.installed(name):
            continue
        probe = (
            "import json; from kit.models import backends; "
            f"print('GPU ' + json.dumps(backends.accelerators({name!r})))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env={**os.environ, "KERAS_BACKEND": name},
        )
        sees_gpu = proc.returncode == 0 and json.loads(proc.stdout.split("GPU ")[-1])
        if sees_gpu or os.environ.get("BENCH_GPU_CPU") == "1":
            found.append(name)
    return found


def _accuracy(backend: str, seed: int) -> dict:
    # `python -m kit`: a machine with the kit on PYTHONPATH has no `kit` console script
    args = ["train", "cnn", "--backend", backend, "--epochs", str(ACCURACY_EPOCHS), "--seed", str(seed)]
    proc = subprocess.run([sys.executable, "-m", "kit", *args, "--quiet"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
        return {"seed": seed, "error": f"exit {proc.returncode}"}
    out = proc.stdout
    run = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("run folder: "))
    with open(os.path.join(run, "metrics.json")) as f:
        m = json.load(f)
    keys = ("val_accuracy", "val_loss", "train_time_s", "time_to_99_4_s", "device")
    return {"seed": seed, "run": run, **{k: m.get(k) for k in keys}}


class CutShort(Exception):
    """SIGTERM arrived: the section stops and returns the rows measured so far."""


def _cut_short(signum, frame):
    raise CutShort


def run() -> dict:
    found = _gpu_backends()
    wanted = [b for b in os.environ.get("BENCH_GPU_BACKENDS", "").split(",") if b]
    found = [b for b in found if not wanted or b in wanted]
    out: dict = {"backends": found, "speed": [], "accuracy": []}
    if not found:
        print("no backend sees a GPU here: nothing to measure")
        return out
    previous = signal.signal(signal.SIGTERM, _cut_short)
    try:
        _measure(found, out)
    except CutShort:  # subprocess.run has killed the row's process on the way out
        out["cut_short"] = True
        print("cut short (SIGTERM): keeping the rows measured so far")
    finally:
        signal.signal(signal.SIGTERM, previous)
    return out


def _speed_row(name: str, batch: int, opts: dict, env: dict, variant: str = "") -> dict:
    """One speed row, in a fresh process; a failed child is recorded as failed."""
    row = {"backend": name, "batch_size": batch, "mixed_precision": opts["mixed_precision"]}
    row.update({"variant": variant} if variant else {})
    try:
        res = bt._child(
            bt.CHILD % (bt.WARMUP, bt.REPEATS, bt.STEPS, bt.STEPS),
            json.dumps({"backend": name, "batch_size": batch, **opts}),
            env={"KERAS_BACKEND": name, **env},
        )
    except AssertionError as e:  # the child failed: its stderr is in the log
        return {**row, "error": str(e)}
    return {
        **row,
        "device": res["device"],
        "jit_compile": res["jit_compile"],
        "images_per_s": round(res["images_per_s"], 1),
        "seconds_per_epoch": round(EPOCH_ROWS / res["images_per_s"], 2),
        "warmup_s": res.get("warmup_s"),
    }


def _together(specs: list[str], out: dict) -> None:
    """`backend:preset:seed[:mixed]` runs started together on the one card; each run's row
    appended to out["together"] when all have ended (or SIGTERM stops them: the epochs each
    logged are read from its run folder)."""
    runs_dir = Path(os.environ.get("KIT_RUNS_DIR", "runs"))
    before = set(runs_dir.glob("cnn-*")) if runs_dir.exists() else set()
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # JAX processes share the card
    procs = []
    for spec in specs:
        backend, preset, seed, *rest = spec.split(":")
        args = ["train", "cnn", "--backend", backend, "--preset", preset, "--seed", seed, "--quiet"]
        args += ["--mixed-precision"] if rest == ["mixed"] else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "kit", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        procs.append((spec, proc))
        time.sleep(2)  # distinct run-folder names (they carry the second)
    t0 = time.perf_counter()
    try:
        logs = {spec: proc.communicate()[0] for spec, proc in procs}
    finally:  # SIGTERM: stop the runs, then read what they logged
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in procs:
            proc.wait()
        out["together_wall_s"] = round(time.perf_counter() - t0, 1)
        folders = {_spec_of(f): f for f in set(runs_dir.glob("cnn-*")) - before}
        for spec, proc in procs:
            folder = folders.get(_canonical(spec))
            row = _run_summary(folder) if folder else {"error": "no run folder"}
            out["together"].append({"spec": spec, "exit": proc.returncode, **row})
    for spec, log in logs.items():
        print(f"--- {spec}", log[-1500:], sep="\n")


def _canonical(spec: str) -> str:
    backend, preset, seed, *rest = spec.split(":")
    return f"{backend}:{preset}:{int(seed)}" + (":mixed" if rest == ["mixed"] else "")


def _spec_of(folder: Path) -> str:
    """The `backend:preset:seed[:mixed]` a run folder was trained with (its config.json)."""
    try:
        c = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    return f"{c['backend']}:{c['preset']}:{c['seed']}" + (":mixed" if c.get("mixed_precision") else "")


def _run_summary(folder: Path) -> dict:
    """A (possibly unfinished) run folder's speed and accuracy, from history.csv and metrics.json."""
    import pandas as pd

    row: dict = {"run": str(folder)}
    if (folder / "history.csv").exists():
        h = pd.read_csv(folder / "history.csv")
        row.update(epochs=len(h), last_val_accuracy=float(h["val_accuracy"].iloc[-1]) if len(h) else None)
        if len(h):
            row["first_epoch_s"] = float(h["seconds"].iloc[0])
        if len(h) > 1:
            row["median_epoch_s"] = float(h["seconds"].iloc[1:].median())
    if (folder / "metrics.json").exists():
        m = json.loads((folder / "metrics.json").read_text())
        row.update({k: m.get(k) for k in ("val_accuracy", "val_loss", "train_time_s", "device")})
    return row


def _measure(found: list[str], out: dict) -> None:
    """The speed grid, then the accuracy runs, then the runs side by side, appending each row to
    out as it is measured."""
    speed = os.environ.get("BENCH_GPU_SPEED", "1") != "0"
    for name in found if speed else []:
        for batch in BATCHES:
            for mixed in (False, True):
                out["speed"].append(_speed_row(name, batch, {"mixed_precision": mixed}, {}))
                print(out["speed"][-1])
            if batch == BATCHES[0] and name in VARIANTS:  # before the larger batches: time is short
                label, opts, env = VARIANTS[name]
                out["speed"].append(_speed_row(name, batch, opts, env, label))
                print(out["speed"][-1])
    seeds = [int(s) for s in os.environ.get("BENCH_GPU_SEEDS", "").split(",") if s]
    for name in found:
        for seed in seeds:
            row = {"backend": name, **_accuracy(name, seed)}
            out["accuracy"].append(row)
            print(row)
    together = [s for s in os.environ.get("BENCH_GPU_TOGETHER", "").split(",") if s]
    if together:
        out["together"] = []
        _together(together, out)
        print(out["together"])
