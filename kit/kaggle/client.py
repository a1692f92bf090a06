"""The Kaggle client every call to Kaggle goes through (kit.kaggle.competitions, kit.kaggle.kernels):
the official `kaggle` package (KaggleApi), the credentials, secret scrubbing, error translation,
retries and per-session timeouts.

The client is imported lazily and a fresh KaggleApi is built and authenticated for each
operation, from the environment as it is *now*: kaggle 2.x authenticates at `import kaggle`
and freezes its config folder and endpoint in class attributes at import time, so we set
them again on each instance (that is what lets the tests point the client at one local
emulator after another, see kit.emulator.server).

Faults become KitError subclasses with a message that says what to do:

    KaggleAuthError       no credentials, or Kaggle rejected them (HTTP 401)
    KaggleRulesError      HTTP 403: the competition rules are not accepted on kaggle.com
    KaggleLimitError      the day's submission allowance is used up
    KaggleTransientError  HTTP 429 / 5xx / network error / dropped connection, still failing
                          after bounded retries with exponential backoff (Retry-After honoured):
                          raised as KaggleGaveUpError, whose `then` rewords the next step
    KaggleSessionLimitError, KaggleQuotaError   a kernel push refused (kit remote; they live in
                          kit.kaggle.kernels)

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
import stat
import sys
from datetime import UTC
from pathlib import Path

from kit import config
from kit.errors import KitError

TOKEN_HELP = (
    "create a token on kaggle.com (Settings -> API -> Create New Token), save the "
    "downloaded kaggle.json as ~/.kaggle/kaggle.json and run `chmod 600 ~/.kaggle/kaggle.json`; "
    "or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)
RETRY_AFTER_CAP_S = 120.0
BACKOFF_CAP_S = 30.0
# how Kaggle words a refusal at the daily limit ("... used its daily Submission allowance ...")
LIMIT_WORDS = ("allowance", "daily submission", "submission limit")


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


# ============================================================================ who, and the client's dates


def username() -> str:
    """Whose credentials are in use (never the key)."""
    return str(_client().config_values.get("username", ""))


def _iso(dt) -> str:
    """A datetime of the client's (naive = UTC) as ISO 8601 UTC to the second, "" for None."""
    if dt is None:
        return ""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.replace(microsecond=0).isoformat() + "Z"
