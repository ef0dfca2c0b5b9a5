"""Opening the database where it is meant to live: the storage probe first, an in-memory
database (loudly, with the reason kept) when the folder cannot hold one, and a damaged file moved
aside, never deleted."""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

from database.connection import MEMORY, _connect, _make_private, _read_only_uri
from database.core import Database
from database.records import DamagedDatabaseError, Storage
from files import temporary_name

log = logging.getLogger("database")


def open_database(path: str) -> Database:
    """Open the database at `path`, or an in-memory one when the folder fails the probe.

    Raises DamagedDatabaseError when the storage works but the file there is not a usable
    database: that is a job for restore, not a reason to run from memory.
    """
    problem = probe_storage(path)
    if problem is not None:
        log.error(
            "storage at %s is not usable (%s); running on an IN-MEMORY database: "
            "data will be lost when the process stops",
            path,
            problem,
        )
        return Database(_connect(MEMORY), Storage("memory", MEMORY, problem))
    try:
        _make_private(path)
        connection = _connect(path)
    except sqlite3.DatabaseError as error:
        raise DamagedDatabaseError(f"{path} is not a usable SQLite database: {error}") from error
    return Database(connection, Storage("file", path))


def probe_storage(path: str) -> str | None:
    """None when the folder of `path` can keep a SQLite database; otherwise the reason why not.

    Writes, fsyncs, reads back and deletes a probe file, then does the same through SQLite on a
    scratch database (WAL included), so a folder that accepts files but not SQLite's locking is
    caught too. The real database file is not touched.
    """
    target = Path(path)
    folder = target.parent
    scratch = folder / temporary_name(f"storage-probe-{uuid.uuid4().hex[:8]}")
    scratch_db = Path(f"{scratch}.db")
    try:
        if target.exists() and not target.is_file():
            return f"{target} exists and is not a regular file"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return f"{folder} exists and is not a folder (Not a directory)"
        except OSError as error:
            return f"cannot create the folder {folder}: {error.strerror}"
        try:
            _probe_file(scratch)
        except OSError as error:
            return f"cannot write, sync and read back a file in {folder}: {error.strerror or error}"
        try:
            _probe_sqlite(scratch_db)
        except sqlite3.Error as error:
            return f"SQLite cannot keep a database in {folder}: {error}"
        return None
    finally:
        for leftover in (scratch, scratch_db, Path(f"{scratch_db}-wal"), Path(f"{scratch_db}-shm")):
            try:
                leftover.unlink()
            except OSError:
                pass


def _probe_file(path: Path) -> None:
    payload = os.urandom(64)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.read_bytes() != payload:
        raise OSError(f"read back different bytes from {path}")


def _probe_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE probe (value TEXT)")
        token = uuid.uuid4().hex
        connection.execute("INSERT INTO probe VALUES (?)", (token,))
        if connection.execute("SELECT value FROM probe").fetchone() != (token,):
            raise sqlite3.OperationalError("probe row read back wrong")
    finally:
        connection.close()


def open_or_move_aside(path: str, now: datetime) -> tuple[Database, Path | None]:
    """Open the database at `path` (or run in memory when the storage fails its probe). A file
    there that SQLite cannot use, or that fails quick_check, is moved aside with its -wal and
    -shm files, none deleted and none changed, and a new, empty database is opened in its place.
    Returns the database and where a damaged one went (None when it was fine)."""
    if probe_storage(path) is not None:
        return open_database(path), None  # memory: open_database says why
    problem = _damage(path)
    if problem is None:
        return open_database(path), None
    moved = move_aside(path, now)
    log.error("the database is damaged (%s); moved it aside to %s", problem, moved)
    return open_database(path), moved


def _damage(path: str) -> str | None:
    """What is wrong with the database file at `path`, or None (a missing or empty file is
    fine). Read-only: a read-write connection would checkpoint the WAL into a damaged file
    when it closes, and the WAL may hold the last good writes."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    try:
        connection = sqlite3.connect(_read_only_uri(Path(path)), uri=True)
    except sqlite3.Error as error:
        return str(error)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        results = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as error:
        return f"{path} is not a usable SQLite database: {error}"
    finally:
        connection.close()
    if results == ["ok"]:
        return None
    first_lines = [line for result in results for line in result.splitlines() if line.strip()]
    return "quick_check: " + "; ".join(first_lines[:3])[:300]


def move_aside(path: str, now: datetime) -> Path:
    """Rename a damaged database (and its -wal and -shm files) to PATH.corrupt-<UTC time>."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(f"{path}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    return target
