"""Data augmentation for the scratch network, in NumPy, vectorised over the batch.

Random whole-pixel shifts (exact, by picking one window per image from a padded view) and
small random affine maps (rotation, zoom, sub-pixel shift) resampled with bilinear
interpolation. Images in and out are (N, 28, 28) uint8; labels are never touched and the
order of the images is kept.
"""

from __future__ import annotations

import math

import numpy as np


def shift_images(X: np.ndarray, dy: np.ndarray, dx: np.ndarray, max_shift: int) -> np.ndarray:
    """Translate each image by whole pixels, filling with zeros.

    X: (N, 28, 28) uint8; dy, dx: (N,) ints in [-max_shift, max_shift] (down, right) -> (N, 28, 28) uint8.
    Vectorised: pad, view every (28, 28) window, pick one window per image.
    """
    n, side = X.shape[0], X.shape[1]
    s = max_shift
    padded = np.pad(X, ((0, 0), (s, s), (s, s)))
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, (side, side), axis=(1, 2)
    )  # (N, 2s+1, 2s+1, 28, 28)
    return windows[np.arange(n), s - dy, s - dx]


def affine_images(
    X: np.ndarray, angle: np.ndarray, zoom: np.ndarray, ty: np.ndarray, tx: np.ndarray
) -> np.ndarray:
    """Rotate by `angle` (radians), zoom by `zoom`, then shift by (ty, tx) pixels, about the centre.

    X: (N, 28, 28) uint8; angle, zoom, ty, tx: (N,) float32 -> (N, 28, 28) uint8.
    Each output pixel samples the input at the inverse-mapped point with bilinear interpolation;
    points outside the image read 0.
    """
    n, side = X.shape[0], X.shape[1]
    c = (side - 1) / 2
    r, q = np.meshgrid(
        np.arange(side, dtype=np.float32) - c, np.arange(side, dtype=np.float32) - c, indexing="ij"
    )
    r, q = r.reshape(1, -1), q.reshape(1, -1)  # (1, 784) output coordinates
    cos, sin = (np.cos(angle) / zoom)[:, None], (np.sin(angle) / zoom)[:, None]
    ry, qx = r - ty[:, None], q - tx[:, None]
    # inverse map: input = R(-angle) / zoom @ (output - centre - t) + centre, +1 for the zero border
    src_r = np.clip(cos * ry + sin * qx + (c + 1), 0, side + 0.999).astype(np.float32)
    src_q = np.clip(-sin * ry + cos * qx + (c + 1), 0, side + 0.999).astype(np.float32)
    r0, q0 = np.floor(src_r), np.floor(src_q)
    fr, fq = src_r - r0, src_q - q0
    width = side + 2
    idx = r0.astype(np.intp) * width + q0.astype(np.intp)  # (N, 784) into the padded image
    padded = np.pad(X, ((0, 0), (1, 1), (1, 1))).reshape(n, -1).astype(np.float32)

    def at(offset):
        return np.take_along_axis(padded, idx + offset, axis=1)

    out = (at(0) * (1 - fq) + at(1) * fq) * (1 - fr) + (at(width) * (1 - fq) + at(width + 1) * fq) * fr
    return np.rint(out, out=out).astype(np.uint8).reshape(n, side, side)


def augment(
    X: np.ndarray,
    rng: np.random.Generator,
    shift: float,
    rotate: float = 0.0,
    scale: float = 0.0,
    chunk: int = 4096,
) -> np.ndarray:
    """Random distortions of a batch of images; labels are unchanged.

    X: (N, 28, 28) uint8 -> (N, 28, 28) uint8. Shift-only uses exact whole-pixel shifts in
    [-shift, shift]; with rotate (degrees) or scale (fraction) it draws a random affine map
    per image (sub-pixel shift) and resamples, in chunks that stay in cache.
    """
    n = len(X)
    if not rotate and not scale:
        if not shift:
            return X
        s = int(shift)
        dy, dx = rng.integers(-s, s + 1, size=(2, n))
        return shift_images(X, dy, dx, s)
    angle = rng.uniform(-1, 1, n).astype(np.float32) * np.float32(math.radians(rotate))
    zoom = (1 + rng.uniform(-1, 1, n) * scale).astype(np.float32)
    ty, tx = (rng.uniform(-1, 1, (2, n)) * shift).astype(np.float32)
    out = np.empty_like(X)
    for i in range(0, n, chunk):
        j = slice(i, i + chunk)
        out[j] = affine_images(X[j], angle[j], zoom[j], ty[j], tx[j])
    return out
