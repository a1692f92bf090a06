"""What the design-study scripts share: finding runs, their configs and networks, the labels.

The studies read run folders as `kit train` leaves them (the format in kit/runs.py: config.json,
history.csv, metrics.json, val_proba.npy, model.keras), make configs through the model registry
(kit.models) and call the CNN's own functions (the modules of kit/models/cnn/).
Every use of the kit's Python API goes through this file, so an API change is fixed here once;
`API` lists the names the studies need (tests/test_docs.py checks they exist).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = "model.keras"
# the CNN's names the studies call, each with the module of kit.models.cnn that holds it
API = {
    "predict_proba": "net",
    "inference_model": "net",
    "refresh_batchnorm": "net",
    "augmentation": "layers",
    "eval_blur": "pipeline",
    "setup": "config",
    "_keras": "config",
    "build_model": "net",
    "compile_model": "train",
    "lr_at": "train",
    "load_keras": "net",
    "multiply_adds": "net",
    "layer_multiply_adds": "net",
}


def cnn_model():
    """The CNN's entry in the model registry (kit.models): its presets and config reader."""
    from kit import models

    return models.get("cnn")


def cnn():
    """The CNN's functions the studies call (`API`: network, augmentation, refresh, prediction),
    as one namespace gathered from the modules of the package kit.models.cnn that hold them."""
    import importlib
    import types

    return types.SimpleNamespace(
        **{
            name: getattr(importlib.import_module(f"kit.models.cnn.{module}"), name)
            for name, module in API.items()
        }
    )


def tf_data():
    """The CNN's tf.data pipeline (kit.models.cnn.pipeline.TFData: `train`, `evaluation`): the
    TensorFlow backend's, which the studies measured."""
    from kit.models.cnn import pipeline

    return pipeline.TFData


def blur(x: np.ndarray, b: float) -> np.ndarray:
    """(N, 28, 28, 1) float32 smoothed by the eval blur's [b, 1-2b, b] kernel per axis
    (kit.models.cnn.pipeline.blur)."""
    from kit.models.cnn import pipeline

    return pipeline.blur(x, b)


def tf():
    """TensorFlow, imported with the kit's settings (kit.models.backends.tf)."""
    from kit.models import backends

    return backends.tf()


def cnn_preset(preset: str = "default", **overrides):
    """A validated CNN config: the preset's values, then `overrides`, as `kit train cnn` makes it."""
    return cnn_model().make_config(preset, **overrides)


def ensemble():
    """The ensemble module (kit.ensemble): fit_weights, combine, decide, accuracy, log_loss."""
    from kit import ensemble as ens

    return ens


def runs_root() -> Path:
    return Path(os.environ.get("KIT_RUNS_DIR") or ROOT / "runs")


def run_dir(ref: str) -> Path:
    """A run folder from a path or a run name under runs/ (KIT_RUNS_DIR)."""
    path = Path(ref)
    if not path.is_dir():
        path = runs_root() / ref
    if not (path / "metrics.json").exists():
        raise SystemExit(f"{ref}: not a finished run folder (no metrics.json)")
    return path


def add_cnn_runs(ap) -> None:
    """The studies' way to name CNN runs: folders or names, or --all."""
    ap.add_argument("runs", nargs="*", help="CNN run folders or names")
    ap.add_argument("--all", action="store_true", help="every finished CNN run under runs/")


def cnn_runs(ap, args) -> list[Path]:
    """The CNN runs add_cnn_runs' arguments named (an argparse error when none)."""
    runs = finished_runs("cnn") if args.all else [run_dir(r) for r in args.runs]
    if not runs:
        ap.error("give CNN runs, or --all")
    return runs


def read(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def finished_runs(model: str) -> list[Path]:
    """Every finished run of `model` under runs/, oldest first."""
    return sorted(p.parent for p in runs_root().glob(f"{model}-*/metrics.json"))


def cnn_config(run: Path, **changes):
    """The CNN config a run was trained with (its config.json), then `changes`."""
    return dataclasses.replace(cnn_model().run_config(read(run, "config.json")), **changes)


def load_net(run: Path):
    """The run's Keras model (model.keras: its kept weights, batch-norm as the run left it)."""
    return cnn().load_keras(run / MODEL_FILE)


def split():
    """(dataset, split) of the installed data: the split every run and the ensemble share."""
    from kit import data

    return data.load_split()


def train_pipeline(cfg, seed: int, rows: int | None = None):
    """The kit's tf.data training pipeline (TFData.train, with cfg's augmentation) over the
    split's training rows, or the first `rows` of them."""
    ds, sp = split()
    idx = sp.train_idx[:rows]
    return tf_data().train(
        ds.X_train[idx], ds.y_train[idx], cfg, cfg.batch_size, seed, cnn().augmentation(cfg)
    )


def validation(runs: list[Path]):
    """(X_val uint8 (n, 28, 28), y_val, X_train rows of the split) for runs that share the installed split."""
    ds, sp = split()
    for run in runs:
        recorded = read(run, "metrics.json").get("split_hash")
        if recorded not in (None, sp.hash):
            raise SystemExit(f"{run.name} was trained on another split ({recorded}, installed {sp.hash})")
    return ds.X_train[sp.val_idx], ds.y_train[sp.val_idx].astype(int), ds.X_train[sp.train_idx]


def errors(proba: np.ndarray, y: np.ndarray) -> int:
    return int((proba.argmax(1) != y).sum())


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0))))


def kit_train(model: str, args: list[str]) -> Path:
    """Run `kit train MODEL ARGS...` in a fresh process; the run folder it made."""
    before = set(runs_root().glob(f"{model}-*"))
    kit = Path(sys.executable).with_name("kit")
    subprocess.run([str(kit), "train", model, "--quiet", *args], check=True, cwd=ROOT)
    made = sorted(set(runs_root().glob(f"{model}-*")) - before)
    if not made:
        raise SystemExit(f"kit train {model} {' '.join(args)} made no run folder in {runs_root()}")
    return made[-1]


def print_table(head: list[str], rows: list[list]) -> None:
    """A Markdown table, to paste into docs/decisions.md as measured."""
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
