"""The one clock. Everything that needs 'now' takes a Clock (tests pass their own) whose default
is utc_now; times are always timezone-aware UTC inside the bot."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
