"""Backups: snapshot -> verify -> compress -> store -> rotate; verify and restore.

Every backup is kept locally (BACKUP_DIR, and DB_PATH.backup) and sent to every off-site
destination (a Telegram chat, an S3 bucket): encrypted there when BACKUP_PASSPHRASE is set, then
fetched back and verified. An off-site failure never fails the local backup.

Also a command line (backup_cli.py) that works without BOT_TOKEN, on the configured DB_PATH:

    python backup.py create | list | verify [FILE] | restore FILE|latest [--yes] [--from WHERE]
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Sequence

from backup_format import (ENCRYPTED_SUFFIX, BackupError, BackupInfo, encrypt_file, file_name,
                           inspect_snapshot, sha256_of, unpack_and_verify, write_backup_file)
from config import Settings
from database import Database
from destinations import (Destination, DestinationError, LocalFolder, TooBigForTelegram,
                          remove_stale_temporaries, write_atomically)

log = logging.getLogger("backup")

SKIPPABLE_REASONS = ("startup", "scheduled")  # the others always run
STEP_PAGES = 256  # pages copied per snapshot step while holding the lock (1 MB at 4 KB pages)
CHUNK = 1 << 20
PAUSE_KEY = "offsite_paused"
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class CreateResult:
    info: Optional[BackupInfo]  # the new backup as stored locally; None when skipped
    seconds: float
    stored: list[BackupInfo] = field(default_factory=list)  # one per destination that took it
    failures: dict[str, str] = field(default_factory=dict)  # destination name -> why not

    @property
    def skipped(self) -> bool:
        return self.info is None


@dataclass
class DestinationStatus:
    """How storing backups in one destination has gone, for the admin panel and the alerts."""
    last_success: Optional[datetime] = None
    last_error: Optional[str] = None
    last_error_at: Optional[datetime] = None
    failing: bool = False  # the last attempt failed


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class BackupEngine:
    """Creates, lists, verifies and restores backups of one live database."""

    def __init__(self, db: Optional[Database], settings: Settings, offsite: Sequence[Destination] = (),
                 clock: Clock = utc_now, step_pages: int = STEP_PAGES,
                 alert: Optional[Callable[[str], object]] = None):
        self.db, self.settings, self.clock, self.step_pages = db, settings, clock, step_pages
        self.local = LocalFolder(settings.backup_dir)
        self.offsite = list(offsite)
        self.destinations: list[Destination] = [self.local, *self.offsite]
        self.status = {destination.name: DestinationStatus() for destination in self.destinations}
        self.listing_errors: dict[str, str] = {}  # from the last backups() call
        self.plain_copy = Path(f"{settings.db_path}.backup")
        self.alert = alert or (lambda text: None)  # tells the admins; main.py sends it to each
        self._busy = threading.RLock()  # one backup or restore at a time
        self._restored: Optional[BackupInfo] = None  # what the live data equals after a restore
        self._oversize_told = False  # the admins know backups are too big to fetch from Telegram

    # --- create ---

    def create(self, reason: str) -> CreateResult:
        """Take a backup now. Startup and scheduled backups are skipped when nothing changed.

        Raises BackupError when no local backup could be made (the admins are told once per
        streak of failures); off-site failures are in the result, never raised.
        """
        try:
            return self._create(reason)
        except BackupError as error:
            self._failed("local", str(error))
            raise

    def _create(self, reason: str) -> CreateResult:
        with self._busy, self._workdir() as workdir:
            started = time.monotonic()
            created_at = self.clock()
            for folder in (self.local.folder, self.plain_copy.parent):
                remove_stale_temporaries(folder)
            snapshot = workdir / "snapshot.db"
            self._snapshot(snapshot)
            schema_version, row_counts = inspect_snapshot(snapshot)
            digest, db_size = sha256_of(snapshot)
            newest = next(iter(self.local.list()), None) or self._restored
            if reason in SKIPPABLE_REASONS and newest is not None and newest.sha256 == digest:
                log.info("%s backup skipped: nothing changed since %s", reason, newest.name)
                return CreateResult(None, time.monotonic() - started)
            info = BackupInfo(created_at, reason, schema_version, row_counts, digest, db_size,
                              name=file_name(created_at, reason))
            packed = workdir / info.name
            with open(snapshot, "rb") as content:
                # Checked and hashed: from here on only the open descriptor is needed. Unlinked,
                # the complete snapshot cannot outlive a killed process as a stray database.
                snapshot.unlink()
                write_backup_file(content, info, packed)
                stored, failures = self._store(self.local, packed, info)
                if stored:
                    self._keep_plain_copy(content)
            self.local.prune(self.settings.backup_keep)
            sent, offsite_failures = self._send_offsite(packed, info, workdir)
            if not stored:
                elsewhere = f"; it did reach {', '.join(i.destination for i in sent)}" if sent else ""
                raise BackupError(f"the backup could not be written: {failures['local']}{elsewhere}")
            result = CreateResult(stored[0], time.monotonic() - started, stored + sent,
                                  {**failures, **offsite_failures})
            log.info("%s backup %s: %d bytes, %d rows, %.2f s, stored in %s", reason, info.name,
                     stored[0].size, info.total_rows, result.seconds,
                     ", ".join(i.destination for i in result.stored))
            return result

    def _snapshot(self, target: Path) -> None:
        """Copy the live database with SQLite's online backup API, a few pages per step.

        The lock is held during each step, and between steps every thread waiting for it gets its
        turn; writes made through the shared connection meanwhile are carried into the copy by
        SQLite itself, so the result is one consistent state.
        """
        copy = sqlite3.connect(target)
        try:
            # The copy is scratch until it is checked and packed (and the packed file is fsynced):
            # no journal and no syncs for it, which roughly halves the time it takes.
            copy.execute("PRAGMA journal_mode=OFF")
            copy.execute("PRAGMA synchronous=OFF")
            with self.db.lock:
                self.db.connection.backup(copy, pages=self.step_pages, progress=self._between_steps)
            copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        except sqlite3.Error as error:
            raise BackupError(f"cannot snapshot the database: {error}") from error
        finally:
            copy.close()

    def _between_steps(self, status: int, remaining: int, total: int) -> None:
        log.debug("snapshot progress: %d of %d pages copied", total - remaining, total)
        self.db.lock.yield_to_waiters()

    def _store(self, destination: Destination, packed: Path,
               info: BackupInfo) -> tuple[list[BackupInfo], dict[str, str]]:
        """Put one copy; a failure is recorded, alerted once per streak, and returned, not raised."""
        try:
            placed = destination.put(packed, info)
        except (DestinationError, OSError) as error:
            self._failed(destination.name, str(error))
            return [], {destination.name: str(error)}
        self._succeeded(destination.name)
        return [placed], {}

    def _send_offsite(self, packed: Path, info: BackupInfo,
                      workdir: Path) -> tuple[list[BackupInfo], dict[str, str]]:
        """Copies that leave the machine: encrypted when a passphrase is set, then read back."""
        if not self.offsite:
            return [], {}
        paused = self.offsite_paused()
        if paused:
            log.warning("backup %s kept on this machine only: %s", info.name, paused)
            return [], {d.name: f"paused: {paused}" for d in self.offsite}
        copy, copy_info = packed, info
        if self.settings.backup_passphrase:
            copy_info = replace(info, name=info.name + ENCRYPTED_SUFFIX, encrypted=True)
            copy = workdir / copy_info.name
            encrypt_file(packed, copy, self.settings.backup_passphrase)
        sent, failures = [], {}
        expected = sha256_of(copy)[0] if self._should_read_back(info) else None
        for destination in self.offsite:
            placed, failed = self._store(destination, copy, copy_info)
            if placed and expected:
                failed = self._read_back(destination, placed[0], expected)
                placed = [] if failed else placed
            sent += placed
            failures.update(failed)
        return sent, failures

    def _should_read_back(self, info: BackupInfo) -> bool:
        # Not at shutdown: the host gives a stopping instance only seconds.
        return self.settings.backup_read_back and info.reason != "shutdown"

    def _read_back(self, destination: Destination, placed: BackupInfo, expected: str) -> dict[str, str]:
        """Fetch the copy back: a backup nobody has read back is not a backup. Byte for byte
        what was sent (itself made from a verified snapshot), so no decryption is needed."""
        try:
            with self._workdir() as scratch:
                fetched = sha256_of(destination.fetch(placed, scratch))[0]
            if fetched != expected:
                raise DestinationError("the copy read back differs from the one sent")
        except TooBigForTelegram as error:
            if not self._oversize_told:  # once, when backups grow past the limit
                self.alert(f"⚠️ Backup {placed.name} was sent to Telegram, but {error}.")
                self._oversize_told = True
            return {}
        except (DestinationError, OSError) as error:
            message = f"read-back failed: {error}"
            self._failed(destination.name, message)
            return {destination.name: message}
        if destination.name == "telegram":
            self._oversize_told = False  # back under the limit: tell again if it grows past it
        return {}

    def _succeeded(self, name: str) -> None:
        status = self.status[name]
        if status.failing:
            self.alert(f"✅ Backups to {name} work again.")
        status.failing, status.last_success = False, self.clock()

    def _failed(self, name: str, error: str) -> None:
        status = self.status[name]
        log.error("backup not stored in %s: %s", name, error)
        if not status.failing:  # once per streak of failures
            where = "the local backup folder" if name == "local" else name
            self.alert(f"⚠️ A backup could not be stored in {where}: {error}. "
                       "It is retried at the next backup.")
        status.failing, status.last_error, status.last_error_at = True, error, self.clock()

    # --- keeping an empty database from burying a real off-site backup ---

    def offsite_paused(self) -> Optional[str]:
        """Why copies are kept from leaving the machine, or None when they may leave."""
        try:
            return self.db.get_state(PAUSE_KEY) if self.db else None
        except sqlite3.Error:  # before the migration that adds bot_state
            return None

    def pause_offsite(self, why: str) -> None:
        self.db.set_state(PAUSE_KEY, why)

    def resume_offsite(self) -> None:
        self.db.set_state(PAUSE_KEY, None)

    def _keep_plain_copy(self, content: BinaryIO) -> None:
        """DB_PATH + '.backup': the newest snapshot as a plain SQLite file (the seed's path)."""
        content.seek(0)
        try:
            write_atomically(self.plain_copy, lambda out: shutil.copyfileobj(content, out, CHUNK))
        except OSError as error:
            log.warning("could not update %s: %s", self.plain_copy, error.strerror or error)

    # --- list and verify ---

    def backups(self, only: Optional[str] = None) -> list[BackupInfo]:
        """Every backup in every destination (or only the one named), newest first by its own
        created-at. A destination that cannot be listed is skipped and noted in listing_errors."""
        found, self.listing_errors = [], {}
        for destination in self.destinations:
            if only and destination.name != only:
                continue
            try:
                found.extend(destination.list())
            except (DestinationError, OSError) as error:
                log.warning("cannot list backups in %s: %s", destination.name, error)
                self.listing_errors[destination.name] = str(error)
        return sorted(found, key=lambda info: info.created_at, reverse=True)

    def verify(self, source: Path | BackupInfo, thorough: bool = False) -> BackupInfo:
        """Check a backup (checksum, integrity, tables, schema); returns its info."""
        with self._workdir() as workdir:
            info, _ = self._unpack(source, workdir, thorough)
            return info

    def _unpack(self, source: Path | BackupInfo, workdir: Path,
                thorough: bool = False) -> tuple[BackupInfo, Path]:
        """Fetch, decompress and verify a backup; returns its info and the verified SQLite file."""
        passphrase = self.settings.backup_passphrase
        if not isinstance(source, BackupInfo):
            return unpack_and_verify(Path(source), workdir, thorough, passphrase)
        destination = next(d for d in self.destinations if d.name == source.destination)
        try:
            path = destination.fetch(source, workdir)
        except (DestinationError, OSError) as error:
            raise BackupError(f"cannot fetch {source.name} from {source.destination}: {error}") from error
        info, snapshot = unpack_and_verify(path, workdir, thorough, passphrase)
        return replace(info, name=source.name, destination=source.destination,
                       location=source.location, size=source.size), snapshot

    # --- restore ---

    def restore(self, source: Path | BackupInfo, *, safety_backup: bool = True,
                resume_offsite: bool = True) -> BackupInfo:
        """Replace the live data with a verified backup, after a 'pre-restore' safety backup.

        Every refusal raises BackupError and leaves the live database untouched. A restore asked
        for by a person also lets copies leave the machine again (see pause_offsite).
        """
        with self._busy, self._workdir() as workdir:
            info, snapshot = self._unpack(source, workdir)
            if safety_backup and not self.db.is_empty():
                try:
                    self.create("pre-restore")
                except (BackupError, DestinationError, OSError) as error:
                    raise BackupError(f"the safety backup failed, so nothing was restored: {error}") from error
            self._load_into_live(snapshot)
            self.db.migrate()
            if resume_offsite:
                self.resume_offsite()
            self._restored = info
            log.info("restored %s (%s, %d rows) from %s", info.name, info.reason,
                     info.total_rows, info.destination)
            return info

    def _load_into_live(self, snapshot: Path) -> None:
        source = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
        try:
            with self.db.lock:
                live = self.db.connection
                # Out of WAL for the copy: pages then go straight to the file instead of through
                # the WAL and a checkpoint (twice as fast), and a WAL database could not take
                # pages of another size. The rollback journal still makes it all or nothing.
                # migrate() switches WAL back on.
                if not self.db.storage.in_memory:
                    _leave_wal_if_alone(live)
                source.backup(live)  # one step, under the lock: no reader sees half of it
        except sqlite3.Error as error:
            raise BackupError(f"could not load the backup into the database: {error}") from error
        finally:
            source.close()

    def restore_newest(self) -> tuple[Optional[BackupInfo], list[tuple[BackupInfo, str]]]:
        """Restore the newest backup that verifies, trying older ones when it does not.

        Returns what was restored (None when nothing could be) and each candidate passed over
        before it, with the reason.
        """
        passed_over = []
        for candidate in self.backups() + self._plain_copy_candidate():
            try:
                # resume_offsite=False: a backup taken while copies were paused stays paused
                return self.restore(candidate, safety_backup=False, resume_offsite=False), passed_over
            except BackupError as error:
                log.warning("cannot restore %s (%s): %s", candidate.name, candidate.destination, error)
                passed_over.append((candidate, str(error)))
        return None, passed_over

    def _plain_copy_candidate(self) -> list[BackupInfo]:
        if not self.plain_copy.is_file():
            return []
        stat = self.plain_copy.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
        return [BackupInfo(modified, "plain copy", 0, {}, "", 0, stat.st_size,
                           "local", str(self.plain_copy), self.plain_copy.name)]

    @contextmanager
    def _workdir(self) -> Iterator[Path]:
        """A private scratch folder beside the backups (same file system: links, not copies)."""
        folder = Path(self.settings.backup_dir)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            scratch = tempfile.TemporaryDirectory(prefix=f".tmp-work-{os.getpid()}-", dir=folder)
        except OSError:  # an unusable backup folder must not stop verify or restore
            scratch = tempfile.TemporaryDirectory(prefix=f"bot-backup-{os.getpid()}-")
        with scratch as path:
            yield Path(path)


def _leave_wal_if_alone(connection: sqlite3.Connection) -> None:
    """Leave WAL when no other process has the database open (e.g. a sqlite3 shell); else stay."""
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as error:
        log.debug("staying in WAL for the restore: %s", error)


if __name__ == "__main__":
    from backup_cli import cli

    sys.exit(cli())
