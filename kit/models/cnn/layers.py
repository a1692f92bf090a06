"""The CNN's augmentation: Keras layers that rotate, zoom and shift each training image (three
resamplings, or one with `--affine`), the elastic distortion (`--elastic`), their bilinear
resampling maths, PyTorch's batched resampling, the `augmentation` of a config (mapped by
tf.data) and `Augment`, the same as the network's first layer (the NumPy pipeline's).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from kit.errors import KitError
from kit.models import backends
from kit.models.cnn import pipeline

# The augmentation prepares images; it is not the network's arithmetic. It computes in float32
# under every precision policy: under mixed_float16 its sampling coordinates would round to
# 1/64 of a pixel, and tf.data's sharp head (float32) would not concatenate with a float16
# tail. The first convolution casts the images to its own compute dtype.
AUGMENT_DTYPE = "float32"


def _random_layers(
    rotation: float, zoom: float, shift: float, seed: int, affine: bool, elastic: float, sigma: float
) -> list:
    """`augmentation`'s layers, on the backend Keras runs on: Keras's three in a row, or with
    `affine` the same three draws as one map (`random_affine_class`); with `elastic` the shift
    also carries a smooth random displacement field (`random_elastic_shift_class`)."""
    keras = backends.keras_for()
    layers = keras.layers
    f32 = AUGMENT_DTYPE
    if affine:
        chosen = [random_affine_class()(rotation, zoom, shift, seed=seed, name="random_affine", dtype=f32)]
    else:
        if elastic:
            last = random_elastic_shift_class()(
                shift, elastic, sigma, seed=seed + 2, name="random_elastic_shift", dtype=f32
            )
        else:
            last = layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 2, dtype=f32)
        chosen = [
            layers.RandomRotation(rotation / 360, fill_mode="constant", seed=seed, dtype=f32),
            layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 1, dtype=f32),
            last,
        ]
    if keras.backend.backend() == "torch":
        for layer in chosen:
            layer.backend = BatchedResampling(layer.backend)
    return chosen


@functools.cache
def random_affine_class():
    """`RandomAffine`: rotation, zoom and shift drawn per image and applied as one affine map."""
    keras = backends.keras_for()
    if not hasattr(keras.layers.RandomRotation, "_compute_affine_matrix"):
        raise KitError(
            f"--affine needs a newer Keras than {keras.__version__} (its RandomRotation cannot "
            "compose affine maps): pip install -U keras"
        )

    class RandomAffine(keras.layers.RandomRotation):
        """(B, 28, 28, 1) -> the same: each image rotated by up to +-rotation degrees, zoomed by
        a factor in [1 - zoom, 1 + zoom] and shifted by up to +-shift of the side on each axis,
        about its centre, in ONE bilinear resampling. RandomRotation, RandomZoom and
        RandomTranslation in a row resample three times: three times the interpolation work,
        and each pass averages neighbouring pixels again (docs/decisions.md,
        "Width in the time left, and one resampling").
        The draws have the same ranges; only their order differs (here the shift is not
        rotated and zoomed by the other two), a negligible change at these sizes."""

        def __init__(self, rotation, zoom, shift, **kwargs):
            super().__init__(rotation / 360, fill_mode="constant", **kwargs)
            self.zoom, self.shift = zoom, shift

        def get_random_transformation(self, data, training=True, seed=None):
            t = super().get_random_transformation(data, training, seed)  # draws the angles
            if t is None:
                return None
            ops, n = self.backend, t["batch_size"]
            seed = seed or self._get_seed_generator(ops._backend)
            scale = ops.random.uniform((n,), 1 - self.zoom, 1 + self.zoom, seed=seed)
            sides = ops.convert_to_tensor([t["image_width"], t["image_height"]], "float32")
            offset = ops.random.uniform((n, 2), -self.shift, self.shift, seed=seed) * sides
            t["rotation_matrix"] = self._compute_affine_matrix(  # what _transform_images applies
                center_x=0.5, center_y=0.5, angle=t["angle"], translate_x=offset[:, 0],
                translate_y=offset[:, 1], scale=scale, shear_x=ops.numpy.zeros((n,)),
                shear_y=ops.numpy.zeros((n,)), height=t["image_height"], width=t["image_width"],
            )  # fmt: skip
            return t

        def get_config(self):
            return {**super().get_config(), "zoom": self.zoom, "shift": self.shift}

    return RandomAffine


def gaussian_kernel(sigma: float) -> np.ndarray:
    """(2r + 1,) float32 summing to 1, r = ceil(3 sigma): a 1-D Gaussian of sigma pixels."""
    r = math.ceil(3 * sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype("float32")


def bilinear(ops, images, rows, cols):
    """images (B, H, W) sampled at (rows, cols), each (B, H, W) float32 pixel coordinates:
    bilinear interpolation, 0 outside the image. `ops` is a Keras backend (a layer's
    `self.backend`: TensorFlow's inside tf.data). Written out because Keras's map_coordinates
    needs a batch size known when tracing, which tf.data's batches lack."""
    shape = ops.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    flat = ops.numpy.reshape(images, (-1,))
    base = ops.numpy.arange(n, dtype="int32")[:, None, None] * (h * w)
    r0, c0 = ops.numpy.floor(rows), ops.numpy.floor(cols)
    last_row, last_col = ops.cast(h - 1, "float32"), ops.cast(w - 1, "float32")
    out = 0.0
    for dr in (0, 1):
        for dc in (0, 1):
            r, c = r0 + dr, c0 + dc
            weight = (1 - ops.numpy.abs(rows - r)) * (1 - ops.numpy.abs(cols - c))
            inside = (r >= 0) & (r <= last_row) & (c >= 0) & (c <= last_col)
            ri = ops.cast(ops.numpy.clip(r, 0, h - 1), "int32")
            ci = ops.cast(ops.numpy.clip(c, 0, w - 1), "int32")
            value = ops.numpy.take(flat, base + ri * w + ci)
            out = out + ops.numpy.where(inside, weight * value, 0.0)
    return out


def affine_resample(ops, images, transform):
    """images (B, H, W, 1) float32 resampled as Keras's `image.affine_transform` does with
    bilinear interpolation and fill 0, the whole batch in one gather: output pixel (row y,
    column x) reads the input at column (a0 x + a1 y + a2) / k, row (b0 x + b1 y + b2) / k,
    k = c0 x + c1 y + 1, from transform (B, 8) = [a0, a1, a2, b0, b1, b2, c0, c1]."""
    t = ops.cast(transform, "float32")
    h, w = ops.shape(images)[1], ops.shape(images)[2]
    x = ops.numpy.arange(w, dtype="float32")[None, None, :]
    y = ops.numpy.arange(h, dtype="float32")[None, :, None]
    a0, a1, a2, b0, b1, b2, c0, c1 = (t[:, i, None, None] for i in range(8))
    k = c0 * x + c1 * y + 1
    rows, cols = (b0 * x + b1 * y + b2) / k, (a0 * x + a1 * y + a2) / k  # (B, H, W)
    return bilinear(ops, images[..., 0], rows, cols)[..., None]


class BatchedResampling:
    """A random image layer's `backend` on PyTorch: Keras's ops, except that
    `image.affine_transform` (bilinear, constant fill 0, channels last: the augmentation's
    case) resamples the whole batch at once (`affine_resample`). Keras's PyTorch code resamples
    one image at a time in a Python loop: about 82,000 small operators a training step of 64
    images against 5,900, each a kernel launch on a GPU (docs/decisions.md, "PyTorch at GPU
    speed"). Set per layer instance: Keras itself is left as it is."""

    def __init__(self, backend):
        self._backend = backend
        self.image = _BatchedImage(backend)

    def __getattr__(self, name):
        return getattr(self._backend, name)


class _BatchedImage:
    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend.image, name)

    def affine_transform(
        self,
        images,
        transform,
        interpolation="bilinear",
        fill_mode="constant",
        fill_value=0,
        data_format=None,
    ):
        covered = (
            interpolation == "bilinear"
            and fill_mode == "constant"
            and fill_value == 0
            and data_format in (None, "channels_last")
            and len(images.shape) == 4
            and images.shape[-1] == 1
            and len(transform.shape) == 2
        )
        if not covered:
            return self._backend.image.affine_transform(
                images, transform, interpolation, fill_mode, fill_value, data_format
            )
        return affine_resample(self._backend, images, transform)


@functools.cache
def random_elastic_shift_class():
    """`RandomElasticShift`: RandomTranslation's shift plus an elastic distortion, in one
    resampling."""
    keras = backends.keras_for()

    class RandomElasticShift(keras.layers.RandomTranslation):
        """(B, H, W, 1) -> the same: each image shifted by up to +-shift of the side on each axis
        (RandomTranslation's draw) and distorted elastically (Simard, Steinkraus and Platt 2003,
        "Best practices for convolutional neural networks applied to visual document
        analysis"): a displacement per pixel and axis, uniform in [-1, 1], smoothed by a
        Gaussian of `sigma` pixels and scaled by `alpha` pixels, so neighbouring pixels move
        together, as a pen stroke bends. Shift and field are applied as one bilinear
        resampling (fill 0), so the augmentation resamples three times, as without it.
        (Keras's RandomElasticTransform draws both axes' fields from one seed, so every pixel
        moves along the diagonal.)"""

        def __init__(self, shift, alpha, sigma, **kwargs):
            super().__init__(shift, shift, fill_mode="constant", **kwargs)
            self.alpha, self.sigma = alpha, sigma
            k = gaussian_kernel(sigma)
            # separable smoothing of the (B, H, W, 2) field: depthwise kernels (kh, kw, 2, 1)
            self._k_rows = np.tile(k[:, None, None, None], (1, 1, 2, 1))
            self._k_cols = np.tile(k[None, :, None, None], (1, 1, 2, 1))

        def get_random_transformation(self, data, training=True, seed=None):
            t = super().get_random_transformation(data, training, seed)  # draws the shifts
            if t is None:
                return None
            ops = self.backend
            seed = seed or self._get_seed_generator(ops._backend)
            n, h, w = t["input_shape"][:3]  # RandomTranslation's ops.shape of the batch
            field = ops.random.uniform((n, h, w, 2), -1.0, 1.0, seed=seed)
            for k in (self._k_rows, self._k_cols):
                field = ops.nn.depthwise_conv(field, ops.convert_to_tensor(k), 1, "same")
            t["displacement"] = self.alpha * field  # (B, H, W, 2) pixels: rows, columns
            return t

        def _transform_images(self, images, transformation, interpolation):
            if transformation is None:
                return images
            ops = self.backend
            h, w = ops.shape(images)[1], ops.shape(images)[2]
            d = transformation["displacement"]
            shift = transformation["translations"]  # (B, 2) pixels: columns, rows
            rows = ops.numpy.arange(h, dtype="float32")[None, :, None] - shift[:, 1, None, None] + d[..., 0]
            cols = ops.numpy.arange(w, dtype="float32")[None, None, :] - shift[:, 0, None, None] + d[..., 1]
            return bilinear(ops, images[..., 0], rows, cols)[..., None]

        def get_config(self):
            config = super().get_config()
            for key in ("height_factor", "width_factor", "fill_mode", "fill_value", "interpolation"):
                config.pop(key, None)
            return {**config, "shift": self.width_factor, "alpha": self.alpha, "sigma": self.sigma}

    return RandomElasticShift


def augmentation(cfg):
    """The training augmentation, a keras.Sequential named "augmentation".

    On (B, 28, 28, 1) float32 images: rotate by up to +-cfg.rotation degrees, zoom by up to
    +-cfg.zoom, shift by up to +-cfg.shift of the side; the uncovered border is filled with 0
    (the background of every digit); three resamplings, or one with cfg.affine; with
    cfg.elastic the shift also bends the strokes (`random_elastic_shift_class`, still three).
    Random only with training=True, the identity otherwise.
    """
    keras = backends.keras_for(cfg.backend)
    layers = _random_layers(
        cfg.rotation, cfg.zoom, cfg.shift, cfg.seed, cfg.affine, cfg.elastic, cfg.elastic_sigma
    )
    seq = keras.Sequential(layers, name="augmentation")
    seq.dtype_policy = AUGMENT_DTYPE  # Sequential takes no dtype; its own would cast the input
    return seq


@functools.cache
def augment_layer_class():
    """`Augment`, the in-model augmentation of the NumPy pipeline (registered with Keras once,
    so model files holding it load)."""
    keras = backends.keras_for()

    @keras.saving.register_keras_serializable(package="kit")
    class Augment(keras.layers.Layer):
        """Training: the first `n_clean` images of the batch as they are, the rest through
        `augmentation`'s random layers. Inference: the identity. (B, 28, 28, 1) -> the same."""

        def __init__(
            self, rotation, zoom, shift, n_clean, seed, affine=False, elastic=0.0, elastic_sigma=0.0, **kwargs
        ):
            super().__init__(**{**kwargs, "dtype": AUGMENT_DTYPE})  # also when read from a file
            self.settings = dict(
                rotation=rotation, zoom=zoom, shift=shift, n_clean=n_clean, seed=seed, affine=affine,
                elastic=elastic, elastic_sigma=elastic_sigma,
            )  # fmt: skip
            self.random = _random_layers(rotation, zoom, shift, seed, affine, elastic, elastic_sigma)
            # Keras marks its Random* image layers as not jittable, and one such layer makes
            # Keras run the whole step op by op (on JAX each op a compile and a dispatch of its
            # own); their JAX code jits, seeds and all (tests/test_backends.py)
            for layer in self.random:
                layer.supports_jit = True

        def build(self, input_shape):
            for layer in self.random:
                layer.build(input_shape)

        def call(self, x, training=False):
            n = self.settings["n_clean"]
            if not training or (x.shape[0] is not None and x.shape[0] <= n):
                return x
            tail = x[n:]
            for layer in self.random:
                tail = layer(tail, training=True)
            return keras.ops.concatenate([x[:n], tail], axis=0)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), **self.settings}

    return Augment


def augment_layer(cfg, batch_size: int, seed: int):
    """The `Augment` layer for cfg, leaving round(cfg.clean_fraction * batch_size) images sharp."""
    n_clean = int(round(cfg.clean_fraction * batch_size))
    return augment_layer_class()(
        cfg.rotation,
        cfg.zoom,
        cfg.shift,
        n_clean,
        seed,
        cfg.affine,
        cfg.elastic,
        cfg.elastic_sigma,
        name="augment",
    )


def augmented_examples(images: np.ndarray, n_variants: int, seed: int, cfg) -> np.ndarray:
    """Random augmentations of `images`, for showing what the network trains on.

    images: (n, 28, 28) uint8; cfg: the CNN's Config, whose augmentation is drawn with `seed`
    in place of cfg.seed. Returns (n, n_variants, 28, 28) float32 in [0, 1].
    """
    cfg = dataclasses.replace(cfg, seed=seed)
    aug = augmentation(cfg)
    keras = backends.keras_for(cfg.backend)
    x = pipeline.scale(images)
    out = [keras.ops.convert_to_numpy(aug(x, training=True))[..., 0] for _ in range(n_variants)]
    return np.clip(np.stack(out, axis=1), 0.0, 1.0).astype(np.float32)
