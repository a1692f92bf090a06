"""The emulator's kernels service: Kaggle's `kernels.KernelsApiService`, with pushed scripts run for real.

kit.emulator.server wires it in (`Emulator.kernels`); the RPCs arrive the same way as the
competition ones (`POST http://localhost/api/v1/kernels.KernelsApiService/<Rpc>`, camelCase
JSON, the user's credentials) and answer with the JSON of the kagglesdk response type:

    SaveKernel       {slug: "owner/kernel-slug" | id, newTitle, text, language, kernelType,
                      competitionDataSources, datasetDataSources, kernelDataSources,
                      modelDataSources, enableGpu, machineShape, sessionTimeoutSeconds, ...}
                     -> {ref: "/code/owner/slug", url, versionNumber, kernelId,
                         invalidCompetitionSources, invalidDatasetSources, ...}
                     or {ref, url, error} when the push is refused (nothing saved, nothing run)
    GetKernelSessionStatus   {userName, kernelSlug, versionLabel?: "vN"}
                     -> {status: QUEUED|RUNNING|COMPLETE|ERROR|..., failureMessage?}
    ListKernelSessionOutput  {userName, kernelSlug, versionLabel?, pageSize, pageToken}
                     -> {files: [{url, fileName}], log, nextPageToken}
    GetKernel        {userName, kernelSlug, versionLabel?} -> {metadata: ApiKernelMetadata, blob}
    GetAcceleratorQuotaStatistics {} -> {quotaRefreshTime, gpuQuota: ApiAcceleratorQuota, tpuQuota}
    GET /kernels-output/<owner>/<slug>/<version>/<file>   an output file (no auth, Range-resumable)

A kernel that does not exist (or is another user's) answers 403 "Permission 'kernels.get'
was denied", as Kaggle does; a version that does not exist answers 404.

Each SaveKernel is a new version (1, 2, ...) and a new session: the script (`text`, a
python script kernel) runs as `[sys.executable, <session>/script.py]` in a fresh session
folder laid out like Kaggle's, cwd = <session>/working, with the emulator process's
environment plus KIT_KAGGLE_INPUT=<session>/input and KIT_KAGGLE_WORKING=<session>/working.
<input>/<competition slug>/ holds the served competition's CSVs (read-only links to one
unpacked copy) when competitionDataSources names it. The session is QUEUED until the
process starts (after the emulator's `queue_delay_s`), RUNNING while it runs, then COMPLETE
(exit 0) or ERROR (failureMessage "Process exited with code N" or "Timed out after N s",
the time limit being sessionTimeoutSeconds or the emulator's `kernel_timeout_s`). The log
is Kaggle's: a JSON array of {"stream_name": "stdout"|"stderr", "time": seconds since the
start, "data": one line}, served as it grows; the output is every file under the working
folder when the process has ended (none before).

A GPU kernel (enableGpu or a machineShape starting "Nvidia") is refused with Kaggle's
"Maximum batch GPU session count of N reached." while `max_gpu_sessions` GPU sessions are
QUEUED or RUNNING, and with "Accelerator Quota Exceeded: ..." once `gpu_hours_used` reaches
`gpu_quota_hours`; each GPU session's wall time is added to `gpu_hours_used` when it ends.

Faults (`Emulator.fail(match, kind, ...)`) that only this service knows, for the RPCs whose
path contains `match`: "reject" (SaveKernel answers `error`, opts: message), "session_limit"
(SaveKernel answers the GPU session limit), "quota" (the quota is used up for that request:
SaveKernel of a GPU kernel is refused, GetAcceleratorQuotaStatistics shows it),
"script_error" (the pushed version runs a stand-in that writes opts `message` to stderr and
exits with opts `exit_code`, default 1). The generic kinds work here too: "429"/"500" on
GetKernelSessionStatus, "drop" on /kernels-output/ (opts: after_bytes, default half the body).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import datetime, timedelta
from email.utils import formatdate
from pathlib import Path

from kit.emulator.wire import HOST, kaggle_now, kaggle_time

FAULT_KINDS = ("reject", "session_limit", "quota", "script_error")
STATUSES = ("QUEUED", "RUNNING", "COMPLETE", "ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED", "NEW_SCRIPT")
ACTIVE = ("QUEUED", "RUNNING")
OUTPUT_PREFIX = "/kernels-output/"
INPUT_ENV, WORKING_ENV = "KIT_KAGGLE_INPUT", "KIT_KAGGLE_WORKING"
FIRST_KERNEL_ID = 70_000_001
TPU_QUOTA_HOURS = 20.0
SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
LANGUAGES, KERNEL_TYPES = ("python", "r", "rmarkdown"), ("script", "notebook")
DENIED = (403, {"code": 403, "message": "Permission 'kernels.get' was denied"})


def _seconds(s: float) -> str:
    """A duration as kagglesdk's TimeDeltaSerializer reads it: '151.500s'."""
    return f"{s:.3f}s"


class _Session:
    """One version of one kernel and the process that runs it.

    status: one of STATUSES; log: [{stream_name, time, data}]; files: output paths
    relative to the working folder (set once the process has ended); gpu_s: wall seconds
    charged to the GPU quota.
    """

    def __init__(self, kernel: dict, version: int, request: dict, folder: Path, fault, limit_s: float):
        self.kernel, self.version, self.request, self.folder = kernel, version, request, folder
        self.limit_s = float(request.get("sessionTimeoutSeconds") or limit_s)
        self.gpu = _is_gpu(request)
        self.status, self.failure = "QUEUED", None
        self.log: list[dict] = []
        self.files: list[str] = []
        self.fault = fault
        self.proc: subprocess.Popen | None = None
        self.created = kaggle_now()
        self.t0: float | None = None
        self.cancelled = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def working(self) -> Path:
        return self.folder / "working"

    @property
    def input(self) -> Path:
        return self.folder / "input"


def _is_gpu(request: dict) -> bool:
    return bool(request.get("enableGpu")) or str(request.get("machineShape") or "").startswith("Nvidia")


class KernelsService:
    """Kernels, their versions and running sessions for one Emulator (which holds the options:
    kernel_timeout_s, queue_delay_s, gpu_quota_hours, gpu_hours_used, max_gpu_sessions)."""

    def __init__(self, emu):
        self.emu = emu
        self.kernels: dict[str, dict] = {}  # "owner/slug" -> {id, owner, slug, title, request, sessions}
        self._root: Path | None = None
        self._competition: Path | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def root(self) -> Path:
        """The temporary folder that holds every session (made on the first push)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="kaggle-emulator-kernels-"))
        return self._root

    def stop(self) -> None:
        """Kill what still runs, wait for the session threads, remove the sessions' folder."""
        sessions = [s for k in self.kernels.values() for s in k["sessions"]]
        for s in sessions:
            s.cancelled.set()
            _kill(s.proc)
        for s in sessions:
            if s.thread is not None:
                s.thread.join(timeout=10)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = self._competition = None

    def session(self, ref: str, version: int | None = None) -> _Session:
        """The session of kernel `ref` ("owner/slug"), version N or the latest: for tests."""
        sessions = self.kernels[ref]["sessions"]
        return sessions[-1] if version is None else sessions[version - 1]

    # ------------------------------------------------------------------ RPCs: (body, fault) -> (status, payload)

    def rpc_method(self, name: str):
        return getattr(self, f"_rpc_{name}", None)

    def _rpc_SaveKernel(self, body, fault):
        with self.emu._lock:
            kernel, refused = self._resolve_push(body, fault)
            if refused is not None:
                return 200, refused
            kernel["request"] = body
            version = len(kernel["sessions"]) + 1
            folder = self.root / f"{kernel['owner']}--{kernel['slug']}--v{version}"
            fault = fault if _kind(fault) == "script_error" else None
            session = _Session(kernel, version, body, folder, fault, self.emu.kernel_timeout_s)
            kernel["sessions"].append(session)
            invalid = self._invalid_sources(body)
        self._prepare(session)
        session.thread = threading.Thread(
            target=self._run, args=(session,), name=f"kernel:{kernel['slug']}:v{version}", daemon=True
        )
        session.thread.start()
        out = {**self._where(kernel), "versionNumber": version, "kernelId": kernel["id"]}
        return 200, out | {k: v for k, v in invalid.items() if v}

    def _rpc_GetKernelSessionStatus(self, body, fault):
        session, error = self._find(body)
        if error is not None:
            return error
        out = {"status": session.status}
        if session.failure:
            out["failureMessage"] = session.failure
        return 200, out

    def _rpc_ListKernelSessionOutput(self, body, fault):
        session, error = self._find(body)
        if error is not None:
            return error
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or 20)
        with self.emu._lock:
            names, records = list(session.files), list(session.log)
        log = json.dumps(records, separators=(",", ":")) if records else ""  # nothing printed: no log
        base = f"{HOST}{OUTPUT_PREFIX}{session.kernel['owner']}/{session.kernel['slug']}/{session.version}/"
        files = [{"url": base + name, "fileName": name} for name in names[start : start + size]]
        more = start + size < len(names)
        return 200, {"files": files, "log": log, "nextPageToken": str(start + size) if more else ""}

    def _rpc_GetKernel(self, body, fault):
        session, error = self._find(body)
        if error is not None:
            return error
        return 200, {"metadata": self._metadata(session), "blob": self._blob(session)}

    def _rpc_GetAcceleratorQuotaStatistics(self, body, fault):
        now = kaggle_now()
        refresh = datetime(now.year, now.month, now.day) + timedelta(days=(5 - now.weekday()) % 7 or 7)
        total = self.emu.gpu_quota_hours * 3600
        with self.emu._lock:
            active = [s for s in self._sessions() if s.gpu and s.status in ACTIVE]
            ever = any(s.gpu for s in self._sessions())
        # a running session's time counts as it goes; what its time limit has left is reserved
        elapsed = [0.0 if s.t0 is None else time.monotonic() - s.t0 for s in active]
        used = self.emu.gpu_hours_used * 3600 + sum(elapsed)
        used = total if _kind(fault) == "quota" else min(total, used)
        reserved = sum(max(0.0, s.limit_s - e) for s, e in zip(active, elapsed, strict=True))
        gpu = {
            "timeUsed": _seconds(used),
            "timeReserved": _seconds(reserved),
            "totalTimeAllowed": _seconds(total),
            "hasEverRun": ever,
        }
        tpu = {"timeUsed": _seconds(0.0), "totalTimeAllowed": _seconds(TPU_QUOTA_HOURS * 3600)}
        return 200, {"quotaRefreshTime": kaggle_time(refresh), "gpuQuota": gpu, "tpuQuota": tpu}

    # ------------------------------------------------------------------ pushes

    def _resolve_push(self, body: dict, fault) -> tuple[dict | None, dict | None]:
        """(the kernel this push saves a version of, None) or (None, the refusal). Under the lock.

        A new kernel takes its slug from its title, as Kaggle does when the two disagree.
        """
        kernel, error = self._target(body)
        if error is None:
            error = self._check_push(body, kernel, fault)
        if error is not None:
            where = self._where(kernel) if kernel else {"ref": "", "url": ""}
            return None, {**where, "error": error}
        if kernel.get("id") is None:  # new: registered only now that the push is accepted
            kernel.update(id=FIRST_KERNEL_ID + len(self.kernels), sessions=[])
            self.kernels[f"{kernel['owner']}/{kernel['slug']}"] = kernel
        if body.get("newTitle"):
            kernel["title"] = body["newTitle"]
        return kernel, None

    def _target(self, body: dict) -> tuple[dict | None, str | None]:
        """The kernel named by `id` or `slug` (a new one, not yet registered, if unknown)."""
        if body.get("id"):
            for k in self.kernels.values():
                if k["id"] == int(body["id"]):
                    return k, None
            return None, f"Kernel id {body['id']} not found"
        owner, _, slug = str(body.get("slug") or "").rpartition("/")
        owner = owner or self.emu.username
        if owner != self.emu.username:
            return None, f"You cannot push to a kernel owned by {owner!r}"
        if not SLUG_RE.match(slug) or not 5 <= len(slug) <= 50:
            return None, f"Invalid kernel slug {slug!r}: 5 to 50 lowercase letters, digits and hyphens"
        known = self.kernels.get(f"{owner}/{slug}")
        if known is not None:
            return known, None
        from slugify import slugify  # the client's own slug rule (python-slugify)

        title = str(body.get("newTitle") or slug)
        titled = slugify(title) if body.get("newTitle") else slug
        return self.kernels.get(f"{owner}/{titled}") or {"owner": owner, "slug": titled, "title": title}, None

    def _check_push(self, body: dict, kernel: dict, fault) -> str | None:
        """Why Kaggle (or the emulator, which runs only python scripts) refuses this push, or None."""
        title, kind = body.get("newTitle"), _kind(fault)
        if kind == "reject":
            return str(fault.opts.get("message", "Kernel push rejected (emulated fault)"))
        if title is not None and not 5 <= len(title) <= 50:
            return "Title must be between 5 and 50 characters"
        if body.get("language") not in LANGUAGES:
            return f"Invalid language {body.get('language')!r}: one of {', '.join(LANGUAGES)}"
        if body.get("kernelType") not in KERNEL_TYPES:
            return f"Invalid kernel type {body.get('kernelType')!r}: one of {', '.join(KERNEL_TYPES)}"
        if (body["language"], body["kernelType"]) != ("python", "script"):
            return "The emulator runs only python script kernels"
        if not body.get("text"):
            return "The kernel's source (text) is empty"
        if _is_gpu(body):
            return self._gpu_refusal(kind)
        return None

    def _gpu_refusal(self, kind: str | None) -> str | None:
        active = sum(1 for s in self._sessions() if s.gpu and s.status in ACTIVE)
        if kind == "session_limit" or active >= self.emu.max_gpu_sessions:
            return f"Maximum batch GPU session count of {self.emu.max_gpu_sessions} reached."
        if kind == "quota" or self.emu.gpu_hours_used >= self.emu.gpu_quota_hours:
            return (
                "Accelerator Quota Exceeded: You've exceeded the number of hours allowed to use GPU "
                f"({self.emu.gpu_quota_hours:g} hours a week). You will not be able to commit unless "
                "you turn off GPU."
            )
        return None

    def _invalid_sources(self, body: dict) -> dict[str, list[str]]:
        """The sources Kaggle would not attach (the push still runs, without them)."""
        mine = {f"{k['owner']}/{k['slug']}" for k in self.kernels.values()}
        return {
            "invalidCompetitionSources": [
                c for c in body.get("competitionDataSources") or [] if c != self.emu.slug
            ],
            "invalidDatasetSources": list(body.get("datasetDataSources") or []),  # no datasets are served
            "invalidKernelSources": [k for k in body.get("kernelDataSources") or [] if k not in mine],
            "invalidModelSources": list(body.get("modelDataSources") or []),
        }

    def _where(self, kernel: dict) -> dict:
        path = f"/code/{kernel['owner']}/{kernel['slug']}"
        return {"ref": path, "url": HOST + path}

    # ------------------------------------------------------------------ lookups

    def _sessions(self) -> list[_Session]:
        return [s for k in self.kernels.values() for s in k["sessions"]]

    def _find(self, body: dict):
        """(session, None) for {userName, kernelSlug, versionLabel?}, or (None, (status, error payload))."""
        owner = body.get("userName") or self.emu.username
        kernel = self.kernels.get(f"{owner}/{body.get('kernelSlug', '')}")
        if kernel is None or owner != self.emu.username:
            return None, DENIED
        label = body.get("versionLabel")
        if not label:
            return kernel["sessions"][-1], None
        number = label[1:] if label.startswith("v") else ""
        if not number.isdigit() or not 1 <= int(number) <= len(kernel["sessions"]):
            return None, (404, {"code": 404, "message": f"Kernel version {label!r} not found"})
        return kernel["sessions"][int(number) - 1], None

    def _metadata(self, session: _Session) -> dict:
        k, r = session.kernel, session.kernel["request"]
        out = {
            "id": k["id"],
            "ref": f"{k['owner']}/{k['slug']}",
            "title": k["title"],
            "author": k["owner"],
            "slug": k["slug"],
            "lastRunTime": kaggle_time(session.created),
            "language": r.get("language"),
            "kernelType": r.get("kernelType"),
            "isPrivate": bool(r.get("isPrivate", True)),
            "enableGpu": bool(r.get("enableGpu")),
            "enableTpu": bool(r.get("enableTpu")),
            "enableInternet": bool(r.get("enableInternet")),
            "categoryIds": list(r.get("categoryIds") or []),
            "competitionDataSources": list(r.get("competitionDataSources") or []),
            "datasetDataSources": list(r.get("datasetDataSources") or []),
            "kernelDataSources": list(r.get("kernelDataSources") or []),
            "modelDataSources": list(r.get("modelDataSources") or []),
            "currentVersionNumber": len(k["sessions"]),
        }
        if r.get("machineShape"):
            out["machineShape"] = r["machineShape"]
        return out

    def _blob(self, session: _Session) -> dict:
        r = session.request
        return {
            "source": r.get("text", ""),
            "language": r.get("language"),
            "kernelType": r.get("kernelType"),
            "slug": session.kernel["slug"],
        }

    # ------------------------------------------------------------------ sessions

    def _prepare(self, session: _Session) -> None:
        """Lay out the session folder: script.py, input/<slug>/ (if attached), working/."""
        session.working.mkdir(parents=True)
        session.input.mkdir()
        (session.folder / "script.py").write_text(session.request.get("text", ""), encoding="utf-8")
        if self.emu.slug in (session.request.get("competitionDataSources") or []):
            target = session.input / self.emu.slug
            target.mkdir()
            for member in sorted(self._unpacked().iterdir()):
                (target / member.name).symlink_to(member)

    def _unpacked(self) -> Path:
        """The served zip unpacked once, read-only, shared by the sessions."""
        with self.emu._lock:
            if self._competition is None:
                folder = self.root / "competition"
                with zipfile.ZipFile(self.emu.zip_path) as zf:
                    zf.extractall(folder)
                for path in folder.rglob("*"):
                    if path.is_file():
                        path.chmod(0o444)
                self._competition = folder
            return self._competition

    def _command(self, session: _Session) -> list[str]:
        if session.fault is None:
            return [sys.executable, str(session.folder / "script.py")]
        message = str(session.fault.opts.get("message", "RuntimeError: emulated script failure"))
        code = int(session.fault.opts.get("exit_code", 1))
        return [
            sys.executable,
            "-c",
            f"import sys; sys.stderr.write({message + chr(10)!r}); sys.exit({code})",
        ]

    def _run(self, session: _Session) -> None:
        """The session's thread: wait in the queue, run the process to its end, record the outcome."""
        if session.cancelled.wait(self.emu.queue_delay_s):
            return
        env = {**os.environ, INPUT_ENV: str(session.input), WORKING_ENV: str(session.working)}
        limit = session.limit_s
        with self.emu._lock:
            session.proc = subprocess.Popen(
                self._command(session),
                cwd=session.working,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # so that a timeout kills the script's children too
            )
            session.t0 = time.monotonic()
            session.status = "RUNNING"
        readers = [
            threading.Thread(target=self._read, args=(session, stream, name), daemon=True)
            for stream, name in ((session.proc.stdout, "stdout"), (session.proc.stderr, "stderr"))
        ]
        for r in readers:
            r.start()
        try:
            code, failure = session.proc.wait(timeout=limit), None
        except subprocess.TimeoutExpired:
            _kill(session.proc)
            code, failure = session.proc.wait(), f"Timed out after {limit:g} s"
        for r in readers:
            r.join(timeout=5)
        self._finish(session, code, failure)

    def _read(self, session: _Session, stream, name: str) -> None:
        for line in iter(stream.readline, b""):
            record = {"stream_name": name, "time": round(time.monotonic() - session.t0, 6)}
            with self.emu._lock:
                session.log.append(record | {"data": line.decode("utf-8", "replace")})
        stream.close()

    def _finish(self, session: _Session, code: int, failure: str | None) -> None:
        if failure is None and code != 0:
            failure = f"Process exited with code {code}"
        files = sorted(
            p.relative_to(session.working).as_posix() for p in session.working.rglob("*") if p.is_file()
        )
        with self.emu._lock:
            session.files = files
            session.failure = failure
            session.status = "ERROR" if failure else "COMPLETE"
            if session.gpu:
                self.emu.gpu_hours_used += (time.monotonic() - session.t0) / 3600

    # ------------------------------------------------------------------ output files

    def serve_output(self, handler, path: str, drop) -> None:
        """GET/HEAD of an output file for kit.emulator.server's handler: like the data files, no auth
        (the URL stands for a signed one), Range-resumable; `drop`: a "drop" fault or None."""
        file = self.output_file(path)
        if file is None:
            return handler._json(404, {"code": 404, "message": f"no such output file: {path}"})
        data = file.read_bytes()
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        handler._serve_bytes(
            data, "application/octet-stream", etag, formatdate(file.stat().st_mtime, usegmt=True), drop
        )

    def output_file(self, path: str) -> Path | None:
        """The file behind /kernels-output/<owner>/<slug>/<version>/<name>, if it is an output."""
        parts = path[len(OUTPUT_PREFIX) :].split("/", 3)
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        owner, slug, version, name = parts
        kernel = self.kernels.get(f"{owner}/{slug}")
        if kernel is None or not 1 <= int(version) <= len(kernel["sessions"]):
            return None
        session = kernel["sessions"][int(version) - 1]
        with self.emu._lock:
            return session.working / name if name in session.files else None


def _kind(fault) -> str | None:
    return None if fault is None else fault.kind


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
