"""The CNN on every Keras 3 backend (kit/models/backends.py): choosing one, refusing what a
backend cannot do, and the tiny CNN's whole lifecycle on JAX (with TensorFlow hidden: the NumPy
pipeline) and on PyTorch where it is installed, each in a fresh process (tests/_backend_run.py)
since Keras takes its backend once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit import models
from kit.errors import KitError
from kit.models import backends, cnn

CHILD = Path(__file__).with_name("_backend_run.py")


def _refusal(call, *args) -> str:
    """The KitError message of call(*args) (it must raise one)."""
    with pytest.raises(KitError) as e:
        call(*args)
    return str(e.value)


def test_auto_takes_keras_backend_then_the_first_installed(monkeypatch):
    monkeypatch.setattr(backends, "loaded", lambda: None)
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(backends, "installed", lambda name: True)
    assert backends.choose("auto") == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    assert backends.choose("auto") == "tensorflow"
    monkeypatch.setattr(backends, "installed", lambda name: name == "torch")
    assert backends.choose("auto") == "torch"


def test_a_backend_that_cannot_run_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(backends, "loaded", lambda: None)
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    assert _refusal(backends.choose, "auto") == (
        "KERAS_BACKEND=theano is not a backend kit trains with; set it to one of tensorflow, jax, torch (or unset it)"
    )
    monkeypatch.delenv("KERAS_BACKEND")
    monkeypatch.setattr(backends, "installed", lambda name: False)
    assert _refusal(backends.choose, "auto") == (
        "the CNN needs a Keras backend and none is installed: pip install -e '.[cpu]' "
        "(TensorFlow; README.md, 'GPUs', for the others)"
    )
    assert _refusal(backends.choose, "jax") == "--backend jax: jax is not installed; pip install -e '.[jax]'"


def test_a_second_backend_in_one_process_is_refused(monkeypatch):
    monkeypatch.setattr(backends, "loaded", lambda: "tensorflow")
    monkeypatch.setattr(backends, "installed", lambda name: True)
    assert _refusal(backends.choose, "jax") == (
        "--backend jax: Keras already runs on tensorflow in this process, and Keras takes its "
        "backend once per process; run kit again in a new process"
    )


def test_mirrored_is_refused_where_keras_cannot_spread_a_step():
    assert _refusal(backends.require_devices, "torch", "mirrored") == (
        "--strategy mirrored is not available on the torch backend (Keras spreads a step over "
        "several GPUs on tensorflow and jax); drop the option to train on one device, or use --backend jax"
    )
    backends.require_devices("torch", "auto")  # one device: nothing to refuse


def test_config_records_the_backend_and_old_runs_trained_on_tensorflow():
    CNN = models.get("cnn")
    assert cnn.resolved(CNN.make_config("default")).backend == "tensorflow"  # this process's Keras
    old = {k: v for k, v in CNN.make_config("default").__dict__.items() if k != "backend"}
    assert CNN.run_config(old).backend == "tensorflow"


def _lifecycle(backend: str, *flags: str, xla_flags: str = "") -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}  # this process's Keras set it
    # XLA compiles the tiny network's steps faster unoptimised (a fifth of the test's time); the
    # test checks behaviour, not speed
    env["XLA_FLAGS"] = (
        f"--xla_llvm_disable_expensive_passes=true --xla_backend_optimization_level=0 {xla_flags}"
    )
    proc = subprocess.run(
        [sys.executable, str(CHILD), backend, *flags], capture_output=True, text=True, timeout=540, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_lifecycle(out: dict, backend: str) -> None:
    assert out["keras_backend"] == backend
    assert out["config_backend"] == out["metrics_backend"] == backend
    assert out["device"] == "CPU"
    assert out["epochs"] == [1, 2, 3] and out["test_proba_shape"][1] == 10
    assert out["val_accuracy"] > 0.3  # 10 classes: chance is 0.1
    # determinism on the CPU: the same seed gives the same predictions, bit for bit
    assert out["same_seed_same_test_proba"] and out["same_seed_same_val_proba"]
    assert out["interrupted"].startswith(
        "interrupted after epoch 1 of 3; continue with: kit train cnn --resume "
    )
    assert out["epochs_before_resume"] == [1] and out["epochs_after_resume"] == [1, 2, 3]
    assert out["resumed_finished"]
    assert out["reload_max_diff"] < 1e-5  # model.keras, loaded back, predicts what the run wrote


@pytest.mark.slow
def test_jax_trains_resumes_and_predicts_without_tensorflow(fixture_data):
    out = _lifecycle("jax", "--hide-tensorflow")
    _check_lifecycle(out, "jax")
    assert not out["tensorflow_imported"]  # the NumPy pipeline: TensorFlow never loaded
    # Keras runs a model op by op when one layer says it cannot be jitted, as its Random* image
    # layers do; the Augment layer overrides that, so the step is one XLA program
    assert out["jit_compile"]


@pytest.mark.slow
def test_jax_mirrored_splits_every_batch_among_the_devices(fixture_data):
    """Keras's DataParallel cannot split a batch that does not divide among the devices, and
    does not pad: the NumPy pipeline must (two CPU devices stand in for two GPUs)."""
    out = _lifecycle("jax", "--two-devices", xla_flags="--xla_force_host_platform_device_count=2")
    assert out["devices"] == out["replicas"] == 2
    assert out["epochs"] == [1, 2] and out["val_loss_logged"] and out["val_accuracy_logged"]
    assert out["test_rows"] % 2 == 1 and out["test_proba_shape"] == [out["test_rows"], 10]
    assert out["val_proba_shape"] == [out["val_rows"], 10] and out["probabilities_sum_to_1"]


@pytest.mark.slow
@pytest.mark.skipif(
    not backends.installed("torch"), reason="PyTorch is not installed (not in CI: a large wheel)"
)
def test_torch_trains_resumes_and_predicts(fixture_data):
    _check_lifecycle(_lifecycle("torch"), "torch")


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "jax",  # TensorFlow's: tests/test_cnn.py, in process, with each input path
        pytest.param(
            "torch",
            marks=pytest.mark.skipif(not backends.installed("torch"), reason="PyTorch is not installed"),
        ),
    ],
)
def test_mixed_precision_trains_and_a_float32_process_predicts_the_same(backend, fixture_data):
    """--mixed-precision (what `kit remote` asks for on a GPU) on each backend: the network in
    float16, the augmentation and the softmax in float32, and the saved model, loaded where the
    policy is float32 (`kit predict` later), predicts what the run wrote, TTA included."""
    out = _lifecycle(backend, "--mixed-precision")
    assert out["keras_backend"] == backend and out["config_mixed_precision"]
    dtypes = out["compute_dtypes"]
    assert dtypes["Conv2D"] == dtypes["FusedBatchNorm"] == "float16"
    assert dtypes["Dense"] == "float32" and dtypes.get("Augment", "float32") == "float32"
    assert out["epochs"] == [1, 2] and out["losses_finite"] and out["probabilities_sum_to_1"]
    assert out["reload_max_diff"] == 0.0
