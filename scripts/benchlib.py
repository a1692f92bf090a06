"""What every bench result records beside its numbers: the machine, the library versions, the commit.

A number without the machine it was measured on cannot be compared with anything, so no bench
writes one without it. `scripts/bench.py` calls, around each section's `run()`:

    env = benchlib.environment()            # before the measurement (the load average at its start)
    path = benchlib.write_result("load", results, env)   # -> docs/bench/load-<UTC>.json

A result file (JSON, one per section per `make bench`):

    schema        1
    section       "load", "scratch", "cnn", "pipeline"
    utc           when it was written, ISO 8601
    command       the command that reproduces it, with the BENCH_* settings it ran under
    settings      those BENCH_* / KIT_COMPETITION variables, and the ones that change speed
                  (OPENBLAS_CORETYPE, OMP_NUM_THREADS, TF_ENABLE_ONEDNN_OPTS, ...), as set
    machine       cpu (model name from /proc/cpuinfo), cores (os.cpu_count()), usable_cores
                  (this process's affinity), simd (avx2 ... avx512_vnni ... as the CPU reports
                  them), memory_gib, os, load_average_start / _end (1-minute load average)
    versions      python, numpy, pandas, scikit-learn, tensorflow, keras, kit (installed
                  distributions, read without importing them)
    commit        the git commit checked out; dirty: whether tracked files differed from it
    results       the section's own dict, as its run() returned it

`scripts/bench_report.py` renders every file in docs/bench/ into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "docs" / "bench"
SCHEMA = 1
# distributions whose versions go into every result (first installed name of each tuple)
PACKAGES = {
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "scikit-learn": ("scikit-learn",),
    "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "keras": ("keras",),
    "kit": ("kit",),
}
# vector extensions worth knowing: TensorFlow turns its oneDNN kernels on by itself only with
# AVX-512 VNNI (or AMX); OpenBLAS picks its kernels by them too
SIMD = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
# environment variables that change what a bench measures or how fast it runs
SPEED_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_ENABLE_ONEDNN_OPTS",
    "CUDA_VISIBLE_DEVICES",
)


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it ("AMD EPYC", "Intel(R) Xeon(R) ...")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def simd_flags() -> list[str]:
    """The vector extensions that decide which kernels BLAS and oneDNN pick (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in SIMD if f in have]
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "simd": simd_flags(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
    }


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name, dists in PACKAGES.items():
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            out[name] = None
    return out


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def commit() -> dict:
    """The commit checked out, and whether tracked files differ from it (then the numbers
    belong to that commit plus local changes)."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha, "dirty": bool(status) if status is not None else None}


def settings() -> dict:
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("BENCH_") or k == "KIT_COMPETITION" or k in SPEED_VARS
    }


def environment() -> dict:
    """Everything a result records about where and how it ran; call it before measuring."""
    return {
        "settings": settings(),
        "machine": {**machine(), "load_average_start": round(os.getloadavg()[0], 2)},
        "versions": versions(),
        **commit(),
    }


def command(section: str, env_settings: dict) -> str:
    """The command line that reproduces a section under the same BENCH_* settings."""
    pinned = [f"{k}={v}" for k, v in env_settings.items() if k.startswith("BENCH_")]
    return " ".join([*pinned, "python scripts/bench.py", section])


def record(section: str, results: dict, env: dict | None = None, now: datetime | None = None) -> dict:
    """The result file's content: `results` with the environment around it."""
    env = env or environment()
    now = now or datetime.now(UTC)
    mach = {**env["machine"], "load_average_end": round(os.getloadavg()[0], 2)}
    return {
        "schema": SCHEMA,
        "section": section,
        "utc": now.isoformat(timespec="seconds"),
        "command": command(section, env["settings"]),
        "settings": env["settings"],
        "machine": mach,
        "versions": env["versions"],
        "commit": env["commit"],
        "dirty": env["dirty"],
        "results": results,
    }


def _json_default(o):
    """numpy scalars and arrays as numbers and lists; anything else as its str."""
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def write_result(
    section: str,
    results: dict,
    env: dict | None = None,
    out_dir: Path | None = None,
    now: datetime | None = None,
) -> Path:
    """Write docs/bench/<section>-<UTC YYYYmmdd-HHMMSS>.json (never over an earlier one)."""
    rec = record(section, results, env, now)
    out = out_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(rec["utc"]).strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = out / f"{section}-{stamp}{'' if i == 1 else f'-{i}'}.json"
        try:
            with path.open("x") as f:  # "x": fails if it exists, so two benches never share a file
                f.write(json.dumps(rec, indent=2, default=_json_default) + "\n")
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"no free result file name for {section}-{stamp} in {out}")
