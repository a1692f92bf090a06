"""The CNN's input: the images as every prediction sees them, and the two pipelines that feed
the network.

    tf.data   (the tensorflow backend) uint8 (N, 28, 28) -> shuffle with the seed -> batch ->
              scale to float32 [0, 1] -> `augmentation(cfg)` (kit/models/cnn/layers.py) mapped
              with parallel calls -> prefetch: the augmentation runs on CPU threads beside the step.
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

import math

import numpy as np

from kit import config as kit_config
from kit.models import backends

PREDICT_BATCH = 1024  # inference batch: big enough to amortise per-batch overhead
TTA_SEED_OFFSET = 1000  # test-time augmentation draws from seed + this


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
    return np.eye(kit_config.N_CLASSES, dtype=np.float32)[np.asarray(y, dtype=np.int64)]


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
        n_classes = kit_config.N_CLASSES
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
        n_classes = kit_config.N_CLASSES
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
