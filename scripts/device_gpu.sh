#!/usr/bin/env bash
# The GPU measurements (issue 17, item 4) as ONE call of the device tool: a lent machine with one
# NVIDIA GPU, JAX and PyTorch with CUDA, no TensorFlow and no network (docs/reference.md,
# "Measuring on a lent GPU").
#
#   here, once:  make device-prep FROM=../shared/data/digit-recognizer.zip   # .whl/ and .devdata/
#   then:        device run, command "bash scripts/device_gpu.sh", carry [".whl", ".devdata"],
#                timeout_s 600
#
# One command may run 10 minutes, so every step has a timeout of its own and writes its own
# result file (a step cut short costs only itself): the speed grid of `python scripts/bench.py
# gpu` on JAX, then on PyTorch (batch 64-512, mixed precision off and on), then 45 epochs of
# seed 1 on JAX. Back under $OUT: the bench result files (copy them to docs/bench/, then
# `python scripts/bench_report.py` renders docs/benchmarks.md) and the whole log.
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT" /tmp/kitruns
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "could not install the carried wheels (.whl/): run make device-prep here first"; exit 1; }
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 KIT_DATA_DIR=/tmp/kitdata KIT_RUNS_DIR=/tmp/kitruns
touch /tmp/device-start
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -m kit download --from .devdata/digit-recognizer.zip || exit 1
    BENCH_GPU_BACKENDS=jax timeout "${JAX_SPEED_S:-200}" python3 scripts/bench.py gpu
    BENCH_GPU_BACKENDS=torch timeout "${TORCH_SPEED_S:-150}" python3 scripts/bench.py gpu
    BENCH_GPU_SPEED=0 BENCH_GPU_BACKENDS=jax BENCH_GPU_SEEDS="${SEEDS:-1}" \
        timeout "${ACCURACY_S:-180}" python3 scripts/bench.py gpu
} 2>&1 | tee "$OUT/log"
find docs/bench -name 'gpu-*.json' -newer /tmp/device-start -exec cp {} "$OUT"/ \;
ls "$OUT"
