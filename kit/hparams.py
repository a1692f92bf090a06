"""Hyper-parameters, one mechanism for every model.

A model's settings are one dataclass (a subclass of `ModelConfig`) whose fields are made
with `param`: default, help text, type, range and choices in one place. From it come the
`kit train <model>` options (kit.cli), presets, validation with one message format, and the
config.json every run saves:

    @dataclass
    class Config(ModelConfig):
        lr: float = param(3e-3, "peak learning rate", gt=0)

    cfg = make_config(Config, PRESETS, "default", lr=1e-3)   # KitError on a bad value:
                                                             # "--lr must be > 0 (got 0.0)"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kit.errors import KitError

C = TypeVar("C", bound="ModelConfig")

# Preset and architecture names of runs written before the presets were named alike.
LEGACY_NAMES = {"seed": "reference"}


def param(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    check: Callable[[Any], bool] | None = None,
    rule: str | None = None,
    why: str | None = None,
    cli: bool = True,
    group: str | None = None,
):
    """A config field: its default, its help (shown by `--help`), and what a valid value is.

    choices:        the allowed values;
    gt/ge/lt/le:    bounds (>, >=, <, <=), e.g. ge=0, lt=1 for a probability;
    check, rule:    any other test of the value, and how to say it ("must be ...");
    why:            appended to the message, for rules a user may not guess;
    cli=False:      not an option of its own (set by the preset or the kit);
    group:          what the field is about ("architecture", "optimisation", ...): `--help` lists
                    a group's options under its own heading (`by_group`).
    """
    meta = dict(
        help=help,
        choices=choices,
        gt=gt,
        ge=ge,
        lt=lt,
        le=le,
        check=check,
        rule=rule,
        why=why,
        cli=cli,
        group=group,
    )
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    """What every model's config has: the random seed and the preset it started from."""

    seed: int = param(0, "random seed (weights, shuffling, augmentation, dropout)", ge=0)
    preset: str = param("default", "the preset these values started from", cli=False)

    def checks(self):
        """Rules between fields, as (field, rule) pairs for what is wrong; none by default."""
        return ()


def by_group(cls: type[ModelConfig]) -> dict[str, list[str]]:
    """{group: the names of its fields, in field order}, the groups in the order they first
    appear; fields without a group are left out ({} for a config without groups)."""
    found: dict[str, list[str]] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("group"):
            found.setdefault(f.metadata["group"], []).append(f.name)
    return found


def flag(name: str) -> str:
    """A field's CLI spelling: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


def _fmt(x: float) -> str:
    return f"{x:g}"


def range_rule(meta: Mapping) -> str | None:
    """'must be > 0', 'must be at least 1', 'must be in [0, 1)', ... from a field's bounds."""
    lo, lo_open = (meta["gt"], True) if meta["gt"] is not None else (meta["ge"], False)
    hi, hi_open = (meta["lt"], True) if meta["lt"] is not None else (meta["le"], False)
    if lo is None and hi is None:
        return None
    if hi is None:
        if lo_open:
            return f"must be > {_fmt(lo)}"
        return "must be 0 or more" if lo == 0 else f"must be at least {_fmt(lo)}"
    if lo is None:
        return f"must be {'<' if hi_open else '<='} {_fmt(hi)}"
    if not (lo_open or hi_open):
        return f"must be between {_fmt(lo)} and {_fmt(hi)}"
    return f"must be in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"


def _in_range(v, meta: Mapping) -> bool:
    return (
        (meta["gt"] is None or v > meta["gt"])
        and (meta["ge"] is None or v >= meta["ge"])
        and (meta["lt"] is None or v < meta["lt"])
        and (meta["le"] is None or v <= meta["le"])
    )


def bad(cfg: ModelConfig, name: str, rule: str) -> KitError:
    """The one message format for a bad setting: '--lr must be > 0 (got 0.0)'."""
    return KitError(f"{flag(name)} {rule} (got {getattr(cfg, name)!r})")


def validate(cfg: ModelConfig) -> None:
    """KitError naming the first bad field (in field order), then the config's own
    cross-field checks (`cfg.checks()`: (field, rule) pairs for what is wrong)."""
    for f in dataclasses.fields(cfg):
        meta, value = f.metadata, getattr(cfg, f.name)
        if not meta:
            continue
        why = f": {meta['why']}" if meta.get("why") else ""
        if meta["choices"] is not None and value not in meta["choices"]:
            raise bad(cfg, f.name, f"must be one of: {', '.join(map(str, meta['choices']))}")
        if range_rule(meta) and not _in_range(value, meta):
            raise bad(cfg, f.name, range_rule(meta) + why)
        if meta["check"] is not None and not meta["check"](value):
            raise bad(cfg, f.name, meta["rule"] + why)
    for name, rule in cfg.checks():
        raise bad(cfg, name, rule)


def make_config(cls: type[C], presets: Mapping[str, dict], preset: str = "default", **overrides) -> C:
    """A validated `cls`: the preset's values, then `overrides` (None values ignored)."""
    if preset not in presets:
        raise KitError(f"unknown preset {preset!r}; choose one of: {', '.join(presets)}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise KitError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {**presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
    values["preset"] = preset
    cfg = cls(**values)
    validate(cfg)
    return cfg


def from_saved(cls: type[C], presets: Mapping[str, dict], saved: Mapping) -> C:
    """The config a run was trained with, from its config.json (which also holds keys that are
    not settings: model, data checksum, ...). Fields added to `cls` since take the preset's
    value; lists come back as tuples; old preset names are mapped (seed -> reference)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {k: v for k, v in saved.items() if k in fields}
    for k, v in values.items():
        if isinstance(fields[k].default, tuple) and isinstance(v, list):
            values[k] = tuple(v)
        if k in ("preset", "arch"):
            values[k] = LEGACY_NAMES.get(v, v)
    preset = values.pop("preset", None) or values.get("arch") or "default"
    return make_config(cls, presets, preset if preset in presets else "default", **values)
