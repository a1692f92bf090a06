"""What runs inside a Kaggle kernel that `kit remote` pushed (kit.remote.kernel generates the
script).

    the generated script -> unpacks the kit it carries, then main(JOB):
      -> the Python modules the job needs, checked (one line naming any that are missing)
      -> the competition files found under the input folder (the folder holding train.csv,
         searched for: the mount path has changed over the years), installed through
         kit.data.install (the same verification as `kit download`) into a scratch data folder
      -> their identity (data checksum, split hash) checked against the user's local data
      -> each of the job's seeds trained with kit.training.train (a line per epoch in the log)
         into <working>/runs/ -> kit-kernel.json (the runs, the GPU, wall time) -> a final line
      a group's job (`--folds`): the group record travels in JOB; each of the kernel's members
      is trained as kit.training.train(..., member=(group, member)) (its fold's rows held out,
      its seed), and the group record the training writes here is left out of the output

The input and working folders come from KIT_KAGGLE_INPUT / KIT_KAGGLE_WORKING (the local
emulator sets them) and default to Kaggle's /kaggle/input and /kaggle/working. Only the standard
library (and kit's config and errors, which use nothing else) is imported here at module level, so
the import check can run before anything else; the kaggle client and tenacity are never imported
(Kaggle's image runs without internet).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kit import config  # config and errors import only the standard library
from kit.errors import KitError
from kit.models import backends  # standard library only, as config and errors

INPUT_ENV, WORKING_ENV = "KIT_KAGGLE_INPUT", "KIT_KAGGLE_WORKING"
KAGGLE_INPUT, KAGGLE_WORKING = "/kaggle/input", "/kaggle/working"
SUMMARY = "kit-kernel.json"  # in the working folder: what this kernel made, for the install
RUNS = "runs"  # under the working folder: the run folders, as under a local runs/
PREFIX = "kit remote:"  # every line of ours in the log starts with it
# what training imports, for every model and per model (kit.models.* import theirs lazily)
NEEDS = {
    "": ("numpy", "pandas", "sklearn", "tqdm"),
    "cnn": ("tensorflow", "keras"),
    "scratch": ("threadpoolctl",),
}
EXIT_MISSING, EXIT_FAILED = 2, 1


def say(text: str) -> None:
    print(f"{PREFIX} {text}", flush=True)


def missing_modules(model: str) -> list[str]:
    """The modules model `model`'s training needs that this Python cannot import."""
    missing = []
    for name in (*NEEDS[""], *NEEDS.get(model, ())):
        try:
            importlib.import_module(name)
        except ImportError:  # includes a module blocked with sys.modules[name] = None
            missing.append(name)
    return missing


def find_competition(input_dir: Path) -> Path:
    """The folder under `input_dir` holding train.csv (and its siblings), shallowest first."""
    found = sorted(Path(input_dir).rglob("train.csv"), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise FileNotFoundError(
            f"no train.csv under {input_dir}: is the competition attached to the kernel "
            f"(competition_sources in kernel-metadata.json)?"
        )
    return found[0].parent


def gpu_name() -> str | None:
    """The first GPU's name from nvidia-smi ('Tesla T4'), None without one."""
    names = backends.nvidia_gpus()
    return names[0] if names else None


def folders() -> tuple[Path, Path]:
    """(input, working) for this session: the emulator's variables, else Kaggle's paths."""
    return (
        Path(os.environ.get(INPUT_ENV) or KAGGLE_INPUT),
        Path(os.environ.get(WORKING_ENV) or KAGGLE_WORKING),
    )


def main(job: dict) -> int:
    """Train `job`'s seeds here; 0 when every run finished. job: model, seeds, config (the full
    config dict, as config.json has it), competition, identity {data_checksum, split_hash},
    job, kernel, and for a group's job group (its record) and members (the indices of those
    this kernel trains) (see kit.remote.kernel.kernel_job)."""
    t0 = time.time()
    say(f"job {job['job']}, kernel {job['kernel']}: {job['model']} seeds {job['seeds']}")
    missing = missing_modules(job["model"])
    if missing:
        say(f"cannot run: this image lacks the Python module(s) {', '.join(missing)}")
        return EXIT_MISSING
    input_dir, working = folders()
    scratch = Path(tempfile.mkdtemp(prefix="kit-data-"))  # not under working: not output
    settings = config.Settings.from_env(
        data_dir=scratch / "data",
        runs_dir=working / RUNS,
        cache_dir=scratch / "cache",
        competition=job["competition"],
    )
    try:
        with config.activate(settings):
            return _train_all(job, input_dir, working, t0)
    except (KitError, FileNotFoundError) as e:
        say(f"failed: {e}")
        return EXIT_FAILED
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_all(job: dict, input_dir: Path, working: Path, t0: float) -> int:
    # lazy: these need NumPy (and more), whose presence main checks first (EXIT_MISSING)
    from kit import data, groups, io, metrics, models, runs, training

    folder = find_competition(input_dir)
    say(f"kit from {Path(__file__).parent.parent}; data from {folder}")  # kit/, not kit/remote/
    say(data.install(folder, echo=lambda s: None))
    ds, sp = data.load_split()
    diff = metrics.mismatch(job["identity"], metrics.identity(ds.checksum, sp.hash))
    if diff:
        raise KitError(f"the competition data here is not the data the job was made with ({diff})")
    model, gpu, names = models.get(job["model"]), gpu_name(), []
    say(f"device: {gpu or 'CPU'}")
    work = _work(job)
    jobs = job.get("jobs", 1)  # None: auto (kit.training.auto_jobs, on this kernel's machine)
    if jobs is None or jobs > 1:  # a group's members, maybe several at once: made first, then trained
        group, members = work[0][1][0], [m for _, (_, m), _ in work]
        cfg = model.module.resolved(model.run_config(job["config"]))
        training.start_members(model, group, members, cfg)
        training._train_members(model, group, True, jobs, members)
        work = []
        for m in members:
            run = runs.Run(config.runs_dir() / m.run)
            names.append(run.name)
            say(f"seed {m.seed}: {run.name} val accuracy {run.metrics['val_accuracy']:.4f}")
    for seed, member, where in work:
        cfg = model.run_config({**job["config"], "seed": seed})
        run = training.train(model.name, cfg, progress=True, member=member)
        names.append(run.name)
        say(f"seed {seed}{where}: {run.name} val accuracy {run.metrics['val_accuracy']:.4f}")
    shutil.rmtree(working / RUNS / groups.GROUPS, ignore_errors=True)  # the group's record: not a run
    wall_s = round(time.time() - t0, 1)
    summary = {"job": job["job"], "kernel": job["kernel"], "runs": names, "gpu": gpu, "wall_time_s": wall_s}
    io.write_json(working / SUMMARY, {**summary, "python": sys.version.split()[0]})
    say(f"done: {len(names)} run(s) in {wall_s:.0f} s: {', '.join(names)}")
    return 0


def _work(job: dict) -> list[tuple[int, object, str]]:
    """(seed, member, words) for each run to train: member None for a job of seeds, else
    (group, member) for training.train, the group rebuilt from the record the job carries."""
    if "group" not in job:
        return [(seed, None, "") for seed in job["seeds"]]
    from kit import groups  # lazy: it needs NumPy

    record = job["group"]
    group = groups.Group(**{**record, "members": [groups.Member(**m) for m in record["members"]]})
    out = []
    for i in job["members"]:
        m = group.members[i]
        where = f" (member {i + 1}/{len(group.members)}: fold {m.fold + 1}, repeat {m.repeat + 1})"
        out.append((m.seed, (group, m), where))
    return out
