"""The Keras CNN (kit/models/cnn/) on the fixture competition: tiny widths, 1-3 epochs.

Each test checks behaviour against something independent of the code under test: the
labels from kit.data, the closed-form schedule, a second identical run, exact CLI output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fixtures_data import fixture_data_at
from kit import data, models, runs, training
from kit.cli import cli
from kit.errors import KitError
from kit.models import backends
from kit.models.cnn import config as cnn_config
from kit.models.cnn import layers, net, pipeline
from kit.models.cnn import train as cnn_train

# Keras 3.15 itself calls np.array() on its TF variables inside fit(); not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

TINY = dict(width=4, batch_size=32, max_train=256, patience=0)


CNN = models.get("cnn")


def tiny(preset="default", **kw):
    return CNN.make_config(preset, **{**TINY, **kw})


def train(cfg):
    return training.train("cnn", cfg, progress=False)


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("arch", cnn_config.ARCHS)
def test_each_arch_maps_images_to_class_probabilities(arch):
    model = net.build_model(tiny(arch))
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    p = np.asarray(model(x, training=False))
    assert p.shape == (3, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert model.name == f"cnn_{arch}"


def test_default_arch_at_full_width_has_about_290k_parameters():
    n = net.build_model(CNN.make_config()).count_params()
    assert 250_000 < n < 330_000, n


def test_growth_sets_the_second_block_and_the_reference_preset_keeps_the_reference_widths():
    import keras

    def conv_filters(cfg):
        return [
            layer.filters for layer in net.build_model(cfg).layers if isinstance(layer, keras.layers.Conv2D)
        ]

    assert conv_filters(CNN.make_config("default", width=8, growth=2)) == [8, 8, 8, 16, 16, 16, 32]
    assert conv_filters(CNN.make_config()) == [16, 16, 16, 64, 64, 64, 128]
    assert conv_filters(CNN.make_config("reference")) == [32, 32, 64, 64]
    dense = [
        layer.units
        for layer in net.build_model(CNN.make_config("reference")).layers
        if isinstance(layer, keras.layers.Dense)
    ]
    assert dense == [256, 10]


def test_fused_batchnorm_computes_what_keras_batchnorm_does_in_one_kernel():
    """Same weights, same batch, training mode: outputs, the gradients of a loss with respect to
    the input, gamma and beta, the updated moving statistics, then the inference output."""
    import keras

    tf = backends.tf()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2, 3, (4, 3, 3, 5)).astype(np.float32))
    weights = [rng.uniform(0.5, 2, 5), rng.normal(0, 1, 5), rng.normal(0, 1, 5), rng.uniform(0.5, 2, 5)]
    got, ops = {}, {}
    for name, kind in (("keras", keras.layers.BatchNormalization), ("fused", net.fused_batchnorm_class())):
        layer = kind()
        layer.build(x.shape)
        layer.set_weights(weights)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(x))
        grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
        got[name] = [y, *grads, layer.moving_mean, layer.moving_variance, layer(x, training=False)]
        graph = tf.function(lambda t, layer=layer: layer(t, training=True)).get_concrete_function(x).graph
        ops[name] = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in ops["fused"] and "FusedBatchNormV3" not in ops["keras"]
    for want, have in zip(got["keras"], got["fused"], strict=True):
        np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_runs_from_before_the_fused_batchnorm_and_affine_keep_what_they_trained_with():
    assert CNN.make_config().fused_bn is True
    old = {"model": "cnn", "arch": "default", "preset": "default", "epochs": 28}
    assert CNN.run_config(old).fused_bn is False and CNN.run_config(old).affine is False
    assert CNN.run_config({**old, "fused_bn": True}).fused_bn is True
    assert CNN.run_config({**old, "affine": True}).affine is True


@pytest.mark.parametrize("arch", cnn_config.ARCHS)
def test_inference_model_folds_batchnorm_without_changing_predictions(arch):
    import keras

    model = net.build_model(tiny(arch, width=8))
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial statistics, else folding is the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.get_weights()]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, shapes[0]),
                    rng.normal(0, 0.5, shapes[1]),
                    rng.normal(0, 0.5, shapes[2]),
                    rng.uniform(0.2, 3, shapes[3]),
                ]
            )
    folded = net.inference_model(model)
    assert not [
        layer
        for layer in folded.layers
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout))
    ]
    X = rng.integers(0, 256, (32, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(net.predict_proba(folded, X), net.predict_proba(model, X), atol=2e-6)


@pytest.mark.parametrize("arch", cnn_config.ARCHS)
def test_training_steps_lower_the_loss(arch, fixture_data):
    cfg = tiny(arch, width=8, dropout=0.0, lr=3e-3, optimizer="adam")
    cnn_config.setup(cfg)
    ds, sp = data.load_split()
    idx = sp.train_idx[:64]
    x = ds.X_train[idx].astype(np.float32)[..., None] / 255
    y = np.eye(10, dtype=np.float32)[ds.y_train[idx]]
    model = net.build_model(cfg)
    cnn_train.compile_model(model, cfg)

    def loss():  # cross-entropy in numpy; training mode, so batch-norm uses this batch's statistics
        p = np.asarray(model(x, training=True))
        return -np.mean(np.log(p[np.arange(len(x)), ds.y_train[idx]]))

    before = loss()
    for _ in range(15):
        model.train_on_batch(x, y)
    after = loss()
    assert after < 0.8 * before, (before, after)


# ----------------------------------------------------------------------------- augmentation


def test_augmentation_is_the_named_reference_pipeline():
    aug = layers.augmentation(cnn_config.Config())
    assert aug.name == "augmentation"
    rot, zoom, shift = aug.layers
    assert [type(l).__name__ for l in aug.layers] == ["RandomRotation", "RandomZoom", "RandomTranslation"]
    assert math.isclose(rot.factor[1] * 360, 10.0)  # +-10 degrees, as the reference
    assert (zoom.height_lower, zoom.height_upper) == pytest.approx((-0.1, 0.1))
    assert (shift.height_lower, shift.height_upper, shift.width_lower, shift.width_upper) == pytest.approx(
        (-0.1, 0.1, -0.1, 0.1)
    )


def test_augmentation_changes_images_in_training_and_is_identity_in_inference(fixture_data):
    ds, _ = data.load_split()
    x = ds.X_train[:16].astype(np.float32)[..., None] / 255
    aug = layers.augmentation(cnn_config.Config(seed=3))
    trained = np.asarray(aug(x, training=True))
    assert trained.shape == x.shape and trained.dtype == np.float32
    assert np.abs(trained - x).mean(axis=(1, 2, 3)).min() > 0  # every image moved
    np.testing.assert_array_equal(np.asarray(aug(x, training=False)), x)


def _centre_of_ink(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 2): each image's ink-weighted (column, row), in pixels."""
    ii = np.arange(x.shape[1])
    ink = x.sum(axis=(1, 2))
    return np.stack([(x.sum(1) * ii).sum(1) / ink, (x.sum(2) * ii).sum(1) / ink], axis=1)


def test_affine_draws_rotation_zoom_and_shift_over_their_ranges_in_one_resampling():
    Affine = layers.random_affine_class()
    square = np.zeros((256, 28, 28, 1), np.float32)
    square[:, 10:18, 10:18] = 1.0  # an 8x8 square about the centre (13.5, 13.5)
    # the angle is RandomRotation's own draw: with no zoom or shift, the same images bit for bit
    rotation = cnn_config._keras().layers.RandomRotation(10 / 360, fill_mode="constant", seed=3)
    rotated = np.asarray(rotation(square, training=True))
    np.testing.assert_array_equal(np.asarray(Affine(10, 0, 0, seed=3)(square, training=True)), rotated)
    # shift: the ink moves by up to 0.1 x 28 = 2.8 pixels on each axis, both ways
    moved = _centre_of_ink(np.asarray(Affine(0, 0, 0.1, seed=4)(square, training=True))[..., 0]) - 13.5
    assert np.abs(moved).max() <= 2.8 + 1e-3
    assert (moved.min(0) < -2).all() and (moved.max(0) > 2).all()
    # zoom by a factor in [0.9, 1.1] of the sampled area: the ink's area scales by 1/factor^2
    area = np.asarray(Affine(0, 0.1, 0, seed=5)(square, training=True)).sum(axis=(1, 2, 3)) / 64
    # (to 0.01: bilinear interpolation at the square's edges)
    assert 1 / 1.1**2 - 0.01 <= area.min() < 0.88 and 1.16 < area.max() <= 1 / 0.9**2 + 0.01
    aug = layers.augmentation(cnn_config.Config(affine=True))
    assert [layer.name for layer in aug.layers] == ["random_affine"]
    np.testing.assert_array_equal(np.asarray(aug(square, training=False)), square)


def test_one_resampling_smooths_less_than_three(fixture_data):
    """Bilinear interpolation averages neighbours on every pass: the sum of squares (what
    smoothing takes away while ink is kept) falls less with one pass than with three."""
    ds, _ = data.load_split()
    x = ds.X_train[:256].astype(np.float32)[..., None] / 255
    kept = {}
    for affine in (False, True):
        out = np.asarray(layers.augmentation(cnn_config.Config(seed=2, affine=affine))(x, training=True))
        kept[affine] = (out**2).sum() / (x**2).sum()
    assert kept[False] < kept[True] - 0.03, kept


def test_affine_draws_are_deterministic_per_seed():
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)

    def draw(seed):
        return np.asarray(layers.augmentation(cnn_config.Config(seed=seed, affine=True))(x, training=True))

    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


def test_an_affine_run_records_it_and_trains_on_it(trained, fixture_data):
    run, cfg = trained  # the same run with Keras's three layers
    affine = train(dataclasses.replace(cfg, affine=True))
    assert affine.config["affine"] is True and run.config["affine"] is False
    assert not np.array_equal(affine.val_proba(), run.val_proba())


def test_in_model_augment_layer_keeps_affine_through_its_config():
    layer = layers.augment_layer(cnn_config.Config(affine=True), 32, 0)
    again = type(layer).from_config(layer.get_config())
    assert again.settings["affine"] is True and [l.name for l in again.random] == ["random_affine"]
    old = {k: v for k, v in layer.get_config().items() if k != "affine"}  # saved before --affine
    assert type(layer).from_config(old).settings["affine"] is False


@pytest.mark.parametrize("kind", ["rotation", "zoom", "translation", "affine"])
def test_batched_resampling_is_keras_affine_transform_in_one_gather(kind, fixture_data):
    """What PyTorch runs instead of Keras's per-image loop (layers.BatchedResampling): the
    same images as Keras's own affine_transform (here TensorFlow's kernel) from the same draws."""
    keras = cnn_config._keras()
    make = {
        "rotation": lambda: keras.layers.RandomRotation(0.1, fill_mode="constant", seed=1),
        "zoom": lambda: keras.layers.RandomZoom(0.2, fill_mode="constant", seed=2),
        "translation": lambda: keras.layers.RandomTranslation(0.2, 0.2, fill_mode="constant", seed=3),
        "affine": lambda: layers.random_affine_class()(10.0, 0.1, 0.1, seed=4),
    }[kind]
    x = pipeline.scale(data.load_split()[0].X_train[:16])
    keras_own, batched = make(), make()
    batched.backend = layers.BatchedResampling(batched.backend)
    want = keras.ops.convert_to_numpy(keras_own(x, training=True))
    got = keras.ops.convert_to_numpy(batched(x, training=True))
    assert np.abs(want - x).max() > 0.5  # the images did move
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_bilinear_sampling_matches_scipy_map_coordinates():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28), dtype=np.float32)
    rows = rng.uniform(-2, 30, (3, 28, 28)).astype(np.float32)  # some outside the image
    cols = rng.uniform(-2, 30, (3, 28, 28)).astype(np.float32)
    got = np.asarray(layers.bilinear(cnn_config._keras().ops, images, rows, cols))
    want = np.stack(
        [ndimage.map_coordinates(images[b], [rows[b], cols[b]], order=1, cval=0.0) for b in range(3)]
    )
    # scipy pads with 0 beyond the edge and interpolates towards it; the kit gives 0 to any
    # point whose four neighbours are not all inside (Keras's fill_mode="constant")
    inside = (rows >= 0) & (rows <= 27) & (cols >= 0) & (cols <= 27)
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-5)
    assert np.all(got[(rows < -1) | (rows > 28) | (cols < -1) | (cols > 28)] == 0)


def test_elastic_shift_is_keras_shift_plus_an_independent_smooth_field_per_image_and_axis():
    Elastic = layers.random_elastic_shift_class()
    x = np.random.default_rng(1).random((64, 28, 28, 1), dtype=np.float32)
    # with alpha 0 it is RandomTranslation: the same draws from the same seed, the same images
    keras_shift = cnn_config._keras().layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=5)
    np.testing.assert_allclose(
        np.asarray(Elastic(0.1, 0.0, 4.0, seed=5)(x, training=True)),
        np.asarray(keras_shift(x, training=True)),
        atol=1e-6,
    )
    t = Elastic(0.0, 34.0, 4.0, seed=5).get_random_transformation(x, training=True)
    d = np.asarray(t["displacement"])  # (64, 28, 28, 2) pixels
    # uniform [-1, 1] (std 1/sqrt 3) smoothed by a normalised Gaussian: away from the zero-padded
    # border the std is alpha / sqrt(3) * sqrt(sum of the 2-D kernel's squares)
    k = layers.gaussian_kernel(4.0)
    expected = 34.0 / math.sqrt(3) * float((k**2).sum())
    centre = d[:, 12:16, 12:16]
    assert abs(centre.std() / expected - 1) < 0.1, (centre.std(), expected)
    # the two axes and the images have fields of their own (Keras's layer repeats one)
    assert abs(np.corrcoef(d[..., 0].ravel(), d[..., 1].ravel())[0, 1]) < 0.1
    assert abs(np.corrcoef(d[0, ..., 0].ravel(), d[1, ..., 0].ravel())[0, 1]) < 0.3
    # smooth: neighbouring pixels move together
    assert np.corrcoef(d[:, 10:18, 10:17, 0].ravel(), d[:, 10:18, 11:18, 0].ravel())[0, 1] > 0.9


def test_elastic_augmentation_runs_in_tf_data_and_keeps_its_settings(fixture_data):
    tf = backends.tf()
    cfg = cnn_config.Config(seed=3, elastic=34.0)
    aug = layers.augmentation(cfg)
    assert aug.layers[-1].name == "random_elastic_shift"
    assert [layer.name for layer in layers.augmentation(cnn_config.Config()).layers][-1].startswith(
        "random_translation"
    )
    ds, _ = data.load_split()
    batches = list(pipeline.TFData.train(ds.X_train[:100], ds.y_train[:100], cfg, 64, 0, aug))
    assert [b[0].shape[0] for b in batches] == [64, 36]  # tf.data's batches have no fixed size
    assert isinstance(batches[0][0], tf.Tensor)
    layer = layers.augment_layer(cfg, 32, 0)
    again = type(layer).from_config(layer.get_config())
    assert again.settings["elastic"] == 34.0 and again.random[-1].name == "random_elastic_shift"
    old = {k: v for k, v in layer.get_config().items() if not k.startswith("elastic")}  # saved before
    assert type(layer).from_config(old).settings["elastic"] == 0.0


def test_the_multi_device_validator_logs_what_keras_validation_does(fixture_data):
    ds, _ = data.load_split()
    x, y = pipeline.eval_images(ds.X_train[:301], 0.25), ds.y_train[:301]  # 301: no even split
    cfg = tiny()
    model = net.build_model(cfg)
    cnn_train.compile_model(model, cfg)
    model.fit(x, pipeline.one_hot(y), epochs=1, verbose=0)  # something better than chance
    validator, logs = pipeline._validator_class()(x, y), {}
    validator.set_model(model)
    validator.on_epoch_end(0, logs)
    loss, accuracy = model.evaluate(x, pipeline.one_hot(y), batch_size=pipeline.PREDICT_BATCH, verbose=0)
    assert logs["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert logs["val_accuracy"] == pytest.approx(accuracy, abs=1e-7)


def test_numpy_batches_divide_among_the_devices_and_drop_fewer_than_their_count():
    X, y = np.zeros((191, 28, 28), np.uint8), np.zeros(191, np.int64)
    batches = pipeline._batches_class()(X, y, 64, seed=0, multiple=4)
    sizes = [len(batches[i][0]) for i in range(len(batches))]
    assert sizes == [64, 64, 60]  # 191 = 64 + 64 + 63: the last three left out this epoch
    assert [len(b[0]) for b in pipeline._batches_class()(X, y, 64, seed=0)] == [64, 64, 63]


def test_clean_fraction_leaves_the_head_of_each_batch_unaugmented(fixture_data):
    ds, _ = data.load_split()
    X, y = ds.X_train[:64], ds.y_train[:64]
    originals = X.astype(np.float32) / 255
    cfg = tiny(clean_fraction=0.25, batch_size=16, seed=4)
    for xb, _ in pipeline.TFData.train(X, y, cfg, 16, 0, layers.augmentation(cfg)):
        xb = np.asarray(xb)[..., 0]
        # distance of each image in the batch to its nearest original
        nearest = np.abs(xb[:, None] - originals[None]).max(axis=(2, 3)).min(axis=1)
        assert (nearest[:4] < 1e-6).all()  # round(0.25 * 16) = 4 sharp training images
        assert (nearest[4:] > 1e-3).all()  # the rest augmented


def _numpy_blur(images: np.ndarray, b: float) -> np.ndarray:
    """(N, 28, 28) float -> the same convolved with [b, 1-2b, b] per axis, zero border (independent of pipeline.blur)."""
    k = np.array([b, 1 - 2 * b, b])
    p = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    rows = k[0] * p[:, :-2, :] + k[1] * p[:, 1:-1, :] + k[2] * p[:, 2:, :]
    return k[0] * rows[:, :, :-2] + k[1] * rows[:, :, 1:-1] + k[2] * rows[:, :, 2:]


@pytest.mark.parametrize("augment, blur", [(False, 0.25), (True, 0.25), (True, 0.0)])
def test_bn_refresh_normalises_each_layers_input_on_the_images_predictions_see(fixture_data, augment, blur):
    ds, _ = data.load_split()
    X = ds.X_train[:200]
    cfg = tiny(augment=augment, blur=blur, bn_refresh=1000, dropout=0.5)  # all 200 images
    model = net.build_model(cfg)
    net.refresh_batchnorm(model, X, cfg)
    import keras

    # what predictions see: never augmented; smoothed by the eval blur, which is off without augmentation
    images = X.astype(np.float64) / 255
    if augment and blur:
        images = _numpy_blur(images, blur)
    images = images.astype(np.float32)[..., None]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 7
    for bn in bns:
        # the defining property: in inference mode, each channel's output over these images has
        # mean beta and variance gamma^2 (up to epsilon); gamma=1, beta=0 when untrained
        out = keras.Model(model.input, bn.output).predict(images, verbose=0).reshape(-1, bn.output.shape[-1])
        gamma, beta, _, var = bn.get_weights()
        live = var > 1e-3  # channels a ReLU left all-zero have no variance to fix
        np.testing.assert_allclose(out.mean(0), beta, atol=1e-4)
        np.testing.assert_allclose(out.var(0)[live], (gamma**2 * var / (var + bn.epsilon))[live], rtol=1e-3)


def test_eval_blur_is_the_separable_kernel_and_conserves_ink():
    b = 0.25
    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, 10, 20, 0] = 1.0  # an impulse: its response is the kernel itself
    x[0, 0, 0, 0] = 1.0  # a corner pixel: the zero border takes the rest
    y = np.asarray(pipeline._tf_blur(x, b))[0, :, :, 0]
    k = np.array([b, 1 - 2 * b, b])
    np.testing.assert_allclose(y[9:12, 19:22], np.outer(k, k), atol=1e-7)
    np.testing.assert_allclose(y[:2, :2], np.outer(k[1:], k[1:]), atol=1e-7)
    assert y.sum() == pytest.approx(1.0 + (1 - b) ** 2, abs=1e-6)


def test_both_pipelines_show_predictions_the_same_images(fixture_data):
    # the NumPy pipeline (jax, torch) and tf.data must feed a network identical inputs
    ds, _ = data.load_split()
    X = ds.X_test[:50]
    for b in (0.0, 0.25, 1 / 3):
        numpy_images = pipeline.eval_images(X, b)
        assert numpy_images.shape == (50, 28, 28, 1) and numpy_images.dtype == np.float32
        np.testing.assert_allclose(numpy_images[..., 0], _numpy_blur(X / 255.0, b), atol=1e-6)
        np.testing.assert_allclose(numpy_images, np.asarray(pipeline.TFData.images(X, b)), atol=1e-6)


def test_blur_applies_to_plain_predictions_only_after_augmented_training(fixture_data):
    ds, _ = data.load_split()
    X = ds.X_test[:64]
    model = net.build_model(tiny())
    sharp = model.predict(pipeline.TFData.evaluation(X), verbose=0)
    assert pipeline.eval_blur(tiny()) == 0.25 and pipeline.eval_blur(tiny(augment=False)) == 0.0
    assert pipeline.eval_blur(CNN.make_config("reference")) == 0.0  # the reference kernel stays as it was
    np.testing.assert_allclose(net.predict_proba(model, X, cfg=tiny(augment=False)), sharp, atol=1e-6)
    # the same smoothing done independently in NumPy: a separable [b, 1-2b, b] pass per axis
    b, x = 0.25, np.pad(X.astype(np.float64) / 255, ((0, 0), (1, 1), (1, 1)))
    x = b * x[:, :-2] + (1 - 2 * b) * x[:, 1:-1] + b * x[:, 2:]
    x = b * x[:, :, :-2] + (1 - 2 * b) * x[:, :, 1:-1] + b * x[:, :, 2:]
    expected = model.predict(x.astype(np.float32)[..., None], verbose=0)
    blurred = net.predict_proba(model, X, cfg=tiny())
    np.testing.assert_allclose(blurred, expected, atol=1e-6)
    assert np.abs(blurred - sharp).max() > 1e-5


def test_augmented_examples_shape_range_and_seed(fixture_data):
    ds, _ = data.load_split()
    ex = layers.augmented_examples(ds.X_train[:5], n_variants=3, seed=1, cfg=cnn_config.Config())
    assert ex.shape == (5, 3, 28, 28) and ex.dtype == np.float32
    assert 0.0 <= ex.min() and ex.max() <= 1.0
    assert not np.array_equal(ex[:, 0], ex[:, 1])  # variants differ
    again = layers.augmented_examples(ds.X_train[:5], n_variants=3, seed=1, cfg=cnn_config.Config())
    np.testing.assert_array_equal(ex, again)


def test_pipeline_reshuffles_and_reaugments_every_epoch(fixture_data):
    ds, sp = data.load_split()
    cfg = tiny(seed=2)
    cnn_config.setup(cfg)
    X, y = ds.X_train[sp.train_idx[:96]], ds.y_train[sp.train_idx[:96]]
    pipe = pipeline.TFData.train(X, y, cfg, 32, cfg.seed, layers.augmentation(cfg))
    epochs = [[(xb.numpy(), yb.numpy()) for xb, yb in pipe] for _ in range(2)]
    for batches in epochs:
        xs = np.concatenate([b[0] for b in batches])
        ys = np.concatenate([b[1] for b in batches]).argmax(1)
        assert xs.shape == (96, 28, 28, 1) and xs.dtype == np.float32 and 0 <= xs.min() and xs.max() <= 1
        assert sorted(ys) == sorted(y)  # every image once per epoch
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])


# ----------------------------------------------------------------------------- schedule


def test_cosine_schedule_closed_form():
    cfg = CNN.make_config("default", lr=1e-2, lr_min=0.0, epochs=10)
    assert cnn_train.lr_at(cfg, 0) == pytest.approx(1e-2)
    assert cnn_train.lr_at(cfg, 5) == pytest.approx(5e-3)  # half-way: half the rate
    assert cnn_train.lr_at(cfg, 10) == pytest.approx(0.0, abs=1e-12)
    exp = CNN.make_config("default", lr=1e-2, lr_schedule="exponential", lr_decay=0.5, lr_min=1e-3)
    assert [cnn_train.lr_at(exp, k) for k in range(5)] == pytest.approx([1e-2, 5e-3, 2.5e-3, 1.25e-3, 1e-3])


def test_plateau_schedule_watches_a_metric_keras_produces():
    """The reference annealer watched `val_acc`, which Keras never logs: the rate never fell."""
    import keras

    cfg = tiny("reference", lr=1e-3, lr_decay=0.5, plateau_patience=2)
    model = net.build_model(cfg)
    cnn_train.compile_model(model, cfg)
    (plateau,) = [
        c
        for c in cnn_train.callbacks(runs.Run(None), cfg, [], {}, training.Progress("test", "quiet"), 1)
        if "Plateau" in type(c).__name__
    ]
    assert plateau.monitor == "val_accuracy"
    plateau.set_model(model)
    plateau.on_train_begin()
    rates = []
    for epoch, acc in enumerate([0.5, 0.6, 0.6, 0.6, 0.6, 0.6]):
        plateau.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": 1.0})
        rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory, installed_fixture_dir, kit_session_cache):
    """One tiny finished run (3 epochs) and its config, trained once for the tests that only
    read it, in folders of its own (as isolated_dirs + fixture_data make them per test)."""
    with fixture_data_at(tmp_path_factory.mktemp("cnn-trained"), installed_fixture_dir, kit_session_cache):
        cfg = tiny(seed=5, epochs=3, lr=5e-3)
        yield train(cfg), cfg


def test_run_folder_follows_the_format(trained):
    run, cfg = trained
    ds, sp = data.load_split()
    conf = run.config
    assert conf["model"] == "cnn" and conf["arch"] == "default" and conf["seed"] == 5
    assert {f.name for f in dataclasses.fields(cnn_config.Config)} <= set(conf)
    hist = pd.read_csv(run.file(runs.HISTORY))
    assert list(hist.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    assert hist["epoch"].tolist() == [1, 2, 3] and hist.notna().all().all()
    val, test = run.val_proba(), run.test_proba()
    assert val.shape == (len(sp.val_idx), 10) and val.dtype == np.float32
    assert test.shape == (len(ds.X_test), 10) and test.dtype == np.float32
    np.testing.assert_allclose(val.sum(1), 1, rtol=1e-4)
    m = run.metrics
    for key in (
        "model",
        "seed",
        "arch",
        "val_accuracy",
        "val_loss",
        "wall_time_s",
        "train_time_s",
        "data_checksum",
        "split_hash",
        "n_val",
        "n_test",
        "epochs_run",
        "best_epoch",
        "inference_s",
    ):
        assert key in m, key
    assert "time_to_99_4_s" in m
    # independent check: accuracy and log-loss recomputed from the labels in split order
    y_val = ds.y_train[sp.val_idx]
    assert m["val_accuracy"] == pytest.approx(np.mean(val.argmax(1) == y_val))
    assert m["val_loss"] == pytest.approx(-np.mean(np.log(val[np.arange(len(y_val)), y_val])), rel=1e-5)
    assert (m["data_checksum"], m["split_hash"]) == (ds.checksum, sp.hash)
    assert m["epochs_run"] == 3 and m["best_epoch"] == hist["val_loss"].idxmin() + 1
    assert m["kept_epoch"] == 3  # --keep last, the default
    assert run.file(cnn_train.MODEL_FILE).exists()
    assert not run.file(cnn_train.CHECKPOINT).exists()  # a finished run keeps only the final model
    assert runs.latest("cnn") == run


def test_logged_learning_rate_is_the_schedules(trained):
    run, cfg = trained
    lrs = run.history()["lr"].tolist()
    assert lrs == pytest.approx([cnn_train.lr_at(cfg, k) for k in range(3)], rel=1e-6)
    assert lrs[0] > lrs[1] > lrs[2]  # it really changes


def test_same_seed_same_predictions(trained):
    run, cfg = trained
    again = train(cfg)
    np.testing.assert_array_equal(run.test_proba(), again.test_proba())
    np.testing.assert_array_equal(run.val_proba(), again.val_proba())
    other = train(dataclasses.replace(cfg, seed=6))
    assert not np.array_equal(run.test_proba(), other.test_proba())


def test_saved_model_reproduces_the_test_predictions(trained):
    import keras

    run, cfg = trained
    ds, _ = data.load_split()
    model = keras.models.load_model(run.file(cnn_train.MODEL_FILE))
    np.testing.assert_allclose(net.predict_proba(model, ds.X_test, cfg=cfg), run.test_proba(), atol=1e-6)


def test_interrupted_run_resumes_after_its_last_epoch(fixture_data, monkeypatch):
    import keras

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    real = cnn_train.callbacks
    monkeypatch.setattr(cnn_train, "callbacks", lambda *a: [*real(*a), CtrlC()])
    cfg = tiny(seed=7, epochs=3)
    with pytest.raises(
        KitError, match=r"interrupted after epoch 1 of 3; continue with: kit train cnn --resume "
    ):
        train(cfg)
    (run,) = runs.all_runs(model="cnn", finished=False)
    first = run.history()
    assert first["epoch"].tolist() == [1] and run.file(cnn_train.CHECKPOINT).exists() and not run.finished

    monkeypatch.setattr(cnn_train, "callbacks", real)
    result = invoke("train", "cnn", "--resume", str(run.path), "--quiet")
    assert result.exit_code == 0, result.output
    hist = run.history()
    assert hist["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(hist.iloc[:1], first)  # epoch 1 kept, not redone
    assert hist["lr"].tolist() == pytest.approx([cnn_train.lr_at(cfg, k) for k in range(3)], rel=1e-6)
    assert run.metrics["epochs_run"] == 3 and run.finished
    assert f"run folder: {run.path}" in result.output


@pytest.fixture
def float32_after():
    """The process's precision policy back to float32 after a mixed-precision test."""
    yield
    cnn_config._keras().mixed_precision.set_global_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, options",
    [
        ("default", {}),
        ("default", dict(fused_bn=False, elastic=5.0)),
        ("reference", dict(affine=True)),
    ],
    ids=["fused-bn", "keras-bn-elastic", "reference-affine"],
)
def test_mixed_precision_trains_on_tensorflow_with_every_input_path(
    preset, options, fixture_data, float32_after
):
    """tf.data's sharp head (float32) beside the augmented tail, each batch-norm, the eval blur,
    the refresh and prediction under mixed_float16: it crashed at the first batch
    (ConcatV2 of float32 and float16) until the augmentation computed in float32."""
    keras = cnn_config._keras()
    run = train(
        tiny(preset, seed=3, epochs=options.pop("epochs", 2), lr=5e-3, mixed_precision=True, **options)
    )
    assert run.config["mixed_precision"] and run.finished
    assert np.isfinite(run.history()["loss"]).all()
    np.testing.assert_allclose(run.test_proba().sum(1), 1, atol=1e-5)
    keras.mixed_precision.set_global_policy("float32")  # as `kit predict` in a later process
    loaded = cnn_train.load(run, CNN.run_config(run.config))
    convs = [layer for layer in loaded.model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert {layer.compute_dtype for layer in convs} == {"float16"}
    assert loaded.model.layers[-1].compute_dtype == "float32"  # the softmax
    np.testing.assert_array_equal(cnn_train.predict(loaded, data.load_split()[0].X_test), run.test_proba())


def test_the_augmentation_computes_in_float32_under_mixed_precision(fixture_data, float32_after):
    keras = cnn_config._keras()
    keras.mixed_precision.set_global_policy("mixed_float16")
    cfg = tiny()
    x = pipeline.scale(data.load_split()[0].X_train[:8])
    out = layers.augmentation(cfg)(x, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    layer = layers.augment_layer(cfg, 8, seed=1)
    assert layer.compute_dtype == "float32"
    again = type(layer).from_config(layer.get_config())  # a file written under mixed_float16
    assert again.compute_dtype == "float32"


# ----------------------------------------------------------------------------- CLI errors


def test_cli_trains_and_prints_the_run(fixture_data):
    result = invoke("train", "cnn", "--width", "4", "--epochs", "1", "--max-train", "128", "--quiet")
    assert result.exit_code == 0, result.output
    run = runs.latest("cnn")
    m = run.metrics
    assert result.output.splitlines()[-1] == f"run folder: {run.path}"
    assert result.output.startswith(
        f"val accuracy {m['val_accuracy']:.4f}  val loss {m['val_loss']:.4f}  kept epoch 1/1  training "
    )
    assert run.config["width"] == 4 and run.config["epochs"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--preset", "resnet"],
            "Error: unknown preset 'resnet'; choose one of: reference, default, best, anchor\n",
        ),
        (["--lr", "0"], "Error: --lr must be > 0 (got 0.0)\n"),
        (["--epochs", "0"], "Error: --epochs must be at least 1 (got 0)\n"),
        (["--growth", "0"], "Error: --growth must be at least 1 (got 0)\n"),
        (["--dropout", "1.5"], "Error: --dropout must be in [0, 1) (got 1.5)\n"),
        (["--blur", "0.5"], "Error: --blur must be between 0 and 1/3 (1/3: a 3x3 box filter) (got 0.5)\n"),
        (["--lr-min", "1"], "Error: --lr-min must be between 0 and --lr (0.002) (got 1.0)\n"),
        (["--clean-fraction", "1"], "Error: --clean-fraction must be in [0, 1) (got 1.0)\n"),
        (["--bn-refresh", "-1"], "Error: --bn-refresh must be 0 or more (got -1)\n"),
        (
            ["--patience", "3"],
            "Error: --patience needs --keep best (--keep last keeps the schedule's end, which early stopping "
            "cuts) (got 3)\n",
        ),
        (
            ["--elastic", "34", "--affine"],
            "Error: --elastic cannot be combined with --affine (the elastic field rides on the separate "
            "shift) (got 34.0)\n",
        ),
        (["--elastic-sigma", "0"], "Error: --elastic-sigma must be > 0 (got 0.0)\n"),
    ],
)
def test_cli_rejects_bad_hyper_parameters(args, message, isolated_dirs):
    result = invoke("train", "cnn", *args)
    assert result.exit_code == 1 and result.output == message


def test_cli_mirrored_without_gpu_is_refused(fixture_data):
    if backends.accelerators("tensorflow"):
        pytest.skip("a GPU is visible")
    result = invoke("train", "cnn", "--strategy", "mirrored", "--width", "4", "--epochs", "1")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --strategy mirrored needs a GPU, and TensorFlow sees none; drop the "
        "option to train on the CPU, or install the GPU build: pip install -e '.[gpu]'\n"
    )
    assert runs.all_runs(model="cnn", finished=False) == []  # refused before any folder


def test_resume_refuses_other_models_archs_options_and_finished_runs(trained, tmp_path):
    run, _ = trained
    result = invoke("train", "cnn", "--resume", str(run.path))
    assert (
        result.output == f"Error: {run.path} already finished; there is nothing to resume (start a new run)\n"
    )

    unfinished = runs.create("cnn", 1)
    unfinished.write_config({"model": "cnn", **dataclasses.asdict(tiny())})
    result = invoke("train", "cnn", "--resume", str(unfinished.path), "--preset", "reference")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --resume continues a run with the settings it was started with; "
        "drop --preset (or start a new run without --resume)\n"
    )

    result = invoke("train", "cnn", "--resume", str(unfinished.path), "--epochs", "9", "--seed", "2")
    assert result.output == (
        "Error: --resume continues a run with the settings it was started with; "
        "drop --epochs, --seed (or start a new run without --resume)\n"
    )

    scratch = runs.create("scratch", 0)
    scratch.write_config({"model": "scratch"})
    result = invoke("train", "cnn", "--resume", str(scratch.path))
    assert result.output == f"Error: {scratch.path} is a 'scratch' run, not a 'cnn' run\n"


def test_early_stopping_goes_with_keep_best_and_old_runs_keeping_the_last_epoch_lose_it():
    """--keep last takes the schedule's end: early stopping would leave a mid-schedule epoch."""
    assert CNN.make_config().patience == 0 and CNN.make_config("best").patience == 0
    assert CNN.make_config("reference").keep == "best" and CNN.make_config("reference").patience == 10
    assert CNN.make_config("default", keep="best", patience=5).patience == 5
    # a config.json written before the rule: keep last with patience 10 resumes without early stopping
    old = {
        "model": "cnn",
        "arch": "default",
        "preset": "default",
        "keep": "last",
        "patience": 10,
        "epochs": 28,
    }
    assert CNN.run_config(old).patience == 0
    assert CNN.run_config({**old, "keep": "best"}).patience == 10
