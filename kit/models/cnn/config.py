"""The CNN's settings: `Config` (every hyper-parameter, each a `kit train cnn` option, in groups:
architecture, optimisation, augmentation, evaluation, machine), the presets, reading old
config.json files (`upgrade`), and setting up the Keras backend a config names.

Presets (`PRESETS`, `kit train cnn --preset NAME`):
    reference  the Kaggle kernel this kit grew from (Conv32 5x5 x2 -> pool -> Conv64 3x3 x2 ->
               pool -> Dense 256), with its two bugs fixed: every epoch sees all the training
               images (tf.data, no generator running dry) and ReduceLROnPlateau watches
               `val_accuracy`, a metric that exists, so the learning rate really drops.
    default    stacked 3x3 convolutions with batch-norm, strided 5x5 convolutions instead of
               pooling, dropout 0.3, 16 then 64 filters (~290k parameters), Adam with a cosine
               schedule; keeps the last epoch, then re-estimates batch-norm statistics.
    best       the default network wider (32 first-block filters) for 45 epochs: a GPU budget.
    anchor     the recipe of the public 15-CNN ensemble at 99.757 % (Chris Deotte's, repository
               cdeotte/MNIST-CNN-99.75) in this network: 32 then 64 filters, dropout 0.4, Adam at
               1e-3 x 0.95^epoch for 45 epochs, every batch augmented, no eval blur or refresh.
               (Its layers run conv -> ReLU -> batch-norm; here conv -> batch-norm -> ReLU.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kit.hparams import ModelConfig, param
from kit.models import backends

ARCHS = ("default", "reference")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("cosine", "exponential", "plateau", "constant")
STRATEGIES = ("auto", "mirrored")
KEEPS = ("last", "best")


def _blur_ok(b: float) -> bool:
    return 0 <= b <= 1 / 3


@dataclass
class Config(ModelConfig):
    """Every hyper-parameter of a CNN run; saved in config.json, each one a `kit train cnn` option.

    Rates are per optimizer step; `rotation` in degrees; `zoom` and `shift` as fractions of the side.
    """

    # ---------------- architecture: the network
    arch: str = param(
        "default", "Architecture (set by the preset).", choices=ARCHS, cli=False, group="architecture"
    )
    width: int = param(
        16,
        "Filters of the first block (at 28x28, where a filter costs the most).",
        ge=1,
        group="architecture",
    )
    growth: int = param(
        4,
        "The second block has growth x width filters, the last layer twice that.",
        ge=1,
        group="architecture",
    )
    dropout: float = param(0.3, "Dropout rate after each block.", ge=0, lt=1, group="architecture")

    # ---------------- optimisation: how the weights are fitted
    epochs: int = param(28, "Epochs (full passes over the training rows).", ge=1, group="optimisation")
    batch_size: int = param(
        64, "Images per step, per replica (mirrored multiplies it by the GPUs).", ge=1, group="optimisation"
    )
    optimizer: str = param("adam", "Optimizer.", choices=OPTIMIZERS, group="optimisation")
    lr: float = param(2e-3, "Peak (initial) learning rate.", gt=0, group="optimisation")
    lr_schedule: str = param(
        "cosine",
        "cosine: lr_min + (lr - lr_min)(1 + cos(pi k/epochs))/2 at epoch k; "
        "exponential: lr * decay^k; plateau: x decay after plateau-patience epochs "
        "without a val_accuracy gain; constant.",
        choices=SCHEDULES,
        group="optimisation",
    )
    lr_decay: float = param(
        0.95, "Per-epoch factor (exponential) or cut factor (plateau).", gt=0, le=1, group="optimisation"
    )
    lr_min: float = param(1e-5, "Floor of every schedule.", ge=0, group="optimisation")
    plateau_patience: int = param(
        3, "Epochs without val_accuracy gain before the plateau schedule cuts.", ge=0, group="optimisation"
    )
    label_smoothing: float = param(
        0.0, "Label smoothing of the cross-entropy (0 = off).", ge=0, lt=1, group="optimisation"
    )
    max_train: int = param(
        0, "Train on only the first N training rows (0 = all; for quick tuning).", ge=0, group="optimisation"
    )

    # ---------------- augmentation: what each training image goes through
    augment: bool = param(True, "Random rotation/zoom/shift of every training batch.", group="augmentation")
    clean_fraction: float = param(
        0.2,
        "Share of each training batch left un-augmented: sharp digits, like "
        "the test set's (0 = augment every image).",
        ge=0,
        lt=1,
        group="augmentation",
    )
    affine: bool = param(
        False,
        "Augmentation: rotation, zoom and shift as one affine resampling of each image instead of "
        "Keras's three layers in a row (a third of the interpolation, and of its smoothing).",
        group="augmentation",
    )
    elastic: float = param(
        0.0,
        "Augmentation: elastic distortion, in pixels (Simard et al. 2003: a smooth random "
        "displacement field applied with the shift; 0 = off; Simard's 34).",
        ge=0,
        group="augmentation",
    )
    elastic_sigma: float = param(
        4.0, "Smoothness of the elastic field, pixels (a Gaussian's sigma).", gt=0, group="augmentation"
    )
    rotation: float = param(
        10.0, "Augmentation: rotate up to +-this many degrees.", ge=0, le=180, group="augmentation"
    )
    zoom: float = param(
        0.1, "Augmentation: zoom in or out by up to this fraction.", ge=0, lt=1, group="augmentation"
    )
    shift: float = param(
        0.1,
        "Augmentation: shift up to this fraction of the side, each axis.",
        ge=0,
        lt=1,
        group="augmentation",
    )

    # ---------------- evaluation: what validation decides, and the images and weights predictions use
    patience: int = param(
        0,
        "Early stopping: stop after this many epochs without a val_loss gain and keep the best epoch "
        "(0 = off; needs --keep best).",
        ge=0,
        group="evaluation",
    )
    keep: str = param(
        "last",
        "Weights to keep: last (after the final epoch, where the schedule ends; chosen "
        "without looking at validation) or best (the epoch of lowest val_loss, "
        "EarlyStopping's restore_best_weights).",
        choices=KEEPS,
        group="evaluation",
    )
    bn_refresh: int = param(
        8192,
        "After training, re-estimate every batch-norm mean/variance on this many "
        "training images as predictions see them: un-augmented, eval blur, no dropout "
        "(0 = keep the running averages).",
        ge=0,
        group="evaluation",
    )
    blur: float = param(
        0.25,
        "Prediction and validation: smooth each image with the 3x3 kernel [b, 1-2b, b] "
        "x [b, 1-2b, b] first, because augmentation's bilinear resampling smooths every "
        "training image (0 = off; unused without --augment).",
        check=_blur_ok,
        rule="must be between 0 and 1/3 (1/3: a 3x3 box filter)",
        group="evaluation",
    )
    tta: int = param(
        0,
        "Test-time augmentation: extra augmented passes averaged into predictions (0 = off).",
        ge=0,
        group="evaluation",
    )

    # ---------------- machine: where it runs and how it computes (backend, devices, precision, threads)
    backend: str = param(
        "auto",
        "Keras backend: auto (KERAS_BACKEND if set, else tensorflow, jax, torch: the first "
        "installed), tensorflow (the fastest on a CPU), jax or torch (for GPUs).",
        choices=backends.CHOICES,
        group="machine",
    )
    mixed_precision: bool = param(
        False, "float16 compute with float32 weights (for GPUs with tensor cores).", group="machine"
    )
    strategy: str = param(
        "auto",
        "auto: the default device (a GPU when the backend sees one); "
        "mirrored: every GPU, batch scaled per replica (tensorflow and jax).",
        choices=STRATEGIES,
        group="machine",
    )
    fused_bn: bool = param(
        True,
        "TensorFlow: each batch-norm's training step as one fused kernel (FusedBatchNormV3) "
        "instead of Keras's moments-then-normalise: the same maths up to float32 rounding, a "
        "faster step (off: Keras's own, as runs before it trained).",
        group="machine",
    )
    threads: int = param(
        0, "CPU threads of TensorFlow and PyTorch (0 = one per core).", ge=0, group="machine"
    )

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
    # the recipe of the strongest public ensemble of this family (cdeotte/MNIST-CNN-99.75: 15
    # CNNs, 99.757 % public): 32-32-32s2 / 64-64-64s2 / 128, dropout 0.4, Adam 1e-3 x 0.95^epoch
    "anchor": dict(width=32, growth=2, dropout=0.4, epochs=45, lr=1e-3, lr_schedule="exponential",
                   lr_decay=0.95, blur=0.0, clean_fraction=0.0, bn_refresh=0),
}
# fmt: on


def resolved(cfg: Config) -> Config:
    """cfg as config.json records it (`--backend auto` made the backend it means here); KitError
    when this machine cannot run it, before any run folder is made."""
    cfg = dataclasses.replace(cfg, backend=backends.choose(cfg.backend))
    with backends.quiet_native_logs():
        backends.require_devices(cfg.backend, cfg.strategy)
    return cfg


def setup(cfg: Config) -> None:
    """Seeds, determinism, CPU threads, precision, on cfg's backend; call before building anything."""
    backends.setup(backends.choose(cfg.backend), cfg.seed, cfg.threads, cfg.mixed_precision)


def _keras(cfg: Config | None = None):
    """Keras, on cfg's backend (kit.models.backends; without cfg, the one this process uses)."""
    return backends.keras_for(cfg.backend if cfg is not None else "auto")
