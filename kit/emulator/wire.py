"""What the emulator's two services (kit.emulator.competitions, kit.emulator.kernels) say alike on the wire:
the host the client believes it talks to, and Kaggle's dates."""

from __future__ import annotations

from datetime import datetime

from kit.io import utc_now

HOST = "http://localhost"  # what the client believes it talks to (KaggleEnv.LOCAL)


def kaggle_now() -> datetime:
    """Now in UTC as a naive datetime, as the emulator keeps its dates (serialised by kaggle_time)."""
    return utc_now().replace(tzinfo=None)


def kaggle_time(dt: datetime) -> str:
    """The kagglesdk DateTimeSerializer format: 2026-11-25T16:31:50.123Z (naive UTC in)."""
    return dt.isoformat(timespec="milliseconds") + "Z"
