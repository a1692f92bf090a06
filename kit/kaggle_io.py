"""Every call to Kaggle goes through here, with the official `kaggle` package (KaggleApi).

The client is imported lazily and a fresh KaggleApi is built and authenticated for each
operation, from the environment as it is *now*: kaggle 2.x authenticates at `import kaggle`
and freezes its config folder and endpoint in class attributes at import time, so we set
them again on each instance (that is what lets the tests point the client at one local
emulator after another, see kit.emulator).

Faults become KitError subclasses with a message that says what to do:

    KaggleAuthError       no credentials, or Kaggle rejected them (HTTP 401)
    KaggleRulesError      HTTP 403: the competition rules are not accepted on kaggle.com
    KaggleLimitError      the day's submission allowance is used up
    KaggleTransientError  HTTP 429 / 5xx / network error / dropped connection, still failing
                          after bounded retries with exponential backoff (Retry-After honoured):
                          raised as KaggleGaveUpError, whose `then` rewords the next step
    KaggleSessionLimitError, KaggleQuotaError   a kernel push refused (kit remote)

Retries: `retry_attempts` attempts in all, waits `retry_base_s` * 2**n seconds (capped at
30 s) or what Retry-After asks (capped at 120 s); every request times out after
`net_timeout_s` (all three are kit.config.Settings, env KIT_RETRY_ATTEMPTS, KIT_RETRY_BASE_S,
KIT_NET_TIMEOUT_S). The client's own retry loops (inside downloads, and urllib3's ten tries of
each upload PUT) are switched off so that this one policy applies everywhere. The timeout is
set on the client's own sessions (see `_timed`), never on `requests` for the whole process:
other threads and sessions keep theirs. One request escapes it: the client fetches each kernel
output file with a module-level `requests.get(..., timeout=300)`, out of reach.

The API key is never printed: every message built from a client error is scrubbed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import shutil
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kit import config, data
from kit.errors import KitError
from kit.io import exclusive, utc_now

TOKEN_HELP = (
    "create a token on kaggle.com (Settings -> API -> Create New Token), save the "
    "downloaded kaggle.json as ~/.kaggle/kaggle.json and run `chmod 600 ~/.kaggle/kaggle.json`; "
    "or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)
PAGE_SIZE = 100  # submissions / leaderboard rows per request
MAX_PAGES = 50
RETRY_AFTER_CAP_S = 120.0
BACKOFF_CAP_S = 30.0
# how Kaggle words a refusal at the daily limit ("... used its daily Submission allowance ...")
LIMIT_WORDS = ("allowance", "daily submission", "submission limit")
# a retried submit first looks for a submission the lost answer may have created
RECENT_S = 5.0


class KaggleAuthError(KitError):
    """Credentials missing or rejected (HTTP 401)."""


class KaggleRulesError(KitError):
    """HTTP 403: the competition rules were not accepted on kaggle.com."""


class KaggleLimitError(KitError):
    """The day's submission allowance is used up."""


class KaggleTransientError(KitError):
    """429 / 5xx / network fault that outlasted the bounded retries."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class KaggleGaveUpError(KaggleTransientError):
    """The retries are spent: `cause` (the last fault) after `attempts` attempts. `then` is
    what the user should do next; a caller that knows better (kit remote: resume the job,
    not start a new one) says so with `.then(...)`."""

    def __init__(self, cause: str, attempts: int, then: str = "run the command again"):
        super().__init__(
            f"gave up after {attempts} attempts: {cause}. Check your connection (or "
            f"https://www.kaggle.com status) and {then}."
        )
        self.cause, self.attempts = cause, attempts

    def then(self, what: str) -> KaggleGaveUpError:
        """The same give-up, ending with `what` to do next."""
        return KaggleGaveUpError(self.cause, self.attempts, what)


@dataclass(frozen=True)
class Submission:
    ref: int
    date: str  # ISO 8601 UTC, e.g. 2026-11-25T16:31:50Z
    file_name: str
    description: str
    status: str  # 'pending' | 'complete' | 'error'
    public_score: float | None
    private_score: float | None
    error: str | None


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    team_name: str
    score: float
    date: str  # ISO 8601 UTC


def _slug() -> str:
    return config.competition().slug


# ============================================================================ the client


@functools.cache
def _timeout_adapter() -> type:
    """requests' HTTPAdapter, giving every request it sends `timeout_s` where the sender set no
    timeout. Mounted on one session it times out that session's requests and no others; its
    max_retries is requests' default, no retry. (A class made on first use: requests, like the
    client, is imported only where Kaggle is called.)"""
    from requests.adapters import HTTPAdapter

    class TimeoutAdapter(HTTPAdapter):
        def __init__(self, timeout_s: float):
            super().__init__()
            self.timeout_s = timeout_s

        def send(self, request, timeout=None, **kwargs):
            return super().send(request, timeout=self.timeout_s if timeout is None else timeout, **kwargs)

    return TimeoutAdapter


def _timed(session):
    """`session`, its every request now timing out after the settings' net_timeout_s.

    kaggle 2.x sends its RPCs and the submission file's PUT with no timeout, so a server that
    stops answering would hold `kit submit` for ever. With one, the stall becomes a
    `requests.Timeout`, a KaggleTransientError our retries handle. The adapter replaces any the
    session had, so the client's `Retry(total=10)` on the upload goes too: with the default
    60 s timeout that was over ten minutes inside each of our attempts.
    """
    adapter = _timeout_adapter()(config.settings().net_timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _config_dir() -> Path:
    """Where KaggleApi looks for kaggle.json (same rule as kaggle 2.x, evaluated now)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser()
    home = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not home.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(xdg) / "kaggle"
    return home


_warned_permissions: set[str] = set()


def _warn_if_readable(path: Path) -> None:
    """Once per file and process, on stderr: kaggle.json readable by group or others."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if os.name != "nt" and mode & (stat.S_IRGRP | stat.S_IROTH) and str(path) not in _warned_permissions:
        _warned_permissions.add(str(path))
        print(
            f"Warning: {path} is readable by other users of this machine; run `chmod 600 {path}`.",
            file=sys.stderr,
        )


def _secrets() -> list[str]:
    """Every credential value we might have to scrub from a message."""
    values = [os.environ.get("KAGGLE_KEY", ""), os.environ.get("KAGGLE_API_TOKEN", "")]
    try:
        values.append(str(json.loads((_config_dir() / "kaggle.json").read_text()).get("key", "")))
    except (OSError, ValueError, AttributeError):
        pass
    return [v for v in values if len(v) >= 4]


def scrub(text: str) -> str:
    """`text` with any credential replaced by ***."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def _quiet():
    """Swallow what the client prints on stdout (its progress bars go to stderr and stay),
    and urllib3's per-retry warnings during uploads: our own retry messages say enough."""
    log = logging.getLogger("urllib3")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            yield out
    finally:
        log.setLevel(level)


def _configured_username() -> str:
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    try:
        return str(json.loads((_config_dir() / "kaggle.json").read_text()).get("username", "?"))
    except (OSError, ValueError, AttributeError):
        return "?"


def _credentials_source() -> str:
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    return str(_config_dir() / "kaggle.json")


@functools.cache
def _api_class():
    """KaggleApi with the kit's timeouts and one retry policy, imported on first use."""
    with _quiet():
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except SystemExit:  # an old kaggle that exits at import without credentials
            raise KaggleAuthError(f"no Kaggle credentials found: {TOKEN_HELP}.") from None

    class Api(KaggleApi):
        def build_kaggle_client(self):
            # every RPC (and the download it redirects to) goes out on this client's one
            # requests.Session: kagglesdk's KaggleHttpClient makes it in _init_session, which the
            # client's own kernels_logs_stream calls early the same way to use `_session`
            client = super().build_kaggle_client()
            http = client.http_client()
            http._init_session()
            _timed(http._session)
            return client

        def download_file(self, *args, **kwargs):
            # one retry policy for everything (ours): the client's own loop would sleep
            # 2**n s between tries and print to stdout. Its resumed requests (Range) go out on
            # sessions of their own, with this timeout (the client's default is 300 s)
            kwargs["max_retries"] = 0
            kwargs["timeout"] = config.settings().net_timeout_s
            return super().download_file(*args, **kwargs)

        def upload_complete(self, path, url, quiet, resume=False):
            # the client PUTs the file on a requests.Session it makes inside this method, out
            # of our reach: the same PUT, on a session of ours, answered as the client answers
            # (without its progress bar: kit always passes quiet)
            if resume:  # dataset and model uploads only: competition_submit never resumes
                return super().upload_complete(path, url, quiet, resume)
            import requests
            from kaggle.models.kaggle_models_extended import ResumableUploadResult

            try:
                with _timed(requests.Session()) as session, open(path, "rb") as body:
                    response = session.put(url, data=body)
            except Exception as error:
                print(error)  # the client's way: submit() reads the reason from stdout
                return ResumableUploadResult.INCOMPLETE
            if self._is_upload_successful(response):
                return ResumableUploadResult.COMPLETE
            if response.status_code == 503:  # worth another try, as the client has it
                return ResumableUploadResult.INCOMPLETE
            return ResumableUploadResult.FAILED

    return Api


def _client():
    """A fresh, authenticated KaggleApi configured from the environment as it is now."""
    api = _api_class()()
    config_dir = _config_dir()
    api.config_dir = str(config_dir)
    api.config = str(config_dir / "kaggle.json")
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    _warn_if_readable(config_dir / "kaggle.json")
    try:
        with _quiet():
            api.authenticate()
    except SystemExit:
        where = os.environ.get("KAGGLE_CONFIG_DIR")
        hint = f" (KAGGLE_CONFIG_DIR points at {where}, so kaggle.json is looked for there)" if where else ""
        raise KaggleAuthError(f"no Kaggle credentials found{hint}: {TOKEN_HELP}.") from None
    except Exception as e:  # a token check against the server can fail too
        raise _translate(e, "checking your Kaggle credentials") from None
    return api


# ============================================================================ errors and retries


def _status(e: Exception) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _translate(e: Exception, doing: str) -> KitError:
    """A client exception -> the KitError that says what to do. Never contains the key."""
    import requests
    import urllib3

    if isinstance(e, KitError):
        return e
    status = _status(e)
    detail = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__)
    slug = _slug()
    if status in (400, 403, 429) and any(w in detail.lower() for w in LIMIT_WORDS):
        return KaggleLimitError(
            f"daily submission limit reached for {slug!r}: {detail} "
            f"Nothing was submitted; try again after 00:00 UTC."
        )
    if status == 401:
        user = _configured_username()
        return KaggleAuthError(
            f"Kaggle rejected the credentials from {_credentials_source()} (HTTP 401, user {user!r}) "
            f"while {doing}. The key is wrong or was revoked: {TOKEN_HELP}."
        )
    if status == 403:
        return KaggleRulesError(
            f"Kaggle refused access to competition {slug!r} (HTTP 403) while {doing}: the competition "
            f"rules are not accepted for this account. Accept them at "
            f"https://www.kaggle.com/competitions/{slug}/rules, then run the command again."
        )
    if status == 404:
        return KitError(
            f"Kaggle answered 404 Not Found while {doing} ({detail}). Check the competition "
            f"slug {slug!r} (https://www.kaggle.com/competitions/{slug})."
        )
    if status == 429 or (status is not None and status >= 500):
        retry_after = None
        header = e.response.headers.get("Retry-After") if e.response is not None else None
        if header:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        return KaggleTransientError(f"HTTP {status} from Kaggle while {doing} ({detail})", retry_after)
    network = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        ConnectionError,
    )
    if isinstance(e, network):
        return KaggleTransientError(f"network error while {doing} ({type(e).__name__}: {detail})")
    if isinstance(e, ValueError) and "does not match expected size" in str(e):
        return KaggleTransientError(f"incomplete download while {doing} ({detail})")
    if status is not None:
        return KitError(f"Kaggle answered HTTP {status} while {doing}: {detail}")
    return KitError(f"the kaggle client failed while {doing}: {type(e).__name__}: {detail}")


def _with_retries(fn, doing: str):
    """fn() with retries on KaggleTransientError; every other error is raised at once.

    fn may raise client exceptions (translated here) or KitErrors.
    """
    import tenacity

    policy = config.settings()
    attempts = policy.retry_attempts

    def once():
        try:
            return fn()
        except Exception as e:
            raise _translate(e, doing) from None

    def wait(state: tenacity.RetryCallState) -> float:
        err = state.outcome.exception()
        if isinstance(err, KaggleTransientError) and err.retry_after is not None:
            return min(err.retry_after, RETRY_AFTER_CAP_S)
        return min(policy.retry_base_s * 2 ** (state.attempt_number - 1), BACKOFF_CAP_S)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        print(
            f"{state.outcome.exception()}; retrying in {state.next_action.sleep:.1f} s "
            f"(attempt {state.attempt_number + 1}/{attempts})",
            file=sys.stderr,
        )

    try:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(KaggleTransientError),
            stop=tenacity.stop_after_attempt(attempts),
            wait=wait,
            before_sleep=before_sleep,
            reraise=True,
        )(once)
    except KaggleTransientError as e:
        raise KaggleGaveUpError(str(e), attempts) from None


# ============================================================================ operations


def username() -> str:
    """Whose credentials are in use (never the key)."""
    return str(_client().config_values.get("username", ""))


def download(force: bool = False, echo=print) -> str:
    """Fetch the competition zip with KaggleApi, then verify and install it (kit.data.install).

    Already installed and not `force`: says so and returns without touching the network.
    The zip is fetched into data_dir()/.download-<slug>/ (a partial file there is resumed
    with an HTTP Range request on the next try, never installed) and removed once installed.
    Returns data.install's summary.
    """
    slug = _slug()
    if data.is_installed() and not force:
        return _already(slug)
    api = _client()
    user = api.config_values.get("username", "?")
    # one download per data folder at a time (two terminals running `make download`)
    with exclusive(config.data_dir() / f".download-{slug}.lock"):
        # another `kit download` may have finished while we waited for the lock
        if data.is_installed() and not force:
            return _already(slug)
        return _download_locked(api, slug, user, force, echo)


def _already(slug: str) -> str:
    return (
        f"{slug}: data already installed and verified in {config.raw_dir()} (use --force to download again)"
    )


def _download_locked(api, slug: str, user: str, force: bool, echo) -> str:
    partial = config.data_dir() / f".download-{slug}"
    if force:  # a fresh copy; otherwise a partial file left by an earlier try is resumed
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    echo(f"Downloading {slug} from Kaggle as {user} ...")
    # the client's byte progress bar (stderr) only where someone can watch it
    quiet = not sys.stderr.isatty()

    def fetch():
        # force=False: after a dropped connection the client resumes the partial file
        # with a Range request (it checks the server's ETag first)
        with _quiet():
            api.competition_download_files(slug, path=str(partial), force=False, quiet=quiet)

    _with_retries(fetch, f"downloading {slug}")
    zip_path = partial / f"{slug}.zip"
    if not zip_path.is_file():  # the client names the file after the URL's extension
        found = [p for p in partial.glob(f"{slug}.*") if p.suffix != ".kaggle-partial"]
        zip_path = found[0] if len(found) == 1 else zip_path
    if not zip_path.is_file():
        raise KitError(f"the kaggle client finished but {zip_path} is missing; run the command again.")
    try:
        result = data.install(zip_path, force=force, echo=echo)
    except KitError:
        # a corrupt download is of no use for a resume either
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(partial, ignore_errors=True)
    return result


def submit(path: Path, message: str) -> int:
    """Upload `path` and create a submission with `message`; returns Kaggle's submission ref.

    The client reports a failed upload by returning "Could not submit to competition"
    instead of raising: that is detected and retried like any network fault.
    """
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: no such file to submit")
    api = _client()
    slug = _slug()

    started = utc_now() - timedelta(seconds=RECENT_S)  # allow for clock skew
    attempts = [0]

    def once() -> int:
        attempts[0] += 1
        if attempts[0] > 1:
            # the previous try may have created the submission and lost only the answer:
            # never submit the same file twice by accident
            made = _recent_submission(api, slug, path.name, message, started)
            if made is not None:
                return made
        with _quiet() as out:
            result = api.competition_submit(str(path), message, slug, quiet=True)
        said = scrub(out.getvalue().strip().splitlines()[-1]) if out.getvalue().strip() else ""
        if result is None or result.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise KaggleTransientError(f"the upload of {path.name} failed" + (f" ({said})" if said else ""))
        if not getattr(result, "ref", 0):
            raise KitError(f"Kaggle did not accept {path.name}: {scrub(result.message or 'no reason given')}")
        return int(result.ref)

    return _with_retries(once, f"submitting {path.name} to {slug}")


def _recent_submission(api, slug: str, file_name: str, message: str, since: datetime) -> int | None:
    """The ref of a submission of `file_name` with `message` made at or after `since`, if any."""
    with _quiet():
        rows = api.competition_submissions(slug, page_number=1, page_size=PAGE_SIZE) or []
    for s in rows:
        if s is None or s.date is None:
            continue
        date = s.date if s.date.tzinfo else s.date.replace(tzinfo=UTC)
        if date >= since and s.file_name == file_name and (s.description or "") == (message or ""):
            return int(s.ref)
    return None


def _iso(dt) -> str:
    if dt is None:
        return ""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.replace(microsecond=0).isoformat() + "Z"


def _float(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def list_submissions() -> list[Submission]:
    """Every submission of ours to the competition, newest first."""
    api = _client()
    slug = _slug()
    out: list[Submission] = []
    for page in range(1, MAX_PAGES + 1):

        def fetch(page=page):
            with _quiet():
                return api.competition_submissions(slug, page_number=page, page_size=PAGE_SIZE) or []

        rows = _with_retries(fetch, f"listing submissions of {slug}")
        for s in rows:
            if s is None:
                continue
            out.append(
                Submission(
                    ref=int(s.ref),
                    date=_iso(s.date),
                    file_name=s.file_name or "",
                    description=s.description or "",
                    status=s.status.name.lower(),
                    public_score=_float(s.public_score),
                    private_score=_float(s.private_score),
                    error=(s.error_description or None) if s.status.name == "ERROR" else None,
                )
            )
        if len(rows) < PAGE_SIZE:
            break
    return out


def remaining_submissions() -> int | None:
    """Today's remaining submissions (the client's limits call); None if Kaggle does not say."""
    api = _client()
    slug = _slug()

    def fetch():
        with _quiet():
            return api.competition_get_submission_limits(slug)

    try:
        limits = _with_retries(fetch, f"reading the submission limits of {slug}")
    except (KaggleAuthError, KaggleRulesError, KaggleTransientError):
        raise
    except KitError:  # e.g. 404: a service without the limits endpoint
        return None
    return int(limits.num_allowed_now)


def leaderboard() -> list[LeaderboardEntry]:
    """The competition's public leaderboard, best first (rank 1 = top)."""
    api = _client()
    slug = _slug()
    out: list[LeaderboardEntry] = []
    token = None
    for _ in range(MAX_PAGES):

        def fetch(token=token):
            from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

            with api.build_kaggle_client() as kaggle:
                request = ApiGetLeaderboardRequest()
                request.competition_name = slug
                request.page_size = PAGE_SIZE
                if token:
                    request.page_token = token
                return kaggle.competitions.competition_api_client.get_leaderboard(request)

        response = _with_retries(fetch, f"reading the leaderboard of {slug}")
        for row in response.submissions or []:
            out.append(
                LeaderboardEntry(
                    rank=len(out) + 1,
                    team_name=row.team_name or "",
                    score=_float(row.score) or 0.0,
                    date=_iso(row.submission_date),
                )
            )
        token = response.next_page_token
        if not token:
            break
    return out


# ============================================================================ kernels (kit remote)

# how Kaggle words a refusal at the concurrent-session limit ("Maximum batch GPU session count
# of 2 reached."): the kernel is not refused for good, it waits until a session ends
SESSION_LIMIT_WORDS = ("session count", "maximum batch")
# how Kaggle words a refusal for the weekly GPU quota ("Accelerator Quota Exceeded: ..."): the
# kernel is fine, the account has no GPU time left until the quota refills
QUOTA_WORDS = ("quota exceeded",)


class KaggleSessionLimitError(KitError):
    """Kaggle refused a push: the account already runs as many sessions as it may at once."""


class KaggleQuotaError(KitError):
    """Kaggle refused a push: this week's GPU quota is used up."""


def _refused(e: Exception) -> KaggleSessionLimitError | None:
    """The session-limit refusal an exception or push error carries, if it is one."""
    text = scrub(str(e))
    return KaggleSessionLimitError(text) if any(w in text.lower() for w in SESSION_LIMIT_WORDS) else None


def push_kernel(folder: Path) -> tuple[str, int]:
    """Push the kernel in `folder` (kernel-metadata.json + its code_file) and start it.

    Returns (ref 'user/slug' from the metadata's id, the version number the push created). A
    push answered with an `error` or with any invalid*Sources is a failure (KitError): Kaggle
    would run the script without its data. The concurrent-session limit is
    KaggleSessionLimitError, the weekly GPU quota KaggleQuotaError.
    """
    api = _client()
    # the ref is the metadata's id: Kaggle's own `ref` answer has varied ("/code/user/slug")
    ref = json.loads((Path(folder) / "kernel-metadata.json").read_text())["id"]
    name = ref.split("/")[-1]
    before, tries = _kernel_version(api, ref), []

    def once() -> tuple[str, int]:
        tries.append(1)
        # a retry after a lost answer: if Kaggle made the version, do not push (and run) it twice
        now = _kernel_version(api, ref) if len(tries) > 1 else None
        if now is not None and now > (before or 0):
            return ref, now
        try:
            with _quiet():
                result = api.kernels_push(str(folder))
        except Exception as e:  # the limit can come as an HTTP error too
            limit = _refused(e)
            if limit is None:
                raise
            raise limit from None
        if result is None:
            raise KitError(f"Kaggle gave no answer to the push of {name}")
        if result.error:
            said = f"Kaggle refused the push of {name}: {scrub(result.error)}"
            if any(w in said.lower() for w in QUOTA_WORDS):
                raise KaggleQuotaError(said)
            raise _refused(Exception(result.error)) or KitError(said)
        invalid = {
            kind: list(getattr(result, f"invalid_{kind}_sources") or [])
            for kind in ("competition", "dataset", "kernel", "model")
        }
        bad = "; ".join(f"{kind} source(s) {', '.join(v)}" for kind, v in invalid.items() if v)
        if bad:
            raise KitError(f"Kaggle did not accept the push of {name}: invalid {bad}")
        return ref, int(result.version_number)

    return _with_retries(once, f"pushing kernel {name}")


def _kernel_version(api, ref: str) -> int | None:
    """The latest version of kernel `ref` ('user/slug') on Kaggle, None when it has none yet or
    the question fails (the push that follows says what is wrong)."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    owner, slug = ref.split("/")
    request = ApiGetKernelRequest()
    request.user_name, request.kernel_slug = owner, slug
    try:
        with _quiet(), api.build_kaggle_client() as kaggle:
            response = kaggle.kernels.kernels_api_client.get_kernel(request)
        return int(response.metadata.current_version_number) or None
    except Exception:
        return None


def kernel_version(ref: str) -> int | None:
    """The latest version of kernel `ref` ('user/slug') on Kaggle; None when Kaggle has no such
    kernel (it answers 403 "Permission 'kernels.get' was denied", or 404). Unlike the quiet
    check push_kernel makes, every other fault is an error (retried if transient): a caller
    deciding whether to push must not take "could not ask" for "not there"."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    api = _client()
    owner, slug = ref.split("/")

    def once() -> int | None:
        request = ApiGetKernelRequest()
        request.user_name, request.kernel_slug = owner, slug
        try:
            with _quiet(), api.build_kaggle_client() as kaggle:
                response = kaggle.kernels.kernels_api_client.get_kernel(request)
        except Exception as e:
            if _status(e) in (403, 404):  # no such kernel (Kaggle never says which of the two)
                return None
            raise
        return int(response.metadata.current_version_number or 0) or None

    return _with_retries(once, f"looking up kernel {ref}")


def kernel_status(ref: str, version: int | None = None) -> tuple[str, str]:
    """(status, failure message) of kernel `ref` ('user/slug') at `version` (None: the latest).

    status is a KernelWorkerStatus name: QUEUED, RUNNING, COMPLETE, ERROR, CANCEL_REQUESTED,
    CANCEL_ACKNOWLEDGED, NEW_SCRIPT. Right after a push the unversioned status can still be
    the previous session's, so callers pass the version the push returned.
    """
    api = _client()
    label = f"{ref}/{version}" if version else ref

    def once():
        with _quiet():
            return api.kernels_status(label)

    response = _with_retries(once, f"reading the status of kernel {label}")
    status = getattr(response.status, "name", str(response.status))
    return status, scrub(response.failure_message or "")


def kernel_log(ref: str, version: int | None = None) -> str:
    """The session log of kernel `ref` at `version` as Kaggle stores it (often a JSON list of
    {stream_name, time, data} entries; see kit.remote.log_lines)."""
    api = _client()
    label = f"{ref}/{version}" if version else ref

    def once():
        with _quiet():
            return api.kernels_logs(label)

    return _with_retries(once, f"reading the log of kernel {label}") or ""


def kernel_output(ref: str, dest: Path, version: int | None = None) -> list[Path]:
    """Download every output file of kernel `ref` at `version` into `dest` (all pages), and the
    log as <slug>.log. A file cut short by a dropped connection is resumed on the next try
    (HTTP Range); files already complete are not fetched again. Returns the paths written."""
    api = _client()
    label = f"{ref}/{version}" if version else ref
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)

    def once():
        with _quiet():
            files, _ = api.kernels_output(label, str(dest), force=False, quiet=True)
        return [Path(f) for f in files]

    return _with_retries(once, f"downloading the output of kernel {label}")


@dataclass(frozen=True)
class Quota:
    """This week's GPU quota, in seconds: used, reserved (by running sessions), allowed."""

    used_s: float
    reserved_s: float
    total_s: float
    refresh: str  # ISO 8601 UTC, when the week's quota starts again

    @property
    def left_s(self) -> float:
        return max(0.0, self.total_s - self.used_s - self.reserved_s)


def gpu_quota() -> Quota | None:
    """The account's weekly GPU quota (as `kaggle quota` shows it); None if Kaggle does not say."""
    api = _client()

    def once():
        with _quiet():
            return api.quota_view()

    response = _with_retries(once, "reading the GPU quota")
    q = response.gpu_quota
    if q is None or q.total_time_allowed is None:
        return None

    def seconds(t) -> float:
        return t.total_seconds() if t is not None else 0.0

    return Quota(
        seconds(q.time_used),
        seconds(q.time_reserved),
        seconds(q.total_time_allowed),
        _iso(response.quota_refresh_time),
    )
