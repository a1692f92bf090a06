"""The kept-weights study: last epoch, best epoch, weight averages; with and without the refresh.

Reproduces docs/decisions.md, "Keep the last epoch" and "The clean fraction": trains one CNN
the way `kit train cnn` does (the CNN module's own network, optimizer, schedule and input
pipeline, the same seed; early stopping off) and keeps, besides the final weights, the weights
after each of the last `--last` epochs, the best-val_loss epoch's, and two exponential moving
averages of the weights (per-step decays 0.998 and 0.9997: about 0.85 and 5.6 epochs at batch
64). Each weight set is then scored on the validation split with the eval blur, its batch-norm
statistics as trained, re-estimated on 8,192 augmented training images (the refresh first
tried), and re-estimated as `kit train` ships it (sharp images, eval blur).

    python scripts/experiments/keep_last.py --seed 1                       # the shipped clean fraction
    python scripts/experiments/keep_last.py --seed 1 --clean-fraction 0    # every image augmented
Training is a full default run: about 18 min alone on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import _common as c
from bn_refresh import augmented, refresh_on

REFRESH_N = 8192


def train(cfg, X_tr, y_tr, X_val, y_val, last: int, decays: tuple[float, ...]):
    """Train like kit's CNN; ({name: weights} for every weight set of the study, the model)."""
    import keras

    cnn = c.cnn()
    cnn.setup(cfg)
    model = cnn.build_model(cfg)
    cnn.compile_model(model, cfg)
    aug = cnn.augmentation(cfg) if cfg.augment else None
    train_ds = c.tf_data().train(X_tr, y_tr, cfg, cfg.batch_size, cfg.seed, aug)
    val_ds = c.tf_data().evaluation(X_val, y_val, b=cnn.eval_blur(cfg))
    kept: dict[str, list] = {}
    emas: dict[float, list] = {}
    best = {"val_loss": np.inf}
    first = cfg.epochs - last

    class Keep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch >= first:
                w = self.model.get_weights()
                for d in decays:
                    emas[d] = w if d not in emas else [d * e + (1 - d) * x for e, x in zip(emas[d], w)]

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < best["val_loss"]:
                best.update(val_loss=logs["val_loss"], weights=self.model.get_weights(), epoch=epoch + 1)
            if epoch >= first:
                kept[f"epoch {epoch + 1}"] = self.model.get_weights()

    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        verbose=2,
        shuffle=False,
        callbacks=[Keep(), keras.callbacks.LearningRateScheduler(lambda e, lr: cnn.lr_at(cfg, e))],
    )
    epochs = list(kept.values())
    sets = {f"best val-loss epoch ({best['epoch']})": best["weights"], "last epoch": epochs[-1]}
    for k in (3, 5, 8, 10):
        if k <= len(epochs):
            sets[f"mean of the last {k} epochs"] = [np.mean(ws, axis=0) for ws in zip(*epochs[-k:])]
    for d, w in emas.items():
        sets[f"moving average, decay {d}"] = w
    return sets, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="[the default preset's]")
    ap.add_argument("--clean-fraction", type=float, default=None, help="[the default preset's]")
    ap.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: one per core)")
    ap.add_argument("--last", type=int, default=11, help="epochs at the end whose weights are kept")
    ap.add_argument("--decays", type=float, nargs="*", default=[0.998, 0.9997], help="EMA decays per step")
    args = ap.parse_args()
    changes = {
        k: v
        for k, v in dict(
            seed=args.seed, epochs=args.epochs, clean_fraction=args.clean_fraction, threads=args.threads
        ).items()
        if v is not None
    }
    cfg = c.cnn_preset("default", **changes)
    cnn = c.cnn()
    ds, sp = c.split()
    X_tr, y_tr = ds.X_train[sp.train_idx], ds.y_train[sp.train_idx]
    X_val, y_val = ds.X_train[sp.val_idx], ds.y_train[sp.val_idx].astype(int)
    sets, model = train(cfg, X_tr, y_tr, X_val, y_val, args.last, tuple(args.decays))
    rows = []
    for name, weights in sets.items():
        row = [name]
        for refresh in ("as trained", "augmented", "shipped"):
            model.set_weights(weights)
            if refresh == "augmented":
                pick = np.random.default_rng(cfg.seed).choice(len(X_tr), REFRESH_N, replace=False)
                refresh_on(model, augmented(cnn, cfg, X_tr[pick], cfg.seed, 0.0))
            elif refresh == "shipped":
                cnn.refresh_batchnorm(model, X_tr, dataclasses.replace(cfg, bn_refresh=REFRESH_N))
            p = cnn.predict_proba(cnn.inference_model(model), X_val, 0, cfg)
            row.append(f"{c.errors(p, y_val)} / {c.log_loss(p, y_val):.4f}")
        rows.append(row)
    print(
        f"\nseed {cfg.seed}, {cfg.epochs} epochs, clean fraction {cfg.clean_fraction}, eval blur {cfg.blur}; "
        "errors / validation log-loss"
    )
    c.print_table(
        [
            "weights",
            "BN as trained",
            f"BN refreshed, {REFRESH_N:,} augmented",
            f"BN refreshed, {REFRESH_N:,} sharp + blur (shipped)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
