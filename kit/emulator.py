"""A local emulator of Kaggle's competition and kernels services that the official `kaggle` client accepts.

It serves one competition (its data zip and the hidden answer key) on 127.0.0.1 only, from
a stdlib ThreadingHTTPServer in a daemon thread, so starting and stopping it is quick.
The tests, `kit emulator` (`serve`: in the foreground until Ctrl-C) and `make demo` use it,
so nothing here ever reaches kaggle.com.

How the real client is pointed at it (see `Emulator.env`): kaggle 2.x talks to kagglesdk,
whose endpoint comes from KAGGLE_API_ENVIRONMENT. `TEST` (localhost:7777) is ignored by
KaggleApi, which only knows `LOCALHOST` -> `http://localhost` (port 80, no port setting).
So we set KAGGLE_API_ENVIRONMENT=LOCALHOST and make this server the HTTP proxy
(HTTP_PROXY/HTTPS_PROXY=http://127.0.0.1:PORT, NO_PROXY empty): every request then
arrives here with an absolute URL, `POST http://localhost/api/v1/<Service>/<Rpc>`, a
camelCase JSON body and HTTP basic auth (username:key) or a bearer token.

Endpoints (all RPCs are POST, JSON in and out; errors are `{"code": N, "message": ...}`,
which the client turns into requests.HTTPError(message)):

    /api/v1/security.OAuthService/IntrospectToken   KAGGLE_API_TOKEN check (no auth needed)
    /api/v1/competitions.CompetitionApiService/
        ListDataFiles          {competitionName} -> {files: [{ref, name, totalBytes, creationDate}]}
        DownloadDataFiles      {competitionName} -> 302 to /data/<slug>.zip
        DownloadDataFile       {competitionName, fileName} -> 302 to /data/<slug>/<fileName>
        GetSubmissionLimits    {competitionName} -> {numToday, numTotal, numAllowedNow, limitedByTotal}
        StartSubmissionUpload  {competitionName, fileName, contentLength, ...} -> {token, createUrl}
        CreateSubmission       {competitionName, blobFileTokens, submissionDescription}
                               -> {message, ref}; at the daily limit: 400 "Submission not allowed:
                               Your team has used its daily Submission allowance (N) today, ..."
        ListSubmissions        {competitionName, page, pageSize} -> {submissions: [ApiSubmission]}
                               newest first
        GetSubmission          {ref} -> ApiSubmission
        GetLeaderboard         {competitionName, pageSize, pageToken} -> {submissions: [{teamId,
                               teamName, submissionDate, score}], nextPageToken}
    GET  /data/<slug>.zip          the competition zip (stands for Kaggle's signed storage URL, so
    GET  /data/<slug>/<member>     no auth): Content-Length, Accept-Ranges, ETag, Last-Modified,
                                   `Range: bytes=N-` -> 206 (If-Range honoured), 416 past the end
    PUT  /upload/<token>           the submission file (stands for the signed upload URL)
    /api/v1/kernels.KernelsApiService/  SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput,
        GetKernel, GetAcceleratorQuotaStatistics; GET /kernels-output/...: see kit.emulator_kernels,
        which runs each pushed script for real in a Kaggle-like session folder

Credentials are checked like the real service: a wrong or missing username/key -> 401.
A submission is PENDING for `scoring_delay_s`, then COMPLETE with publicScore = accuracy
against the answer key over all test rows (as a string, 5 decimals, like Kaggle's), or
ERROR with an errorDescription for a malformed CSV. Errored submissions count towards
the daily limit, as on Kaggle; the day is the UTC day.

Faults: `fail(match, kind, times=1, **opts)` makes the next `times` requests whose path
contains `match` fail with: "401", "403" (rules not accepted), "429" (opts: retry_after
seconds, sent as Retry-After), "500", "drop" (the connection is closed mid-body: half the
download is sent, or half the upload read, then the socket is shut; for an RPC the
connection closes before it is served, or with after=True once it is served, so that only
the answer is lost) or "slow" (opts: seconds, then the request is served normally). A "drop" of a download takes
opts after_bytes (how much of the body is sent first). The kernels service adds "reject",
"session_limit", "quota" and "script_error" (kit.emulator_kernels), acted on by its RPCs only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kit import config, fixture
from kit.emulator_kernels import FAULT_KINDS as KERNEL_FAULT_KINDS
from kit.emulator_kernels import OUTPUT_PREFIX, KernelsService
from kit.emulator_wire import HOST, kaggle_now, kaggle_time
from kit.errors import KitError
from kit.io import utc_now

HTTP_FAULTS = ("401", "403", "429", "500")
FAULT_KINDS = (*HTTP_FAULTS, "drop", "slow", *KERNEL_FAULT_KINDS)
API = "/api/v1/"
FIRST_REF = 50_000_001  # submission refs look like Kaggle's 8-digit ones
DEFAULT_PAGE_SIZE = 20


class _Fault:
    def __init__(self, match: str, kind: str, times: int, opts: dict):
        self.match, self.kind, self.times, self.opts = match, kind, times, opts


class Emulator:
    """One competition served on 127.0.0.1:port (port 0 = a free one). See the module docstring.

    competition_zip: the zip the data download delivers (train.csv, test.csv, sample_submission.csv)
    answers_csv:     ImageId,Label, the hidden test labels that submissions are scored against
    teams:           other leaderboard entries, (team name, score)
    kernel_timeout_s: a pushed kernel's time limit (seconds) unless it asks for its own
    queue_delay_s:   seconds a pushed kernel stays QUEUED before its process starts
    gpu_quota_hours, gpu_hours_used: the weekly GPU quota and what is used of it (hours;
                     settable, e.g. `emu.gpu_hours_used = emu.gpu_quota_hours` for none left)
    max_gpu_sessions: GPU sessions that may be QUEUED or RUNNING at once
    The kernels service (kit.emulator_kernels) is `self.kernels`.
    """

    def __init__(
        self,
        competition_zip: Path,
        answers_csv: Path,
        slug: str = "digit-recognizer-fixture",
        username: str = "demo",
        key: str = "demo-key",
        daily_limit: int = 5,
        scoring_delay_s: float = 0.5,
        teams: list[tuple[str, float]] | None = None,
        port: int = 0,
        verbose: bool = False,
        kernel_timeout_s: float = 600,
        queue_delay_s: float = 0.0,
        gpu_quota_hours: float = 30.0,
        gpu_hours_used: float = 0.0,
        max_gpu_sessions: int = 2,
    ):
        self.zip_path = Path(competition_zip)
        self.zip_bytes = self.zip_path.read_bytes()
        self.etag = '"' + hashlib.sha1(self.zip_bytes).hexdigest() + '"'
        self.last_modified = formatdate(self.zip_path.stat().st_mtime, usegmt=True)
        self.answers = _read_answers(Path(answers_csv))
        self.slug, self.username, self.key = slug, username, key
        self.daily_limit, self.scoring_delay_s = daily_limit, scoring_delay_s
        self.teams = list(teams or [])
        self.verbose = verbose
        self.requests: list[tuple[str, str]] = []
        # what the client sent, for debugging and assertions: method, path, Range header,
        # JSON body of RPCs (never the Authorization header)
        self.log: list[dict] = []
        self.submissions: list[dict] = []
        self._uploads: dict[str, dict] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.kernel_timeout_s, self.queue_delay_s = kernel_timeout_s, queue_delay_s
        self.gpu_quota_hours, self.gpu_hours_used = gpu_quota_hours, gpu_hours_used
        self.max_gpu_sessions = max_gpu_sessions
        self.kernels = KernelsService(self)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.emulator = self
        self._server = server
        # a short poll interval so that stop() returns at once
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kaggle-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None
        self.kernels.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the emulator first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, config_dir: Path | None = None) -> dict[str, str]:
        """Environment that points the real kaggle client (and so kit) at this emulator.

        Both spellings of the proxy variables: requests reads the lower-case ones first.
        KAGGLE_API_TOKEN is emptied so that a real token in the caller's environment is
        neither used nor sent here. config_dir, if given, becomes KAGGLE_CONFIG_DIR so that
        the user's real ~/.kaggle/kaggle.json is not read.
        """
        env = {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "KAGGLE_USERNAME": self.username,
            "KAGGLE_KEY": self.key,
            "KAGGLE_API_TOKEN": "",
        }
        for name in ("http_proxy", "https_proxy"):
            env[name] = env[name.upper()] = self.url
        env["no_proxy"] = env["NO_PROXY"] = ""
        if config_dir is not None:
            env["KAGGLE_CONFIG_DIR"] = str(config_dir)
        return env

    # ------------------------------------------------------------------ faults

    def fail(self, match: str, kind: str, times: int = 1, **opts) -> None:
        """The next `times` requests whose path contains `match` fail as `kind` (see module doc)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(match, kind, times, opts))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.times > 0 and f.match in path:
                    f.times -= 1
                    return f
        return None

    # ------------------------------------------------------------------ submissions

    def _today_count(self) -> int:
        today = kaggle_now().date()
        return sum(1 for s in self.submissions if s["date"].date() == today)

    def _refresh(self, sub: dict) -> dict:
        """Score a PENDING submission once its scoring delay has passed."""
        if sub["status"] == "PENDING" and (time.monotonic() - sub["_t0"]) >= self.scoring_delay_s:
            score, error = _score(sub["_content"], self.answers)
            if error is None:
                sub.update(status="COMPLETE", public_score=score)
            else:
                sub.update(status="ERROR", error=error)
        return sub

    def _api_submission(self, sub: dict) -> dict:
        self._refresh(sub)
        out = {
            "ref": sub["ref"],
            "totalBytes": sub["total_bytes"],
            "date": kaggle_time(sub["date"]),
            "description": sub["description"],
            "fileName": sub["file_name"],
            "status": sub["status"],
            "submittedBy": self.username,
            "teamName": self.username,
            "url": f"/submissions/{sub['ref']}/{sub['file_name']}",
        }
        if sub["public_score"] is not None:
            out["publicScore"] = f"{sub['public_score']:.5f}"
        if sub["error"]:
            out["errorDescription"] = sub["error"]
        return out

    def best_score(self) -> tuple[float, datetime] | None:
        with self._lock:
            done = [self._refresh(s) for s in self.submissions]
        scored = [(s["public_score"], s["date"]) for s in done if s["status"] == "COMPLETE"]
        return max(scored, key=lambda t: t[0]) if scored else None

    # ------------------------------------------------------------------ RPCs: body dict -> (status, payload)

    def rpc(self, name: str, body: dict, handler: _Handler, fault: _Fault | None = None):
        """Serve one RPC: (HTTP status, JSON payload), or (302, the Location). `fault`: a kernels
        service fault kind (kit.emulator_kernels) that matched this request, if any."""
        if name != "IntrospectToken" and not self._authorized(handler.headers.get("Authorization", "")):
            return 401, {"code": 401, "message": "Unauthenticated"}
        if "competitionName" in body and body["competitionName"] != self.slug:
            return 404, {"code": 404, "message": f"Competition '{body['competitionName']}' not found"}
        method = getattr(self, f"_rpc_{name}", None)
        if method is not None:
            return method(body)
        method = self.kernels.rpc_method(name)
        if method is None:
            return 404, {"code": 404, "message": f"the emulator does not implement {name}"}
        return method(body, fault)

    def _authorized(self, header: str) -> bool:
        kind, _, value = header.partition(" ")
        if kind == "Basic":
            try:
                user, _, key = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return secrets.compare_digest(user, self.username) and secrets.compare_digest(key, self.key)
        if kind == "Bearer":
            return secrets.compare_digest(value, self.key)
        return False

    def _rpc_IntrospectToken(self, body):
        active = secrets.compare_digest(body.get("token", ""), self.key)
        return 200, {"active": active, "username": self.username if active else ""}

    def _rpc_ListDataFiles(self, body):
        with zipfile.ZipFile(io.BytesIO(self.zip_bytes)) as zf:
            files = [
                {
                    "ref": i.filename,
                    "name": i.filename,
                    "totalBytes": i.file_size,
                    "creationDate": kaggle_time(datetime(*i.date_time)),
                }
                for i in zf.infolist()
            ]
        return 200, {"files": files, "nextPageToken": ""}

    def _rpc_DownloadDataFiles(self, body):
        return 302, f"{HOST}/data/{self.slug}.zip"

    def _rpc_DownloadDataFile(self, body):
        return 302, f"{HOST}/data/{self.slug}/{body.get('fileName', '')}"

    def _rpc_GetSubmissionLimits(self, body):
        with self._lock:
            today, total = self._today_count(), len(self.submissions)
        return 200, {
            "numToday": today,
            "numTotal": total,
            "numAllowedNow": max(0, self.daily_limit - today),
            "limitedByTotal": False,
        }

    def _rpc_StartSubmissionUpload(self, body):
        token = secrets.token_hex(12)
        with self._lock:
            self._uploads[token] = {
                "file_name": body.get("fileName", ""),
                "content_length": int(body.get("contentLength", 0)),
                "content": None,
            }
        return 200, {"token": token, "createUrl": f"{HOST}/upload/{token}"}

    def _rpc_CreateSubmission(self, body):
        with self._lock:
            if self._today_count() >= self.daily_limit:
                now = utc_now()
                hours = (
                    datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now
                ).total_seconds() / 3600
                return 400, {
                    "code": 400,
                    "message": (
                        f"Submission not allowed: Your team has used its daily Submission allowance "
                        f"({self.daily_limit}) today, please try again tomorrow UTC ({hours:.1f} hours from now)."
                    ),
                }
            upload = self._uploads.get(body.get("blobFileTokens", ""))
            if upload is None or upload["content"] is None:
                return 400, {
                    "code": 400,
                    "message": "The submission file was not uploaded (unknown blobFileTokens)",
                }
            sub = {
                "ref": FIRST_REF + len(self.submissions),
                "date": kaggle_now(),
                "_t0": time.monotonic(),
                "file_name": upload["file_name"],
                "description": body.get("submissionDescription") or "",
                "total_bytes": len(upload["content"]),
                "sha256": hashlib.sha256(upload["content"]).hexdigest(),
                "status": "PENDING",
                "public_score": None,
                "error": None,
                "_content": upload["content"],
            }
            self.submissions.append(sub)
        return 200, {
            "message": "Successfully submitted to " + self.slug.replace("-", " ").title(),
            "ref": sub["ref"],
        }

    def _rpc_ListSubmissions(self, body):
        page = max(1, int(body.get("page") or 1))
        size = int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
        with self._lock:
            subs = sorted(self.submissions, key=lambda s: s["ref"], reverse=True)
            rows = [self._api_submission(s) for s in subs[(page - 1) * size : page * size]]
        return 200, {"submissions": rows, "nextPageToken": ""}

    def _rpc_GetSubmission(self, body):
        with self._lock:
            for s in self.submissions:
                if s["ref"] == int(body.get("ref", 0)):
                    return 200, self._api_submission(s)
        return 404, {"code": 404, "message": f"Submission {body.get('ref')} not found"}

    def _rpc_GetLeaderboard(self, body):
        entries = [(name, score, kaggle_now() - timedelta(days=30)) for name, score in self.teams]
        best = self.best_score()
        if best is not None:
            entries.append((self.username, best[0], best[1]))
        entries.sort(key=lambda e: -e[1])
        start = int(body.get("pageToken") or 0)
        size = int(body.get("pageSize") or DEFAULT_PAGE_SIZE)
        page = entries[start : start + size]
        rows = [
            {
                "teamId": 1000 + start + i,
                "teamName": name,
                "submissionDate": kaggle_time(date),
                "score": f"{score:.5f}",
            }
            for i, (name, score, date) in enumerate(page)
        ]
        more = start + size < len(entries)
        return 200, {"submissions": rows, "nextPageToken": str(start + size) if more else ""}

    # ------------------------------------------------------------------ files

    def data_member(self, name: str) -> bytes | None:
        with zipfile.ZipFile(io.BytesIO(self.zip_bytes)) as zf:
            return zf.read(name) if name in zf.namelist() else None

    def store_upload(self, token: str, content: bytes) -> bool:
        with self._lock:
            upload = self._uploads.get(token)
            if upload is None:
                return False
            upload["content"] = content
            return True


# ============================================================================ in the foreground


def competition_files(
    zip_path: Path | None, answers: Path | None, slug: str | None = None
) -> tuple[Path, Path, str]:
    """(competition zip, answer key, slug) to serve: the given pair (slug: the zip's stem unless
    given), or with neither the fixture competition, built if needed (kit.fixture)."""
    if (zip_path is None) != (answers is None):
        raise KitError(
            "--zip and --answers go together: the competition zip and its answer key (ImageId,Label)"
        )
    if zip_path is None:
        folder = fixture.build()
        return folder / fixture.ZIP_NAME, folder / fixture.ANSWERS, slug or fixture.NAME
    return Path(zip_path), Path(answers), slug or Path(zip_path).stem


def export_lines(emu: Emulator) -> list[str]:
    """Shell `export` lines that point the kaggle client (and kit, for a known competition) at `emu`."""
    lines = [f"export {name}={shlex.quote(value)}" for name, value in emu.env().items()]
    if emu.slug in config.COMPETITIONS:
        lines.append(f"export KIT_COMPETITION={emu.slug}")
    return lines


def _print(text: str, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def serve(emu: Emulator, echo: Callable[..., None] = _print) -> None:
    """Start `emu`, print where it listens and its export lines, serve until Ctrl-C or SIGTERM, stop it.

    echo(text, err=False) prints one line (click.echo fits); the lines go out at once, so a
    process reading this one's stdout through a pipe sees them while it serves.
    """
    try:
        emu.start()
    except OSError as e:
        raise KitError(f"cannot listen on 127.0.0.1:{emu._port}: {e.strerror}; pick another --port") from None
    echo(f"Kaggle emulator serving {emu.slug} on {emu.url} (Ctrl-C to stop).")
    echo("Paste these lines into another shell to point the kaggle client and kit at it:")
    for line in export_lines(emu):
        echo(line)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        emu.stop()
        echo("emulator stopped", err=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# ============================================================================ scoring


def _read_answers(path: Path) -> dict[int, int]:
    """answers.csv (ImageId,Label) -> {image_id: label}."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert [h.strip() for h in header] == ["ImageId", "Label"], f"{path}: header {header}"
        return {int(row[0]): int(row[1]) for row in reader if row}


def _score(content: bytes, answers: dict[int, int]) -> tuple[float | None, str | None]:
    """Kaggle's categorization accuracy. Returns (score, None) or (None, error description)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "Submission file is not UTF-8 text"
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    if not rows or [c.strip() for c in rows[0]] != ["ImageId", "Label"]:
        return None, "Submission must have the header ImageId,Label"
    rows = rows[1:]
    if len(rows) != len(answers):
        return None, f"Submission must have {len(answers)} rows, found {len(rows)}"
    seen: dict[int, int] = {}
    for line, row in enumerate(rows, start=2):
        if len(row) != 2:
            return None, f"Line {line}: expected 2 columns, found {len(row)}"
        try:
            image_id, label = int(row[0]), int(row[1])
        except ValueError:
            return None, f"Line {line}: ImageId and Label must be integers, found {row[0]!r},{row[1]!r}"
        if image_id not in answers:
            return None, f"Line {line}: unexpected ImageId {image_id}"
        if image_id in seen:
            return None, f"Line {line}: duplicate ImageId {image_id}"
        seen[image_id] = label
    correct = sum(seen[i] == y for i, y in answers.items())
    return correct / len(answers), None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # a client hanging up mid-response (it dropped a stream to resume it with Range,
        # or a test's fault) is normal here, not worth a traceback
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's requests.Session expects
    server_version = "kaggle-emulator"

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def log_message(self, fmt, *args):  # quiet unless asked: tests read .requests instead
        if self.emu.verbose:
            sys.stderr.write("emulator: " + (fmt % args) + "\n")

    # ---------------------------------------------------------------- plumbing

    def _read_body(self, limit: int | None = None) -> bytes:
        """The request body (Content-Length or chunked); at most `limit` bytes if given."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while limit is None or len(out) < limit:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            return bytes(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n if limit is None else min(n, limit))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _drop(self) -> None:
        """Close the connection abruptly: the peer sees a reset / short read."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ---------------------------------------------------------------- routing

    def _dispatch(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        entry = {"method": method, "path": path, "range": self.headers.get("Range"), "body": None}
        with self.emu._lock:
            self.emu.requests.append((method, path))
            self.emu.log.append(entry)
        fault = self.emu._take_fault(path)
        if fault is not None and fault.kind == "slow":
            time.sleep(float(fault.opts.get("seconds", 2.0)))
            fault = None
        if fault is not None and fault.kind in HTTP_FAULTS:
            self._read_body()
            return self._answer_fault(fault)
        drop = fault is not None and fault.kind == "drop"
        served = None if drop else fault  # a kernels service fault, acted on by the RPC

        if method == "POST" and path.startswith(API):
            body = self._read_body()
            if drop and not fault.opts.get("after"):
                return self._drop()
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                return self._json(400, {"code": 400, "message": "request body is not JSON"})
            entry["body"] = request
            if self.emu.verbose:
                sys.stderr.write(f"emulator: {path} {json.dumps(request)}\n")
            name = path.rsplit("/", 1)[-1]
            status, payload = self.emu.rpc(name, request, self, served)
            if drop:  # after=True: the request was served, only the answer is lost
                return self._drop()
            if status == 302:
                return self._send(302, b"", {"Location": payload})
            return self._json(status, payload)
        if method in ("GET", "HEAD") and path.startswith("/data/"):
            return self._serve_data(path[len("/data/") :], fault if drop else None)
        if method in ("GET", "HEAD") and path.startswith(OUTPUT_PREFIX):
            return self.emu.kernels.serve_output(self, path, fault if drop else None)
        if method == "PUT" and path.startswith("/upload/"):
            return self._receive_upload(path[len("/upload/") :], drop)
        self._read_body()
        self._json(404, {"code": 404, "message": f"no such endpoint: {method} {path}"})

    def _answer_fault(self, fault: _Fault) -> None:
        status = int(fault.kind)
        message = {
            401: "Unauthenticated",
            403: "You must accept this competition's rules before you can use it",
            429: "Too many requests",
            500: "Internal server error",
        }[status]
        headers = {"Content-Type": "application/json"}
        if status == 429:
            headers["Retry-After"] = str(fault.opts.get("retry_after", 1))
        self._send(status, json.dumps({"code": status, "message": message}).encode(), headers)

    def _serve_data(self, name: str, drop: _Fault | None) -> None:
        emu = self.emu
        if name == f"{emu.slug}.zip":
            data = emu.zip_bytes
        elif name.startswith(emu.slug + "/"):
            data = emu.data_member(name[len(emu.slug) + 1 :])
        else:
            data = None
        if data is None:
            return self._json(404, {"code": 404, "message": f"no such file: {name}"})
        kind = "application/zip" if name.endswith(".zip") else "text/csv"
        self._serve_bytes(data, kind, emu.etag, emu.last_modified, drop)

    def _serve_bytes(
        self, data: bytes, kind: str, etag: str, last_modified: str, drop: _Fault | None
    ) -> None:
        """GET/HEAD of `data` with Range (`bytes=N-`, If-Range) support; `drop`: a "drop" fault,
        whose opts after_bytes (default half the body) are sent before hanging up."""
        size, start = len(data), 0
        headers = {
            "Content-Type": kind,
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": last_modified,
        }
        status = 200
        wanted = self.headers.get("Range", "")
        if_range = self.headers.get("If-Range")
        if wanted.startswith("bytes=") and (if_range is None or if_range in (etag, last_modified)):
            first = wanted[len("bytes=") :].split("-")[0]
            start = int(first or 0)
            if start >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        body = data[start:]
        if drop is None:
            return self._send(status, body, headers)
        # promise the whole body, deliver part of it, hang up
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: int(drop.opts.get("after_bytes", len(body) // 2))])
        self._drop()

    def _receive_upload(self, token: str, drop: bool) -> None:
        if drop:
            declared = int(self.headers.get("Content-Length") or 2)
            self._read_body(limit=max(1, declared // 2))
            return self._drop()
        content = self._read_body()
        if not self.emu.store_upload(token, content):
            return self._json(404, {"code": 404, "message": "upload URL expired or unknown"})
        self._json(200, {})
