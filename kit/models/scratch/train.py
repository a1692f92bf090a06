"""Training the from-scratch network: the registry interface (check_resumable, fit, save, load,
predict), the epochs around kit.models.scratch.net's maths, and the checkpoint.

fit() builds a Plan (what stays fixed: the settings, the data, the network's shape, the step
counts) and a State (what training changes: parameters, optimizer, random generator, the best
epoch so far, the history), then runs epochs: a fresh order of the training rows (and fresh
random distortions from kit.models.scratch.augment), one optimizer step per batch, then the
epoch's validation score, the best weights kept (early stopping on validation loss), the
history and the checkpoint written.

Reproducible: one `np.random.Generator` (PCG64, seeded from `seed`) is threaded through
initialisation, shuffling, augmentation and dropout, and BLAS runs with a fixed thread
count (threadpoolctl), so the same seed and data give bit-identical weights. Its state is
saved in the per-epoch checkpoint, so `--resume` ends exactly where an uninterrupted
run would.

The run folder around it (config, data identity, predictions, metrics) is kit.training's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit import config, io
from kit.errors import KitError
from kit.models.scratch import augment, net
from kit.models.scratch.config import Config

WEIGHTS = "weights.npz"  # the trained network (best epoch), for net.predict_proba
CHECKPOINT = "checkpoint.npz"  # the last finished epoch, for --resume; removed when the run finishes
RESUME_FILES = (CHECKPOINT,)
PREDICT_BATCH = 4096  # rows per forward pass at prediction and evaluation time (bounds memory)
CHECKPOINT_META = ("epoch", "best_epoch", "best_val_loss", "history", "elapsed")  # State's, in the JSON


# ============================================================================ the registry interface


@dataclass
class Trained:
    """A trained network: the kept (best-epoch) parameters and what the training loop saw.

    params: W1, b1, ..., WL, bL float32;  input_scale: what pixels 0-255 are multiplied by;
    threads: the BLAS threads every product of this run uses (results depend on it).
    """

    params: dict
    input_scale: float
    threads: int
    history: list
    best_epoch: int
    n_train: int = 0

    @property
    def kept_epoch(self) -> int:
        return self.best_epoch

    @property
    def extra(self) -> dict:
        """This model's own metrics.json entries."""
        return {"threads": self.threads}

    def weights(self) -> dict:
        """What weights.npz holds: the parameters and the input scale."""
        return {**self.params, "input_scale": np.float32(self.input_scale)}


def input_scale(cfg: Config) -> float:
    return 1.0 if cfg.raw_pixels else 1 / 255


def check_resumable(run) -> None:
    """KitError unless `run` has a checkpoint to continue from."""
    if not run.file(CHECKPOINT).exists():
        raise KitError(
            f"{run.path} has no {CHECKPOINT} (it stopped before its first epoch ended); "
            f"start a new run instead"
        )


def fit(cfg: Config, run, data, progress) -> Trained:
    """Train on data.X_train (N, 28, 28) uint8 / data.y_train (N,), choosing the best epoch on
    data.X_val / data.y_val; continue from `run`'s checkpoint when it has one. Checkpoints
    and history.csv go to `run`; every step and epoch is reported to `progress` (a
    kit.training.Progress). Ctrl-C leaves the last checkpoint and raises KitError saying how
    to resume."""
    from threadpoolctl import threadpool_limits  # here, not above: importing it sets KMP_DUPLICATE_LIB_OK

    keep_freed_memory()
    plan = make_plan(cfg, data)
    with threadpool_limits(limits=cfg.threads, user_api="blas"):
        state = _train_loop(plan, run, progress)
    return Trained(state.best_params, plan.input_scale, cfg.threads, state.history, state.best_epoch, plan.n)


def save(trained: Trained, run) -> None:
    with io.atomic_path(run.file(WEIGHTS)) as tmp:
        np.savez(tmp, **trained.weights())


def read_weights(path: Path) -> dict:
    """The arrays of a weights.npz: W1, b1, ..., WL, bL and input_scale."""
    with np.load(path) as f:
        return dict(f)


def load(run, cfg: Config) -> Trained:
    """A finished run's network, from its weights.npz (history and epochs from the run)."""
    weights = read_weights(run.file(WEIGHTS))
    scale = float(weights.pop("input_scale"))
    return Trained(
        weights,
        scale,
        cfg.threads or config.cpu_cores(),
        run.history().to_dict("records"),
        int(run.metrics.get("kept_epoch") or run.metrics.get("best_epoch") or 0),
    )


def predict(trained: Trained, X: np.ndarray) -> np.ndarray:
    """X: (N, 28, 28) uint8 -> (N, 10) float32 probabilities, with the run's BLAS threads."""
    from threadpoolctl import threadpool_limits  # not at the top: see fit

    with threadpool_limits(limits=trained.threads, user_api="blas"):
        return net.predict_proba(trained.weights(), X, PREDICT_BATCH)


# ============================================================================ the machine


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory in the heap instead of returning it to the OS.

    Every step allocates activations of a few MB and frees them; by default glibc hands such
    blocks back to the kernel, so the next step page-faults them in again, which costs more
    than the matrix products for wide layers. A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # blocks up to 32 MB (glibc's maximum) come from the heap
        libc.mallopt(M_TRIM_THRESHOLD, 1024 * 2**20)  # and stay there once freed
    except (OSError, AttributeError):
        pass


# ============================================================================ the training loop


@dataclass(frozen=True)
class Plan:
    """What stays fixed while a run trains: its settings, its data, the network's shape, and
    the step counts the learning-rate schedule is laid out in."""

    cfg: Config
    X_img: np.ndarray  # (N, 28, 28) uint8 training images, distorted afresh every epoch
    X_static: np.ndarray | None  # (N, 784) float32 inputs when nothing distorts them, else None
    y: np.ndarray  # (N,) intp training labels
    X_val: np.ndarray  # (V, 784) float32 validation inputs
    y_val: np.ndarray  # (V,) intp validation labels
    input_scale: float  # what pixels 0-255 are multiplied by
    sizes: list[int]  # layer widths, input to output: [784, *hidden, 10]
    batch: int  # examples per step
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    @property
    def n(self) -> int:
        return len(self.y)


@dataclass
class State:
    """What training changes, all of it (but the gradient buffers) in the checkpoint: the
    parameters, the optimizer, the one random generator, the epochs done and the best so far."""

    rng: np.random.Generator
    params: dict  # W1, b1, ..., WL, bL, updated in place
    optimizer: net.SGD | net.Adam
    best_params: dict  # a copy of params at best_epoch
    grads: dict  # preallocated gradient arrays, reused every step (not checkpointed)
    epoch: int = 0  # epochs finished
    best_epoch: int = 0
    best_val_loss: float = math.inf
    history: list = field(default_factory=list)  # one row per finished epoch (history.csv)
    elapsed: float = 0.0  # seconds spent in the epochs so far


def make_plan(cfg: Config, data) -> Plan:
    """The fixed part of training `cfg` on `data` (a kit.data split: X_train, y_train, X_val, y_val)."""
    scale = input_scale(cfg)
    y = data.y_train.astype(np.intp)
    X_val = net.to_inputs(data.X_val, scale)
    n = len(y)
    batch = cfg.batch_size or n
    steps_per_epoch = math.ceil(n / batch)
    # without augmentation the inputs never change: convert them once
    static = not (cfg.shift or cfg.rotate or cfg.scale)
    return Plan(
        cfg=cfg,
        X_img=data.X_train,
        X_static=net.to_inputs(data.X_train, scale) if static else None,
        y=y,
        X_val=X_val,
        y_val=data.y_val.astype(np.intp),
        input_scale=scale,
        sizes=[X_val.shape[1], *map(int, cfg.hidden), config.N_CLASSES],
        batch=batch,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * cfg.epochs,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
    )


def _initial_state(plan: Plan, run) -> State:
    """The state at epoch 0, or where `run`'s checkpoint left it."""
    rng = np.random.Generator(np.random.PCG64(plan.cfg.seed))
    params = net.init_params(rng, plan.sizes, plan.cfg.init)
    state = State(
        rng=rng,
        params=params,
        optimizer=net.make_optimizer(plan.cfg, params),
        best_params={k: p.copy() for k, p in params.items()},
        grads={k: np.empty_like(p) for k, p in params.items()},
    )
    if run.file(CHECKPOINT).exists():
        _load_checkpoint(run.file(CHECKPOINT), state)
    return state


def _train_loop(plan: Plan, run, progress) -> State:
    """The epochs, until the last or until early stopping. Returns the final state."""
    state = _initial_state(plan, run)
    progress.start(plan.cfg.epochs, state.epoch)
    try:
        while state.epoch < plan.cfg.epochs:
            t0 = time.perf_counter()
            row = _epoch(plan, state, progress)
            stop = _end_epoch(plan, state, run, row, time.perf_counter() - t0)
            progress.epoch(state.history[-1])
            if stop:
                break
    except KeyboardInterrupt:
        progress.close()
        done = _checkpoint_epoch(run.file(CHECKPOINT))
        where = f"the checkpoint of epoch {done} is kept" if done else "no epoch had finished"
        raise KitError(
            f"interrupted during epoch {state.epoch + 1}; {where} in {run.path}. "
            f"Continue it with: kit train scratch --resume {run.path}"
        ) from None
    return state


def _epoch_data(plan: Plan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of one epoch: the training rows in a fresh order (and with fresh distortions)."""
    cfg, n = plan.cfg, plan.n
    order = rng.permutation(n) if plan.batch < n else np.arange(n)
    if plan.X_static is not None:
        X_epoch = plan.X_static if plan.batch >= n else plan.X_static[order]
    else:
        distorted = augment.augment(plan.X_img[order], rng, cfg.shift, cfg.rotate, cfg.scale)
        X_epoch = net.to_inputs(distorted, plan.input_scale)
    return X_epoch, plan.y[order]


def _epoch(plan: Plan, state: State, progress) -> dict:
    """One pass over the training rows, one optimizer step per batch.
    Returns {loss: the mean, accuracy, lr: the last step's learning rate}."""
    cfg, batch, steps = plan.cfg, plan.batch, plan.steps_per_epoch
    X_epoch, y_epoch = _epoch_data(plan, state.rng)
    loss_sum, correct, lr = 0.0, 0, cfg.lr
    for s in range(steps):
        Xb, yb = X_epoch[s * batch : (s + 1) * batch], y_epoch[s * batch : (s + 1) * batch]
        masks = (
            [net.dropout_mask(state.rng, (len(yb), h), cfg.dropout) for h in plan.sizes[1:-1]]
            if cfg.dropout
            else None
        )
        loss, n_correct, state.grads = net.loss_and_grads(
            state.params, Xb, yb, masks, cfg.weight_decay, state.grads
        )
        lr = net.learning_rate(state.epoch * steps + s, plan.total_steps, plan.warmup_steps, cfg)
        state.optimizer.step(state.params, state.grads, lr)
        loss_sum += loss * len(yb)
        correct += n_correct
        progress.step(1 / steps)
    return dict(loss=loss_sum / plan.n, accuracy=correct / plan.n, lr=lr)


def _end_epoch(plan: Plan, state: State, run, row: dict, seconds: float) -> bool:
    """Score the epoch on validation, keep the best weights, log it, checkpoint it.
    Returns True when early stopping says stop."""
    cfg = plan.cfg
    val_loss, val_acc = net.evaluate(state.params, plan.X_val, plan.y_val, PREDICT_BATCH)
    state.elapsed += seconds
    state.epoch += 1
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_epoch = val_loss, state.epoch
        state.best_params = {k: p.copy() for k, p in state.params.items()}
    state.history.append(
        {
            "epoch": state.epoch,
            "loss": row["loss"],
            "accuracy": row["accuracy"],
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": row["lr"],
            "seconds": round(seconds, 4),
            "samples_per_s": round(plan.n / seconds, 1),
        }
    )
    stop = bool(cfg.patience) and state.epoch - state.best_epoch >= cfg.patience
    if state.epoch % cfg.checkpoint_every == 0 or stop or state.epoch == cfg.epochs:
        _save_checkpoint(run.file(CHECKPOINT), state)
        run.write_history(state.history)
    return stop


# ============================================================================ the checkpoint


def _save_checkpoint(path: Path, state: State) -> None:
    """Everything needed to continue bit-identically: parameters, best parameters, optimizer
    state, the generator's state and the history so far. Atomic: the old one or the new one."""
    meta = {k: getattr(state, k) for k in CHECKPOINT_META}
    meta["rng"] = state.rng.bit_generator.state
    arrays = {
        **{f"p.{k}": v for k, v in state.params.items()},
        **{f"best.{k}": v for k, v in state.best_params.items()},
        **{f"opt.{k}": v for k, v in state.optimizer.state().items()},
        "meta": np.array(json.dumps(meta)),
    }
    with io.atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def _load_checkpoint(path: Path, state: State) -> None:
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        for k in state.params:
            state.params[k][...] = f[f"p.{k}"]
        state.best_params = {k: f[f"best.{k}"].copy() for k in state.params}
        state.optimizer.load_state({k[4:]: f[k] for k in f.files if k.startswith("opt.")})
    state.rng.bit_generator.state = meta.pop("rng")
    for k in CHECKPOINT_META:
        setattr(state, k, meta[k])


def _checkpoint_epoch(path: Path) -> int:
    if not path.exists():
        return 0
    with np.load(path) as f:
        return int(json.loads(str(f["meta"]))["epoch"])
