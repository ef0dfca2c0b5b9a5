"""The Database: one connection, shared by every thread behind a fair lock (locks.FairLock),
every unit of work a short transaction under it; the schema and its migrations; the bot's own
state (bot_state). Its other verbs are in copies.py (whole copies) and people.py (people)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from database.connection import _identity, _row_counts
from database.copies import Copies
from database.migrations import MIGRATIONS_DIR, find_migrations
from database.people import People
from database.records import Migration, MigrationError, SchemaTooNewError, Storage
from locks import FairLock

log = logging.getLogger("database")


class Database(Copies, People):
    """The bot's database. Every SQL verb the project uses is a method of it (here, and in the
    Copies and People parts it is made of)."""

    def __init__(self, connection: sqlite3.Connection, storage: Storage):
        self._connection = connection  # shared by every thread: only ever used under the lock
        self.storage = storage
        self.lock = FairLock()
        self._file_identity = _identity(storage.path) if not storage.in_memory else None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short unit of work: the lock, BEGIN IMMEDIATE, then COMMIT or ROLLBACK."""
        with self.lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def file_is_live(self) -> bool:
        """Whether the file at DB_PATH is still the one this connection writes: someone may have
        deleted, replaced or moved it under the running bot (the connection then writes to a
        file nobody else can open, and a copy of the file at DB_PATH would miss its data)."""
        return self._file_identity is not None and _identity(self.storage.path) == self._file_identity

    def close(self) -> None:
        with self.lock:
            self._connection.close()

    def change_count(self) -> int:
        """Rows inserted, changed or deleted through this connection since it opened: what the
        on-change backups watch (every write of the bot goes through this one connection)."""
        with self.lock:
            return self._connection.total_changes

    def is_empty(self) -> bool:
        """True when the database holds no tables at all (a new or zero-length file)."""
        with self.lock:
            return self._connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0

    def health_problem(self) -> str | None:
        """None when PRAGMA quick_check passes; otherwise what it (or SQLite) reported."""
        try:
            with self.lock:
                rows = self._connection.execute("PRAGMA quick_check(3)").fetchall()
        except sqlite3.DatabaseError as error:
            return str(error)
        results = [row[0] for row in rows]
        if results == ["ok"]:
            return None
        first_lines = [line for result in results for line in result.splitlines() if line.strip()]
        return "quick_check: " + "; ".join(first_lines[:3])[:300]

    def schema_version(self) -> int:
        with self.lock:
            return self._connection.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, migrations_dir: Path = MIGRATIONS_DIR, up_to: int | None = None) -> list[str]:
        """Apply the pending migrations in order (up to version `up_to`), each in its own
        transaction.

        Returns the file names applied. A failing migration is rolled back and raises
        MigrationError naming its file; earlier ones stay applied. A database newer than the
        newest migration raises SchemaTooNewError and is not modified.
        """
        migrations = [m for m in find_migrations(migrations_dir) if up_to is None or m.version <= up_to]
        newest = migrations[-1].version if migrations else 0
        current = self.schema_version()
        if current > newest:
            raise SchemaTooNewError(
                f"the database has schema version {current}, newer than this code knows "
                f"({newest}); it was left untouched: run the newer bot or restore an older backup"
            )
        self._use_wal()  # only now: a refused database is left byte for byte as it was
        applied = []
        for migration in migrations:
            if migration.version > current:
                self._apply(migration)
                applied.append(migration.path.name)
        return applied

    def _use_wal(self) -> None:
        if self.storage.in_memory:
            return
        with self.lock:
            mode = self._connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            log.warning("WAL journal not available on this storage; using %s", mode)

    def _apply(self, migration: Migration) -> None:
        sql = migration.path.read_text(encoding="utf-8")
        # executescript would COMMIT a transaction opened with execute(); so BEGIN and COMMIT
        # are part of the script, and a failure leaves it open for the ROLLBACK below.
        script = f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {migration.version};\nCOMMIT;"
        with self.lock:
            try:
                self._connection.executescript(script)
            except sqlite3.Error as error:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise MigrationError(
                    f"migration {migration.path.name} failed and was rolled back: {error}"
                ) from error
        log.log(
            logging.DEBUG if self.storage.in_memory and self.storage.reason is None else logging.INFO,
            "applied migration %s",
            migration.path.name,
        )  # quiet for the reference schemas

    def get_state(self, key: str) -> str | None:
        """The value remembered under `key`; None when there is none (or, before the migration
        that adds bot_state, no table for it yet)."""
        try:
            with self.lock:
                row = self._connection.execute("SELECT value FROM bot_state WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return None
        return None if row is None else row[0]

    def set_state(self, key: str, value: str | None) -> None:
        """Remember `value` under `key`; None forgets it."""
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM bot_state WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO bot_state (key, value) VALUES (?, ?) ON CONFLICT(key)"
                    " DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def size_bytes(self) -> int:
        """The database's size: its pages (in file mode, the WAL may hold a little more)."""
        with self.lock:
            pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
            return pages * self._connection.execute("PRAGMA page_size").fetchone()[0]

    def table_row_counts(self) -> dict[str, int]:
        with self.transaction() as db:
            return _row_counts(db)
