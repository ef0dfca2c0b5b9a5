"""Opening one SQLite connection the way the bot uses it, and small helpers every part of the
database layer shares."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5000


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction means exactly
    # what transaction() says. check_same_thread=False: the lock below serialises access.
    connection = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
    )
    try:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # is it a database?
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def _make_private(path: str) -> None:
    """The database and its -wal and -shm files are for this bot's user only (0600). SQLite
    gives the -wal and -shm files the database file's mode, so creating it 0600 is enough for
    new ones; existing ones are set."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.chmod(f"{path}{suffix}", 0o600)


def _read_only_uri(path: Path) -> str:
    """A read-only SQLite URI for any path: as_uri() percent-encodes spaces, '#', '?' and '%'."""
    return Path(path).absolute().as_uri() + "?mode=ro"


def _row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {name: rows_in(connection, name) for name in tables}


def rows_in(connection: sqlite3.Connection, table: str) -> int:
    """The rows of `table`. A backup's header counts its users with this, and 📊 Statistics
    counts the live users with it too, so the two always count the same people."""
    return connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def _id_list(ids: Sequence[int]) -> str:
    """Telegram ids (integers, checked) as an SQL list: sqlite3 binds no sequences."""
    return ", ".join(str(int(i)) for i in ids) or "0"  # 0: no one (NULL would make NOT IN match nothing)
