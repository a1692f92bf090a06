"""The CNN's input: the augmentation, and the two pipelines that feed the network.

    tf.data   (the tensorflow backend) uint8 (N, 28, 28) -> shuffle with the seed -> batch ->
              scale to float32 [0, 1] -> `augmentation(cfg)` mapped with parallel calls ->
              prefetch: the augmentation runs on CPU threads beside the step.
    NumPy     (jax, torch: no TensorFlow needed) a keras.utils.PyDataset of shuffled, scaled
              batches; the augmentation is the network's first layer (`Augment`), so it runs
              on the accelerator with the step, as the keras-io examples do for GPUs.

Both give every epoch all the training rows in a fresh order drawn from the seed, leave the
first round(clean_fraction * batch) images of each batch sharp, and smooth validation and test
images by the fixed 3x3 eval blur (`eval_blur`): the augmentation's bilinear resampling smooths
every training image, so a sharp digit is one the network has never seen.

On JAX over several devices (`--strategy mirrored`, Keras's DataParallel) every batch must split
evenly among them, and Keras does not pad: the NumPy pipeline drops the last few training rows
of an epoch that would not divide (fewer than the device count, different rows each epoch),
pads prediction inputs and trims the padding off, and computes validation itself (`Validator`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from kit import config
from kit.errors import KitError
from kit.models import backends

PREDICT_BATCH = 1024  # inference batch: big enough to amortise per-batch overhead
# The augmentation prepares images; it is not the network's arithmetic. It computes in float32
# under every precision policy: under mixed_float16 its sampling coordinates would round to
# 1/64 of a pixel, and tf.data's sharp head (float32) would not concatenate with a float16
# tail. The first convolution casts the images to its own compute dtype.
AUGMENT_DTYPE = "float32"
TTA_SEED_OFFSET = 1000  # test-time augmentation draws from seed + this


# ============================================================================ augmentation


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
    x = scale(images)
    out = [keras.ops.convert_to_numpy(aug(x, training=True))[..., 0] for _ in range(n_variants)]
    return np.clip(np.stack(out, axis=1), 0.0, 1.0).astype(np.float32)


# ============================================================================ images


def eval_blur(cfg) -> float:
    """The blur that makes un-augmented images look like the training images (0: none needed).

    Every augmented training image went through a random sub-pixel rotation/zoom/shift with
    bilinear interpolation, which averages neighbouring pixels; the network never saw a sharp
    digit. Smoothing validation and test images the same way removes that mismatch
    (docs/decisions.md, "eval blur").
    """
    return cfg.blur if cfg is not None and cfg.augment else 0.0


def scale(X: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return (X.astype(np.float32) / np.float32(255.0))[..., None]


def blur(x: np.ndarray, b: float) -> np.ndarray:
    """(N, 28, 28, 1) float32 -> the same, convolved with [b, 1-2b, b] along each image axis
    (zero border: the digits' background). Weights sum to 1, so ink is conserved."""
    w = np.float32(b), np.float32(1 - 2 * b)
    for axis in (1, 2):
        p = np.pad(x, [(1, 1) if a == axis else (0, 0) for a in range(4)])
        lo, mid, hi = (np.take(p, range(k, k + x.shape[axis]), axis=axis) for k in range(3))
        x = w[0] * lo + w[1] * mid + w[0] * hi
    return x.astype(np.float32)


def eval_images(X: np.ndarray, b: float) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) as every prediction sees them: scaled to
    [0, 1], then smoothed by `blur` when b > 0. Never augmented."""
    x = scale(X)
    return blur(x, b) if b else x


def one_hot(y: np.ndarray) -> np.ndarray:
    """(N,) integer labels -> (N, 10) float32."""
    return np.eye(config.N_CLASSES, dtype=np.float32)[np.asarray(y, dtype=np.int64)]


# ============================================================================ tf.data


# tf.data traces these into its graph: plain functions (autograph mis-binds methods)
def _tf_scale(x):
    """uint8 (B, 28, 28) -> float32 (B, 28, 28, 1) in [0, 1], in the graph."""
    import tensorflow as tf  # traced by tf.data: keep os.environ calls out of the graph

    return tf.cast(x, tf.float32)[..., None] / 255.0


def _tf_blur(x, b: float):
    """`blur` in the graph: (B, 28, 28, 1) float32 -> the same."""
    import tensorflow as tf

    k = tf.constant([b, 1 - 2 * b, b], tf.float32)
    kernel = (k[:, None] * k[None, :])[:, :, None, None]
    return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")


def _tf_eval_images(xb, b: float):
    xb = _tf_scale(xb)
    return _tf_blur(xb, b) if b else xb


class TFData:
    """The tensorflow backend's pipeline: tf.data, augmentation mapped beside the step."""

    augments_in_model = False

    @classmethod
    def train(cls, X, y, cfg, batch_size: int, seed: int, aug=None):
        """tf.data of (images (B, 28, 28, 1) float32 in [0, 1], one-hot (B, 10) float32).

        X: (N, 28, 28) uint8, y: (N,) integer labels. Batches are augmented as a whole (one call
        per batch, not per image), `num_parallel_calls` batches at a time. The first
        round(cfg.clean_fraction * batch_size) images of each (shuffled, so random) batch skip
        the augmentation.
        """
        tf = backends.tf()
        ds = tf.data.Dataset.from_tensor_slices((X, y))
        ds = ds.shuffle(len(X), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        n_classes = config.N_CLASSES
        n_clean = int(round(cfg.clean_fraction * batch_size))

        def prepare(xb, yb):
            xb = _tf_scale(xb)
            if aug is not None:
                # the sharp head, then the augmented rest (n_clean = 0: an empty head)
                xb = tf.concat([xb[:n_clean], aug(xb[n_clean:], training=True)], axis=0)
            return xb, tf.one_hot(tf.cast(yb, tf.int32), n_classes)

        return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    @classmethod
    def evaluation(cls, X, y=None, batch_size: int = PREDICT_BATCH, b: float = 0.0):
        """tf.data of scaled images (and one-hot labels if y is given), in order, no
        augmentation; smoothed by the eval blur when b > 0."""
        tf = backends.tf()
        n_classes = config.N_CLASSES
        if y is None:
            ds = (
                tf.data.Dataset.from_tensor_slices(X).batch(batch_size).map(lambda xb: _tf_eval_images(xb, b))
            )
        else:
            ds = (
                tf.data.Dataset.from_tensor_slices((X, y))
                .batch(batch_size)
                .map(lambda xb, yb: (_tf_eval_images(xb, b), tf.one_hot(tf.cast(yb, tf.int32), n_classes)))
            )
        return ds.prefetch(tf.data.AUTOTUNE)

    @classmethod
    def fit_kwargs(cls, X_val, y_val, b: float) -> dict:
        return dict(validation_data=cls.evaluation(X_val, y_val, b=b))

    @classmethod
    def images(cls, X, b: float):
        """The images predictions see, as one tensor (for the batch-norm refresh)."""
        return _tf_eval_images(X, b)

    @classmethod
    def predict(cls, model, X, b: float) -> np.ndarray:
        return model.predict(cls.evaluation(X, b=b), verbose=0).astype(np.float32)

    @classmethod
    def predict_augmented(cls, model, X, aug) -> np.ndarray:
        tf = backends.tf()
        ds = (
            tf.data.Dataset.from_tensor_slices(X)
            .batch(PREDICT_BATCH)
            .map(lambda xb: aug(_tf_scale(xb), training=True))
        )
        return model.predict(ds, verbose=0)


# ============================================================================ NumPy


def devices() -> int:
    """How many devices each JAX batch is split among (Keras's DataParallel), else 1."""
    if backends.loaded() != "jax":
        return 1
    dist = backends.keras_for().distribution.distribution()
    return int(np.prod(dist.device_mesh.shape)) if dist is not None else 1


def _pad(x: np.ndarray, k: int) -> np.ndarray:
    """x (N, ...) with zero rows appended up to a multiple of k."""
    short = -len(x) % k
    return np.concatenate([x, np.zeros((short, *x.shape[1:]), x.dtype)]) if short else x


def _batches_class():
    keras = backends.keras_for()

    class Batches(keras.utils.PyDataset):
        """Shuffled training batches (images (B, 28, 28, 1) float32 in [0, 1], one-hot (B, 10)),
        a new order every epoch drawn from `seed`; read in order by one worker. Each batch's
        size is a multiple of `multiple` (the devices a step splits it among): the last one
        leaves out the fewer than `multiple` rows that would not divide."""

        def __init__(self, X, y, batch_size: int, seed: int, multiple: int = 1):
            super().__init__()
            assert batch_size % multiple == 0, (batch_size, multiple)
            self.X, self.y, self.batch_size = X, y, batch_size
            self.n = len(X) - len(X) % batch_size % multiple
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(X))

        def __len__(self):
            return math.ceil(self.n / self.batch_size)

        def __getitem__(self, i):
            idx = self.order[i * self.batch_size : min((i + 1) * self.batch_size, self.n)]
            return scale(self.X[idx]), one_hot(self.y[idx])

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.X))

    return Batches


class NumpyData:
    """The jax and torch backends' pipeline: NumPy batches, augmentation inside the model."""

    augments_in_model = True

    @staticmethod
    def train(X, y, cfg, batch_size: int, seed: int, aug=None):
        assert aug is None, "the NumPy pipeline augments inside the model (Augment)"
        return _batches_class()(X, y, batch_size, seed, devices())

    @staticmethod
    def fit_kwargs(X_val, y_val, b: float) -> dict:
        """model.fit's validation arguments; over several devices, the Validator callback."""
        if devices() > 1:
            return dict(callbacks=[_validator_class()(eval_images(X_val, b), y_val)])
        return dict(
            validation_data=(eval_images(X_val, b), one_hot(y_val)), validation_batch_size=PREDICT_BATCH
        )

    @staticmethod
    def images(X, b: float):
        return eval_images(X, b)

    @staticmethod
    def predict(model, X, b: float) -> np.ndarray:
        return NumpyData.predict_images(model, eval_images(X, b))

    @staticmethod
    def predict_images(model, x: np.ndarray) -> np.ndarray:
        """x (N, 28, 28, 1) float32 as the network takes it -> (N, 10) float32."""
        k = devices()
        batch = PREDICT_BATCH - PREDICT_BATCH % k
        return np.asarray(model.predict(_pad(x, k), batch_size=batch, verbose=0)[: len(x)], np.float32)

    @staticmethod
    def predict_augmented(model, X, aug) -> np.ndarray:
        keras = backends.keras_for()
        out = []
        for i in range(0, len(X), PREDICT_BATCH):
            x = aug(scale(X[i : i + PREDICT_BATCH]), training=True)
            out.append(NumpyData.predict_images(model, keras.ops.convert_to_numpy(x)))
        return np.concatenate(out)


def _validator_class():
    keras = backends.keras_for()

    class Validator(keras.callbacks.Callback):
        """val_loss and val_accuracy after each epoch from padded predictions, as Keras computes
        them (cross-entropy of probabilities clipped to [eps, 1 - eps], eps Keras's epsilon):
        Keras's own validation cannot split a last batch that does not divide among the
        devices. Put before the callbacks that read the two."""

        def __init__(self, x: np.ndarray, y: np.ndarray):
            super().__init__()
            self.x, self.y = x, y

        def on_epoch_end(self, epoch, logs=None):
            eps = keras.config.epsilon()
            p = np.clip(NumpyData.predict_images(self.model, self.x), eps, 1 - eps)
            logs["val_loss"] = float(-np.log(p[np.arange(len(self.y)), self.y]).mean())
            logs["val_accuracy"] = float((p.argmax(1) == self.y).mean())

    return Validator


def pipeline(backend: str | None = None):
    """The pipeline of `backend` (default: the one Keras runs on)."""
    return TFData if (backend or backends.loaded() or backends.choose()) == "tensorflow" else NumpyData
