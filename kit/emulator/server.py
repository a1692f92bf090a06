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
    /api/v1/competitions.CompetitionApiService/   ListDataFiles, DownloadDataFiles, DownloadDataFile,
        GetSubmissionLimits, StartSubmissionUpload, CreateSubmission, ListSubmissions,
        GetSubmission, GetLeaderboard: see kit.emulator.competitions, which scores each
        submission against the answer key
    GET  /data/<slug>.zip          the competition zip (stands for Kaggle's signed storage URL, so
    GET  /data/<slug>/<member>     no auth): Content-Length, Accept-Ranges, ETag, Last-Modified,
                                   `Range: bytes=N-` -> 206 (If-Range honoured), 416 past the end
    PUT  /upload/<token>           the submission file (stands for the signed upload URL)
    /api/v1/kernels.KernelsApiService/  SaveKernel, GetKernelSessionStatus, ListKernelSessionOutput,
        GetKernel, GetAcceleratorQuotaStatistics; GET /kernels-output/...: see kit.emulator.kernels,
        which runs each pushed script for real in a Kaggle-like session folder

Credentials are checked like the real service: a wrong or missing username/key -> 401.

Faults: `fail(match, kind, times=1, **opts)` makes the next `times` requests whose path
contains `match` fail with: "401", "403" (rules not accepted), "429" (opts: retry_after
seconds, sent as Retry-After), "500", "drop" (the connection is closed mid-body: half the
download is sent, or half the upload read, then the socket is shut; for an RPC the
connection closes before it is served, or with after=True once it is served, so that only
the answer is lost) or "slow" (opts: seconds, then the request is served normally). A "drop" of a download takes
opts after_bytes (how much of the body is sent first). The kernels service adds "reject",
"session_limit", "quota" and "script_error" (kit.emulator.kernels), acted on by its RPCs only.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kit import config
from kit.emulator import competitions, kernels
from kit.errors import KitError

HTTP_FAULTS = ("401", "403", "429", "500")
FAULT_KINDS = (*HTTP_FAULTS, "drop", "slow", *kernels.FAULT_KINDS)
API = "/api/v1/"


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
    The competition service (kit.emulator.competitions) is `self.competitions`, the kernels
    service (kit.emulator.kernels) `self.kernels`; zip_path, zip_bytes, etag, last_modified,
    answers and submissions are the competition service's.
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
        self.slug, self.username, self.key = slug, username, key
        self.daily_limit, self.scoring_delay_s = daily_limit, scoring_delay_s
        self.teams = list(teams or [])
        self.verbose = verbose
        self.requests: list[tuple[str, str]] = []
        # what the client sent, for debugging and assertions: method, path, Range header,
        # JSON body of RPCs (never the Authorization header)
        self.log: list[dict] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.kernel_timeout_s, self.queue_delay_s = kernel_timeout_s, queue_delay_s
        self.gpu_quota_hours, self.gpu_hours_used = gpu_quota_hours, gpu_hours_used
        self.max_gpu_sessions = max_gpu_sessions
        self.competitions = competitions.CompetitionsService(self, competition_zip, answers_csv)
        self.kernels = kernels.KernelsService(self)

    # ------------------------------------------------------------------ the competition's state

    @property
    def zip_path(self) -> Path:
        return self.competitions.zip_path

    @property
    def zip_bytes(self) -> bytes:
        return self.competitions.zip_bytes

    @property
    def etag(self) -> str:
        return self.competitions.etag

    @property
    def last_modified(self) -> str:
        return self.competitions.last_modified

    @property
    def answers(self) -> dict[int, int]:
        return self.competitions.answers

    @property
    def submissions(self) -> list[dict]:
        """Every submission made, oldest first (dicts: ref, date, file_name, description, status, ...)."""
        return self.competitions.submissions

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

    # ------------------------------------------------------------------ RPCs: body dict -> (status, payload)

    def rpc(self, name: str, body: dict, handler: _Handler, fault: _Fault | None = None):
        """Serve one RPC: (HTTP status, JSON payload), or (302, the Location). `fault`: a kernels
        service fault kind (kit.emulator.kernels) that matched this request, if any."""
        if name != "IntrospectToken" and not self._authorized(handler.headers.get("Authorization", "")):
            return 401, {"code": 401, "message": "Unauthenticated"}
        if "competitionName" in body and body["competitionName"] != self.slug:
            return 404, {"code": 404, "message": f"Competition '{body['competitionName']}' not found"}
        method = getattr(self, f"_rpc_{name}", None) or self.competitions.rpc_method(name)
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


# ============================================================================ in the foreground


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
        if method in ("GET", "HEAD") and path.startswith(kernels.OUTPUT_PREFIX):
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
            data = emu.competitions.data_member(name[len(emu.slug) + 1 :])
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
        if not self.emu.competitions.store_upload(token, content):
            return self._json(404, {"code": 404, "message": "upload URL expired or unknown"})
        self._json(200, {})
