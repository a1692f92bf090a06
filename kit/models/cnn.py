"""The augmented Keras CNN: the kit's strong single model, read top to bottom as a keras-io
example: settings, TensorFlow set-up, the network, the input pipeline and augmentation,
prediction, then the training that kit.training calls (`fit`, `save`, `load`, `predict`).

Presets (`PRESETS`, `kit train cnn --preset NAME`):
    reference  the Kaggle kernel this kit grew from (Conv32 5x5 x2 -> pool -> Conv64 3x3 x2 ->
               pool -> Dense 256), with its two bugs fixed: every epoch sees all the training
               images (tf.data, no generator running dry) and ReduceLROnPlateau watches
               `val_accuracy`, a metric that exists, so the learning rate really drops.
    default    stacked 3x3 convolutions with batch-norm, strided 5x5 convolutions instead of
               pooling, dropout 0.3, 16 then 64 filters (~290k parameters), Adam with a cosine
               schedule; keeps the last epoch, then re-estimates batch-norm statistics.
    best       the default network wider (32 first-block filters) for 45 epochs: a GPU budget.

Every Keras 3 backend trains it (`--backend`, kit/models/backends.py): TensorFlow feeds it
through tf.data with the augmentation beside the step, JAX and PyTorch through NumPy batches
with the augmentation as the network's first layer (kit/models/cnn_input.py). Validation and
test images are smoothed by a fixed 3x3 kernel (`--blur`, `eval_blur`): the augmentation's
bilinear resampling smooths every training image, so a sharp digit is one the network has
never seen. docs/decisions.md has the studies behind each choice.

Run-folder files of this model: checkpoint.keras after every epoch (for --resume),
best.weights.h5 (the best epoch so far), model.keras (the kept weights, batch-norm refreshed).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from kit import config, io
from kit.errors import KitError
from kit.hparams import ModelConfig, param
from kit.models import backends, cnn_input
from kit.models.cnn_input import augmentation, eval_blur

ARCHS = ("default", "reference")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("cosine", "exponential", "plateau", "constant")
STRATEGIES = ("auto", "mirrored")
KEEPS = ("last", "best")

CHECKPOINT = "checkpoint.keras"  # full model + optimizer state after the last finished epoch
BEST_WEIGHTS = "best.weights.h5"  # weights of the best epoch so far (val_loss)
MODEL_FILE = "model.keras"  # the final model (kept weights)
RESUME_FILES = (CHECKPOINT, BEST_WEIGHTS)
RESUME_SEED_STRIDE = 7919  # a resumed run shuffles/augments from seed + stride * epoch


def _blur_ok(b: float) -> bool:
    return 0 <= b <= 1 / 3


@dataclass
class Config(ModelConfig):
    """Every hyper-parameter of a CNN run; saved in config.json, each one a `kit train cnn` option.

    Rates are per optimizer step; `rotation` in degrees; `zoom` and `shift` as fractions of the side.
    """

    arch: str = param("default", "Architecture (set by the preset).", choices=ARCHS, cli=False)
    width: int = param(16, "Filters of the first block (at 28x28, where a filter costs the most).", ge=1)
    growth: int = param(4, "The second block has growth x width filters, the last layer twice that.", ge=1)
    dropout: float = param(0.3, "Dropout rate after each block.", ge=0, lt=1)
    epochs: int = param(28, "Epochs (full passes over the training rows).", ge=1)
    batch_size: int = param(64, "Images per step, per replica (mirrored multiplies it by the GPUs).", ge=1)
    optimizer: str = param("adam", "Optimizer.", choices=OPTIMIZERS)
    lr: float = param(2e-3, "Peak (initial) learning rate.", gt=0)
    lr_schedule: str = param(
        "cosine",
        "cosine: lr_min + (lr - lr_min)(1 + cos(pi k/epochs))/2 at epoch k; "
        "exponential: lr * decay^k; plateau: x decay after plateau-patience epochs "
        "without a val_accuracy gain; constant.",
        choices=SCHEDULES,
    )
    lr_decay: float = param(0.95, "Per-epoch factor (exponential) or cut factor (plateau).", gt=0, le=1)
    lr_min: float = param(1e-5, "Floor of every schedule.", ge=0)
    plateau_patience: int = param(
        3, "Epochs without val_accuracy gain before the plateau schedule cuts.", ge=0
    )
    label_smoothing: float = param(0.0, "Label smoothing of the cross-entropy (0 = off).", ge=0, lt=1)
    augment: bool = param(True, "Random rotation/zoom/shift of every training batch.")
    clean_fraction: float = param(
        0.2,
        "Share of each training batch left un-augmented: sharp digits, like "
        "the test set's (0 = augment every image).",
        ge=0,
        lt=1,
    )
    affine: bool = param(
        False,
        "Augmentation: rotation, zoom and shift as one affine resampling of each image instead of "
        "Keras's three layers in a row (a third of the interpolation, and of its smoothing).",
    )
    elastic: float = param(
        0.0,
        "Augmentation: elastic distortion, in pixels (Simard et al. 2003: a smooth random "
        "displacement field applied with the shift; 0 = off; Simard's 34).",
        ge=0,
    )
    elastic_sigma: float = param(4.0, "Smoothness of the elastic field, pixels (a Gaussian's sigma).", gt=0)
    rotation: float = param(10.0, "Augmentation: rotate up to +-this many degrees.", ge=0, le=180)
    zoom: float = param(0.1, "Augmentation: zoom in or out by up to this fraction.", ge=0, lt=1)
    shift: float = param(0.1, "Augmentation: shift up to this fraction of the side, each axis.", ge=0, lt=1)
    patience: int = param(
        0,
        "Early stopping: stop after this many epochs without a val_loss gain and keep the best epoch "
        "(0 = off; needs --keep best).",
        ge=0,
    )
    keep: str = param(
        "last",
        "Weights to keep: last (after the final epoch, where the schedule ends; chosen "
        "without looking at validation) or best (the epoch of lowest val_loss, "
        "EarlyStopping's restore_best_weights).",
        choices=KEEPS,
    )
    bn_refresh: int = param(
        8192,
        "After training, re-estimate every batch-norm mean/variance on this many "
        "training images as predictions see them: un-augmented, eval blur, no dropout "
        "(0 = keep the running averages).",
        ge=0,
    )
    blur: float = param(
        0.25,
        "Prediction and validation: smooth each image with the 3x3 kernel [b, 1-2b, b] "
        "x [b, 1-2b, b] first, because augmentation's bilinear resampling smooths every "
        "training image (0 = off; unused without --augment).",
        check=_blur_ok,
        rule="must be between 0 and 1/3 (1/3: a 3x3 box filter)",
    )
    tta: int = param(
        0, "Test-time augmentation: extra augmented passes averaged into predictions (0 = off).", ge=0
    )
    backend: str = param(
        "auto",
        "Keras backend: auto (KERAS_BACKEND if set, else tensorflow, jax, torch: the first "
        "installed), tensorflow (the fastest on a CPU), jax or torch (for GPUs).",
        choices=backends.CHOICES,
    )
    mixed_precision: bool = param(False, "float16 compute with float32 weights (for GPUs with tensor cores).")
    strategy: str = param(
        "auto",
        "auto: the default device (a GPU when the backend sees one); "
        "mirrored: every GPU, batch scaled per replica (tensorflow and jax).",
        choices=STRATEGIES,
    )
    fused_bn: bool = param(
        True,
        "TensorFlow: each batch-norm's training step as one fused kernel (FusedBatchNormV3) "
        "instead of Keras's moments-then-normalise: the same maths up to float32 rounding, a "
        "faster step (off: Keras's own, as runs before it trained).",
    )
    threads: int = param(0, "CPU threads of TensorFlow and PyTorch (0 = one per core).", ge=0)
    max_train: int = param(0, "Train on only the first N training rows (0 = all; for quick tuning).", ge=0)

    def checks(self):
        """Rules between fields, as (field, rule) pairs for what is wrong."""
        if self.lr_min > self.lr:
            yield "lr_min", f"must be between 0 and --lr ({self.lr})"
        if self.elastic and self.affine:
            yield (
                "elastic",
                "cannot be combined with --affine (the elastic field rides on the separate shift)",
            )
        if self.patience and self.keep == "last":
            # --keep last takes the schedule's end; early stopping would cut the schedule short
            # and leave a mid-schedule epoch's weights
            yield (
                "patience",
                "needs --keep best (--keep last keeps the schedule's end, which early stopping cuts)",
            )


def upgrade(saved: dict) -> dict:
    """A config.json from an older kit: from before early stopping required --keep best, its
    patience is dropped (a run keeping its last epoch trains to the schedule's end); from before
    the backends, it trained on TensorFlow; from before the fused batch-norm, with Keras's own;
    from before --affine, with three resamplings (so a resumed or repeated run computes what it did)."""
    saved = {"backend": "tensorflow", "fused_bn": False, "affine": False, **saved}
    if saved.get("keep", "last") == "last" and saved.get("patience"):
        return {**saved, "patience": 0}
    return saved


# fmt: off
PRESETS: dict[str, dict] = {
    "reference": dict(arch="reference", width=32, growth=2, blur=0.0, clean_fraction=0.0, keep="best",
                      bn_refresh=0, dropout=0.25, epochs=10, batch_size=86, optimizer="rmsprop", lr=1e-3,
                      lr_schedule="plateau", lr_decay=0.5, plateau_patience=3, patience=10),
    "default": {},
    "best": dict(width=32, epochs=45),
}
# fmt: on


def resolved(cfg: Config) -> Config:
    """cfg as config.json records it (`--backend auto` made the backend it means here); KitError
    when this machine cannot run it, before any run folder is made."""
    cfg = dataclasses.replace(cfg, backend=backends.choose(cfg.backend))
    with backends.quiet_native_logs():
        backends.require_devices(cfg.backend, cfg.strategy)
    return cfg


# ============================================================================ backend


def setup(cfg: Config) -> None:
    """Seeds, determinism, CPU threads, precision, on cfg's backend; call before building anything."""
    backends.setup(backends.choose(cfg.backend), cfg.seed, cfg.threads, cfg.mixed_precision)


def _keras(cfg: Config | None = None):
    """Keras, on cfg's backend (kit.models.backends; without cfg, the one this process uses)."""
    return backends.keras_for(cfg.backend if cfg is not None else "auto")


# ============================================================================ model


def build_model(cfg: Config, augment=None):
    """The network for cfg.arch: (B, 28, 28, 1) float32 in [0, 1] -> (B, 10) float32 probabilities.
    `augment`: a first layer that augments training batches (cnn_input.augment_layer: the NumPy
    pipeline's), the identity at inference."""
    keras = _keras(cfg)
    layers = keras.layers

    side = config.IMAGE_SIDE
    inputs = keras.Input((side, side, 1), name="image")
    first = inputs if augment is None else augment(inputs)
    w1, w2, p = cfg.width, cfg.growth * cfg.width, cfg.dropout
    if cfg.arch == "reference":
        # Conv32(5x5) x2 -> max-pool -> Conv64(3x3) x2 -> max-pool -> Dense 256, as the reference
        x = layers.Conv2D(w1, 5, padding="same", activation="relu")(first)
        x = layers.Conv2D(w1, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(p)(x)
        x = layers.Conv2D(w2, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(w2, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, strides=2)(x)
        x = layers.Dropout(p)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(4 * w2, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    elif cfg.arch == "default":
        # Two blocks of [3x3 conv, 3x3 conv, strided 5x5 conv] with batch-norm: 28 -> 12 -> 4,
        # the strided conv learns its own down-sampling where the reference max-pools.
        # The first block is narrow and the second wide: a filter at 24x24 costs 9x one at 8x8,
        # and a CPU is compute-bound here (docs/decisions.md, "first-block width").
        x = first
        bn = fused_batchnorm_class() if cfg.fused_bn else layers.BatchNormalization
        for filters in (w1, w2):
            x = _conv_bn(x, bn, filters, 3)
            x = _conv_bn(x, bn, filters, 3)
            x = _conv_bn(x, bn, filters, 5, strides=2, padding="same")
            x = layers.Dropout(p)(x)
        x = _conv_bn(x, bn, 2 * w2, 4)  # 4x4 -> 1x1: a dense layer over the last feature map
        x = layers.Flatten()(x)
        x = layers.Dropout(p)(x)
    else:
        raise AssertionError(cfg.arch)
    # float32 output even under mixed precision: softmax and the loss need the range
    outputs = layers.Dense(config.N_CLASSES, activation="softmax", dtype="float32", name="proba")(x)
    return keras.Model(inputs, outputs, name=f"cnn_{cfg.arch}")


def _conv_bn(x, bn, filters: int, kernel: int, strides: int = 1, padding: str = "valid"):
    layers = _keras().layers

    # no conv bias: batch-norm's beta does that job
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = bn()(x)
    return layers.Activation("relu")(x)


@functools.cache
def fused_batchnorm_class():
    """`FusedBatchNorm`: Keras's BatchNormalization, except that on TensorFlow its training step
    is one FusedBatchNormV3 kernel, forward and gradient, where Keras computes the moments and
    then normalises in separate elementwise passes. Batch-norm is memory-bound and a large share
    of the CPU step (docs/decisions.md, "Where the step's time goes"). Inference, other backends
    and the cases the kernel does not cover run Keras's own code. Registered with Keras once, so
    model files holding it load."""
    keras = _keras()

    @keras.saving.register_keras_serializable(package="kit")
    class FusedBatchNorm(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            fused = (
                keras.backend.backend() == "tensorflow"
                and training
                and self.trainable
                and mask is None
                and self.center
                and self.scale
                and not (self.renorm or self.synchronized)
                and len(inputs.shape) == 4
                and self.axis in (-1, 3)
            )
            if not fused:
                return super().call(inputs, training=training, mask=mask)
            tf = backends.tf()
            x = tf.cast(inputs, "float32")  # as Keras does: batch-norm in float32 under mixed precision
            empty = tf.constant([], "float32")
            y, mean, var, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=self.gamma, offset=self.beta, mean=empty, variance=empty,
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
            )  # fmt: skip
            # the kernel returns the unbiased variance; Keras's moving average keeps the biased one
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
            var = var * (n - 1) / n
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + var * (1 - self.momentum))
            return tf.cast(y, self.compute_dtype)

    return FusedBatchNorm


def load_keras(path, compile: bool = True):
    """A model or checkpoint file this module wrote (model.keras, checkpoint.keras), read with
    the kit's own layers (`Augment`, `FusedBatchNorm`) registered first. compile=False: for
    prediction only, without the optimizer (whose state a mixed-precision run saved with a
    loss scale that a float32 process does not rebuild: Keras would warn)."""
    cnn_input.augment_layer_class()
    fused_batchnorm_class()
    with backends.quiet_native_logs():
        return _keras().models.load_model(path, compile=compile)


def inference_model(model):
    """The same network for prediction only: every batch-norm folded into the convolution before
    it, dropout and the in-model augmentation removed. Same outputs up to float32 rounding, two fewer passes over each
    activation map (on a CPU those passes are memory traffic, not arithmetic).

    For a convolution W, b followed by batch-norm (gamma, beta, moving mean mu, variance var):
        s = gamma / sqrt(var + eps)  (per output channel);  W' = W * s;  b' = (b - mu) * s + beta
    Only for a chain of layers (both archs are one).
    """
    keras = _keras()
    layers = keras.layers

    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    x = inputs = keras.Input(model.input_shape[1:], name="image")
    i = 0
    while i < len(chain):
        layer = chain[i]
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if isinstance(layer, (layers.Dropout, cnn_input.augment_layer_class())):
            i += 1
            continue
        if isinstance(layer, layers.Conv2D) and isinstance(nxt, layers.BatchNormalization):
            assert nxt.scale and nxt.center and layer.activation.__name__ == "linear"
            gamma, beta, mu, var = (np.asarray(w, dtype=np.float64) for w in nxt.get_weights())
            kernel, *bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
            s = gamma / np.sqrt(var + nxt.epsilon)
            b = ((bias[0] if bias else 0.0) - mu) * s + beta
            after = chain[i + 2] if i + 2 < len(chain) else None
            activation = after.get_config()["activation"] if isinstance(after, layers.Activation) else None
            conv = layers.Conv2D(
                layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=layer.padding,
                activation=activation,
                name=layer.name,
                dtype=layer.dtype_policy,  # as trained (mixed_float16 or not), whatever the process's policy
            )
            x = conv(x)
            conv.set_weights([(kernel * s).astype(np.float32), b.astype(np.float32)])
            i += 3 if activation else 2
            continue
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
        i += 1
    return keras.Model(inputs, x, name=f"{model.name}_inference")


def refresh_batchnorm(model, X: np.ndarray, cfg: Config) -> None:
    """Re-estimate every batch-norm layer's moving mean and variance, in place, as the exact
    per-channel mean and (biased) variance of its input over cfg.bn_refresh training images as
    predictions see them: un-augmented, smoothed by the eval blur, dropout off (inference mode).
    One pass down the chain of layers (both archs are one): each batch-norm is refreshed before
    the images go through it, so it sees the refreshed layers before it.
    X: (N, 28, 28) uint8 training images; cfg.bn_refresh of them, drawn with cfg.seed.

    Why: the running averages describe what training fed each batch-norm, which is not what
    prediction feeds it. Training adds dropout's extra variance (a batch-norm after a dropout
    layer remembers it; predictions run without dropout) and mixes augmented, resampled digits
    with sharp ones; predictions see sharp digits smoothed by the eval blur. Normalising with the
    statistics of exactly that input removes both mismatches (docs/decisions.md, "batch-norm
    refresh": fewer validation errors in total over the seeds measured, not on every seed).
    """
    keras = _keras()
    layers = keras.layers

    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    bn_at = [i for i, layer in enumerate(chain) if isinstance(layer, layers.BatchNormalization)]
    if not cfg.bn_refresh or not bn_at:
        return
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(X), min(cfg.bn_refresh, len(X)), replace=False)
    x = cnn_input.pipeline().images(X[pick], eval_blur(cfg))
    for layer in chain[: bn_at[-1] + 1]:  # nothing after the last batch-norm needs the images
        if isinstance(layer, layers.BatchNormalization):
            a = keras.ops.convert_to_numpy(x).astype(np.float64).reshape(-1, x.shape[-1])
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(0).astype(np.float32), a.var(0).astype(np.float32)])
        x = layer(x, training=False)


def make_optimizer(cfg: Config):
    keras = _keras()

    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(cfg.lr)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(cfg.lr)
    return keras.optimizers.SGD(cfg.lr, momentum=0.9, nesterov=True)


def compile_model(model, cfg: Config) -> None:
    keras = _keras()

    model.compile(
        optimizer=make_optimizer(cfg),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def lr_at(cfg: Config, epoch: int) -> float:
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


def layer_multiply_adds(layer) -> int:
    """Forward multiply-adds per image of one layer: a convolution's or a dense layer's (the
    arithmetic that matters here), 0 for the rest."""
    layers = _keras().layers
    if isinstance(layer, layers.Conv2D):
        h, w, c_out = layer.output.shape[1:]
        kh, kw = layer.kernel_size
        return h * w * c_out * kh * kw * layer.input.shape[-1]
    if isinstance(layer, layers.Dense):
        return layer.input.shape[-1] * layer.units
    return 0


def multiply_adds(model) -> int:
    """Forward multiply-adds per image of the network (a training image costs about 3x)."""
    return sum(layer_multiply_adds(layer) for layer in model.layers)


# ============================================================================ prediction


def predict_proba(model, X: np.ndarray, tta: int = 0, cfg: Config | None = None) -> np.ndarray:
    """Class probabilities of X: (N, 28, 28) uint8 -> (N, 10) float32.

    The plain pass smooths the images by `eval_blur(cfg)` (none when cfg is None); tta > 0
    averages it with `tta` randomly augmented passes (seeded by cfg.seed).
    """
    feed = cnn_input.pipeline()
    proba = feed.predict(model, X, eval_blur(cfg))
    if tta:
        seed = (cfg.seed if cfg else 0) + cnn_input.TTA_SEED_OFFSET
        aug = augmentation(dataclasses.replace(cfg or Config(), seed=seed))
        for _ in range(tta):
            proba += feed.predict_augmented(model, X, aug)
        proba /= tta + 1
    return proba


# ============================================================================ training


def _callbacks(run, cfg: Config, history: list[dict], best: dict, progress, steps: int):
    """Logger: after each epoch, the history row, the checkpoint (model + optimizer) and, on a
    new best val_loss, the best weights; that is what makes a run resumable. Every step and
    epoch goes to `progress` (a kit.training.Progress). Then the schedule."""
    keras = _keras()

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


def _early_stopping(cfg: Config, history: list[dict], best: dict):
    keras = _keras()

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
    cfg: Config
    history: list
    best_epoch: int
    kept_epoch: int
    n_train: int
    extra: dict
    _net: object = None

    @property
    def net(self):
        if self._net is None:
            self._net = inference_model(self.model)
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


def _start_model(cfg: Config, run, place: backends.Placement, start_epoch: int, batch: int, feed):
    """(model, augmentation for the pipeline `feed` or None, seed) to train: new, or the run's
    checkpoint after `start_epoch` epochs. The NumPy pipeline's augmentation is the model's
    first layer (its random state travels in the checkpoint); tf.data's is returned."""
    _keras(cfg)  # the backend cfg trains on, before anything is built or loaded
    in_model = feed.augments_in_model
    # a resumed run shuffles and augments from a seed of its own: deterministic, but not
    # the exact batches an uninterrupted run would have seen
    seed = cfg.seed + RESUME_SEED_STRIDE * start_epoch
    with place.scope():
        if start_epoch:
            model = load_keras(run.file(CHECKPOINT))
            if model.name != f"cnn_{cfg.arch}":
                raise KitError(
                    f"{run.file(CHECKPOINT)} holds a {model.name!r} model, but the run's "
                    f"config.json says arch {cfg.arch!r}; start a new run"
                )
        else:
            layer = cnn_input.augment_layer(cfg, batch, seed) if in_model and cfg.augment else None
            model = build_model(cfg, layer)
            compile_model(model, cfg)
        aug = augmentation(dataclasses.replace(cfg, seed=seed)) if cfg.augment and not in_model else None
    return model, aug, seed


def fit(cfg: Config, run, data, progress) -> Trained:
    """Train on data.X_train (N, 28, 28) uint8 / data.y_train (N,) (the first cfg.max_train rows
    when set), validating on data.X_val / data.y_val each epoch; continue after the last epoch
    `run` logged. Checkpoints and history.csv go to `run`, every step and epoch to `progress`
    (a kit.training.Progress). Then keep the last (or best) weights and refresh the batch-norm
    statistics."""
    with backends.quiet_native_logs():
        setup(cfg)
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
        feed = cnn_input.pipeline(cfg.backend)
        model, aug, seed = _start_model(cfg, run, place, start_epoch, batch, feed)
        train_ds = feed.train(X_tr, y_tr, cfg, batch, seed, aug)
        val = feed.fit_kwargs(data.X_val, data.y_val, eval_blur(cfg))
        if start_epoch < cfg.epochs:
            callbacks = _callbacks(run, cfg, history, best, progress, math.ceil(len(X_tr) / batch))
            _fit_epochs(model, train_ds, val, cfg, run, history, start_epoch, callbacks)
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
    refresh_batchnorm(model, X_tr, cfg)
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


def load(run, cfg: Config) -> Trained:
    """A finished run's network, from its model.keras."""
    _keras(cfg)  # the backend cfg trained on
    model = load_keras(run.file(MODEL_FILE), compile=False)
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
        return predict_proba(trained.net, X, trained.cfg.tta, trained.cfg)
