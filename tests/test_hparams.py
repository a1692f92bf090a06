"""One hyper-parameter mechanism (kit.hparams) for every model: ranges, choices, presets, the
one message format, and configs read back from old run folders."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from kit import hparams, models
from kit.cli import cli
from kit.errors import KitError
from kit.hparams import ModelConfig, param


@dataclass
class Toy(ModelConfig):
    rate: float = param(0.1, "a rate", gt=0)
    keep: float = param(0.5, "a probability", ge=0, lt=1, why="it is a probability")
    steps: int = param(3, "steps", ge=1)
    delay: int = param(0, "delay", ge=0)
    angle: float = param(10.0, "degrees", ge=0, le=180)
    decay: float = param(0.9, "decay", gt=0, le=1)
    mode: str = param("a", "mode", choices=("a", "b"))
    widths: tuple[int, ...] = param(
        (4,), "widths", check=lambda w: all(x > 0 for x in w), rule="must be positive widths"
    )

    def checks(self):
        if self.delay > self.steps:
            yield "delay", f"must be at most --steps ({self.steps})"


PRESETS = {"reference": dict(rate=0.5), "default": {}, "best": dict(steps=9)}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(rate=0.0), "--rate must be > 0 (got 0.0)"),
        (dict(keep=1.0), "--keep must be in [0, 1): it is a probability (got 1.0)"),
        (dict(steps=0), "--steps must be at least 1 (got 0)"),
        (dict(delay=-1), "--delay must be 0 or more (got -1)"),
        (dict(angle=181.0), "--angle must be between 0 and 180 (got 181.0)"),
        (dict(decay=0.0), "--decay must be in (0, 1] (got 0.0)"),
        (dict(mode="c"), "--mode must be one of: a, b (got 'c')"),
        (dict(widths=(4, 0)), "--widths must be positive widths (got (4, 0))"),
        (dict(delay=5), "--delay must be at most --steps (3) (got 5)"),
        (dict(seed=-1), "--seed must be 0 or more (got -1)"),
    ],
)
def test_every_rule_speaks_the_one_format(overrides, message):
    with pytest.raises(KitError) as e:
        hparams.make_config(Toy, PRESETS, "default", **overrides)
    assert str(e.value) == message


def test_presets_then_overrides_and_none_keeps_the_preset():
    cfg = hparams.make_config(Toy, PRESETS, "best", rate=None, keep=0.25)
    assert (cfg.preset, cfg.steps, cfg.rate, cfg.keep, cfg.seed) == ("best", 9, 0.1, 0.25, 0)
    with pytest.raises(KitError, match=r"^unknown preset 'huge'; choose one of: reference, default, best$"):
        hparams.make_config(Toy, PRESETS, "huge")


def test_a_saved_config_comes_back_with_tuples_and_the_new_preset_names():
    saved = {"model": "toy", "rate": 0.5, "widths": [8, 8], "preset": "seed", "data_checksum": "x"}
    cfg = hparams.from_saved(Toy, PRESETS, saved)
    assert cfg.widths == (8, 8) and cfg.preset == "reference" and cfg.rate == 0.5
    # an old CNN run: arch "seed", no preset field -> the reference preset, fields it lacks from there
    old_cnn = {"model": "cnn", "arch": "seed", "seed": 3, "epochs": 10}
    cnn = models.get("cnn").run_config(old_cnn)
    assert (cnn.arch, cnn.preset, cnn.seed, cnn.width, cnn.optimizer) == (
        "reference",
        "reference",
        3,
        32,
        "rmsprop",
    )


@pytest.mark.parametrize("model", models.names())
def test_the_same_mistake_reads_the_same_in_every_model(model, isolated_dirs):
    for args, message in (
        (["--lr", "0"], "Error: --lr must be > 0 (got 0.0)\n"),
        (["--epochs", "0"], "Error: --epochs must be at least 1 (got 0)\n"),
        (["--seed", "-2"], "Error: --seed must be 0 or more (got -2)\n"),
        (
            ["--preset", "x"],
            f"Error: unknown preset 'x'; choose one of: {', '.join(models.get(model).presets)}\n",
        ),
    ):
        result = CliRunner().invoke(cli, ["train", model, *args])
        assert (result.exit_code, result.output) == (1, message)


def test_every_models_presets_are_named_alike_and_valid():
    for name in models.names():
        m = models.get(name)
        assert list(m.presets)[:3] == ["reference", "default", "best"]  # the CNN also has "anchor"
        for preset in m.presets:
            assert m.make_config(preset).seed == 0  # presets never choose the seed
