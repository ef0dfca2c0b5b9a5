"""What the database layer hands out and raises: records, errors, and times as they are stored
(UTC text, 'YYYY-MM-DD HH:MM:SS', SQLite's own format, so the sqlite3 shell shows and compares
them without help)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class DatabaseError(Exception):
    """Base for the errors this module reports in plain words."""


class DamagedDatabaseError(DatabaseError):
    """The database file exists but SQLite cannot use it (not a database, or corrupt)."""


class MigrationError(DatabaseError):
    """A migration failed (the database is left as it was) or the migrations folder is wrong."""


class SchemaTooNewError(MigrationError):
    """The database was written by a newer version of the bot; it is refused and left untouched."""

    def __init__(self, message: str, version: int = 0, newest: int = 0):
        super().__init__(message)
        self.version, self.newest = version, newest


class ForeignDatabaseError(DatabaseError):
    """A SQLite file that works but is not a database of this bot."""


@dataclass(frozen=True)
class FileFacts:
    """What inspect_file found in a database file that passed its checks."""

    schema_version: int
    row_counts: dict[str, int]
    foreign: str | None = None  # with exact=False: what in it this bot's migrations do not make


@dataclass(frozen=True)
class Storage:
    mode: str  # "file" or "memory"
    path: str  # the database file, or ":memory:"
    reason: str | None = None  # why the bot fell back to memory

    @property
    def in_memory(self) -> bool:
        return self.mode == "memory"


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path


@dataclass(frozen=True)
class UserState:
    """What the gate needs to know about a user right after recording their message."""

    user_id: int
    blocked_until: datetime | None
    block_reason: str | None
    block_notified: bool
    recent_messages: int  # messages in the flood window, this one included

    def is_blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
