"""One training lifecycle for every registered model (kit.models).

    run = training.train("cnn", models.get("cnn").make_config("default", seed=1))
    run = training.train("cnn", resume=run.path)          # continue an interrupted run

    new run, or resume (the run's own config.json)
      -> the data loaded; a new run's folder made, with config.json and the data's identity
      -> the run folder locked: one writer at a time (a crashed writer's lock is released)
      -> a resumed run: still unfinished, resumable, and its data and split the ones it recorded
      -> the model's fit, reporting to one Progress (its checkpoints and history.csv go into the
       run as it trains)
      -> the kept weights saved -> validation and test predictions
      -> metrics (kit.metrics), metrics.json written last -> temporary files removed

metrics.json has the same meaning for every model:
    train_time_s   seconds spent in training epochs, every session of a resumed run included
    wall_time_s    seconds of this `kit train` process, loading to metrics
    inference_s    seconds to predict the test set
    kept_epoch     the epoch whose weights the run keeps; best_epoch: lowest validation loss
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit import config, data, groups, hparams, io, metrics, models, runs
from kit import pseudo as kit_pseudo  # `pseudo` names the runs' PseudoLabels in signatures
from kit.errors import KitError
from kit.models import backends
from kit.pseudo import PseudoLabels

LOCK = ".lock"  # in the run folder: held by the one process writing it


@dataclass(frozen=True, eq=False)
class TrainData:
    """What a model trains and predicts on, from the installed data and the shared split.

    X_train: (N, 28, 28) uint8, y_train: (N,) uint8 — the training rows;
    X_val, y_val: the validation rows in split order; X_test: (n_test, 28, 28) in file order;
    identity: {'data_checksum', 'split_hash'} that every run records.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    identity: dict
    n_pseudo: int = 0  # test images among the training rows, labelled by a teacher (kit.pseudo)


class Progress:
    """How a model reports its training, the same for every model: on a terminal one bar over
    the epochs that moves with every step; elsewhere (a log file, a Kaggle kernel) one line per
    finished epoch; nothing when quiet. The model calls start, step and epoch."""

    def __init__(self, label: str, mode: str = "auto", stream=None):
        assert mode in ("auto", "bar", "lines", "quiet"), mode
        self.stream = stream or sys.stdout
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.label, self.mode, self.bar, self.total = label, mode, None, 0
        # the bar draws on a copy of the terminal's descriptor, taken now: the CNN captures
        # descriptor 2 while it trains (TensorFlow's native log lines), the bar must not be
        self.tty = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1) if mode == "bar" else None

    def start(self, epochs: int, done: int = 0) -> None:
        """Training of `epochs` epochs begins, `done` of them already finished (a resume)."""
        from tqdm.auto import tqdm

        self.total = epochs
        if self.mode == "bar":
            self.bar = tqdm(
                total=epochs,
                initial=done,
                desc=self.label,
                unit="epoch",
                dynamic_ncols=True,
                file=self.tty,
                bar_format="{l_bar}{bar}| {n:.1f}/{total} epochs [{elapsed}<{remaining}{postfix}]",
            )

    def step(self, fraction: float) -> None:
        """`fraction` of an epoch more is done (1 / steps per epoch after each step)."""
        if self.bar is not None:
            self.bar.update(min(fraction, self.total - self.bar.n))  # float sums overshoot

    def epoch(self, row: dict) -> None:
        """An epoch finished: `row` is its history.csv row (epoch, loss, accuracy, val_loss, ...)."""
        text = (
            f"loss {row['loss']:.4f}  acc {row['accuracy']:.4f}  val_loss {row['val_loss']:.4f}  "
            f"val_acc {row['val_accuracy']:.4f}  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
        )
        if self.bar is not None:
            self.bar.n = row["epoch"]  # whole again, whatever the steps' float sums came to
            self.bar.set_postfix_str(f"val_acc {row['val_accuracy']:.4f}", refresh=True)
        elif self.mode == "lines":
            print(f"{self.label} epoch {row['epoch']}/{self.total}  {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tty is not None:
            self.tty.close()
            self.tty = None


def load_data(
    member: tuple[groups.Group, groups.Member] | None = None, pseudo: PseudoLabels | None = None
) -> TrainData:
    """The shared split's rows, or, for a member of a cross-validated group, the rows outside
    its fold (training) and its fold (validation); with `pseudo`, the teacher's confident test
    images appended to the training rows."""
    if member is None:
        ds, sp = data.load_split()
    else:
        ds = data.load()
        sp = groups.member_split(*member, ds.y_train)
    found = TrainData(
        ds.X_train[sp.train_idx],
        ds.y_train[sp.train_idx],
        ds.X_train[sp.val_idx],
        ds.y_train[sp.val_idx],
        ds.X_test,
        metrics.identity(ds.checksum, sp.hash),
    )
    if pseudo is None:
        return found
    X, y = kit_pseudo.rows(pseudo, ds.X_test, member, found.identity)
    return dataclasses.replace(
        found,
        X_train=np.concatenate([found.X_train, X]),
        y_train=np.concatenate([found.y_train, y]),
        n_pseudo=len(y),
    )


def train(
    name: str,
    cfg=None,
    resume: Path | str | None = None,
    progress: bool = True,
    member: tuple[groups.Group, groups.Member] | None = None,
    pseudo: PseudoLabels | None = None,
) -> runs.Run:
    """Train model `name` with `cfg` (or continue the run `resume` with its saved config);
    return the finished run. `member`: the run is that member of a cross-validated group (it
    trains outside its fold and validates on it). KitError for anything the user can fix."""
    t_start = time.perf_counter()
    model = models.get(name)
    if resume is not None:
        run = _resumable(model, resume)
        cfg = model.run_config(run.config)
        member, pseudo = _member_of(run), PseudoLabels.from_record(run.config)
    else:
        assert cfg is not None, "train() needs a config or a run to resume"
        hparams.validate(cfg)
        run = None
    cfg = model.module.resolved(cfg)
    data = load_data(member, pseudo)
    if run is None:
        run = new_run(name, cfg, data.identity, member, pseudo)
    with one_writer(run):
        if resume is not None:
            _check_resume(model, run, data, fresh_member=member is not None and not _started(model, run))
        report = Progress(f"{name} {cfg.preset}", "auto" if progress else "quiet")
        try:
            trained = model.module.fit(cfg, run, data, report)
        finally:
            report.close()
        try:
            _finish(model, cfg, run, data, trained, t_start, member)
        except KeyboardInterrupt:
            raise KitError(
                f"interrupted after training, while writing predictions; the checkpoint is "
                f"kept in {run.path}. Finish it with: kit train {name} --resume {run.path}"
            ) from None
    # after the lock is released: Windows cannot delete a file that is open and locked (and a
    # finished run is never resumed, so no one waits on it)
    run.file(LOCK).unlink(missing_ok=True)
    return run


@contextmanager
def one_writer(run: runs.Run) -> Iterator[None]:
    """Hold the run folder's lock while this process trains into it; refuse, naming the
    holder, when another process does. The kernel releases a crashed process's lock."""
    with ExitStack() as stack:
        try:
            stack.enter_context(io.exclusive(run.file(LOCK), wait=False))
        except io.LockHeld as e:
            raise KitError(
                f"{run.path} is being trained by {e.holder or 'another process'}; "
                f"wait for it to finish (or stop it), then resume it"
            ) from None
        yield


def _resumable(model: models.Model, ref) -> runs.Run:
    run = runs.require_run(runs.resolve(str(ref)), model=model.name, finished=False)
    if run.finished:
        raise KitError(f"{run.path} already finished; there is nothing to resume (start a new run)")
    return run


def new_run(
    name: str,
    cfg,
    identity: dict,
    member: tuple[groups.Group, groups.Member] | None,
    pseudo: PseudoLabels | None,
) -> runs.Run:
    """A new run folder with its config.json (and, for a group member, the group's record of it)."""
    run = runs.create(name, cfg.seed)
    extra = {**_membership(member), **(pseudo.record() if pseudo else {})}
    run.write_config({"model": name, **dataclasses.asdict(cfg), **identity, **extra})
    if member is not None:
        member[1].run = run.name
        member[0].save()
    return run


def _started(model: models.Model, run: runs.Run) -> bool:
    """Whether training ever wrote into `run` (a group's members are made before they train)."""
    return any(run.file(f).exists() for f in (runs.HISTORY, *model.module.RESUME_FILES))


def _check_resume(model: models.Model, run: runs.Run, data: TrainData, fresh_member: bool = False) -> None:
    """Under the lock: the run is still unfinished, can be continued, and has this data."""
    if run.finished:  # finished by the process that held the lock before us
        raise KitError(f"{run.path} already finished; there is nothing to resume (start a new run)")
    if not fresh_member:  # a member that never started starts from its seed, as a new run
        model.module.check_resumable(run)
    diff = metrics.mismatch(run.config, data.identity)
    if diff:
        raise KitError(
            f"{run.path} was trained on other data ({diff}): it cannot be resumed on "
            f"this data; start a new run"
        )


def _finish(
    model: models.Model, cfg, run: runs.Run, data: TrainData, trained, t_start: float, member
) -> None:
    """Save, predict, measure, and write metrics.json last; then drop the resume files."""
    model.module.save(trained, run)
    val_proba = model.module.predict(trained, data.X_val)
    t0 = time.perf_counter()
    test_proba = model.module.predict(trained, data.X_test)
    inference_s = time.perf_counter() - t0
    run.write_history(trained.history)
    run.write_predictions(val_proba, test_proba)
    history = trained.history
    run.finish(
        {
            "model": model.name,
            "seed": cfg.seed,
            "preset": cfg.preset,
            "val_accuracy": metrics.accuracy(val_proba, data.y_val),
            "val_loss": metrics.log_loss(val_proba, data.y_val),
            "train_time_s": round(sum(r["seconds"] for r in history), 3),
            "wall_time_s": round(time.perf_counter() - t_start, 3),
            "inference_s": round(inference_s, 3),
            "time_to_99_4_s": metrics.seconds_to(history, metrics.TARGET_ACCURACY),
            **data.identity,
            **_membership(member),
            **({"n_pseudo": data.n_pseudo} if data.n_pseudo else {}),
            "n_train": trained.n_train,
            "n_val": len(data.y_val),
            "n_test": len(data.X_test),
            "epochs_run": history[-1]["epoch"],
            "best_epoch": trained.best_epoch,
            "kept_epoch": trained.kept_epoch,
            **trained.extra,
        }
    )
    for name in model.module.RESUME_FILES:
        run.file(name).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- groups


def _membership(member: tuple[groups.Group, groups.Member] | None) -> dict:
    """What config.json and metrics.json record of a group member (nothing for other runs)."""
    if member is None:
        return {}
    g, m = member
    return {"group": g.name, "fold": m.fold, "repeat": m.repeat, "folds": g.folds, "repeats": g.repeats}


def _member_of(run: runs.Run) -> tuple[groups.Group, groups.Member] | None:
    name = groups.group_of(run)
    if name is None:
        return None
    group = groups.load(name)
    found = [m for m in group.members if m.run == run.name]
    if not found:
        raise KitError(f"{run.path} says it belongs to group {name}, but the group does not list it")
    return group, found[0]


def train_group(
    name: str,
    cfg,
    folds: int,
    repeats: int,
    fold_seed: int,
    same_folds: bool = False,
    progress: bool = True,
    jobs: int | None = None,
    pseudo: PseudoLabels | None = None,
) -> groups.Group:
    """Train a new cross-validated group of model `name` (kit.groups): K x R members, member m
    with seed cfg.seed + m, `jobs` at a time (None: auto_jobs). Every member's run folder is made first, so the
    group's record names them all; then each trains as a resume of its folder."""
    model = models.get(name)
    hparams.validate(cfg)
    cfg = model.module.resolved(cfg)
    ds = data.load()
    groups.assignment(ds.y_train, folds, repeats, fold_seed, same_folds)  # refuses bad --folds first
    args = (name, dataclasses.asdict(cfg), folds, repeats, fold_seed, same_folds, ds.checksum)
    if pseudo is not None:  # refuse a teacher that cannot teach this group before anything is made
        new = groups.Group("(new)", name, folds, repeats, fold_seed, same_folds, {}, ds.checksum)
        kit_pseudo.teacher_proba(pseudo.source, (new, groups.Member(0, 0, 0)), {})
    group = groups.create(*args)
    start_members(model, group, group.members, cfg, pseudo)
    return _train_members(model, group, progress, jobs)


def start_members(model: models.Model, group: groups.Group, members, cfg, pseudo=None) -> None:
    """Make the run folder (config.json: the member's seed and split) of each of `members`
    that has none, naming it in the group's record. cfg: the resolved config they share."""
    ds = data.load()
    for m in members:
        if m.run is None:
            identity = metrics.identity(ds.checksum, groups.member_split(group, m, ds.y_train).hash)
            new_run(model.name, dataclasses.replace(cfg, seed=m.seed), identity, (group, m), pseudo)


def resume_group(ref: str, progress: bool = True, jobs: int | None = None) -> groups.Group:
    """Finish group `ref`: its unfinished members resume (or start, if they never did)."""
    group = groups.load(ref)
    if group.complete:
        raise KitError(f"group {group.name} already finished; there is nothing to resume")
    if any(m.run is None for m in group.members):
        raise KitError(f"group {group.name} is trained on Kaggle: finish it with {group.finish_command()}")
    return _train_members(models.get(group.model), group, progress, jobs)


def _train_members(
    model: models.Model, group: groups.Group, progress: bool, jobs: int | None, members=None
) -> groups.Group:
    """Train the group's unfinished members (of `members`, if given), `jobs` at a time (None:
    auto_jobs)."""
    todo = [m for m in group.unfinished() if members is None or m in members]
    jobs = auto_jobs(model, len(todo)) if jobs is None else jobs
    done = len(group.members) - len(group.unfinished())
    folders = [config.runs_dir() / m.run for m in todo]
    if jobs <= 1:
        for i, (m, folder) in enumerate(zip(todo, folders), start=done + 1):
            print(f"{group.name}: member {i}/{len(group.members)} {_where(group, m)}", flush=True)
            train(model.name, resume=folder, progress=progress)
    else:
        _train_in_processes(model, group, todo, folders, jobs)
    return groups.load(group.name)


# Members at once on an NVIDIA GPU (`--jobs auto`). On an H200, five JAX `best` members side by
# side ran at 2.8 s an epoch each and three at 2.15 s: 1.79 member-epochs a second against 1.40
# (docs/decisions.md, "GPU paths"); more than five was not tried. A member's process also keeps
# about two cores busy (its step loop, its input pipeline), so Kaggle's 4-core T4 pair takes 2.
GPU_JOBS_PER_CARD = 5
# JAX takes 75 % of a card's memory when it starts and TensorFlow all of it: the second member's
# process would find none left. Set for member processes unless the user set them.
SHARE_THE_CARD = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def auto_jobs(model: models.Model, members: int) -> int:
    """How many of `members` to train at once by default: one at a time on a CPU (one process
    already uses every core) or for a model that never uses a GPU; with NVIDIA GPUs,
    GPU_JOBS_PER_CARD a card, no more than half the cores and no more than the members."""
    gpus = backends.nvidia_gpus() if model.gpu else []
    if not gpus:
        return 1
    return max(1, min(members, GPU_JOBS_PER_CARD * len(gpus), config.cpu_cores() // 2))


def _where(group: groups.Group, m: groups.Member) -> str:
    return f"(fold {m.fold + 1}/{group.folds}, repeat {m.repeat + 1}/{group.repeats}, seed {m.seed})"


def _train_in_processes(model: models.Model, group: groups.Group, todo, folders, jobs: int) -> None:
    """Each member in its own `kit train --resume` process, `jobs` at once (on a GPU they share
    the card: one small network's steps leave it mostly idle). KitError naming the members that
    failed, after the others have finished."""
    env, gpus = {**SHARE_THE_CARD, **config.environment()}, backends.nvidia_gpus()
    # several GPUs (Kaggle's T4 pair): each process sees one, in turn, unless the user chose
    pin = len(gpus) > 1 and "CUDA_VISIBLE_DEVICES" not in os.environ

    def one(i: int, folder) -> tuple[str, str | None]:
        argv = [sys.executable, "-m", "kit", "train", model.name, "--resume", str(folder), "--quiet"]
        gpu = {"CUDA_VISIBLE_DEVICES": str(i % len(gpus))} if pin else {}
        proc = subprocess.run(argv, env={**env, **gpu}, capture_output=True, text=True)
        return folder.name, None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-500:]

    print(f"{group.name}: {len(todo)} members, {jobs} at a time, each in its own process", flush=True)
    failed = []
    with ThreadPoolExecutor(jobs) as pool:
        started = {pool.submit(one, i, folder): m for i, (folder, m) in enumerate(zip(folders, todo))}
        for future in as_completed(started):
            name, error = future.result()
            print(f"  {name} {_where(group, started[future])}: {'failed' if error else 'done'}", flush=True)
            if error:
                failed.append(f"{name}: {error}")
    if failed:
        raise KitError(
            f"{len(failed)} member(s) of {group.name} failed: {'; '.join(failed)}; "
            f"after a fix, `kit train {model.name} --resume {group.name}` trains what is left"
        )
