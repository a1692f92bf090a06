"""Child process of tests/test_backends.py: the tiny CNN's whole lifecycle on one Keras backend,
in a process of its own (Keras takes its backend once per process). Prints one JSON line of
what happened, for the parent to check.

    python tests/_backend_run.py BACKEND [--hide-tensorflow]

--hide-tensorflow makes `import tensorflow` fail, as on a machine without it.
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


def main() -> None:
    backend = sys.argv[1]
    if "--hide-tensorflow" in sys.argv:
        sys.meta_path.insert(0, HideTensorFlow())

    import numpy as np

    from kit import data, models, runs, training
    from kit.errors import KitError
    from kit.models import cnn

    cfg = models.get("cnn").make_config(
        "default", width=4, batch_size=32, max_train=192, epochs=3, lr=5e-3, seed=5, backend=backend
    )
    first = training.train("cnn", cfg, progress=False)
    again = training.train("cnn", cfg, progress=False)

    # interrupted after its first epoch, then resumed: the checkpoint carries the model
    keras = cnn._keras()

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    real = cnn._callbacks
    cnn._callbacks = lambda *a: [*real(*a), CtrlC()]
    try:
        training.train("cnn", dataclasses.replace(cfg, seed=6), progress=False)
        interrupted = None
    except KitError as e:
        interrupted = str(e)
    cnn._callbacks = real
    (unfinished,) = [r for r in runs.all_runs(model="cnn", finished=False) if not r.finished]
    epochs_before = unfinished.history()["epoch"].tolist()
    resumed = training.train("cnn", resume=unfinished.path, progress=False)

    # the saved model, loaded back, predicts what the run wrote
    ds, _ = data.load_split()
    loaded = cnn.load(first, models.get("cnn").run_config(first.config))
    reloaded = cnn.predict(loaded, ds.X_test)

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
