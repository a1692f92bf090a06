"""`kit remote`: train on Kaggle's GPUs, bring the runs back as local runs.

    train(model, seeds, kernels, accelerator, preset, overrides)
      -> the config validated here; the local data's identity (checksum, split hash, n_val, n_test)
      -> the GPU quota read: a job that will not fit in what is left this week is refused
      -> runs/remote/<job>.json written (kernels, seeds, config, identity) BEFORE the first push
      -> each kernel pushed (a generated script carrying the user's kit, kit.remote_kernel runs it);
         its version recorded as it comes; at the concurrent-session limit the rest wait
      -> wait(): each kernel's status polled at the version its push returned, with backoff,
         a live view (status, elapsed time, the log's last line); waiting kernels pushed as
         sessions end
      -> an ended kernel's output downloaded (resumable) into runs/remote/<job>/<slug>/out/,
         every run folder verified, then installed under runs/ as an ordinary run + remote.json
    pull(job)   the same wait and install from the record; a kernel already pushed is never
                pushed again: one left 'pushing' (Ctrl-C or a give-up before the push's answer was
                recorded) is looked up on Kaggle first, and pushed only if Kaggle has no version
                of it; a held kernel is pushed only with push_held (`--push-held`)

Job record (runs/remote/<job>.json, written atomically after every change):
    job, model, accelerator, competition, config (the full config dict), identity
    {data_checksum, split_hash}, n_val, n_test, created_utc, state (running|complete|failed),
    kernels: [{slug, ref, seeds, state, version, pushed_utc, ended_utc, failure, runs}]
Kernel states: pending (not pushed yet), pushing (push sent, answer not recorded), waiting
(refused at the session limit, pushed when a session ends), held (a refusal stopped it: the GPU
quota, or another kernel's push refused; pushed only when the user asks), then Kaggle's (queued,
running, ...), downloading (its session is COMPLETE; the output still to download and install:
a download that fails leaves it so, for the next pull), installed, failed, cancelled.
A job is complete when every kernel is installed, failed when every kernel is done and one gave
no runs, else running; a pull that leaves it failed or running raises KitError saying why and
what to run next.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io as _io
import json
import shutil
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from kit import config, data, kaggle_io, metrics, models, runs
from kit.errors import KitError
from kit.io import free_name, read_json, utc_iso, utc_now, utc_stamp, write_bytes, write_json, write_text
from kit.remote_kernel import SUMMARY

ACCELERATORS = ("NvidiaTeslaT4", "none")  # Kaggle's machine_shape values (none: CPU only)
GPU = "NvidiaTeslaT4"
CODE_FILE = "kit_remote.py"
METADATA = "kernel-metadata.json"
PROVENANCE = "remote.json"  # in an installed run: where and how it was trained
END_STATES = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
DONE = ("installed", "failed", "cancelled")  # a kernel in one of these needs nothing more
NEVER_PUSHED = ("pending", "waiting")
HELD = "held"  # never pushed by itself: a GPU session the user did not ask for
FETCHING = "downloading"
LOG_TAIL = 10  # lines of a failed kernel's log shown
# Rough GPU seconds, to check the quota before pushing: a session's start (image, data mount)
# and one epoch of each model on a T4 with the default batch. Estimates, not measurements.
SESSION_START_S = 180.0
EPOCH_S = {"cnn": 20.0, "scratch": 3.0}


@dataclass(frozen=True)
class PollConfig:
    """Polling the kernels' status: exponential backoff between rounds, bounded."""

    first_s: float = 5.0
    factor: float = 1.5
    max_s: float = 60.0


POLL = PollConfig()


# ----------------------------------------------------------------------------- the job


def parse_seeds(text: str) -> list[int]:
    """'1-15' -> [1, ..., 15]; '0,3,7' -> [0, 3, 7]; '2-4,9' -> [2, 3, 4, 9]. Each seed once."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise KitError(f"--seeds {text!r}: expected seeds like 1-15 or 0,3,7") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise KitError(f"--seeds {text!r}: give each seed (0 or more) once, e.g. 1-15")
    return seeds


def split_seeds(seeds: list[int], kernels: int) -> list[list[int]]:
    """The seeds in `kernels` contiguous groups as even as can be (no kernel without a seed)."""
    if kernels < 1:
        raise KitError(f"--kernels must be at least 1 (got {kernels})")
    return [list(map(int, g)) for g in np.array_split(np.array(seeds), min(kernels, len(seeds)))]


def remote_config(model: models.Model, preset: str | None, overrides: dict):
    """The job's validated config: the remote recipe (preset 'best', float32) under the options
    the user gave. overrides: field -> value, None = not given.

    float32, not mixed precision, on the GPU too: on the one GPU measured (an H200, JAX) mixed
    precision trained no faster and its first epoch compiled 3-4 times longer, and float32 is
    what every local run and study computed (docs/decisions.md, "Mixed precision stays off").
    `--mixed-precision` turns it on."""
    preset = preset or ("best" if "best" in model.presets else "default")
    given = {k: v for k, v in overrides.items() if v is not None}
    return model.make_config(preset, **given)


def local_identity() -> dict:
    """What every installed run must match: data_checksum, split_hash, n_val, n_test."""
    ds, sp = data.load_split()
    return {**metrics.identity(ds.checksum, sp.hash), "n_val": len(sp.val_idx), "n_test": len(ds.X_test)}


def new_job(model: str, seeds: list[int], kernels: int, accelerator: str, cfg, username: str) -> dict:
    """The job record for `seeds` of `model` over `kernels` kernels (nothing pushed yet)."""
    if accelerator not in ACCELERATORS:
        raise KitError(f"--accelerator must be one of: {', '.join(ACCELERATORS)} (got {accelerator!r})")
    local = local_identity()
    job = f"{model}-{utc_stamp()}"
    slugs = [f"kit-{job}-k{i + 1}" for i in range(min(kernels, len(seeds)))]
    return {
        "job": job,
        "model": model,
        "accelerator": accelerator,
        "competition": config.competition().slug,
        "config": dataclasses.asdict(cfg),
        "identity": {k: local[k] for k in metrics.IDENTITY},
        "n_val": local["n_val"],
        "n_test": local["n_test"],
        "created_utc": utc_iso(),
        "state": "running",
        "kernels": [
            {
                "slug": slug,
                "ref": f"{username}/{slug}",
                "seeds": group,
                "state": "pending",
                "version": None,
                "runs": [],
            }
            for slug, group in zip(slugs, split_seeds(seeds, kernels))
        ],
    }


def jobs_dir() -> Path:
    return config.runs_dir() / "remote"


def save(job: dict) -> None:
    write_json(jobs_dir() / f"{job['job']}.json", job)


def load(name: str | None = None) -> dict:
    """The job record `name` (a job name or its .json path), or the newest one."""
    if name is None:
        found = all_jobs()
        if not found:
            raise KitError(f"no remote jobs in {jobs_dir()} (start one with `kit remote train`)")
        return found[-1]
    path = Path(name) if name.endswith(".json") else jobs_dir() / f"{name}.json"
    job = read_json(path)
    if not job:
        raise KitError(f"no remote job {name!r} in {jobs_dir()} (see `kit remote status`)")
    return job


def all_jobs() -> list[dict]:
    """Every job record, oldest first (their names sort by time)."""
    folder = jobs_dir()
    return [read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def work_dir(job: dict, kernel: dict) -> Path:
    """runs/remote/<job>/<slug>/: the pushed folder (push/) and the downloaded output (out/)."""
    return jobs_dir() / job["job"] / kernel["slug"]


# ----------------------------------------------------------------------------- the kernel


@functools.cache
def kit_zip() -> bytes:
    """The kit package as the user has it (their edits included): every .py under kit/, as a
    zip with fixed timestamps, so the same code always makes the same script. Made once per
    process: every kernel of a job carries the same code."""
    root = Path(__file__).resolve().parent
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            info = zipfile.ZipInfo(
                f"kit/{path.relative_to(root).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
    return buf.getvalue()


SCRIPT = '''\
"""kit remote: job {job}, kernel {kernel}, {model} seeds {seeds}.

Generated by `kit remote train`: it carries the kit package it was pushed from as a zip
(KIT below), unpacks it and runs kit.remote_kernel.main(JOB): the competition data verified,
each seed trained, the run folders written to the working folder.
"""

import base64
import io
import json
import sys
import tempfile
import zipfile

JOB = json.loads({job_json!r})
KIT = """
{kit_b64}
"""


def main():
    root = tempfile.mkdtemp(prefix="kit-src-")
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(KIT))) as z:
        z.extractall(root)
    sys.path.insert(0, root)
    from kit import remote_kernel

    return remote_kernel.main(JOB)


if __name__ == "__main__":
    sys.exit(main())
'''


def kernel_job(job: dict, kernel: dict) -> dict:
    """What kit.remote_kernel.main needs of the job, for one kernel."""
    keys = ("job", "model", "config", "competition", "identity")
    return {**{k: job[k] for k in keys}, "kernel": kernel["slug"], "seeds": kernel["seeds"]}


def script(job: dict, kernel: dict) -> str:
    """The kernel's single Python file (Kaggle uploads only the code_file)."""
    b64 = base64.b64encode(kit_zip()).decode("ascii")
    lines = "\n".join(b64[i : i + 100] for i in range(0, len(b64), 100))
    return SCRIPT.format(
        job=job["job"],
        kernel=kernel["slug"],
        model=job["model"],
        seeds=",".join(map(str, kernel["seeds"])),
        job_json=json.dumps(kernel_job(job, kernel), sort_keys=True),
        kit_b64=lines,
    )


def metadata(job: dict, kernel: dict) -> dict:
    """kernel-metadata.json: a private script kernel with the competition attached, no internet."""
    gpu = job["accelerator"] != "none"
    meta = {
        "id": kernel["ref"],
        "title": kernel["slug"],  # the title's slug is the id's: the client warns otherwise
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": gpu,
        "enable_tpu": False,
        "enable_internet": False,
        "competition_sources": [job["competition"]],
        "dataset_sources": [],
        "kernel_sources": [],
    }
    return meta | ({"machine_shape": job["accelerator"]} if gpu else {})


def write_kernel(job: dict, kernel: dict) -> Path:
    """The folder `kaggle kernels push` takes: the script and its kernel-metadata.json."""
    folder = work_dir(job, kernel) / "push"
    write_text(folder / CODE_FILE, script(job, kernel))
    write_json(folder / METADATA, metadata(job, kernel))
    return folder


# ----------------------------------------------------------------------------- verify and install


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


def verify_run(folder: Path, local: dict, model: str, seeds: list[int]) -> str | None:
    """None when the downloaded run `folder` can be installed beside the local runs: finished
    (metrics.json), of `model` and one of `seeds`, the same data checksum, split hash, n_val and
    n_test as `local` (local_identity()), probabilities of the right shapes. Else what differed."""
    run = runs.Run(folder)
    if not run.file(runs.METRICS).is_file() or not run.file(runs.CONFIG).is_file():
        return f"{folder.name}: no {runs.METRICS} or {runs.CONFIG} (the run did not finish)"
    m = run.metrics
    if m.get("model") != model or m.get("seed") not in seeds:
        return f"{folder.name}: a {m.get('model')!r} run of seed {m.get('seed')}, expected {model!r} seeds {seeds}"
    for key in (*metrics.IDENTITY, "n_val", "n_test"):
        if m.get(key) != local[key]:
            return f"{folder.name}: {key} {m.get(key)!r}, the local data's is {local[key]!r}"
    problem = _proba_problem(run.file(runs.VAL_PROBA), local["n_val"]) or _proba_problem(
        run.file(runs.TEST_PROBA), local["n_test"]
    )
    return f"{folder.name}: {problem}" if problem else None


def verify_output(out: Path, kernel: dict, model: str, local: dict) -> list[Path]:
    """The run folders of one kernel's downloaded output, each verified, one per seed; a
    KitError naming the kernel and what differed if any check fails (then none is installed)."""
    folders = sorted(p for p in (out / "runs").glob("*") if p.is_dir()) if (out / "runs").is_dir() else []
    problems = [p for p in (verify_run(f, local, model, kernel["seeds"]) for f in folders) if p]
    seeds = sorted(runs.Run(f).metrics.get("seed") for f in folders if not problems)
    if not problems and seeds != sorted(kernel["seeds"]):
        problems.append(f"runs for seeds {seeds}, expected {sorted(kernel['seeds'])}")
    if problems:
        raise KitError(f"kernel {kernel['ref']}: output refused, nothing installed from it: {problems[0]}")
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


def provenance(job: dict, kernel: dict, run_folder: Path, summary: dict) -> dict:
    """remote.json: which kernel and version trained the run, on what, how long it took there."""
    return {
        "job": job["job"],
        "kernel": kernel["ref"],
        "version": kernel["version"],
        "url": f"https://www.kaggle.com/code/{kernel['ref']}",
        "accelerator": job["accelerator"],
        "gpu": summary.get("gpu"),
        "remote_wall_time_s": runs.Run(run_folder).metrics.get("wall_time_s"),
        "kernel_wall_time_s": summary.get("wall_time_s"),
        "installed_utc": utc_iso(),
    }


def download_output(job: dict, kernel: dict) -> Path:
    """Download one finished kernel's output (resumable) into its out/ folder; that folder."""
    out = work_dir(job, kernel) / "out"
    kaggle_io.kernel_output(kernel["ref"], out, kernel["version"])
    return out


def install_kernel(job: dict, kernel: dict, local: dict, echo: Callable[[str], None]) -> list[str]:
    """Verify and install one downloaded kernel's runs; their names (also recorded)."""
    out = work_dir(job, kernel) / "out"
    folders = verify_output(out, kernel, job["model"], local)
    summary = read_json(out / SUMMARY)
    for folder in folders:
        run = install_run(folder, provenance(job, kernel, folder, summary))
        kernel["runs"].append(run.name)
        echo(f"installed {run.name} (val accuracy {run.metrics['val_accuracy']:.4f}) from {kernel['ref']}")
    kernel["state"] = "installed"
    kernel.pop("failure", None)  # an earlier download's, now past
    shutil.rmtree(out / "runs", ignore_errors=True)  # installed; the log and summary stay
    return kernel["runs"]


# ----------------------------------------------------------------------------- push and wait


def check_quota(job: dict, echo: Callable[[str], None], kernels: list[dict] | None = None) -> None:
    """Refuse a GPU job whose estimated GPU time exceeds what is left of this week's quota;
    `kernels`: only these of the job's (those about to be pushed), default all."""
    if job["accelerator"] == "none":
        return
    need_s = estimate_s(job, kernels)
    quota = kaggle_io.gpu_quota()
    if quota is None:
        echo("Warning: Kaggle did not say how much GPU quota is left; pushing anyway")
        return
    if need_s > quota.left_s:
        who, then = ("the job needs", "train fewer seeds or epochs, or use --accelerator none")
        if kernels is not None:  # held kernels: their job's config is fixed, only time helps
            who, then = ("the held kernels need", "push them once it has")
        raise KitError(
            f"{who} about {need_s / 3600:.1f} GPU hours but {quota.left_s / 3600:.1f} of this "
            f"week's {quota.total_s / 3600:.0f} are left (the quota refills {quota.refresh}); {then}"
        )
    echo(f"GPU quota: about {need_s / 3600:.1f} h needed, {quota.left_s / 3600:.1f} h left this week")


def estimate_s(job: dict, kernels: list[dict] | None = None) -> float:
    """Rough GPU seconds of the job's `kernels` (default all): each one's start plus its seeds'
    epochs."""
    per_epoch = EPOCH_S.get(job["model"], max(EPOCH_S.values()))
    epochs = job["config"].get("epochs", 1)
    return sum(SESSION_START_S + len(k["seeds"]) * epochs * per_epoch for k in kernels or job["kernels"])


def push_waiting(job: dict, echo: Callable[[str], None]) -> None:
    """Push the kernels not pushed yet, in order, each version recorded as it comes. At the
    concurrent-session limit the rest wait (state 'waiting') until a session ends; any other
    refusal holds them (see _refused). A push that gave up (KaggleGaveUpError, raised) stays
    'pushing': whether Kaggle made the version is unknown, so the next pull asks first."""
    for kernel in job["kernels"]:
        if kernel["state"] not in NEVER_PUSHED:
            continue
        kernel["state"] = "pushing"  # from now on a pull asks Kaggle before pushing it again
        save(job)
        try:
            ref, version = kaggle_io.push_kernel(write_kernel(job, kernel))
        except kaggle_io.KaggleSessionLimitError as e:
            if kernel.get("said_waiting") is None:
                echo(f"{kernel['slug']}: {e}; it waits until one of the running sessions ends")
            kernel["state"], kernel["said_waiting"] = "waiting", True
            save(job)
            return
        except kaggle_io.KaggleTransientError:
            raise
        except KitError as e:
            _refused(job, kernel, e, echo)
            return
        kernel.pop("failure", None)  # a held kernel's refusal, now past
        kernel.update(ref=ref, version=version, state="queued", pushed_utc=utc_iso())
        save(job)
        echo(f"pushed {ref} version {version} (seeds {_seeds(kernel)}): https://www.kaggle.com/code/{ref}")


def _refused(job: dict, kernel: dict, e: KitError, echo: Callable[[str], None]) -> None:
    """Kaggle refused `kernel`'s push with `e`. The kernels not pushed yet are held: a later
    pull pushes none of them unless asked (`--push-held`), since each is a GPU session the user
    may no longer want. The refused kernel is held too when the refusal was the GPU quota (it
    can run once the quota refills, or on the CPU), else it failed (Kaggle refused the kernel
    itself)."""
    kernel["failure"] = str(e)
    kernel["state"] = HELD if isinstance(e, kaggle_io.KaggleQuotaError) else "failed"
    for other in job["kernels"]:
        if other["state"] in NEVER_PUSHED:
            other["state"], other["failure"] = HELD, str(e)
    save(job)
    held = [k["slug"] for k in job["kernels"] if k["state"] == HELD]
    echo(f"Error: {str(e).rstrip('.')}" + (f"; held, not pushed: {', '.join(held)}" if held else ""))


def _seeds(kernel: dict) -> str:
    s = kernel["seeds"]
    return f"{s[0]}-{s[-1]}" if len(s) > 1 and s == list(range(s[0], s[-1] + 1)) else ",".join(map(str, s))


def log_lines(raw: str) -> list[str]:
    """A kernel log as text lines: Kaggle stores a JSON list of {stream_name, time, data}
    entries; the emulator (and older sessions) plain text."""
    text = raw
    if raw.lstrip().startswith("["):
        try:
            text = "".join(str(e.get("data", "")) for e in json.loads(raw) if isinstance(e, dict))
        except ValueError:
            text = raw
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _elapsed(kernel: dict) -> str:
    if not kernel.get("pushed_utc"):
        return "-"
    end = datetime.fromisoformat(kernel["ended_utc"]) if kernel.get("ended_utc") else utc_now()
    s = int((end - datetime.fromisoformat(kernel["pushed_utc"])).total_seconds())
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class View:
    """The live view: one row per kernel (status, elapsed time, its log's last line). On a
    terminal the rows are redrawn in place; elsewhere a row is printed when it changes."""

    def __init__(self, echo: Callable[[str], None], tty: bool | None = None):
        self.echo, self.tty = echo, sys.stdout.isatty() if tty is None else tty
        self.shown: dict[str, str] = {}
        self.drawn = 0

    def update(self, job: dict, last: dict[str, str]) -> None:
        rows = {}
        for k in job["kernels"]:
            rows[k["slug"]] = (
                f"{k['slug']} (seeds {_seeds(k)}): {k['state']:<9} {_elapsed(k)}  {last.get(k['slug'], '')}"
            )
        if self.tty:
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.echo(up + "\n".join("\x1b[2K" + r[:200] for r in rows.values()))
            self.drawn = len(rows)
            return
        for k in job["kernels"]:
            key = f"{k['state']} {last.get(k['slug'], '')}"  # a change, not the clock ticking
            if self.shown.get(k["slug"]) != key:
                self.shown[k["slug"]] = key
                self.echo(rows[k["slug"]])


def _settled(kernel: dict, stalled: set[str]) -> bool:
    """Nothing more for this call to do with `kernel`: it is done or held, or its download gave
    up in this call (`stalled`: slugs; the next pull tries again)."""
    return kernel["state"] in DONE or kernel["state"] == HELD or kernel["slug"] in stalled


def poll_round(
    job: dict, local: dict, last: dict[str, str], echo: Callable[[str], None], stalled: set[str]
) -> bool:
    """One look at every live kernel: its status at its version (and log's last line while it
    runs); an ended one is installed or marked failed, one left 'downloading' by an earlier
    call is downloaded again. True when every kernel is settled (_settled)."""
    ended = False
    for kernel in job["kernels"]:
        if _settled(kernel, stalled) or kernel["state"] in NEVER_PUSHED:
            continue
        if kernel["state"] == FETCHING:  # its session ended COMPLETE in an earlier call
            _fetch(job, kernel, local, echo, stalled)
            save(job)
            continue
        status, failure = kaggle_io.kernel_status(kernel["ref"], kernel["version"])
        if status == "RUNNING":
            lines = log_lines(kaggle_io.kernel_log(kernel["ref"], kernel["version"]))
            last[kernel["slug"]] = lines[-1][:120] if lines else ""
        if status not in END_STATES:
            kernel["state"] = status.lower()
            continue
        ended = True
        kernel["ended_utc"] = kernel.get("ended_utc") or utc_iso()
        last[kernel["slug"]] = ""
        _ended(job, kernel, status, failure, local, echo, stalled)
        save(job)
    waiting = [k for k in job["kernels"] if k["state"] in NEVER_PUSHED]
    live = [k for k in job["kernels"] if not _settled(k, stalled) and k not in waiting]
    if waiting and (ended or not live):
        push_waiting(job, echo)
    save(job)
    return all(_settled(k, stalled) for k in job["kernels"])


def _ended(job: dict, kernel: dict, status: str, failure: str, local: dict, echo, stalled: set[str]) -> None:
    """A kernel reached an end state: install its runs, or record why it has none."""
    if status == "COMPLETE":
        kernel["state"] = FETCHING  # from now on its runs are Kaggle's to give, whatever happens here
        save(job)
        _fetch(job, kernel, local, echo, stalled)
        return
    if status == "CANCEL_ACKNOWLEDGED":
        kernel["state"], kernel["failure"] = "cancelled", "cancelled on Kaggle"
        echo(f"{kernel['ref']} version {kernel['version']} was cancelled on Kaggle; nothing installed")
        return
    tail = log_lines(kaggle_io.kernel_log(kernel["ref"], kernel["version"]))[-LOG_TAIL:]
    kernel["state"] = "failed"
    kernel["failure"] = f"{failure or 'the script failed'}; log ends: " + " | ".join(tail[-3:])
    echo(
        f"{kernel['ref']} version {kernel['version']} failed: {failure or 'the script failed'}. Its log ends:"
    )
    for line in tail:
        echo(f"    {line}")


def _fetch(job: dict, kernel: dict, local: dict, echo, stalled: set[str]) -> None:
    """Download a COMPLETE kernel's output, then verify and install its runs. A download that
    fails (retries spent, or any other error) leaves the kernel 'downloading' and in `stalled`:
    its runs are still on Kaggle, so it is not failed, and the next pull downloads it again.
    Output that fails verification fails the kernel: downloading it again would not help."""
    try:
        download_output(job, kernel)
    except KitError as e:
        why = (
            f"gave up after {e.attempts} attempts: {e.cause}"
            if isinstance(e, kaggle_io.KaggleGaveUpError)
            else e
        )
        kernel["failure"] = f"its output could not be downloaded: {why}"
        stalled.add(kernel["slug"])
        echo(
            f"Error: {kernel['ref']} version {kernel['version']} finished, but {kernel['failure']}; {_to_download(job)}"
        )
        return
    try:
        install_kernel(job, kernel, local, echo)
    except KitError as e:
        kernel["state"], kernel["failure"] = "failed", str(e)
        echo(f"Error: {e}")


def _to_download(job: dict) -> str:
    return f"its runs stay on Kaggle: `kit remote pull {job['job']}` downloads them"


def wait(job: dict, echo: Callable[[str], None] = print, view: View | None = None) -> dict:
    """Poll, with backoff, until every kernel is settled: installed, failed, cancelled, held,
    or its download given up in this call. Then finish(job): the job's state set and saved,
    KitError unless it is complete."""
    from tenacity import Retrying, retry_if_result, wait_exponential

    local, last, view = local_identity(), {}, view or View(echo)
    stalled: set[str] = set()

    def round_() -> bool:
        done = poll_round(job, local, last, echo, stalled)
        view.update(job, last)
        return done

    cfg = POLL
    Retrying(
        retry=retry_if_result(lambda done: not done),
        wait=wait_exponential(multiplier=cfg.first_s, exp_base=cfg.factor, min=cfg.first_s, max=cfg.max_s),
        before_sleep=lambda _: None,
    )(round_)
    return finish(job, echo)


def finish(job: dict, echo: Callable[[str], None]) -> dict:
    """Set (and save) the job's state from its kernels': complete when every one is installed
    (returned), failed when every one is done and some gave no runs, else running (some held,
    or still to download). Failed or running: KitError naming each such kernel and the
    command that goes on with it."""
    name, kernels = job["job"], job["kernels"]
    gave_none = [k for k in kernels if k["state"] in DONE and k["state"] != "installed"]
    held = [k for k in kernels if k["state"] == HELD]
    unfetched = [k for k in kernels if k["state"] == FETCHING]
    job["state"] = "running" if held or unfetched else "failed" if gave_none else "complete"
    save(job)
    if job["state"] == "complete":
        n = sum(len(k["runs"]) for k in kernels)
        echo(f"job {name} complete: {n} run(s) installed in {config.runs_dir()} (`kit runs`, `kit ensemble`)")
        return job
    if job["state"] == "failed":
        names = "; ".join(f"{k['ref']}: {k.get('failure')}" for k in gave_none)
        raise KitError(
            f"job {name} failed: {len(gave_none)} of {len(kernels)} kernel(s) gave no runs: {names}"
        )
    parts = [f"{k['ref']} gave no runs ({k.get('failure')})" for k in gave_none]
    parts += [f"{k['ref']} finished, but {k['failure']}; {_to_download(job)}" for k in unfetched]
    if held:
        them = "it" if len(held) == 1 else "them"
        parts.append(
            f"{', '.join(k['ref'] for k in held)} held, not pushed ({held[0]['failure']}); "
            f"to push {them} run `kit remote pull --push-held {name}`"
        )
    raise KitError(f"job {name} is not finished: " + "; ".join(parts))


def _interrupted(job: dict) -> KitError:
    return KitError(
        f"interrupted; the pushed kernels keep running on Kaggle. Reattach with: kit remote pull {job['job']}"
    )


def _gave_up(job: dict, e: kaggle_io.KaggleGaveUpError) -> KitError:
    """A Kaggle call gave up during the job: the job goes on with `kit remote pull JOB`, not by
    running the command again (which, for `kit remote train`, would start another job)."""
    return e.then(f"run `kit remote pull {job['job']}` to go on (the pushed kernels keep running on Kaggle)")


def train(
    model_name: str,
    seeds: list[int],
    kernels: int = 1,
    accelerator: str = GPU,
    preset: str | None = None,
    overrides: dict | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Train `seeds` of `model_name` on Kaggle over `kernels` kernels; install the runs here.
    Returns the finished job record (see the module docstring)."""
    model = models.get(model_name)
    cfg = remote_config(model, preset, overrides or {})
    job = new_job(model.name, seeds, kernels, accelerator, cfg, kaggle_io.username())
    check_quota(job, echo)
    save(job)  # before the first push: nothing pushed is ever lost track of
    echo(f"job {job['job']}: {model.name} ({cfg.preset}) seeds {seeds} over {len(job['kernels'])} kernel(s)")
    try:
        push_waiting(job, echo)
        return wait(job, echo)
    except KeyboardInterrupt:
        raise _interrupted(job) from None
    except kaggle_io.KaggleGaveUpError as e:
        raise _gave_up(job, e) from None


def resolve_pushing(job: dict, echo: Callable[[str], None]) -> None:
    """Each kernel left 'pushing' (Ctrl-C or a give-up between sending its push and recording
    the answer): ask Kaggle for its latest version. One there is this push's (the slug is the
    job's own and a kernel is pushed once): it is followed. None: Kaggle never got the push,
    so the kernel is 'pending' again, for push_waiting."""
    for kernel in job["kernels"]:
        if kernel["state"] != "pushing":
            continue
        version = kaggle_io.kernel_version(kernel["ref"])
        if version is None:
            kernel["state"] = "pending"
            echo(f"{kernel['slug']}: its interrupted push never reached Kaggle; pushing it now")
        else:
            kernel.update(state="queued", version=version, pushed_utc=kernel.get("pushed_utc") or utc_iso())
            echo(f"{kernel['slug']}: its interrupted push reached Kaggle as version {version}; following it")
        save(job)


def pull(name: str | None = None, echo: Callable[[str], None] = print, push_held: bool = False) -> dict:
    """Reattach to job `name` (default: the newest): push what its train left unpushed, wait
    for its kernels and install their runs. A kernel already pushed is never pushed again (one
    left 'pushing' is looked up first, see resolve_pushing); a held kernel only with
    `push_held`. KitError unless the job ends complete (see finish)."""
    job = load(name)
    if all(k["state"] == "installed" for k in job["kernels"]):
        job["state"] = "complete"  # already so, unless a Ctrl-C came right after the last install
        save(job)
        echo(f"job {job['job']} is complete: nothing left to do")
        return job
    if all(k["state"] in DONE for k in job["kernels"]):
        return finish(job, echo)  # failed: raises, naming the kernels that gave no runs
    try:
        held = [k for k in job["kernels"] if k["state"] == HELD]
        if push_held and held:
            check_quota(job, echo, held)
            for kernel in held:
                kernel["state"] = "pending"
            save(job)
        echo(f"job {job['job']}: reattaching to {len(job['kernels'])} kernel(s)")
        resolve_pushing(job, echo)
        push_waiting(job, echo)
        return wait(job, echo)
    except KeyboardInterrupt:
        raise _interrupted(job) from None
    except kaggle_io.KaggleGaveUpError as e:
        raise _gave_up(job, e) from None


def status_lines(name: str | None = None) -> list[str]:
    """`kit remote status`: every job (or job `name`) with each kernel's recorded state, and
    for one that waits on the user, the command that goes on with it."""
    jobs = [load(name)] if name else all_jobs()
    if not jobs:
        return [f"no remote jobs in {jobs_dir()} (start one with `kit remote train`)"]
    out = []
    for job in jobs:
        seeds = sum(len(k["seeds"]) for k in job["kernels"])
        out.append(f"{job['job']}  {job['state']:<8} {job['model']} {seeds} seed(s) on {job['accelerator']}")
        for k in job["kernels"]:
            version = f"v{k['version']}" if k.get("version") else "-"
            runs_ = f"  runs: {', '.join(k['runs'])}" if k.get("runs") else ""
            why = f"  ({k['failure']})" if k.get("failure") and k["state"] != "installed" else ""
            out.append(f"  {k['ref']} {version} seeds {_seeds(k)}: {k['state']}{runs_}{why}{_next(job, k)}")
    return out


def _next(job: dict, kernel: dict) -> str:
    """What the user runs to go on with `kernel`, for a status line ('' when nothing)."""
    pull_ = f"kit remote pull {job['job']}"
    return {
        HELD: f"; `kit remote pull --push-held {job['job']}` pushes it",
        FETCHING: f"; `{pull_}` downloads it",
        "pushing": f"; `{pull_}` checks whether Kaggle has it and pushes it if not",
    }.get(kernel["state"], "")
