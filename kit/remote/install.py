"""A finished kernel's output brought home: downloaded (resumable) into
runs/remote/<job>/<slug>/out/, every run folder in it verified against the local data (its
identity, the probabilities' shapes and values, one run per seed), then installed under runs/ as
an ordinary run with remote.json (where and how it was trained).

A group's member (a job with `--folds`) is verified against ITS split, not the fixed one: the
split hash of kit.groups.member_split and its fold's size as n_val, and its group, fold and
repeat; once installed, the local group record names its run (member.run), so the group fills
as its kernels are installed and is complete when the job is."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kit import config, data, groups, metrics, runs
from kit.errors import KitError
from kit.io import free_name, read_json, utc_iso, write_bytes, write_json
from kit.kaggle import kernels as kaggle_kernels
from kit.remote import entry, jobs
from kit.remote.jobs import Job, Kernel, KernelState

PROVENANCE = "remote.json"  # in an installed run: where and how it was trained
MEMBER_KEYS = ("group", "fold", "repeat")  # what a group member's metrics.json says of it


def local_identity() -> dict:
    """What every installed run must match: data_checksum, split_hash, n_val, n_test."""
    ds, sp = data.load_split()
    return {**metrics.identity(ds.checksum, sp.hash), "n_val": len(sp.val_idx), "n_test": len(ds.X_test)}


def _proba_problem(path: Path, rows: int) -> str | None:
    """None when `path` holds (rows, 10) finite probabilities, else what is wrong."""
    if not path.is_file():
        return f"{path.name} missing"
    try:
        p = np.load(path)
    except (OSError, ValueError) as e:
        return f"{path.name} unreadable ({e})"
    if p.shape != (rows, config.N_CLASSES):
        return f"{path.name} has shape {p.shape}, expected ({rows}, {config.N_CLASSES})"
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1 + 1e-4:
        return f"{path.name} holds values that are not probabilities (non-finite, < 0 or > 1)"
    return None


def verify_run(
    folder: Path, local: dict, model: str, seeds: list[int], members: dict[int, dict] | None = None
) -> str | None:
    """None when the downloaded run `folder` can be installed beside the local runs: finished
    (metrics.json), of `model` and one of `seeds`, the same data checksum, split hash, n_val and
    n_test as `local` (local_identity()), probabilities of the right shapes. Else what differed.
    `members` (a group's job): seed -> what that seed's member must record instead of or beside
    `local` (member_identities: its split hash, n_val, group, fold, repeat)."""
    run = runs.Run(folder)
    if not run.file(runs.METRICS).is_file() or not run.file(runs.CONFIG).is_file():
        return f"{folder.name}: no {runs.METRICS} or {runs.CONFIG} (the run did not finish)"
    m = run.metrics
    if m.get("model") != model or m.get("seed") not in seeds:
        return f"{folder.name}: a {m.get('model')!r} run of seed {m.get('seed')}, expected {model!r} seeds {seeds}"
    want = {**local, **(members or {}).get(m.get("seed"), {})}
    for key in (*metrics.IDENTITY, "n_val", "n_test", *MEMBER_KEYS):
        if key in want and m.get(key) != want[key]:
            whose = "the job's" if key in MEMBER_KEYS else "the local data's"
            return f"{folder.name}: {key} {m.get(key)!r}, {whose} is {want[key]!r}"
    problem = _proba_problem(run.file(runs.VAL_PROBA), want["n_val"]) or _proba_problem(
        run.file(runs.TEST_PROBA), want["n_test"]
    )
    return f"{folder.name}: {problem}" if problem else None


def member_identities(group: groups.Group, kernel: Kernel) -> dict[int, dict]:
    """seed -> what the run of each member `kernel` trains must record: the split hash of its
    member split on the local data, its fold's size as n_val, its group, fold and repeat."""
    y = data.load().y_train
    out = {}
    for i in kernel.members or []:
        m = group.members[i]
        sp = groups.member_split(group, m, y)
        split = {"split_hash": sp.hash, "n_val": len(sp.val_idx)}
        out[m.seed] = {**split, "group": group.name, "fold": m.fold, "repeat": m.repeat}
    return out


def verify_output(
    out: Path, kernel: Kernel, model: str, local: dict, members: dict[int, dict] | None = None
) -> list[Path]:
    """The run folders of one kernel's downloaded output, each verified, one per seed; a
    KitError naming the kernel and what differed if any check fails (then none is installed).
    `members`: see verify_run."""
    folders = sorted(p for p in (out / "runs").glob("*") if p.is_dir()) if (out / "runs").is_dir() else []
    problems = [p for p in (verify_run(f, local, model, kernel.seeds, members) for f in folders) if p]
    seeds = sorted(runs.Run(f).metrics.get("seed") for f in folders if not problems)
    if not problems and seeds != sorted(kernel.seeds):
        problems.append(f"runs for seeds {seeds}, expected {sorted(kernel.seeds)}")
    if problems:
        raise KitError(f"kernel {kernel.ref}: output refused, nothing installed from it: {problems[0]}")
    return folders


def install_run(folder: Path, provenance: dict) -> runs.Run:
    """Copy the verified run `folder` under runs/ as an ordinary run, with remote.json; its
    metrics.json last (so it counts as finished only when whole). An existing run is never
    overwritten: a name taken by another run gets -2, -3, ...; the same run (same kernel and
    version) already installed is returned as it is."""
    root = config.runs_dir()
    mine = read_json(root / folder.name / PROVENANCE)
    if (root / folder.name / runs.METRICS).exists() and all(
        mine.get(k) == provenance[k] for k in ("kernel", "version")
    ):
        return runs.Run(root / folder.name)

    def claim(name: str) -> Path:
        (root / name).mkdir(parents=True)  # atomic: of two installs, one gets the name
        return root / name

    dest = free_name(claim, folder.name)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != runs.METRICS:
            write_bytes(dest / path.relative_to(folder), path.read_bytes())
    write_json(dest / PROVENANCE, provenance)
    write_bytes(dest / runs.METRICS, (folder / runs.METRICS).read_bytes())
    return runs.Run(dest)


def provenance(job: Job, kernel: Kernel, run_folder: Path, summary: dict) -> dict:
    """remote.json: which kernel and version trained the run, on what, how long it took there."""
    return {
        "job": job.name,
        "kernel": kernel.ref,
        "version": kernel.version,
        "url": f"https://www.kaggle.com/code/{kernel.ref}",
        "accelerator": job.accelerator,
        "gpu": summary.get("gpu"),
        "remote_wall_time_s": runs.Run(run_folder).metrics.get("wall_time_s"),
        "kernel_wall_time_s": summary.get("wall_time_s"),
        "installed_utc": utc_iso(),
    }


def download_output(job: Job, kernel: Kernel) -> Path:
    """Download one finished kernel's output (resumable) into its out/ folder; that folder."""
    out = jobs.work_dir(job, kernel) / "out"
    kaggle_kernels.kernel_output(kernel.ref, out, kernel.version)
    return out


def _join(group: groups.Group, run: runs.Run) -> str:
    """Name the installed member `run` in the local group record (saved); where it sits."""
    (m,) = [m for m in group.members if m.seed == run.metrics["seed"]]
    m.run = run.name
    group.save()
    return f"fold {m.fold + 1}/{group.folds}, repeat {m.repeat + 1}/{group.repeats} of {group.name}"


def install_kernel(job: Job, kernel: Kernel, local: dict, echo: Callable[[str], None]) -> list[str]:
    """Verify and install one downloaded kernel's runs; their names (also recorded). A group's
    members: each installed run named in the local group record (saved after each)."""
    out = jobs.work_dir(job, kernel) / "out"
    group = groups.load(job.group) if job.group is not None else None
    members = member_identities(group, kernel) if group is not None else None
    folders = verify_output(out, kernel, job.model, local, members)
    summary = read_json(out / entry.SUMMARY)
    for folder in folders:
        run = install_run(folder, provenance(job, kernel, folder, summary))
        kernel.runs.append(run.name)
        acc = f"val accuracy {run.metrics['val_accuracy']:.4f}"
        if group is not None:
            acc = f"{_join(group, run)}, accuracy on its fold {run.metrics['val_accuracy']:.4f}"
        echo(f"installed {run.name} ({acc}) from {kernel.ref}")
    kernel.state = KernelState.INSTALLED
    kernel.failure = None  # an earlier download's, now past
    shutil.rmtree(out / "runs", ignore_errors=True)  # installed; the log and summary stay
    return kernel.runs
