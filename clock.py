"""The one clock. Everything that needs 'now' takes a Clock (tests pass their own) whose default
is utc_now; times are always timezone-aware UTC inside the bot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
