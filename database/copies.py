"""Copies of the whole database: the online backup API (a snapshot, in steps), the file itself
held still (a final backup), and loading a verified backup in its place."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from database.connection import _connect, _identity, _make_private, _read_only_uri
from database.records import DatabaseError

log = logging.getLogger("database")


class Copies:
    """The Database's verbs for whole copies (a mixin: Database holds the connection and lock)."""

    def snapshot_to(self, target: Path, step_pages: int = -1) -> None:
        """Copy this database into a new file `target` with SQLite's online backup API,
        `step_pages` pages per step (-1: all at once, in one read transaction).

        The lock is held during each step, and between steps every thread waiting for it gets its
        turn; writes made through the shared connection meanwhile are carried into the copy by
        SQLite itself, so the result is one consistent state.
        """
        os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))  # private, like the live one
        copy = sqlite3.connect(target)
        try:
            # The copy is scratch until the caller has checked and packed it: no journal and no
            # syncs for it, which roughly halves the time it takes.
            copy.execute("PRAGMA journal_mode=OFF")
            copy.execute("PRAGMA synchronous=OFF")
            with self.lock:
                self._connection.backup(copy, pages=step_pages, progress=self._between_steps)
            copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot snapshot the database: {error}") from error
        finally:
            copy.close()

    def _between_steps(self, status: int, remaining: int, total: int) -> None:
        log.debug("snapshot progress: %d of %d pages copied", total - remaining, total)
        self.lock.yield_to_waiters()

    @contextmanager
    def frozen(self) -> Iterator[Path]:
        """The database file itself, complete and unchanging for as long as the block runs: the
        lock is held, so no write gets in, and the WAL is folded into the file first. For the
        final backup of an instance that has stopped writing: no snapshot to copy first."""
        if self.storage.in_memory:
            raise DatabaseError("an in-memory database has no file")
        with self.lock:
            try:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:
                raise DatabaseError(f"cannot checkpoint the database: {error}") from error
            yield Path(self.storage.path)

    def load_from(self, snapshot: Path, adopt: bool = False) -> None:
        """Replace every page of this database with those of the file `snapshot`, in one step
        under the lock: no reader ever sees half of it, and a failure changes nothing.

        `adopt`: the file itself becomes the database (moved into place, not copied: a copy of
        a large database costs a small machine seconds), for a scratch file whose data is to
        replace everything. On another file system it is copied after all."""
        if adopt and not self.storage.in_memory and self._adopt(snapshot):
            return
        source = sqlite3.connect(_read_only_uri(snapshot), uri=True)
        try:
            with self.lock:
                if not self.storage.in_memory:
                    self._leave_wal_if_alone()
                source.backup(self._connection)
        except sqlite3.Error as error:
            raise DatabaseError(f"could not load the backup into the database: {error}") from error
        finally:
            source.close()

    def _adopt(self, snapshot: Path) -> bool:
        path = self.storage.path
        with self.lock:
            if os.stat(snapshot).st_dev != os.stat(path).st_dev:
                return False
            self._connection.close()  # the last connection: its WAL is folded in and removed
            try:
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                os.replace(snapshot, path)
                _make_private(path)
            finally:
                self._connection = _connect(path)
                self._file_identity = _identity(path)
        return True

    def _leave_wal_if_alone(self) -> None:
        """Out of WAL for a load: pages then go straight to the file instead of through the WAL
        and a checkpoint (twice as fast), and a WAL database could not take pages of another
        size. The rollback journal still makes it all or nothing; migrate() switches WAL back on.
        When another process has the file open (a sqlite3 shell), it stays in WAL."""
        try:
            self._connection.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError as error:
            log.debug("staying in WAL for the load: %s", error)
