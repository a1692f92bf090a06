"""The CNN's Keras 3 backends: which one a run uses, importing Keras with it, and what each one
offers. The network, its config and its run format are the same on all three.

    tensorflow  the CPU default (fastest on a CPU): tf.data input pipeline, oneDNN kernels,
                several GPUs through tf.distribute.MirroredStrategy
    jax         for accelerators: XLA-compiled steps, several GPUs through keras.distribution
    torch       for accelerators: CUDA GPUs or Apple's MPS; one device

`--backend auto` (the default) takes KERAS_BACKEND when it is set, else the first of BACKENDS
that is installed; config.json records the backend chosen. Keras reads its backend once, when
it is first imported, so one process trains with one backend (`keras_for` refuses a second).

Determinism, same seed and machine: TensorFlow (op determinism on), JAX on a CPU (XLA's CPU
kernels are deterministic) and PyTorch on a CPU (`use_deterministic_algorithms`) repeat a run
bit for bit. On GPUs, TensorFlow and PyTorch are asked for deterministic kernels (slower, and
PyTorch warns where an op has none); JAX on a GPU is only deterministic with
XLA_FLAGS=--xla_gpu_deterministic_ops=true, which the kit leaves to the user (docs/reference.md).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from kit.errors import KitError

BACKENDS = ("tensorflow", "jax", "torch")  # `auto` takes the first one installed
CHOICES = ("auto", *BACKENDS)
EXTRA = {"tensorflow": "cpu", "jax": "jax", "torch": "torch"}  # pip install -e '.[EXTRA]'
GPU_EXTRA = {"tensorflow": "gpu", "jax": "jax-cuda", "torch": "torch"}
NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
MULTI_DEVICE = ("tensorflow", "jax")  # backends Keras can spread over several GPUs

# TensorFlow's C++ start-up lines (absl's "WARNING: All log messages before absl::InitializeLog()",
# "I0000 ... oneDNN custom operations are on", "E0000 ... NodeDef mentions attribute ...") are
# written straight to file descriptor 2, before and regardless of TF_CPP_MIN_LOG_LEVEL: they are
# not for users, and they look like failures. JAX and PyTorch print the same kind at start-up.
NATIVE_LOG = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] )"
)


@contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Run the block with file descriptor 2 captured; then pass on every line but the native
    libraries' log lines (NATIVE_LOG). Python's own errors still surface, as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not NATIVE_LOG.match(line)
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


# ============================================================================ choosing one


def installed(name: str) -> bool:
    """Whether the backend's package can be imported (one an import hook refuses, as the tests
    do to hide TensorFlow, cannot)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def loaded() -> str | None:
    """The backend Keras runs on in this process, None before Keras is imported."""
    keras = sys.modules.get("keras")
    return keras.backend.backend() if keras is not None else None


def choose(requested: str = "auto") -> str:
    """The backend `requested` (one of CHOICES) means here; KitError when it cannot run."""
    name = requested
    if requested == "auto":
        env = os.environ.get("KERAS_BACKEND", "").strip().lower()
        if env and env not in BACKENDS:
            raise KitError(
                f"KERAS_BACKEND={env} is not a backend kit trains with; set it to one of "
                f"{', '.join(BACKENDS)} (or unset it)"
            )
        name = env or loaded() or next((b for b in BACKENDS if installed(b)), "")
        if not name:
            raise KitError(
                "the CNN needs a Keras backend and none is installed: pip install -e '.[cpu]' "
                "(TensorFlow; README.md, 'GPUs', for the others)"
            )
    if not installed(name):
        raise KitError(f"--backend {name}: {name} is not installed; pip install -e '.[{EXTRA[name]}]'")
    other = loaded()
    if other is not None and other != name:
        raise KitError(
            f"--backend {name}: Keras already runs on {other} in this process, and Keras takes its "
            f"backend once per process; run kit again in a new process"
        )
    return name


def tf():
    """TensorFlow, imported on first use with the kit's settings.

    oneDNN's convolutions are on (TensorFlow enables them by default only on CPUs with AVX-512
    VNNI): they train and predict faster than the Eigen kernels and stay deterministic run to
    run. TF reads the variable once, at import; TF_ENABLE_ONEDNN_OPTS=0 keeps the Eigen kernels.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with quiet_native_logs():
            import tensorflow  # noqa: F401
    import tensorflow as tf

    return tf


def keras_for(requested: str = "auto"):
    """Keras, imported with the backend `requested` means (see `choose`)."""
    name = choose(requested)
    if loaded() is None:
        if name == "tensorflow":
            tf()  # its environment first: TensorFlow reads it once, at import
        elif name == "torch":
            # cuBLAS is only deterministic with a fixed workspace; read when CUDA starts
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        os.environ["KERAS_BACKEND"] = name
        with quiet_native_logs():
            import keras  # noqa: F401
    import keras

    return keras


# ============================================================================ using one


def setup(backend: str, seed: int, threads: int, mixed_precision: bool) -> None:
    """Seeds, determinism, CPU threads (0 = one per core) and precision for `backend`; call
    before building anything."""
    keras = keras_for(backend)
    threads = threads or os.cpu_count() or 1
    if backend == "tensorflow":
        tf_ = tf()
        try:
            # intra-op: one thread per core runs each convolution; inter-op 2 lets the input
            # pipeline's ops overlap the step without oversubscribing a small box.
            tf_.config.threading.set_intra_op_parallelism_threads(threads)
            tf_.config.threading.set_inter_op_parallelism_threads(min(2, threads))
        except RuntimeError:
            pass  # TensorFlow already started in this process (tests, notebooks): keep its threads
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
    keras.utils.set_random_seed(seed)
    if backend == "tensorflow":
        tf().config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs' names from nvidia-smi, without loading a framework; [] without any."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def accelerators(backend: str) -> list[str]:
    """The accelerators `backend` trains on here, by name ([] on a CPU-only machine)."""
    if backend == "tensorflow":
        tf_ = tf()
        found = tf_.config.list_physical_devices("GPU")
        return [tf_.config.experimental.get_device_details(d).get("device_name", d.name) for d in found]
    if backend == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    import torch

    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    return ["Apple MPS"] if mps is not None and mps.is_available() else []


def device(backend: str) -> str:
    """What `backend` trains on, for metrics.json: "CPU", "GPU: NVIDIA H200", "2 x GPU: Tesla T4"."""
    found = accelerators(backend)
    if not found:
        return "CPU"
    kind = "MPS" if found == ["Apple MPS"] else "GPU"
    return f"{kind}: {found[0]}" if len(found) == 1 else f"{len(found)} x {kind}: {found[0]}"


@dataclass
class Placement:
    """Where a training step runs: `scope()` wraps model building, `replicas` devices share
    each step (the global batch is the per-replica batch times this)."""

    scope: Callable
    replicas: int


def require_devices(backend: str, strategy: str) -> None:
    """`mirrored` is refused where it cannot spread the step, before any run folder is made.
    With no GPU it is not silently run on the CPU: a user who asked for several GPUs and got
    the CPU would wait hours for a run they meant to take minutes."""
    if strategy != "mirrored":
        return
    if backend not in MULTI_DEVICE:
        raise KitError(
            f"--strategy mirrored is not available on the {backend} backend (Keras spreads a step "
            f"over several GPUs on {' and '.join(MULTI_DEVICE)}); drop the option to train on "
            f"one device, or use --backend jax"
        )
    if not accelerators(backend):
        raise KitError(
            f"--strategy mirrored needs a GPU, and {NAMES[backend]} sees none; drop the option "
            f"to train on the CPU, or install the GPU build: pip install -e '.[{GPU_EXTRA[backend]}]'"
        )


def placement(backend: str, strategy: str) -> Placement:
    """The devices a step runs on for `strategy` (see require_devices)."""
    require_devices(backend, strategy)
    if backend == "tensorflow":
        tf_ = tf()
        s = tf_.distribute.MirroredStrategy() if strategy == "mirrored" else tf_.distribute.get_strategy()
        return Placement(s.scope, s.num_replicas_in_sync)
    if strategy == "mirrored":  # jax: the batch split over every GPU, weights replicated
        keras = keras_for(backend)
        gpus = keras.distribution.list_devices("gpu")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=gpus))
        return Placement(nullcontext, len(gpus))
    return Placement(nullcontext, 1)
