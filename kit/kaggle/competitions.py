"""The competition's side of Kaggle, through kit.kaggle.client: the data download, submissions
(upload, list, the day's remaining allowance) and the public leaderboard.

Every operation builds a fresh client (`client._client`), runs under the one retry policy
(`client._with_retries`) and raises the client module's KitErrors (KaggleAuthError,
KaggleRulesError, KaggleLimitError, KaggleTransientError / KaggleGaveUpError).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kit import config, data
from kit.errors import KitError
from kit.io import exclusive, utc_now
from kit.kaggle import client

PAGE_SIZE = 100  # submissions / leaderboard rows per request
MAX_PAGES = 50
# a retried submit first looks for a submission the lost answer may have created
RECENT_S = 5.0


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


def download(force: bool = False, echo=print) -> str:
    """Fetch the competition zip with KaggleApi, then verify and install it (kit.data.install).

    Already installed and not `force`: says so and returns without touching the network.
    The zip is fetched into data_dir()/.download-<slug>/ (a partial file there is resumed
    with an HTTP Range request on the next try, never installed) and removed once installed.
    Returns data.install's summary.
    """
    slug = client._slug()
    if data.is_installed() and not force:
        return _already(slug)
    api = client._client()
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
        with client._quiet():
            api.competition_download_files(slug, path=str(partial), force=False, quiet=quiet)

    client._with_retries(fetch, f"downloading {slug}")
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
    api = client._client()
    slug = client._slug()

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
        with client._quiet() as out:
            result = api.competition_submit(str(path), message, slug, quiet=True)
        said = client.scrub(out.getvalue().strip().splitlines()[-1]) if out.getvalue().strip() else ""
        if result is None or result.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise client.KaggleTransientError(
                f"the upload of {path.name} failed" + (f" ({said})" if said else "")
            )
        if not getattr(result, "ref", 0):
            raise KitError(
                f"Kaggle did not accept {path.name}: {client.scrub(result.message or 'no reason given')}"
            )
        return int(result.ref)

    return client._with_retries(once, f"submitting {path.name} to {slug}")


def _recent_submission(api, slug: str, file_name: str, message: str, since: datetime) -> int | None:
    """The ref of a submission of `file_name` with `message` made at or after `since`, if any."""
    with client._quiet():
        rows = api.competition_submissions(slug, page_number=1, page_size=PAGE_SIZE) or []
    for s in rows:
        if s is None or s.date is None:
            continue
        date = s.date if s.date.tzinfo else s.date.replace(tzinfo=UTC)
        if date >= since and s.file_name == file_name and (s.description or "") == (message or ""):
            return int(s.ref)
    return None


def _float(value) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def list_submissions() -> list[Submission]:
    """Every submission of ours to the competition, newest first."""
    api = client._client()
    slug = client._slug()
    out: list[Submission] = []
    for page in range(1, MAX_PAGES + 1):

        def fetch(page=page):
            with client._quiet():
                return api.competition_submissions(slug, page_number=page, page_size=PAGE_SIZE) or []

        rows = client._with_retries(fetch, f"listing submissions of {slug}")
        for s in rows:
            if s is None:
                continue
            out.append(
                Submission(
                    ref=int(s.ref),
                    date=client._iso(s.date),
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
    api = client._client()
    slug = client._slug()

    def fetch():
        with client._quiet():
            return api.competition_get_submission_limits(slug)

    try:
        limits = client._with_retries(fetch, f"reading the submission limits of {slug}")
    except (client.KaggleAuthError, client.KaggleRulesError, client.KaggleTransientError):
        raise
    except KitError:  # e.g. 404: a service without the limits endpoint
        return None
    return int(limits.num_allowed_now)


def leaderboard() -> list[LeaderboardEntry]:
    """The competition's public leaderboard, best first (rank 1 = top)."""
    api = client._client()
    slug = client._slug()
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

        response = client._with_retries(fetch, f"reading the leaderboard of {slug}")
        for row in response.submissions or []:
            out.append(
                LeaderboardEntry(
                    rank=len(out) + 1,
                    team_name=row.team_name or "",
                    score=_float(row.score) or 0.0,
                    date=client._iso(row.submission_date),
                )
            )
        token = response.next_page_token
        if not token:
            break
    return out
