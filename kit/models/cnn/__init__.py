"""The augmented Keras CNN: the kit's strong single model (`kit train cnn`).

Every Keras 3 backend trains it (`--backend`, kit/models/backends.py): TensorFlow feeds it
through tf.data with the augmentation beside the step, JAX and PyTorch through NumPy batches
with the augmentation as the network's first layer. Validation and test images are smoothed by
a fixed 3x3 kernel (`--blur`, `eval_blur`): the augmentation's bilinear resampling smooths
every training image, so a sharp digit is one the network has never seen. docs/decisions.md
has the studies behind each choice.

    config.py    `Config` (the hyper-parameters, in groups), `PRESETS`, `upgrade` (old
                 config.json files), `resolved`, `setup` (seeds, threads, precision), `_keras`
    net.py       the network: `build_model`, the fused batch-norm, `load_keras`,
                 `inference_model` (batch-norm folded), `refresh_batchnorm`, multiply-adds,
                 `predict_proba` (with test-time augmentation)
    layers.py    the augmentation layers and their resampling maths: `augmentation(cfg)`, the
                 in-model `Augment`, `RandomAffine`, `RandomElasticShift`, `augmented_examples`
    pipeline.py  the input: `eval_blur`, scaling, the tf.data (`TFData`) and NumPy
                 (`NumpyData`) pipelines, `pipeline(backend)`
    train.py     training: optimizer, schedule, callbacks, checkpoints and resume, `Trained`,
                 `check_resumable`, `fit`, `save`, `load`, `predict`

This file is the model's face for the registry (kit/models/__init__.py): it re-exports the
registry interface, Config, PRESETS, resolved, upgrade, check_resumable, fit, save, load,
predict and RESUME_FILES (the files kit.training deletes once a run is finished), and declares
GPU; nothing else. Code inside kit imports the modules above, not these names.
"""

from kit.models.cnn.config import PRESETS, Config, resolved, upgrade
from kit.models.cnn.train import RESUME_FILES, check_resumable, fit, load, predict, save

GPU = True  # every backend trains on the GPU it finds

__all__ = [
    "Config",
    "GPU",
    "PRESETS",
    "RESUME_FILES",
    "check_resumable",
    "fit",
    "load",
    "predict",
    "resolved",
    "save",
    "upgrade",
]
