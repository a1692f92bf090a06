"""The job record of `kit remote`: the Job and Kernel dataclasses, their states, and where the
records live (runs/remote/<job>.json, written atomically after every change).

Job record on disk (Job.to_json / Job.from_json read and write exactly this):
    job, model, accelerator, competition, config (the full config dict), identity
    {data_checksum, split_hash}, n_val, n_test, created_utc, state (running|complete|failed),
    kernels: [{slug, ref, seeds, state, version, pushed_utc, ended_utc, failure, runs}]
A kernel's pushed_utc, ended_utc, failure and said_waiting are absent until set (the record
holds no null for them); its version is null until Kaggle gives one. Keys this code does not
know are kept as read and written back.
A job that trains a cross-validated group (`kit remote train MODEL --folds K`, kit.groups) also
has `group` (the group's name: runs/groups/<group>.json, made before the first push) and each of
its kernels `members` (the indices into the group's members it trains; `seeds` are theirs).
Without a group neither key is written: a record without them is a job of seeds, as before.
Kernel states: pending (not pushed yet), pushing (push sent, answer not recorded), waiting
(refused at the session limit, pushed when a session ends), held (a refusal stopped it: the GPU
quota, or another kernel's push refused; pushed only when the user asks), then Kaggle's (queued,
running, ...), downloading (its session is COMPLETE; the output still to download and install:
a download that fails leaves it so, for the next pull), installed, failed, cancelled.
A job is complete when every kernel is installed, failed when every kernel is done and one gave
no runs, else running.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kit import config
from kit.errors import KitError
from kit.io import read_json, write_json


class KernelState:
    """A kernel's states as the record spells them. While a kernel runs on Kaggle its state is
    Kaggle's status lowercased (queued, running, and any other Kaggle reports), so a state is a
    str: these are the values this code sets or tests for."""

    PENDING = "pending"
    PUSHING = "pushing"
    WAITING = "waiting"
    HELD = "held"
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    INSTALLED = "installed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobState:
    """A job's states as the record spells them."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


DONE = (KernelState.INSTALLED, KernelState.FAILED, KernelState.CANCELLED)  # nothing more to do
NEVER_PUSHED = (KernelState.PENDING, KernelState.WAITING)
HELD = KernelState.HELD  # never pushed by itself: a GPU session the user did not ask for
FETCHING = KernelState.DOWNLOADING


def _split(cls, record: dict) -> dict[str, Any]:
    """`record`'s keys as `cls`'s fields: the known ones by name, the rest in extra."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in record.items() if k in names}
    return {**known, "extra": {k: v for k, v in record.items() if k not in names}}


@dataclass
class Kernel:
    """One kernel of a job: the seeds it trains, where it stands, what it installed."""

    slug: str
    ref: str  # <username>/<slug>
    seeds: list[int]
    state: str = KernelState.PENDING  # a KernelState value, or Kaggle's status lowercased
    version: int | None = None  # the version its push made on Kaggle
    runs: list[str] = field(default_factory=list)  # the names of the runs installed from it
    pushed_utc: str | None = None
    ended_utc: str | None = None
    failure: str | None = None  # why it gave no runs, is held, or waits for a download
    said_waiting: bool | None = None  # True once the session-limit wait was said
    members: list[int] | None = None  # a group's job: the indices of the members it trains
    extra: dict[str, Any] = field(default_factory=dict)  # keys this code does not know

    OPTIONAL: ClassVar[tuple[str, ...]] = ("pushed_utc", "ended_utc", "failure", "said_waiting", "members")

    def to_json(self) -> dict[str, Any]:
        """The record's dict: the optional keys only when set (see the module docstring)."""
        out = {
            **self.extra,
            "slug": self.slug,
            "ref": self.ref,
            "seeds": list(self.seeds),
            "state": self.state,
            "version": self.version,
            "runs": list(self.runs),
        }
        return out | {k: getattr(self, k) for k in self.OPTIONAL if getattr(self, k) is not None}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Kernel:
        return cls(**_split(cls, record))


@dataclass
class Job:
    """A `kit remote` job: one model's seeds (or a group's members) over kernels, with the config
    and the local data's identity every installed run must match. `name` is the record's "job"."""

    name: str
    model: str
    accelerator: str
    competition: str
    config: dict[str, Any]  # the full config dict, as config.json has it
    identity: dict[str, str]  # data_checksum, split_hash
    n_val: int
    n_test: int
    created_utc: str
    state: str = JobState.RUNNING  # a JobState value
    kernels: list[Kernel] = field(default_factory=list)
    group: str | None = None  # the cross-validated group it trains (kit.groups), if any
    member_jobs: int | None = 1  # a group's job: members a kernel trains at once (`--jobs`; None: auto)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this code does not know

    def to_json(self) -> dict[str, Any]:
        """The record's dict, as runs/remote/<job>.json holds it (`group` only when set,
        `member_jobs` only when not 1: null is auto)."""
        return (
            {
                **self.extra,
                "job": self.name,
                "model": self.model,
                "accelerator": self.accelerator,
                "competition": self.competition,
                "config": self.config,
                "identity": self.identity,
                "n_val": self.n_val,
                "n_test": self.n_test,
                "created_utc": self.created_utc,
                "state": self.state,
                "kernels": [k.to_json() for k in self.kernels],
            }
            | ({"group": self.group} if self.group is not None else {})
            | ({"member_jobs": self.member_jobs} if self.member_jobs != 1 else {})
        )

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Job:
        fields = _split(cls, {"name": record["job"], **{k: v for k, v in record.items() if k != "job"}})
        fields["kernels"] = [Kernel.from_json(k) for k in fields.get("kernels", [])]
        return cls(**fields)


def jobs_dir() -> Path:
    return config.runs_dir() / "remote"


def save(job: Job) -> None:
    write_json(jobs_dir() / f"{job.name}.json", job.to_json())


def load(name: str | None = None) -> Job:
    """The job record `name` (a job name or its .json path), or the newest one."""
    if name is None:
        found = all_jobs()
        if not found:
            raise KitError(f"no remote jobs in {jobs_dir()} (start one with `kit remote train`)")
        return found[-1]
    path = Path(name) if name.endswith(".json") else jobs_dir() / f"{name}.json"
    record = read_json(path)
    if not record:
        raise KitError(f"no remote job {name!r} in {jobs_dir()} (see `kit remote status`)")
    return Job.from_json(record)


def all_jobs() -> list[Job]:
    """Every job record, oldest first (their names sort by time)."""
    folder = jobs_dir()
    return [Job.from_json(read_json(p)) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def work_dir(job: Job, kernel: Kernel) -> Path:
    """runs/remote/<job>/<slug>/: the pushed folder (push/) and the downloaded output (out/)."""
    return jobs_dir() / job.name / kernel.slug
