"""Child process of tests/test_backends.py: the tiny CNN's whole lifecycle on one Keras backend,
in a process of its own (Keras takes its backend once per process). Prints one JSON line of
what happened, for the parent to check.

    python tests/_backend_run.py BACKEND [--hide-tensorflow]
    python tests/_backend_run.py jax --two-devices
    python tests/_backend_run.py BACKEND --mixed-precision

--hide-tensorflow makes `import tensorflow` fail, as on a machine without it. --two-devices
trains once with `--strategy mirrored` over two CPU devices that XLA makes of this CPU
(XLA_FLAGS=--xla_force_host_platform_device_count=2, set by the parent), taken for GPUs.
--mixed-precision trains once under mixed_float16 (augmented, fused batch-norm, TTA) and
predicts again from the saved model under the float32 policy, as `kit predict` does later.
"""

from __future__ import annotations

import dataclasses
import json
import sys


class HideTensorFlow:
    """An import hook under which TensorFlow is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}")


def two_devices() -> None:
    """One mirrored run over two CPU devices taken for GPUs; what the parent checks."""
    import os

    os.environ["KERAS_BACKEND"] = "jax"  # before Keras loads
    import keras
    import numpy as np

    from kit import data, models, training
    from kit.models import backends

    cpus = keras.distribution.list_devices("cpu")
    keras.distribution.list_devices = lambda kind=None: cpus
    backends.accelerators = lambda backend: [str(d) for d in cpus]
    # 127 rows, one batch of up to 2 x 64: 127 cannot split in two; nor can the 597 test rows
    cfg = models.get("cnn").make_config(
        "default",
        width=4,
        batch_size=64,
        max_train=127,
        epochs=2,
        lr=5e-3,
        seed=5,
        backend="jax",
        strategy="mirrored",
    )
    run = training.train("cnn", cfg, progress=False)
    ds, sp = data.load_split()
    history = run.history()
    print(
        json.dumps(
            {
                "devices": len(cpus),
                "replicas": run.metrics["replicas"],
                "epochs": history["epoch"].tolist(),
                "val_loss_logged": bool(history["val_loss"].notna().all()),
                "val_accuracy_logged": bool(history["val_accuracy"].notna().all()),
                "test_rows": len(ds.X_test),
                "test_proba_shape": list(run.test_proba().shape),
                "val_proba_shape": list(run.val_proba().shape),
                "val_rows": len(sp.val_idx),
                "probabilities_sum_to_1": bool(np.allclose(run.test_proba().sum(1), 1, atol=1e-5)),
            }
        )
    )


def mixed_precision(backend: str) -> None:
    """One tiny run under mixed_float16; what the parent checks."""
    import numpy as np

    from kit import data, models, training
    from kit.models.cnn import config as cnn_config
    from kit.models.cnn import train as cnn_train

    cfg = models.get("cnn").make_config(
        "default", width=4, batch_size=32, max_train=192, epochs=2, lr=5e-3, seed=5, backend=backend,
        mixed_precision=True, tta=1,
    )  # fmt: skip
    run = training.train("cnn", cfg, progress=False)
    keras = cnn_config._keras()
    keras.mixed_precision.set_global_policy("float32")  # a later process's policy
    loaded = cnn_train.load(run, models.get("cnn").run_config(run.config))
    ds, _ = data.load_split()
    proba = run.test_proba()
    dtypes = {type(layer).__name__: layer.compute_dtype for layer in loaded.model.layers}
    print(
        json.dumps(
            {
                "keras_backend": keras.backend.backend(),
                "config_mixed_precision": run.config["mixed_precision"],
                "compute_dtypes": dtypes,
                "epochs": run.history()["epoch"].tolist(),
                "losses_finite": bool(np.isfinite(run.history()["loss"]).all()),
                "probabilities_sum_to_1": bool(np.allclose(proba.sum(1), 1, atol=1e-5)),
                "reload_max_diff": float(np.abs(cnn_train.predict(loaded, ds.X_test) - proba).max()),
            }
        )
    )


def main() -> None:
    backend = sys.argv[1]
    if "--two-devices" in sys.argv:
        return two_devices()
    if "--mixed-precision" in sys.argv:
        return mixed_precision(backend)
    if "--hide-tensorflow" in sys.argv:
        sys.meta_path.insert(0, HideTensorFlow())

    import numpy as np

    from kit import data, models, runs, training
    from kit.errors import KitError
    from kit.models.cnn import config as cnn_config
    from kit.models.cnn import train as cnn_train

    cfg = models.get("cnn").make_config(
        "default", width=4, batch_size=32, max_train=192, epochs=3, lr=5e-3, seed=5, backend=backend
    )
    first = training.train("cnn", cfg, progress=False)
    again = training.train("cnn", cfg, progress=False)

    # interrupted after its first epoch, then resumed: the checkpoint carries the model
    keras = cnn_config._keras()

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    real = cnn_train.callbacks
    cnn_train.callbacks = lambda *a: [*real(*a), CtrlC()]
    try:
        training.train("cnn", dataclasses.replace(cfg, seed=6), progress=False)
        interrupted = None
    except KitError as e:
        interrupted = str(e)
    cnn_train.callbacks = real
    (unfinished,) = [r for r in runs.all_runs(model="cnn", finished=False) if not r.finished]
    epochs_before = unfinished.history()["epoch"].tolist()
    resumed = training.train("cnn", resume=unfinished.path, progress=False)

    # the saved model, loaded back, predicts what the run wrote
    ds, _ = data.load_split()
    loaded = cnn_train.load(first, models.get("cnn").run_config(first.config))
    reloaded = cnn_train.predict(loaded, ds.X_test)

    print(
        json.dumps(
            {
                "keras_backend": keras.backend.backend(),
                "tensorflow_imported": "tensorflow" in sys.modules,
                "config_backend": first.config["backend"],
                "metrics_backend": first.metrics["backend"],
                "device": first.metrics["device"],
                "val_accuracy": first.metrics["val_accuracy"],
                "epochs": first.history()["epoch"].tolist(),
                "same_seed_same_test_proba": bool(np.array_equal(first.test_proba(), again.test_proba())),
                "same_seed_same_val_proba": bool(np.array_equal(first.val_proba(), again.val_proba())),
                "interrupted": interrupted,
                "epochs_before_resume": epochs_before,
                "epochs_after_resume": resumed.history()["epoch"].tolist(),
                "resumed_finished": resumed.finished,
                "reload_max_diff": float(np.abs(reloaded - first.test_proba()).max()),
                # the step as one compiled program (XLA on JAX), augmentation included
                "jit_compile": bool(loaded.model.jit_compile),
                "test_proba_shape": list(first.test_proba().shape),
            }
        )
    )


if __name__ == "__main__":
    main()
