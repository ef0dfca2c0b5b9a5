"""Sizes written for people, in the command line's and the logs' English; i18n.Reader writes
them in each reader's language from the same numbers."""

from __future__ import annotations


def size(count: float) -> str:
    """1017 B, 18.0 KB, 24.4 MB."""
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}"
    return f"{count:.1f} GB"
