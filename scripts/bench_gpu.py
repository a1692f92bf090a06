"""`make bench` section `gpu`: the default CNN on each GPU backend, for a machine with a GPU.

    python scripts/bench.py gpu
    BENCH_GPU_SEEDS=1,2 python scripts/bench.py gpu      # then 45 epochs of each seed, per backend
    BENCH_GPU_SPEED=0 BENCH_GPU_BACKENDS=jax BENCH_GPU_SEEDS=1 python scripts/bench.py gpu

Speed: for every backend installed that sees a GPU (tensorflow, jax, torch), batch 64 to 512,
mixed precision off and on, a fresh process each, the throughput bench's child
(bench_throughput.CHILD: the kit's own pipeline and network, WARMUP steps discarded, the best
of REPEATS windows of STEPS steps) -> images/s and seconds per epoch of the 37,800 training rows,
with the card's name. Accuracy (BENCH_GPU_SEEDS): `kit train cnn --backend B --epochs 45
--seed N --quiet` per seed -> validation accuracy, log-loss and training minutes.
BENCH_GPU_BACKENDS (e.g. `jax,torch`) keeps only those backends; BENCH_GPU_SPEED=0 skips the
speed grid. A row whose process fails is recorded with its exit status and the rest go on:
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

import bench_throughput as bt
from kit.models import backends

BATCHES = (64, 128, 256, 512)
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
        if proc.returncode == 0 and json.loads(proc.stdout.split("GPU ")[-1]):
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


def _measure(found: list[str], out: dict) -> None:
    """The speed grid, then the accuracy runs, appending each row to out as it is measured."""
    speed = os.environ.get("BENCH_GPU_SPEED", "1") != "0"
    for name in found if speed else []:
        for batch in BATCHES:
            for mixed in (False, True):
                opts = {"backend": name, "batch_size": batch, "mixed_precision": mixed}
                try:
                    res = bt._child(
                        bt.CHILD % (bt.WARMUP, bt.REPEATS, bt.STEPS, bt.STEPS),
                        json.dumps(opts),
                        env={"KERAS_BACKEND": name},
                    )
                except AssertionError as e:  # the child failed: its stderr is in the log
                    out["speed"].append({**opts, "error": str(e)})
                    print(out["speed"][-1])
                    continue
                row = {
                    **opts,
                    "device": res["device"],
                    "jit_compile": res["jit_compile"],
                    "images_per_s": round(res["images_per_s"], 1),
                    "seconds_per_epoch": round(EPOCH_ROWS / res["images_per_s"], 2),
                }
                out["speed"].append(row)
                print(row)
    seeds = [int(s) for s in os.environ.get("BENCH_GPU_SEEDS", "").split(",") if s]
    for name in found:
        for seed in seeds:
            row = {"backend": name, **_accuracy(name, seed)}
            out["accuracy"].append(row)
            print(row)
