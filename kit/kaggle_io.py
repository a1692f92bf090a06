"""Every call to Kaggle, through the official `kaggle` package (KaggleApi). API stub; implementation follows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError


class KaggleAuthError(KitError):
    """Credentials missing or rejected (HTTP 401)."""


class KaggleRulesError(KitError):
    """HTTP 403: the competition rules were not accepted on kaggle.com."""


class KaggleLimitError(KitError):
    """The day's submission allowance is used up."""


class KaggleTransientError(KitError):
    """429 / 5xx / network fault that outlasted the bounded retries."""


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
    raise NotImplementedError


def submit(path: Path, message: str) -> int:
    raise NotImplementedError


def list_submissions() -> list[Submission]:
    raise NotImplementedError


def remaining_submissions() -> int | None:
    raise NotImplementedError


def leaderboard() -> list[LeaderboardEntry]:
    raise NotImplementedError


def username() -> str:
    raise NotImplementedError
