"""The CNN's training, as kit.training calls it (`check_resumable`, `fit`, `save`, `load`,
`predict`): the optimizer and the learning-rate schedule, the callbacks that checkpoint every
epoch, resuming, early stopping, and keeping the last (or best) weights.

Run-folder files of this model: checkpoint.keras after every epoch (for --resume),
best.weights.h5 (the best epoch so far), model.keras (the kept weights, batch-norm refreshed).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from kit import io
from kit.errors import KitError
from kit.models import backends
from kit.models.cnn import config, layers, net, pipeline

CHECKPOINT = "checkpoint.keras"  # full model + optimizer state after the last finished epoch
BEST_WEIGHTS = "best.weights.h5"  # weights of the best epoch so far (val_loss)
MODEL_FILE = "model.keras"  # the final model (kept weights)
RESUME_FILES = (CHECKPOINT, BEST_WEIGHTS)
RESUME_SEED_STRIDE = 7919  # a resumed run shuffles/augments from seed + stride * epoch


def make_optimizer(cfg: config.Config):
    keras = config._keras()

    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.lr)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(cfg.lr)
    return keras.optimizers.SGD(cfg.lr, momentum=0.9, nesterov=True)


def compile_model(model, cfg: config.Config) -> None:
    keras = config._keras()

    model.compile(
        optimizer=make_optimizer(cfg),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def lr_at(cfg: config.Config, epoch: int) -> float:
    """The learning rate of (0-based) `epoch` under a fixed schedule.

    The plateau schedule depends on validation results; it starts at cfg.lr and is
    applied by a callback, so this returns cfg.lr for it.
    """
    if cfg.lr_schedule == "cosine":
        lr = cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    elif cfg.lr_schedule == "exponential":
        lr = max(cfg.lr_min, cfg.lr * cfg.lr_decay**epoch)
    else:
        lr = cfg.lr
    return float(lr)


def callbacks(run, cfg: config.Config, history: list[dict], best: dict, progress, steps: int):
    """Logger: after each epoch, the history row, the checkpoint (model + optimizer) and, on a
    new best val_loss, the best weights; that is what makes a run resumable. Every step and
    epoch goes to `progress` (a kit.training.Progress). Then the schedule."""
    keras = config._keras()

    class Logger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            progress.start(cfg.epochs, history[-1]["epoch"] if history else 0)

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            progress.step(1 / steps)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = dict(
                epoch=epoch + 1,
                loss=logs.get("loss"),
                accuracy=logs.get("accuracy"),
                val_loss=logs.get("val_loss"),
                val_accuracy=logs.get("val_accuracy"),
                lr=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                seconds=round(time.perf_counter() - self.t0, 3),
            )
            history.append(row)
            if row["val_loss"] is not None and row["val_loss"] < best["val_loss"]:
                best.update(val_loss=row["val_loss"], epoch=epoch + 1)
                with io.atomic_path(run.file(BEST_WEIGHTS)) as tmp:
                    self.model.save_weights(tmp)
            # the checkpoint first, then the history that points at it: a crash in between
            # leaves a checkpoint one epoch ahead of history, and resume trusts the history
            with io.atomic_path(run.file(CHECKPOINT)) as tmp:
                self.model.save(tmp)
            run.write_history(history)
            progress.epoch(row)

    class Plateau(keras.callbacks.ReduceLROnPlateau):
        """The reference's annealer, watching a metric that exists (it watched `val_acc`)."""

    cbs = [Logger(), keras.callbacks.TerminateOnNaN()]
    if cfg.lr_schedule == "plateau":
        cbs.append(
            Plateau(
                monitor="val_accuracy",
                mode="max",
                patience=cfg.plateau_patience,
                factor=cfg.lr_decay,
                min_lr=cfg.lr_min,
                verbose=0,
            )
        )
    else:
        cbs.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr_at(cfg, epoch)))
    if cfg.patience:
        cbs.append(_early_stopping(cfg, history, best))
    return cbs


def _early_stopping(cfg: config.Config, history: list[dict], best: dict):
    keras = config._keras()

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping that, on resume, remembers the best val_loss and the epochs waited."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if history:
                self.best = best["val_loss"]
                self.wait = history[-1]["epoch"] - best["epoch"]

    return ResumableEarlyStopping(
        monitor="val_loss", patience=cfg.patience, restore_best_weights=cfg.keep == "best"
    )


@dataclass
class Trained:
    """A trained CNN: the Keras model with the kept weights (batch-norm refreshed), its config,
    and what training saw. `net` is the same network folded for prediction, built on first use."""

    model: object
    cfg: config.Config
    history: list
    best_epoch: int
    kept_epoch: int
    n_train: int
    extra: dict
    _net: object = None

    @property
    def net(self):
        if self._net is None:
            self._net = net.inference_model(self.model)
        return self._net


def check_resumable(run) -> None:
    """KitError when `run` has epochs logged but no checkpoint to continue from."""
    if run.history().shape[0] and not run.file(CHECKPOINT).exists():
        raise KitError(f"{run.path} has no {CHECKPOINT}; it cannot be resumed (start a new run)")


def _best_so_far(history: list[dict]) -> dict:
    best = {"val_loss": math.inf, "epoch": 0}
    for row in history:
        if row["val_loss"] < best["val_loss"]:
            best.update(val_loss=row["val_loss"], epoch=row["epoch"])
    return best


def _start_model(cfg: config.Config, run, place: backends.Placement, start_epoch: int, batch: int, feed):
    """(model, augmentation for the pipeline `feed` or None, seed) to train: new, or the run's
    checkpoint after `start_epoch` epochs. The NumPy pipeline's augmentation is the model's
    first layer (its random state travels in the checkpoint); tf.data's is returned."""
    config._keras(cfg)  # the backend cfg trains on, before anything is built or loaded
    in_model = feed.augments_in_model
    # a resumed run shuffles and augments from a seed of its own: deterministic, but not
    # the exact batches an uninterrupted run would have seen
    seed = cfg.seed + RESUME_SEED_STRIDE * start_epoch
    with place.scope():
        if start_epoch:
            model = net.load_keras(run.file(CHECKPOINT))
            if model.name != f"cnn_{cfg.arch}":
                raise KitError(
                    f"{run.file(CHECKPOINT)} holds a {model.name!r} model, but the run's "
                    f"config.json says arch {cfg.arch!r}; start a new run"
                )
        else:
            layer = layers.augment_layer(cfg, batch, seed) if in_model and cfg.augment else None
            model = net.build_model(cfg, layer)
            compile_model(model, cfg)
        aug = (
            layers.augmentation(dataclasses.replace(cfg, seed=seed)) if cfg.augment and not in_model else None
        )
    return model, aug, seed


def fit(cfg: config.Config, run, data, progress) -> Trained:
    """Train on data.X_train (N, 28, 28) uint8 / data.y_train (N,) (the first cfg.max_train rows
    when set), validating on data.X_val / data.y_val each epoch; continue after the last epoch
    `run` logged. Checkpoints and history.csv go to `run`, every step and epoch to `progress`
    (a kit.training.Progress). Then keep the last (or best) weights and refresh the batch-norm
    statistics."""
    with backends.quiet_native_logs():
        config.setup(cfg)
        place = backends.placement(cfg.backend, cfg.strategy)
        if cfg.mixed_precision and not backends.accelerators(cfg.backend):
            # one line on stderr, as the kit's other warnings: not a Python warning with a source line
            print(
                "Warning: --mixed-precision on a CPU is no faster than float32, and far slower on "
                "TensorFlow and PyTorch (docs/decisions.md, 'Mixed precision stays off'); it is for GPUs",
                file=sys.stderr,
            )
        X_tr = data.X_train[: cfg.max_train] if cfg.max_train else data.X_train
        y_tr = data.y_train[: cfg.max_train] if cfg.max_train else data.y_train
        history = run.history().to_dict("records")
        start_epoch = history[-1]["epoch"] if history else 0
        best = _best_so_far(history)
        batch = cfg.batch_size * place.replicas
        feed = pipeline.pipeline(cfg.backend)
        model, aug, seed = _start_model(cfg, run, place, start_epoch, batch, feed)
        train_ds = feed.train(X_tr, y_tr, cfg, batch, seed, aug)
        val = feed.fit_kwargs(data.X_val, data.y_val, pipeline.eval_blur(cfg))
        if start_epoch < cfg.epochs:
            cbs = callbacks(run, cfg, history, best, progress, math.ceil(len(X_tr) / batch))
            _fit_epochs(model, train_ds, val, cfg, run, history, start_epoch, cbs)
        return _finish(model, cfg, run, history, best, X_tr, place)


def _fit_epochs(model, train_ds, val: dict, cfg, run, history, start_epoch, callbacks) -> None:
    val = dict(val)
    callbacks = [*val.pop("callbacks", []), *callbacks]  # a pipeline's validation first: the rest read it
    try:
        model.fit(
            train_ds,
            **val,
            epochs=cfg.epochs,
            initial_epoch=start_epoch,
            callbacks=callbacks,
            verbose=0,  # progress is the kit's own (callbacks' Logger)
            shuffle=False,
        )  # the pipeline already shuffles, with the seed
    except KeyboardInterrupt:
        done = history[-1]["epoch"] if history else 0
        raise KitError(
            f"interrupted after epoch {done} of {cfg.epochs}; continue with: "
            f"kit train cnn --resume {run.path}"
        ) from None


def _finish(model, cfg, run, history, best, X_tr, place: backends.Placement) -> Trained:
    """The weights to keep, their batch-norm statistics refreshed."""
    if not history:
        raise KitError(f"{run.path}: no epoch finished; nothing to save")
    if any(not math.isfinite(r["loss"]) for r in history):
        raise KitError(
            f"training diverged (loss became NaN) at epoch {history[-1]['epoch']}; lower --lr (now {cfg.lr})"
        )
    if cfg.keep == "best" and run.file(BEST_WEIGHTS).exists():
        model.load_weights(run.file(BEST_WEIGHTS))  # the best epoch over the whole run, resumes included
    kept_epoch = best["epoch"] if cfg.keep == "best" else history[-1]["epoch"]
    t0 = time.perf_counter()
    net.refresh_batchnorm(model, X_tr, cfg)
    extra = dict(
        arch=cfg.arch,
        bn_refresh_s=round(time.perf_counter() - t0, 3),
        n_params=int(model.count_params()),
        backend=cfg.backend,
        device=backends.device(cfg.backend),
        replicas=place.replicas,
    )
    return Trained(model, cfg, history, best["epoch"], kept_epoch, len(X_tr), extra)


def save(trained: Trained, run) -> None:
    with io.atomic_path(run.file(MODEL_FILE)) as tmp:
        trained.model.save(tmp)


def load(run, cfg: config.Config) -> Trained:
    """A finished run's network, from its model.keras."""
    config._keras(cfg)  # the backend cfg trained on
    model = net.load_keras(run.file(MODEL_FILE), compile=False)
    m = run.metrics
    return Trained(
        model,
        cfg,
        run.history().to_dict("records"),
        m.get("best_epoch", 0),
        m.get("kept_epoch", 0),
        m.get("n_train", 0),
        {},
    )


def predict(trained: Trained, X: np.ndarray) -> np.ndarray:
    """X: (N, 28, 28) uint8 -> (N, 10) float32, through the folded network (and TTA if set)."""
    with backends.quiet_native_logs():
        return net.predict_proba(trained.net, X, trained.cfg.tta, trained.cfg)
