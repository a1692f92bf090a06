"""`make bench` section `pipeline`: the CNN's tf.data input pipeline against ImageDataGenerator.

    python scripts/bench.py pipeline
    BENCH_PIPELINE=throughput python scripts/bench.py pipeline        # only some parts

Parts (in this order, all by default):
    throughput  augmented images/s of the kit's pipeline (kit.models.cnn.pipeline.TFData.train: uint8 ->
                shuffle -> batch -> scale -> RandomRotation/Zoom/Translation, parallel map,
                prefetch) and of the deprecated `ImageDataGenerator.flow` with the same
                augmentation (10 degrees, zoom 0.1, shifts 0.1, zero fill), same batches; ratio
    step        seconds per training step of the `default` model fed by each pipeline and by
                batches already in memory; the share of a step spent waiting for input is
                1 - t(memory) / t(pipeline)

ImageDataGenerator is imported from Keras' private legacy module: Keras 3 no longer exports it,
and the kit does not use it anywhere else. Real data: the training rows of the shared split.
"""

from __future__ import annotations

import os
import time

import numpy as np

PARTS = ["throughput", "step"]
BATCH = 128  # fixed, not the default network's batch size: results stay comparable across runs
WARMUP, BATCHES = 5, 100  # batches discarded, then timed (12,800 images)
STEP_WARMUP, STEPS = 5, 40  # training steps discarded, then timed, per input


def _idg_flow(X, y, seed: int):
    """The reference kernel's generator, same augmentation: (B, 28, 28, 1) float32 in [0, 1]."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(
        rotation_range=10,
        zoom_range=0.1,
        width_shift_range=0.1,
        height_shift_range=0.1,
        fill_mode="constant",
        cval=0.0,
    )
    onehot = np.eye(10, dtype=np.float32)[y]
    return gen.flow(X.astype(np.float32)[..., None] / 255, onehot, batch_size=BATCH, seed=seed)


def _rate(batches, n: int) -> float:
    """Images/s over n batches of an iterator, after WARMUP batches."""
    it = iter(batches)
    for _ in range(WARMUP):
        next(it)
    t = time.perf_counter()
    images = sum(len(next(it)[0]) for _ in range(n))
    return images / (time.perf_counter() - t)


def throughput(X, y, cfg) -> dict:
    from kit.models.cnn import layers as cnn_layers
    from kit.models.cnn import pipeline

    tf_rate = _rate(pipeline.TFData.train(X, y, cfg, BATCH, cfg.seed, cnn_layers.augmentation(cfg)), BATCHES)
    idg_rate = _rate(_idg_flow(X, y, cfg.seed), BATCHES)
    plain = _rate(pipeline.TFData.train(X, y, cfg, BATCH, cfg.seed, None), BATCHES)
    return {
        "tf_data_images_per_s": round(tf_rate),
        "image_data_generator_images_per_s": round(idg_rate),
        "ratio_tf_data_over_idg": round(tf_rate / idg_rate, 2),
        "tf_data_no_augmentation_images_per_s": round(plain),
    }


def step(X, y, cfg) -> dict:
    import tensorflow as tf

    from kit.models.cnn import layers as cnn_layers
    from kit.models.cnn import net, pipeline
    from kit.models.cnn import train as cnn_train

    model = net.build_model(cfg)
    cnn_train.compile_model(model, cfg)
    n = STEP_WARMUP + STEPS
    pipe = pipeline.TFData.train(X, y, cfg, BATCH, cfg.seed, cnn_layers.augmentation(cfg))
    batches = [(xb.numpy(), yb.numpy()) for xb, yb in pipe.take(n)]
    memory = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    ).batch(BATCH)

    def seconds_per_step(source) -> float:
        model.fit(
            source, epochs=1, steps_per_epoch=STEP_WARMUP, verbose=0, shuffle=False
        )  # trace + warm caches
        t = time.perf_counter()
        model.fit(source, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
        return (time.perf_counter() - t) / STEPS

    t_mem = seconds_per_step(memory.repeat())
    t_tf = seconds_per_step(pipe.repeat())
    t_idg = seconds_per_step(_idg_flow(X, y, cfg.seed))
    return {
        "step_s_in_memory": round(t_mem, 4),
        "step_s_tf_data": round(t_tf, 4),
        "step_s_image_data_generator": round(t_idg, 4),
        "input_wait_share_tf_data": round(max(0.0, 1 - t_mem / t_tf), 3),
        "input_wait_share_image_data_generator": round(max(0.0, 1 - t_mem / t_idg), 3),
        "batch_size": BATCH,
        "steps_timed": STEPS,
    }


def run() -> dict:
    from kit import data, models
    from kit.models import backends
    from kit.models.cnn import config as cnn_config

    parts = [p for p in os.environ.get("BENCH_PIPELINE", ",".join(PARTS)).split(",") if p]
    unknown = set(parts) - set(PARTS)
    assert not unknown, f"unknown BENCH_PIPELINE part(s) {unknown}; choose from {PARTS}"
    cfg = models.get("cnn").make_config("default", seed=0)
    cnn_config.setup(cfg)
    ds, sp = data.load_split()
    X, y = ds.X_train[sp.train_idx], ds.y_train[sp.train_idx]
    out = {"cpu_cores": os.cpu_count(), "gpu": backends.accelerators("tensorflow")}
    for part in parts:
        out[part] = globals()[part](X, y, cfg)
    return out
