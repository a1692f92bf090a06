#!/usr/bin/env bash
# The GPU measurements as ONE call of the device tool (at most 9 minutes): a lent machine with one
# NVIDIA GPU, JAX and PyTorch with CUDA, no TensorFlow and no network (docs/reference.md,
# "Measuring on a lent GPU").
#
#   here, once:  make device-prep FROM=../shared/data/digit-recognizer.zip   # .whl/ and .devdata/
#   then:        device run, command "bash scripts/device_gpu.sh", carry [".whl", ".devdata"],
#                timeout_s 600
#   dry run on a CPU (no wheels to install): DRY_RUN=1 bash scripts/device_gpu.sh
#
# Every step runs under a timeout taken from what is left of BUDGET_S (never 0: `timeout 0`
# means no limit; a step with under 10 s left is skipped) and writes its own result file, so a
# step cut short costs only itself:
#   1. `scripts/bench.py gpu` on JAX: batch 64 and 512, float32 and mixed precision, and mixed
#      precision with XLA's autotuning off (what the autotuning adds to the compile)
#   2. the same on PyTorch, and float32 without deterministic algorithms (what determinism costs);
#      then scripts/experiments/torch_profile.py: a PyTorch step with CUDA activity (kernel
#      launches and host syncs per step), the kit's batched resampling beside Keras's own
#   3. TOGETHER runs side by side on the one card (default: three JAX `best` seeds and one
#      PyTorch default run), their epochs logged as they go
# Back under $OUT (at most 8 files): the three gpu-*.json result files (copy them to docs/bench/,
# then `python scripts/bench_report.py` renders docs/benchmarks.md), the log, the card's
# utilisation every second (gpu-util.csv) and the run folders without their weights (runs.tar.gz).
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
BUDGET_S=${BUDGET_S:-530}
RESERVE_S=20  # kept back for the archive and the copies
START=$(date +%s)
export KIT_DATA_DIR=${KIT_DATA_DIR:-/tmp/kitdata} KIT_RUNS_DIR=${KIT_RUNS_DIR:-/tmp/kitruns}
mkdir -p "$OUT" "$KIT_RUNS_DIR"

step() {  # step NAME SECONDS CMD...: CMD under min(SECONDS, what is left - RESERVE_S)
    local name=$1 want=$2
    shift 2
    local t=$((BUDGET_S - RESERVE_S - ($(date +%s) - START)))
    ((want < t)) && t=$want
    if ((t < 10)); then
        echo "== $name: skipped, ${t} s left"
        return
    fi
    echo "== $name: up to ${t} s"
    timeout --kill-after=5 "$t" "$@"
    echo "== $name: exit $? after $(($(date +%s) - START)) s in all"
}

if [ "${DRY_RUN:-0}" = 1 ]; then
    export BENCH_GPU_CPU=1 PYTHONPATH="$PWD"
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "could not install the carried wheels (.whl/): run make device-prep here first"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1
touch /tmp/device-start
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 >"$OUT/gpu-util.csv" &
    SMI=$!
fi
{
    python3 -m kit download --from .devdata/digit-recognizer.zip || exit 1
    BENCH_GPU_BACKENDS=jax step "JAX speed" "${JAX_SPEED_S:-190}" python3 scripts/bench.py gpu
    BENCH_GPU_BACKENDS=torch step "PyTorch speed" "${TORCH_SPEED_S:-90}" python3 scripts/bench.py gpu
    step "PyTorch profile" "${PROFILE_S:-60}" python3 scripts/experiments/torch_profile.py --steps 30 --profile 10
    BENCH_GPU_SPEED=0 BENCH_GPU_BACKENDS=jax \
        BENCH_GPU_TOGETHER="${TOGETHER:-jax:best:21,jax:best:22,jax:best:23,torch:default:1}" \
        step "side by side" "${TOGETHER_S:-170}" python3 scripts/bench.py gpu
} 2>&1 | tee "$OUT/log"
[ -n "${SMI:-}" ] && kill "$SMI"
find docs/bench -name 'gpu-*.json' -newer /tmp/device-start -exec cp {} "$OUT"/ \;
tar -czf "$OUT/runs.tar.gz" -C "$KIT_RUNS_DIR" --exclude='*.keras' --exclude='*.h5' .
ls -l "$OUT"
