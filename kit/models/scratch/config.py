"""The from-scratch network's hyper-parameters: the Config dataclass (every field a `kit train
scratch --option`, saved in config.json), the named PRESETS, and resolved() which fixes the
machine's choices before a run starts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from kit.config import cpu_cores
from kit.hparams import ModelConfig, param


def _widths_ok(hidden) -> bool:
    return bool(hidden) and all(int(h) > 0 for h in hidden)


@dataclass
class Config(ModelConfig):
    """Every hyper-parameter of the network and its training; saved in config.json."""

    hidden: tuple[int, ...] = param(
        (1024,),
        "hidden layer widths, comma-separated (e.g. 1024,1024)",
        check=_widths_ok,
        rule="must be one or more positive layer widths, e.g. 1024 or 1024,1024",
    )
    init: str = param(
        "he",
        "weight init: he = randn*sqrt(2/fan_in); small = randn*0.01 (the reference)",
        choices=("he", "small"),
    )
    raw_pixels: bool = param(False, "feed raw 0-255 pixels instead of scaling to [0, 1] (the reference)")
    optimizer: str = param(
        "adam",
        "sgd (momentum 0 = plain gradient descent), nesterov, or adam",
        choices=("sgd", "nesterov", "adam"),
    )
    lr: float = param(3e-3, "peak learning rate", gt=0)
    momentum: float = param(0.9, "momentum of sgd / nesterov", ge=0, lt=1)
    beta1: float = param(0.9, "Adam: decay of the gradient mean", ge=0, lt=1)
    beta2: float = param(0.999, "Adam: decay of the squared-gradient mean", ge=0, lt=1)
    eps: float = param(1e-8, "Adam: added to sqrt(v) against division by zero", gt=0)
    batch_size: int = param(512, "examples per step; 0 = the whole training set (full-batch GD)", ge=0)
    epochs: int = param(24, "passes over the training set (the cosine schedule spans them all)", ge=1)
    warmup_epochs: float = param(1.0, "epochs of linear learning-rate warm-up", ge=0)
    schedule: str = param(
        "cosine",
        "after warm-up: cosine decay to min_lr_ratio*lr, or constant",
        choices=("cosine", "constant"),
    )
    min_lr_ratio: float = param(0.0, "final learning rate of the cosine schedule, as a fraction of lr", ge=0)
    weight_decay: float = param(
        0.0, "L2 coefficient lambda: loss += lambda/2 * sum(W**2) (biases exempt)", ge=0
    )
    dropout: float = param(
        0.0,
        "probability of dropping a hidden unit (inverted dropout), in [0, 1)",
        ge=0,
        lt=1,
        why="it is the probability of dropping a hidden unit",
    )
    shift: float = param(2.0, "augmentation: random shift of up to this many pixels (0 = off)", ge=0)
    rotate: float = param(0.0, "augmentation: random rotation of up to this many degrees (0 = off)", ge=0)
    scale: float = param(
        0.0,
        "augmentation: random zoom of up to this fraction, e.g. 0.1 = +-10% (0 = off)",
        ge=0,
        lt=1,
        why="a fraction of the image size",
    )
    patience: int = param(
        0, "early stopping: stop after this many epochs without a better val loss (0 = off)", ge=0
    )
    checkpoint_every: int = param(1, "write the resume checkpoint every this many epochs", ge=1)
    threads: int = param(
        0, "BLAS threads (fixed, for bit-identical results); 0 = all cores of this machine", ge=0
    )


# fmt: off
PRESETS: dict[str, dict] = {
    # The recipe this kit grew from, bias-gradient bug fixed: 784-256-10, randn*0.01, full-batch
    # gradient descent on raw pixels. Kept to show what the rest buys.
    "reference": dict(hidden=(256,), init="small", raw_pixels=True, optimizer="sgd", momentum=0.0,
                      lr=0.0024, batch_size=0, epochs=1200, warmup_epochs=0.0, schedule="constant",
                      shift=0.0, checkpoint_every=50),
    # Fast and strong: the kit's everyday network.
    "default": dict(),
    # The most this family reaches in reasonable time on a laptop CPU: two hidden layers,
    # dropout and random rotation/zoom on top of the shifts.
    "best": dict(hidden=(1024, 1024), dropout=0.1, epochs=40, lr=1e-3, batch_size=256,
                 shift=2.0, rotate=10.0, scale=0.1),
}
# fmt: on


def resolved(cfg: Config) -> Config:
    """cfg with the machine's choices fixed, as config.json records them: threads=0 -> the cores."""
    return replace(cfg, threads=cfg.threads or cpu_cores())
