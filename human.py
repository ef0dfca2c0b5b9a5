"""Sizes, ages, times and intervals written for people: in replies, captions, alerts, listings.

One place, so the panel, the command line and the captions say the same thing the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def size(count: float) -> str:
    """1017 B, 18.0 KB, 24.4 MB."""
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}"
    return f"{count:.1f} GB"


def age(delta: timedelta) -> str:
    """45 min, 5 h, 3 days."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"


def time(moment: datetime | None) -> str:
    """2026-11-26 12:00 UTC, or a dash for 'never'."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def interval(seconds: float) -> str:
    """every '1 min', '6 h'."""
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
