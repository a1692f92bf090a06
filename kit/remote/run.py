"""`kit remote`: train on Kaggle's GPUs, bring the runs back as local runs.

    train(model, seeds, kernels, accelerator, preset, overrides)
      -> the config validated here; the local data's identity (checksum, split hash, n_val, n_test)
      -> the GPU quota read: a job that will not fit in what is left this week is refused
      -> runs/remote/<job>.json written (kernels, seeds, config, identity) BEFORE the first push
      -> each kernel pushed (a generated script carrying the user's kit, kit.remote.entry runs it);
         its version recorded as it comes; at the concurrent-session limit the rest wait
      -> wait(): each kernel's status polled at the version its push returned, with backoff,
         a live view (status, elapsed time, the log's last line); waiting kernels pushed as
         sessions end
      -> an ended kernel's output downloaded (resumable) into runs/remote/<job>/<slug>/out/,
         every run folder verified, then installed under runs/ as an ordinary run + remote.json
    train(..., folds=Folds(K, R, fold_seed, same_folds))   a cross-validated group (kit.groups):
      -> the group record made here (runs/groups/<group>.json, the local data's checksum) before
         the first push, and named in the job's; member i (seed base + i) goes to kernel
         i % kernels; each kernel trains its members with the group record the script carries
      -> each member's run verified against its own member split, installed as an ordinary run,
         and named in the local group record: the job complete, the group is (`kit ensemble`)
    pull(job)   the same wait and install from the record; a kernel already pushed is never
                pushed again: one left 'pushing' (Ctrl-C or a give-up before the push's answer was
                recorded) is looked up on Kaggle first, and pushed only if Kaggle has no version
                of it; a held kernel is pushed only with push_held (`--push-held`)

The job record and the kernels' states: kit.remote.jobs. A pull that leaves a job failed or
running raises KitError saying why and what to run next.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from kit import config, data, groups, metrics, models
from kit.errors import KitError
from kit.io import utc_iso, utc_now, utc_stamp
from kit.kaggle import client
from kit.kaggle import kernels as kaggle_kernels
from kit.remote import install, jobs
from kit.remote import kernel as kernel_mod
from kit.remote.jobs import DONE, FETCHING, HELD, NEVER_PUSHED, Job, JobState, Kernel, KernelState

ACCELERATORS = ("NvidiaTeslaT4", "none")  # Kaggle's machine_shape values (none: CPU only)
GPU = "NvidiaTeslaT4"
END_STATES = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
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


@dataclass(frozen=True)
class Folds:
    """A cross-validated group's shape, as `kit train MODEL --folds K` takes it (kit.groups)."""

    folds: int
    repeats: int = 1
    fold_seed: int = config.SPLIT_SEED
    same_folds: bool = False
    jobs: int | None = None  # members each kernel trains at once (None: auto, as the kernel finds)

    @property
    def size(self) -> int:
        return self.folds * self.repeats


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


def split_members(seeds: list[int], kernels: int) -> list[tuple[list[int], list[int]]]:
    """A group's members (member i has seeds[i]) over `kernels` kernels, member i to kernel
    i % kernels (so each kernel has members of every repeat): (seeds, member indices) each."""
    n = len(split_seeds(seeds, kernels))  # checks --kernels; no kernel without a member
    return [([seeds[i] for i in range(k, len(seeds), n)], list(range(k, len(seeds), n))) for k in range(n)]


def new_job(
    model: str, seeds: list[int], kernels: int, accelerator: str, cfg, username: str, group: bool = False
) -> Job:
    """The job record for `seeds` of `model` over `kernels` kernels (nothing pushed yet); with
    `group`, seeds[i] is member i's of a group (split_members; Job.group set by the caller)."""
    if accelerator not in ACCELERATORS:
        raise KitError(f"--accelerator must be one of: {', '.join(ACCELERATORS)} (got {accelerator!r})")
    local = install.local_identity()
    name = f"{model}-{utc_stamp()}"
    work = split_members(seeds, kernels) if group else [(s, None) for s in split_seeds(seeds, kernels)]
    slugs = [f"kit-{name}-k{i + 1}" for i in range(len(work))]
    return Job(
        name=name,
        model=model,
        accelerator=accelerator,
        competition=config.competition().slug,
        config=dataclasses.asdict(cfg),
        identity={k: local[k] for k in metrics.IDENTITY},
        n_val=local["n_val"],
        n_test=local["n_test"],
        created_utc=utc_iso(),
        state=JobState.RUNNING,
        kernels=[
            Kernel(slug=slug, ref=f"{username}/{slug}", seeds=s, state=KernelState.PENDING, members=m)
            for slug, (s, m) in zip(slugs, work)
        ],
    )


# ----------------------------------------------------------------------------- push and wait


def check_quota(job: Job, echo: Callable[[str], None], kernels: list[Kernel] | None = None) -> None:
    """Refuse a GPU job whose estimated GPU time exceeds what is left of this week's quota;
    `kernels`: only these of the job's (those about to be pushed), default all."""
    if job.accelerator == "none":
        return
    need_s = estimate_s(job, kernels)
    quota = kaggle_kernels.gpu_quota()
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


def estimate_s(job: Job, kernels: list[Kernel] | None = None) -> float:
    """Rough GPU seconds of the job's `kernels` (default all): each one's start plus its seeds'
    epochs."""
    per_epoch = EPOCH_S.get(job.model, max(EPOCH_S.values()))
    epochs = job.config.get("epochs", 1)
    return sum(SESSION_START_S + len(k.seeds) * epochs * per_epoch for k in kernels or job.kernels)


def push_waiting(job: Job, echo: Callable[[str], None]) -> None:
    """Push the kernels not pushed yet, in order, each version recorded as it comes. At the
    concurrent-session limit the rest wait (state 'waiting') until a session ends; any other
    refusal holds them (see _refused). A push that gave up (KaggleGaveUpError, raised) stays
    'pushing': whether Kaggle made the version is unknown, so the next pull asks first."""
    for kernel in job.kernels:
        if kernel.state not in NEVER_PUSHED:
            continue
        kernel.state = KernelState.PUSHING  # from now on a pull asks Kaggle before pushing it again
        jobs.save(job)
        try:
            ref, version = kaggle_kernels.push_kernel(kernel_mod.write_kernel(job, kernel))
        except kaggle_kernels.KaggleSessionLimitError as e:
            if kernel.said_waiting is None:
                echo(f"{kernel.slug}: {e}; it waits until one of the running sessions ends")
            kernel.state, kernel.said_waiting = KernelState.WAITING, True
            jobs.save(job)
            return
        except client.KaggleTransientError:
            raise
        except KitError as e:
            _refused(job, kernel, e, echo)
            return
        kernel.failure = None  # a held kernel's refusal, now past
        kernel.ref, kernel.version, kernel.state = ref, version, KernelState.QUEUED
        kernel.pushed_utc = utc_iso()
        jobs.save(job)
        echo(f"pushed {ref} version {version} (seeds {_seeds(kernel)}): https://www.kaggle.com/code/{ref}")


def _refused(job: Job, kernel: Kernel, e: KitError, echo: Callable[[str], None]) -> None:
    """Kaggle refused `kernel`'s push with `e`. The kernels not pushed yet are held: a later
    pull pushes none of them unless asked (`--push-held`), since each is a GPU session the user
    may no longer want. The refused kernel is held too when the refusal was the GPU quota (it
    can run once the quota refills, or on the CPU), else it failed (Kaggle refused the kernel
    itself)."""
    kernel.failure = str(e)
    kernel.state = HELD if isinstance(e, kaggle_kernels.KaggleQuotaError) else KernelState.FAILED
    for other in job.kernels:
        if other.state in NEVER_PUSHED:
            other.state, other.failure = HELD, str(e)
    jobs.save(job)
    held = [k.slug for k in job.kernels if k.state == HELD]
    echo(f"Error: {str(e).rstrip('.')}" + (f"; held, not pushed: {', '.join(held)}" if held else ""))


def _seeds(kernel: Kernel) -> str:
    return _seed_list(kernel.seeds)


def _seed_list(s: list[int]) -> str:
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


def _elapsed(kernel: Kernel) -> str:
    if not kernel.pushed_utc:
        return "-"
    end = datetime.fromisoformat(kernel.ended_utc) if kernel.ended_utc else utc_now()
    s = int((end - datetime.fromisoformat(kernel.pushed_utc)).total_seconds())
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class View:
    """The live view: one row per kernel (status, elapsed time, its log's last line). On a
    terminal the rows are redrawn in place; elsewhere a row is printed when it changes."""

    def __init__(self, echo: Callable[[str], None], tty: bool | None = None):
        self.echo, self.tty = echo, sys.stdout.isatty() if tty is None else tty
        self.shown: dict[str, str] = {}
        self.drawn = 0

    def update(self, job: Job, last: dict[str, str]) -> None:
        rows = {}
        for k in job.kernels:
            rows[k.slug] = f"{k.slug} (seeds {_seeds(k)}): {k.state:<9} {_elapsed(k)}  {last.get(k.slug, '')}"
        if self.tty:
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.echo(up + "\n".join("\x1b[2K" + r[:200] for r in rows.values()))
            self.drawn = len(rows)
            return
        for k in job.kernels:
            key = f"{k.state} {last.get(k.slug, '')}"  # a change, not the clock ticking
            if self.shown.get(k.slug) != key:
                self.shown[k.slug] = key
                self.echo(rows[k.slug])


def _settled(kernel: Kernel, stalled: set[str]) -> bool:
    """Nothing more for this call to do with `kernel`: it is done or held, or its download gave
    up in this call (`stalled`: slugs; the next pull tries again)."""
    return kernel.state in DONE or kernel.state == HELD or kernel.slug in stalled


def poll_round(
    job: Job, local: dict, last: dict[str, str], echo: Callable[[str], None], stalled: set[str]
) -> bool:
    """One look at every live kernel: its status at its version (and log's last line while it
    runs); an ended one is installed or marked failed, one left 'downloading' by an earlier
    call is downloaded again. True when every kernel is settled (_settled)."""
    ended = False
    for kernel in job.kernels:
        if _settled(kernel, stalled) or kernel.state in NEVER_PUSHED:
            continue
        if kernel.state == FETCHING:  # its session ended COMPLETE in an earlier call
            _fetch(job, kernel, local, echo, stalled)
            jobs.save(job)
            continue
        status, failure = kaggle_kernels.kernel_status(kernel.ref, kernel.version)
        if status == "RUNNING":
            lines = log_lines(kaggle_kernels.kernel_log(kernel.ref, kernel.version))
            last[kernel.slug] = lines[-1][:120] if lines else ""
        if status not in END_STATES:
            kernel.state = status.lower()
            continue
        ended = True
        kernel.ended_utc = kernel.ended_utc or utc_iso()
        last[kernel.slug] = ""
        _ended(job, kernel, status, failure, local, echo, stalled)
        jobs.save(job)
    waiting = [k for k in job.kernels if k.state in NEVER_PUSHED]
    live = [k for k in job.kernels if not _settled(k, stalled) and k not in waiting]
    if waiting and (ended or not live):
        push_waiting(job, echo)
    jobs.save(job)
    return all(_settled(k, stalled) for k in job.kernels)


def _ended(job: Job, kernel: Kernel, status: str, failure: str, local: dict, echo, stalled: set[str]) -> None:
    """A kernel reached an end state: install its runs, or record why it has none."""
    if status == "COMPLETE":
        kernel.state = FETCHING  # from now on its runs are Kaggle's to give, whatever happens here
        jobs.save(job)
        _fetch(job, kernel, local, echo, stalled)
        return
    if status == "CANCEL_ACKNOWLEDGED":
        kernel.state, kernel.failure = KernelState.CANCELLED, "cancelled on Kaggle"
        echo(f"{kernel.ref} version {kernel.version} was cancelled on Kaggle; nothing installed")
        return
    tail = log_lines(kaggle_kernels.kernel_log(kernel.ref, kernel.version))[-LOG_TAIL:]
    kernel.state = KernelState.FAILED
    kernel.failure = f"{failure or 'the script failed'}; log ends: " + " | ".join(tail[-3:])
    echo(f"{kernel.ref} version {kernel.version} failed: {failure or 'the script failed'}. Its log ends:")
    for line in tail:
        echo(f"    {line}")


def _fetch(job: Job, kernel: Kernel, local: dict, echo, stalled: set[str]) -> None:
    """Download a COMPLETE kernel's output, then verify and install its runs. A download that
    fails (retries spent, or any other error) leaves the kernel 'downloading' and in `stalled`:
    its runs are still on Kaggle, so it is not failed, and the next pull downloads it again.
    Output that fails verification fails the kernel: downloading it again would not help."""
    try:
        install.download_output(job, kernel)
    except KitError as e:
        why = (
            f"gave up after {e.attempts} attempts: {e.cause}"
            if isinstance(e, client.KaggleGaveUpError)
            else e
        )
        kernel.failure = f"its output could not be downloaded: {why}"
        stalled.add(kernel.slug)
        echo(
            f"Error: {kernel.ref} version {kernel.version} finished, but {kernel.failure}; {_to_download(job)}"
        )
        return
    try:
        install.install_kernel(job, kernel, local, echo)
    except KitError as e:
        kernel.state, kernel.failure = KernelState.FAILED, str(e)
        echo(f"Error: {e}")


def _to_download(job: Job) -> str:
    return f"its runs stay on Kaggle: `kit remote pull {job.name}` downloads them"


def wait(job: Job, echo: Callable[[str], None] = print, view: View | None = None) -> Job:
    """Poll, with backoff, until every kernel is settled: installed, failed, cancelled, held,
    or its download given up in this call. Then finish(job): the job's state set and saved,
    KitError unless it is complete."""
    from tenacity import Retrying, retry_if_result, wait_exponential

    local, last, view = install.local_identity(), {}, view or View(echo)
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


def finish(job: Job, echo: Callable[[str], None]) -> Job:
    """Set (and save) the job's state from its kernels': complete when every one is installed
    (returned), failed when every one is done and some gave no runs, else running (some held,
    or still to download). Failed or running: KitError naming each such kernel and the
    command that goes on with it."""
    name, kernels = job.name, job.kernels
    gave_none = [k for k in kernels if k.state in DONE and k.state != KernelState.INSTALLED]
    held = [k for k in kernels if k.state == HELD]
    unfetched = [k for k in kernels if k.state == FETCHING]
    job.state = JobState.RUNNING if held or unfetched else JobState.FAILED if gave_none else JobState.COMPLETE
    jobs.save(job)
    if job.state == JobState.COMPLETE:
        n = sum(len(k.runs) for k in kernels)
        echo(f"job {name} complete: {n} run(s) installed in {config.runs_dir()} (`kit runs`, `kit ensemble`)")
        if job.group is not None:
            echo(f"group {job.group} complete: judge it out of fold with `kit ensemble {job.group}`")
        return job
    if job.state == JobState.FAILED:
        names = "; ".join(f"{k.ref}: {k.failure}" for k in gave_none)
        raise KitError(
            f"job {name} failed: {len(gave_none)} of {len(kernels)} kernel(s) gave no runs: {names}"
        )
    parts = [f"{k.ref} gave no runs ({k.failure})" for k in gave_none]
    parts += [f"{k.ref} finished, but {k.failure}; {_to_download(job)}" for k in unfetched]
    if held:
        them = "it" if len(held) == 1 else "them"
        parts.append(
            f"{', '.join(k.ref for k in held)} held, not pushed ({held[0].failure}); "
            f"to push {them} run `kit remote pull --push-held {name}`"
        )
    raise KitError(f"job {name} is not finished: " + "; ".join(parts))


@contextmanager
def _what_next(job: Job) -> Iterator[None]:
    """Ctrl-C, or Kaggle given up on, while a job pushes or waits: a KitError saying what to run
    next (the pushed kernels keep running on Kaggle)."""
    try:
        yield
    except KeyboardInterrupt:
        raise _interrupted(job) from None
    except client.KaggleGaveUpError as e:
        raise _gave_up(job, e) from None


def _interrupted(job: Job) -> KitError:
    return KitError(
        f"interrupted; the pushed kernels keep running on Kaggle. Reattach with: kit remote pull {job.name}"
    )


def _gave_up(job: Job, e: client.KaggleGaveUpError) -> KitError:
    """A Kaggle call gave up during the job: the job goes on with `kit remote pull JOB`, not by
    running the command again (which, for `kit remote train`, would start another job)."""
    return e.then(f"run `kit remote pull {job.name}` to go on (the pushed kernels keep running on Kaggle)")


def job_config(
    model: models.Model, seeds: list[int], preset: str | None, overrides: dict, folds: Folds | None
):
    """(the job's config, the seeds its runs train with). With `folds`, `seeds` is empty (the
    config's seed) or one seed: the group's base seed S, member m's seed S + m; the fold
    assignment is checked on the local data here, before anything is made."""
    if folds is None:
        return remote_config(model, preset, overrides), seeds
    if len(seeds) > 1:
        raise KitError(
            f"with --folds, --seeds is one seed S, the group's base seed (member m trains with seed "
            f"S + m); got {len(seeds)} seeds"
        )
    cfg = remote_config(model, preset, {**overrides, "seed": seeds[0] if seeds else None})
    groups.assignment(data.load().y_train, folds.folds, folds.repeats, folds.fold_seed, folds.same_folds)
    return cfg, [cfg.seed + m for m in range(folds.size)]


def new_group(job: Job, folds: Folds) -> groups.Group:
    """The local record of the group `job` trains (saved): its config and the local data's."""
    f = folds
    return groups.create(
        job.model, job.config, f.folds, f.repeats, f.fold_seed, f.same_folds, job.identity["data_checksum"]
    )


def train(
    model_name: str,
    seeds: list[int],
    kernels: int = 1,
    accelerator: str = GPU,
    preset: str | None = None,
    overrides: dict | None = None,
    echo: Callable[[str], None] = print,
    folds: Folds | None = None,
) -> Job:
    """Train `seeds` of `model_name` on Kaggle over `kernels` kernels; install the runs here.
    `folds`: a cross-validated group instead, its record made here before the first push (the
    base seed: job_config). Returns the finished job (its record: kit.remote.jobs)."""
    model = models.get(model_name)
    cfg, seeds = job_config(model, seeds, preset, overrides or {}, folds)
    job = new_job(model.name, seeds, kernels, accelerator, cfg, client.username(), group=folds is not None)
    check_quota(job, echo)
    what = f"seeds {seeds}"
    if folds is not None:
        job.group, job.member_jobs = new_group(job, folds).name, folds.jobs
        what = f"group {job.group} ({folds.folds} folds x {folds.repeats} repeats, seeds {_seed_list(seeds)})"
    jobs.save(job)  # before the first push: nothing pushed is ever lost track of
    echo(f"job {job.name}: {model.name} ({cfg.preset}) {what} over {len(job.kernels)} kernel(s)")
    with _what_next(job):
        push_waiting(job, echo)
        return wait(job, echo)


def resolve_pushing(job: Job, echo: Callable[[str], None]) -> None:
    """Each kernel left 'pushing' (Ctrl-C or a give-up between sending its push and recording
    the answer): ask Kaggle for its latest version. One there is this push's (the slug is the
    job's own and a kernel is pushed once): it is followed. None: Kaggle never got the push,
    so the kernel is 'pending' again, for push_waiting."""
    for kernel in job.kernels:
        if kernel.state != KernelState.PUSHING:
            continue
        version = kaggle_kernels.kernel_version(kernel.ref)
        if version is None:
            kernel.state = KernelState.PENDING
            echo(f"{kernel.slug}: its interrupted push never reached Kaggle; pushing it now")
        else:
            kernel.state, kernel.version = KernelState.QUEUED, version
            kernel.pushed_utc = kernel.pushed_utc or utc_iso()
            echo(f"{kernel.slug}: its interrupted push reached Kaggle as version {version}; following it")
        jobs.save(job)


def pull(name: str | None = None, echo: Callable[[str], None] = print, push_held: bool = False) -> Job:
    """Reattach to job `name` (default: the newest): push what its train left unpushed, wait
    for its kernels and install their runs. A kernel already pushed is never pushed again (one
    left 'pushing' is looked up first, see resolve_pushing); a held kernel only with
    `push_held`. KitError unless the job ends complete (see finish)."""
    job = jobs.load(name)
    if all(k.state == KernelState.INSTALLED for k in job.kernels):
        job.state = JobState.COMPLETE  # already so, unless a Ctrl-C came right after the last install
        jobs.save(job)
        echo(f"job {job.name} is complete: nothing left to do")
        return job
    if all(k.state in DONE for k in job.kernels):
        return finish(job, echo)  # failed: raises, naming the kernels that gave no runs
    with _what_next(job):
        held = [k for k in job.kernels if k.state == HELD]
        if push_held and held:
            check_quota(job, echo, held)
            for kernel in held:
                kernel.state = KernelState.PENDING
            jobs.save(job)
        echo(f"job {job.name}: reattaching to {len(job.kernels)} kernel(s)")
        resolve_pushing(job, echo)
        push_waiting(job, echo)
        return wait(job, echo)


def status_lines(name: str | None = None) -> list[str]:
    """`kit remote status`: every job (or job `name`) with each kernel's recorded state, and
    for one that waits on the user, the command that goes on with it."""
    found = [jobs.load(name)] if name else jobs.all_jobs()
    if not found:
        return [f"no remote jobs in {jobs.jobs_dir()} (start one with `kit remote train`)"]
    out = []
    for job in found:
        seeds = sum(len(k.seeds) for k in job.kernels)
        what = f"{seeds} seed(s)" if job.group is None else f"group {job.group} ({seeds} members)"
        out.append(f"{job.name}  {job.state:<8} {job.model} {what} on {job.accelerator}")
        for k in job.kernels:
            version = f"v{k.version}" if k.version else "-"
            runs_ = f"  runs: {', '.join(k.runs)}" if k.runs else ""
            why = f"  ({k.failure})" if k.failure and k.state != KernelState.INSTALLED else ""
            out.append(f"  {k.ref} {version} seeds {_seeds(k)}: {k.state}{runs_}{why}{_next(job, k)}")
    return out


def _next(job: Job, kernel: Kernel) -> str:
    """What the user runs to go on with `kernel`, for a status line ('' when nothing)."""
    pull_ = f"kit remote pull {job.name}"
    return {
        HELD: f"; `kit remote pull --push-held {job.name}` pushes it",
        FETCHING: f"; `{pull_}` downloads it",
        KernelState.PUSHING: f"; `{pull_}` checks whether Kaggle has it and pushes it if not",
    }.get(kernel.state, "")
