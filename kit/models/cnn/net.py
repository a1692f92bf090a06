"""The CNN's network: building it for a config (`build_model`, both archs), the fused
batch-norm layer, reading model files (`load_keras`), the network folded for prediction
(`inference_model`), the batch-norm refresh after training, its multiply-adds, and class
probabilities (`predict_proba`, with test-time augmentation).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from kit import config as kit_config
from kit.models import backends
from kit.models.cnn import config, pipeline
from kit.models.cnn import layers as cnn_layers  # `layers` is Keras's, in the functions below


def build_model(cfg: config.Config, augment=None):
    """The network for cfg.arch: (B, 28, 28, 1) float32 in [0, 1] -> (B, 10) float32 probabilities.
    `augment`: a first layer that augments training batches (layers.augment_layer: the NumPy
    pipeline's), the identity at inference."""
    keras = config._keras(cfg)
    layers = keras.layers

    side = kit_config.IMAGE_SIDE
    inputs = keras.Input((side, side, 1), name="image")
    first = inputs if augment is None else augment(inputs)
    w1, w2, p = cfg.width, cfg.growth * cfg.width, cfg.dropout
    if cfg.arch == "reference":
        # Conv32(5x5) x2 -> max-pool -> Conv64(3x3) x2 -> max-pool -> Dense 256, as the reference
        x = layers.Conv2D(w1, 5, padding="same", activation="relu")(first)
        x = layers.Conv2D(w1, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(p)(x)
        x = layers.Conv2D(w2, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(w2, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, strides=2)(x)
        x = layers.Dropout(p)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(4 * w2, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    elif cfg.arch == "default":
        # Two blocks of [3x3 conv, 3x3 conv, strided 5x5 conv] with batch-norm: 28 -> 12 -> 4,
        # the strided conv learns its own down-sampling where the reference max-pools.
        # The first block is narrow and the second wide: a filter at 24x24 costs 9x one at 8x8,
        # and a CPU is compute-bound here (docs/decisions.md, "first-block width").
        x = first
        bn = fused_batchnorm_class() if cfg.fused_bn else layers.BatchNormalization
        for filters in (w1, w2):
            x = _conv_bn(x, bn, filters, 3)
            x = _conv_bn(x, bn, filters, 3)
            x = _conv_bn(x, bn, filters, 5, strides=2, padding="same")
            x = layers.Dropout(p)(x)
        x = _conv_bn(x, bn, 2 * w2, 4)  # 4x4 -> 1x1: a dense layer over the last feature map
        x = layers.Flatten()(x)
        x = layers.Dropout(p)(x)
    else:
        raise AssertionError(cfg.arch)
    # float32 output even under mixed precision: softmax and the loss need the range
    outputs = layers.Dense(kit_config.N_CLASSES, activation="softmax", dtype="float32", name="proba")(x)
    return keras.Model(inputs, outputs, name=f"cnn_{cfg.arch}")


def _conv_bn(x, bn, filters: int, kernel: int, strides: int = 1, padding: str = "valid"):
    layers = config._keras().layers

    # no conv bias: batch-norm's beta does that job
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = bn()(x)
    return layers.Activation("relu")(x)


@functools.cache
def fused_batchnorm_class():
    """`FusedBatchNorm`: Keras's BatchNormalization, except that on TensorFlow its training step
    is one FusedBatchNormV3 kernel, forward and gradient, where Keras computes the moments and
    then normalises in separate elementwise passes. Batch-norm is memory-bound and a large share
    of the CPU step (docs/decisions.md, "Where the step's time goes"). Inference, other backends
    and the cases the kernel does not cover run Keras's own code. Registered with Keras once, so
    model files holding it load."""
    keras = config._keras()

    @keras.saving.register_keras_serializable(package="kit")
    class FusedBatchNorm(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            fused = (
                keras.backend.backend() == "tensorflow"
                and training
                and self.trainable
                and mask is None
                and self.center
                and self.scale
                and not (self.renorm or self.synchronized)
                and len(inputs.shape) == 4
                and self.axis in (-1, 3)
            )
            if not fused:
                return super().call(inputs, training=training, mask=mask)
            tf = backends.tf()
            x = tf.cast(inputs, "float32")  # as Keras does: batch-norm in float32 under mixed precision
            empty = tf.constant([], "float32")
            y, mean, var, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=self.gamma, offset=self.beta, mean=empty, variance=empty,
                epsilon=self.epsilon, data_format="NHWC", is_training=True,
            )  # fmt: skip
            # the kernel returns the unbiased variance; Keras's moving average keeps the biased one
            n = tf.cast(tf.size(x) // tf.shape(x)[-1], "float32")
            var = var * (n - 1) / n
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + var * (1 - self.momentum))
            return tf.cast(y, self.compute_dtype)

    return FusedBatchNorm


def load_keras(path, compile: bool = True):
    """A model or checkpoint file this module wrote (model.keras, checkpoint.keras), read with
    the kit's own layers (`Augment`, `FusedBatchNorm`) registered first. compile=False: for
    prediction only, without the optimizer (whose state a mixed-precision run saved with a
    loss scale that a float32 process does not rebuild: Keras would warn)."""
    cnn_layers.augment_layer_class()
    fused_batchnorm_class()
    with backends.quiet_native_logs():
        return config._keras().models.load_model(path, compile=compile)


def inference_model(model):
    """The same network for prediction only: every batch-norm folded into the convolution before
    it, dropout and the in-model augmentation removed. Same outputs up to float32 rounding, two fewer passes over each
    activation map (on a CPU those passes are memory traffic, not arithmetic).

    For a convolution W, b followed by batch-norm (gamma, beta, moving mean mu, variance var):
        s = gamma / sqrt(var + eps)  (per output channel);  W' = W * s;  b' = (b - mu) * s + beta
    Only for a chain of layers (both archs are one).
    """
    keras = config._keras()
    layers = keras.layers

    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    x = inputs = keras.Input(model.input_shape[1:], name="image")
    i = 0
    while i < len(chain):
        layer = chain[i]
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if isinstance(layer, (layers.Dropout, cnn_layers.augment_layer_class())):
            i += 1
            continue
        if isinstance(layer, layers.Conv2D) and isinstance(nxt, layers.BatchNormalization):
            assert nxt.scale and nxt.center and layer.activation.__name__ == "linear"
            gamma, beta, mu, var = (np.asarray(w, dtype=np.float64) for w in nxt.get_weights())
            kernel, *bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
            s = gamma / np.sqrt(var + nxt.epsilon)
            b = ((bias[0] if bias else 0.0) - mu) * s + beta
            after = chain[i + 2] if i + 2 < len(chain) else None
            activation = after.get_config()["activation"] if isinstance(after, layers.Activation) else None
            conv = layers.Conv2D(
                layer.filters,
                layer.kernel_size,
                strides=layer.strides,
                padding=layer.padding,
                activation=activation,
                name=layer.name,
                dtype=layer.dtype_policy,  # as trained (mixed_float16 or not), whatever the process's policy
            )
            x = conv(x)
            conv.set_weights([(kernel * s).astype(np.float32), b.astype(np.float32)])
            i += 3 if activation else 2
            continue
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
        i += 1
    return keras.Model(inputs, x, name=f"{model.name}_inference")


def refresh_batchnorm(model, X: np.ndarray, cfg: config.Config) -> None:
    """Re-estimate every batch-norm layer's moving mean and variance, in place, as the exact
    per-channel mean and (biased) variance of its input over cfg.bn_refresh training images as
    predictions see them: un-augmented, smoothed by the eval blur, dropout off (inference mode).
    One pass down the chain of layers (both archs are one): each batch-norm is refreshed before
    the images go through it, so it sees the refreshed layers before it.
    X: (N, 28, 28) uint8 training images; cfg.bn_refresh of them, drawn with cfg.seed.

    Why: the running averages describe what training fed each batch-norm, which is not what
    prediction feeds it. Training adds dropout's extra variance (a batch-norm after a dropout
    layer remembers it; predictions run without dropout) and mixes augmented, resampled digits
    with sharp ones; predictions see sharp digits smoothed by the eval blur. Normalising with the
    statistics of exactly that input removes both mismatches (docs/decisions.md, "batch-norm
    refresh": fewer validation errors in total over the seeds measured, not on every seed).
    """
    keras = config._keras()
    layers = keras.layers

    chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    bn_at = [i for i, layer in enumerate(chain) if isinstance(layer, layers.BatchNormalization)]
    if not cfg.bn_refresh or not bn_at:
        return
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(X), min(cfg.bn_refresh, len(X)), replace=False)
    x = pipeline.pipeline().images(X[pick], pipeline.eval_blur(cfg))
    for layer in chain[: bn_at[-1] + 1]:  # nothing after the last batch-norm needs the images
        if isinstance(layer, layers.BatchNormalization):
            a = keras.ops.convert_to_numpy(x).astype(np.float64).reshape(-1, x.shape[-1])
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, a.mean(0).astype(np.float32), a.var(0).astype(np.float32)])
        x = layer(x, training=False)


def layer_multiply_adds(layer) -> int:
    """Forward multiply-adds per image of one layer: a convolution's or a dense layer's (the
    arithmetic that matters here), 0 for the rest."""
    layers = config._keras().layers
    if isinstance(layer, layers.Conv2D):
        h, w, c_out = layer.output.shape[1:]
        kh, kw = layer.kernel_size
        return h * w * c_out * kh * kw * layer.input.shape[-1]
    if isinstance(layer, layers.Dense):
        return layer.input.shape[-1] * layer.units
    return 0


def multiply_adds(model) -> int:
    """Forward multiply-adds per image of the network (a training image costs about 3x)."""
    return sum(layer_multiply_adds(layer) for layer in model.layers)


def predict_proba(model, X: np.ndarray, tta: int = 0, cfg: config.Config | None = None) -> np.ndarray:
    """Class probabilities of X: (N, 28, 28) uint8 -> (N, 10) float32.

    The plain pass smooths the images by `pipeline.eval_blur(cfg)` (none when cfg is None); tta > 0
    averages it with `tta` randomly augmented passes (seeded by cfg.seed).
    """
    feed = pipeline.pipeline()
    proba = feed.predict(model, X, pipeline.eval_blur(cfg))
    if tta:
        seed = (cfg.seed if cfg else 0) + pipeline.TTA_SEED_OFFSET
        aug = cnn_layers.augmentation(dataclasses.replace(cfg or config.Config(), seed=seed))
        for _ in range(tta):
            proba += feed.predict_augmented(model, X, aug)
        proba /= tta + 1
    return proba
