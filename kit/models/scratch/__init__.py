"""The from-scratch network: a multi-layer perceptron in plain NumPy, no deep-learning library.

    config.py    Config (every hyper-parameter, saved in config.json), PRESETS, resolved()
    net.py       the maths, no files: layers (forward next to backward), the network, loss and
                 gradients, SGD and Adam, the learning-rate schedule, prediction, evaluation
    augment.py   random whole-pixel shifts and small affine distortions of (N, 28, 28) images
    train.py     the training loop (Plan, State, epochs, early stopping, the checkpoint) and
                 check_resumable, fit, save, load, predict

This file is the model's face for the registry in kit.models: it re-exports exactly the
registry interface (Config, PRESETS, resolved, RESUME_FILES, check_resumable, fit, save, load,
predict).
Code inside kit imports the submodules, not these re-exports.
"""

from kit.models.scratch.config import PRESETS, Config, resolved
from kit.models.scratch.train import RESUME_FILES, check_resumable, fit, load, predict, save

__all__ = [
    "Config",
    "PRESETS",
    "resolved",
    "RESUME_FILES",
    "check_resumable",
    "fit",
    "save",
    "load",
    "predict",
]
