"""The batch-norm refresh study: which images to re-estimate the batch-norm statistics on.

Reproduces docs/decisions.md, "The batch-norm refresh": the weights stay fixed, only every
batch-norm layer's moving mean and variance are recomputed (one pass down the layer chain,
dropout off) on one image set, then the validation split is scored. Image sets:

    none                 the running averages as trained
    augmented            N training images through the training augmentation
    training mix         the same with a fifth left sharp (`--clean-fraction` 0.2's mix)
    sharp + eval blur    N un-augmented images, smoothed by the eval blur: what `kit train` ships
                         (kit's own refresh_batchnorm), at N, 16,384 and all 37,800
    sharp, no blur       all 37,800 un-augmented images, not smoothed

each N-image set drawn `--draws` times (which images are drawn moves the count by a few).
With `--sharp` only the sharp + eval blur sets: each overwrites every statistic, so runs trained
with the refresh on (the shipped default) can be scored too, and draw 1 at N = 8,192 is the
run's own refresh (its count and log-loss are metrics.json's, a check).

The runs must hold the statistics as trained: train them with `--bn-refresh 0` (the refresh
comes after the last epoch, so the weights are those of the same seed's shipped run), e.g.
    kit train cnn --seed 1 --bn-refresh 0
    python scripts/experiments/bn_refresh.py RUN [RUN ...] [--n 8192] [--draws 2]
    python scripts/experiments/bn_refresh.py --sharp --draws 1 RUN [RUN ...]   # any runs
About a minute per image set and run on a 2-core CPU (most of it the 37,800-image sets).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import _common as c


def refresh_on(model, x) -> None:
    """Set every batch-norm's moving mean/variance to its input's over float images x (n, 28, 28, 1)."""
    import keras
    from keras import layers

    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    last_bn = max(i for i, layer in enumerate(chain) if isinstance(layer, layers.BatchNormalization))
    for layer in chain[: last_bn + 1]:
        if isinstance(layer, layers.BatchNormalization):
            a = keras.ops.convert_to_numpy(x).astype(np.float64).reshape(-1, x.shape[-1])
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(0).astype(np.float32), a.var(0).astype(np.float32)])
        x = layer(x, training=False)


def augmented(cnn, cfg, images: np.ndarray, seed: int, clean: float) -> np.ndarray:
    """images (n, 28, 28) uint8 -> float (n, 28, 28, 1) in [0, 1], all but the first `clean` share augmented."""
    x = images.astype(np.float32)[..., None] / 255.0
    aug = cnn.augmentation(dataclasses.replace(cfg, seed=seed))
    n_clean = int(round(clean * len(x)))
    rest = [np.asarray(aug(x[i : i + 1024], training=True)) for i in range(n_clean, len(x), 1024)]
    return np.concatenate([x[:n_clean], *rest]) if rest else x


def image_sets(n: int, draws: int, n_train: int, sharp_only: bool = False):
    """(name, kind, size, draw) for every image set of the study (with sharp_only: the sharp +
    eval blur ones)."""
    if not sharp_only:
        yield "none (as trained)", "none", 0, 0
        for kind, name in (("aug", "augmented"), ("mix", "training mix (a fifth sharp)")):
            for d in range(draws):
                yield f"{n:,} {name}, draw {d + 1}", kind, n, d
            yield f"all {n_train:,} {name}", kind, n_train, 0
    for d in range(draws):
        yield f"{n:,} sharp + eval blur (shipped), draw {d + 1}", "sharp", n, d
    for size in (2 * n, n_train):
        yield f"{size:,} sharp + eval blur", "sharp", size, 0
    if not sharp_only:
        yield f"all {n_train:,} sharp, no blur", "sharp-noblur", n_train, 0


def score(cnn, run, X_tr, X_val, y_val, kind: str, size: int, draw: int) -> str:
    cfg = c.cnn_config(run)
    model = c.load_net(run)
    seed = cfg.seed + draw
    if getattr(cfg, "max_train", 0):  # the rows the run trained (and refreshed) on
        X_tr = X_tr[: cfg.max_train]
    if kind in ("aug", "mix"):
        pick = np.random.default_rng(seed).choice(len(X_tr), min(size, len(X_tr)), replace=False)
        refresh_on(model, augmented(cnn, cfg, X_tr[pick], seed, 0.2 if kind == "mix" else 0.0))
    elif kind != "none":
        blur = cfg.blur if kind == "sharp" else 0.0
        cnn.refresh_batchnorm(model, X_tr, dataclasses.replace(cfg, seed=seed, bn_refresh=size, blur=blur))
    p = cnn.predict_proba(cnn.inference_model(model), X_val, 0, cfg)
    return f"{c.errors(p, y_val)} / {c.log_loss(p, y_val):.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="CNN runs trained with --bn-refresh 0 (any, with --sharp)")
    ap.add_argument("--n", type=int, default=8192, help="images in a drawn set [8192, the shipped default]")
    ap.add_argument("--draws", type=int, default=2, help="draws of each N-image set")
    ap.add_argument("--sharp", action="store_true", help="only the sharp + eval blur sets (any runs)")
    args = ap.parse_args()
    runs = [c.run_dir(r) for r in args.runs]
    for run in runs:
        if not args.sharp and c.read(run, "config.json").get("bn_refresh", 0):
            raise SystemExit(
                f"{run.name} was trained with --bn-refresh {c.read(run, 'config.json')['bn_refresh']}: "
                "its model.keras holds refreshed statistics; train it with --bn-refresh 0"
            )
    cnn = c.cnn()
    X_val, y_val, X_tr = c.validation(runs)
    rows = [
        [name, *(score(cnn, run, X_tr, X_val, y_val, kind, size, draw) for run in runs)]
        for name, kind, size, draw in image_sets(args.n, args.draws, len(X_tr), args.sharp)
    ]
    c.print_table(["refresh images (errors / val log-loss)", *(r.name for r in runs)], rows)


if __name__ == "__main__":
    main()
