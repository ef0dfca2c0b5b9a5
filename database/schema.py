"""Checking a database file that comes from outside (a backup) before it may replace the live
one: intact, and exactly the schema this code's migrations make for its version; an older one
migrated on a copy first (the dry run of a restore)."""

from __future__ import annotations

import functools
import re
import sqlite3
from pathlib import Path

from database.connection import MEMORY, _connect, _read_only_uri, _row_counts
from database.core import Database
from database.migrations import find_migrations
from database.records import (
    DamagedDatabaseError,
    DatabaseError,
    FileFacts,
    ForeignDatabaseError,
    SchemaTooNewError,
    Storage,
)

REQUIRED_TABLES = ("users", "tracking")  # a database without them is not one of this bot's


def inspect_file(path: Path, thorough: bool = False, exact: bool = True, check: bool = True) -> FileFacts:
    """Check that the SQLite file at `path` is intact and is a database of this bot: its schema
    exactly what this code's migrations make for its version (tables, columns, indexes, and
    nothing else: no trigger or view of anyone else's). `exact=False` (for snapshots of the
    live database) reports a difference in the facts instead of refusing.

    quick_check reads every page and b-tree (about ten times faster than integrity_check, which
    also matches each index against its table); `thorough` runs the full integrity_check;
    `check=False` none (for a snapshot of the live database taken in a hurry: a restore checks it).
    Raises DamagedDatabaseError, ForeignDatabaseError or SchemaTooNewError, each one line.
    """
    newest = len(find_migrations())
    try:
        connection = sqlite3.connect(_read_only_uri(path), uri=True)
    except sqlite3.Error as error:
        raise DamagedDatabaseError(str(error)) from error
    try:
        pragma = "integrity_check" if thorough else "quick_check"
        results = [row[0] for row in connection.execute(f"PRAGMA {pragma}(5)")] if check else ["ok"]
        if results != ["ok"]:
            raise DamagedDatabaseError(f"the integrity check failed ({results[0].splitlines()[0]})")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        counts = _row_counts(connection)
        missing = [name for name in REQUIRED_TABLES if name not in counts]
        if missing:
            raise ForeignDatabaseError(f"the table {missing[0]} is missing")
        if version > newest:
            raise SchemaTooNewError(
                f"schema version {version} is newer than this code knows ({newest})", version, newest
            )
        difference = _schema_difference(_schema(connection), expected_schema(version), version)
        if difference and exact:
            raise ForeignDatabaseError(difference)
        return FileFacts(version, counts, difference)
    except sqlite3.DatabaseError as error:
        raise DamagedDatabaseError(str(error)) from error
    finally:
        connection.close()


def upgraded_copy(path: Path, version: int, target: Path) -> Path:
    """The dry run of a restore's migrations: when the database at `path` (which passed
    inspect_file with schema `version`) is older than this code, copy it to `target`, migrate
    the copy and check it again: it must then be exactly this code's schema. Returns the file to
    restore from, `path` itself when it is current; `path` is never changed. Raises
    MigrationError or DatabaseError, each one line."""
    if version == len(find_migrations()):
        return path
    source = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot copy the backup for its migrations: {error}") from error
    finally:
        source.close()
    candidate = Database(_connect(str(target)), Storage("file", str(target)))
    try:
        candidate.migrate()
        with candidate.lock:
            candidate._leave_wal_if_alone()  # one self-contained file, read-only afterwards
    finally:
        candidate.close()
    inspect_file(target)
    return target


def _schema(connection: sqlite3.Connection) -> set[tuple]:
    """Every object of a database's schema: (type, name, table, its SQL), the SQL with comments
    and spacing taken out, so that two databases made by the same migrations compare equal."""
    return {
        (kind, name, table, _normalised(sql))
        for kind, name, table, sql in connection.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
        )
    }


def _normalised(sql: str | None) -> str | None:
    if sql is None:
        return None
    sql = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"\s*([(),;])\s*", r"\1", re.sub(r"\s+", " ", sql)).strip()


@functools.cache
def expected_schema(version: int) -> frozenset:
    """The schema this code's migrations 1..`version` make, built in memory."""
    reference = Database(_connect(MEMORY), Storage("memory", MEMORY))
    try:
        reference.migrate(up_to=version)
        with reference.lock:
            return frozenset(_schema(reference._connection))
    finally:
        reference.close()


def _schema_difference(found: set, expected: frozenset, version: int) -> str | None:
    """None when the schemas are the same; else the first difference, in words (tables first:
    an index follows from its table)."""

    def by_name(objects) -> dict:
        return {(kind, name): sql for kind, name, _, sql in objects}

    def order(key: tuple) -> tuple:
        return (
            ["table", "view", "trigger", "index"].index(key[0])
            if key[0] in ("table", "view", "trigger", "index")
            else 4,
            key[1],
        )

    found, expected = by_name(found), by_name(expected)
    for kind, name in sorted(found.keys() - expected.keys(), key=order):
        return (
            f"it holds {'an' if kind == 'index' else 'a'} {kind} {name} that schema version "
            f"{version} of this bot does not have"
        )
    for kind, name in sorted(expected.keys() - found.keys(), key=order):
        return f"the {kind} {name} of schema version {version} is missing"
    for kind, name in sorted(found.keys(), key=order):
        if found[kind, name] != expected[kind, name]:
            return f"the {kind} {name} is not the one schema version {version} makes"
    return None
