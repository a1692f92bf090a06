"""The models kit trains, behind one interface.

Each model is a package here whose __init__.py (its face) declares

    Config            its hyper-parameter dataclass (a kit.hparams.ModelConfig)
    PRESETS           {"reference": {...}, "default": {...}, "best": {...}}: field overrides
    resolved(cfg)     cfg with machine-dependent values fixed, as config.json records them
                      (KitError if this machine cannot run it: checked before any run folder)
    RESUME_FILES      the run files --resume continues from (removed when a run finishes)
    upgrade(saved)    optional: a config.json from an older kit, as this kit reads it
    check_resumable(run)        KitError when an unfinished run cannot be continued
    fit(cfg, run, data, progress) -> trained   the training loop (checkpoints, history.csv)
    GPU               optional, default False: True when it trains on a GPU where one is found
    save(trained, run), load(run, cfg) -> trained, predict(trained, X) -> (N, 10) float32

and kit.training runs the same lifecycle around every one of them. `kit train <model>`,
`kit runs`, the ensemble and the report all read this registry: adding a model is one package
and one line in MODELS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from kit import hparams
from kit.errors import KitError


@dataclass(frozen=True)
class Model:
    """A registered model: its name (the run folders' prefix), a one-line summary and its module."""

    name: str
    summary: str
    module_name: str

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(self.module_name)

    @property
    def config_cls(self) -> type:
        return self.module.Config

    @property
    def presets(self) -> dict:
        return self.module.PRESETS

    @property
    def gpu(self) -> bool:
        """Whether it trains on a GPU where one is found (the NumPy network never does)."""
        return getattr(self.module, "GPU", False)

    def make_config(self, preset: str = "default", **overrides):
        return hparams.make_config(self.config_cls, self.presets, preset, **overrides)

    def run_config(self, saved: dict):
        """The config a run was trained with, from its config.json (through the model's
        `upgrade(saved)`, where it has one, for files written by older kits)."""
        saved = getattr(self.module, "upgrade", lambda s: s)(saved)
        return hparams.from_saved(self.config_cls, self.presets, saved)


MODELS = {
    m.name: m
    for m in (
        Model("scratch", "the from-scratch NumPy network", "kit.models.scratch"),
        Model("cnn", "the augmented Keras CNN", "kit.models.cnn"),
    )
}


def names() -> tuple[str, ...]:
    """The trainable models, in the order they are shown and trained."""
    return tuple(MODELS)


def get(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise KitError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None
