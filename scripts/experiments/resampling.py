"""How much each augmentation smooths: three resamplings (Keras's layers in a row) against one
(`--affine`), beside the eval blur that makes sharp images look like the training images.

Reproduces docs/decisions.md, "Width in the time left, and one resampling". Bilinear interpolation averages neighbouring
pixels on every pass while the ink (the sum of the pixels) stays; what smoothing takes away
shows in the sum of squares. For --images training images of the split, each augmentation
(three seeds) and each eval blur b (the [b, 1-2b, b] kernel per axis): the share of the sum of
squares kept, and of the ink.

    python scripts/experiments/resampling.py [--images 4096]
"""

from __future__ import annotations

import argparse

import numpy as np

import _common as c

SEEDS = (0, 1, 2)
BLURS = (0.25, 0.2, 0.15, 0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4096)
    args = ap.parse_args()
    ds, sp = c.split()
    x = ds.X_train[sp.train_idx[: args.images]].astype(np.float32)[..., None] / 255
    energy, ink = float((x**2).sum()), float(x.sum())
    rows = []
    for name, affine in (("three resamplings (the default)", False), ("one resampling (--affine)", True)):
        outs = [
            np.asarray(c.cnn().augmentation(c.cnn_preset("default", seed=s, affine=affine))(x, training=True))
            for s in SEEDS
        ]
        kept = ", ".join(f"{(o**2).sum() / energy:.3f}" for o in outs)
        rows.append([name, kept, f"{np.mean([o.sum() for o in outs]) / ink:.3f}"])
    for b in BLURS:
        out = c.blur(x, b)
        rows.append(
            [f"eval blur {b} on sharp images", f"{(out**2).sum() / energy:.3f}", f"{out.sum() / ink:.3f}"]
        )
    c.print_table(["images", f"sum of squares kept (seeds {SEEDS})", "ink kept"], rows)


if __name__ == "__main__":
    main()
