"""The backup engine: snapshot -> verify -> compress -> store -> rotate; verify and restore.

Every backup is kept locally (BACKUP_DIR, and DB_PATH.backup) and sent to every destination off
the machine: encrypted there when BACKUP_PASSPHRASE is set, then fetched back and compared. An
off-site failure never fails the local backup. The engine knows destinations only through their
interface (destinations.py) and never asks which kind one is.

Its surface, for the startup, the admin panel and the command line, returns plain records:
create, listing, overview, exported_newest, verify, restore, restore_newest, and the pause.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Sequence

from backup_format import (ENCRYPTED_SUFFIX, BackupError, BackupInfo, encrypt_file, file_name,
                           inspect_snapshot, sha256_of, unpack_and_verify, write_backup_file)
from clock import Clock, utc_now
from config import Settings
from database import Database, DatabaseError
from destinations import Destination, DestinationError, LocalFolder, TooLarge
from files import copy_stream, remove_stale_temporaries, scratch_folder, write_atomically

log = logging.getLogger("backup")

SKIPPABLE_REASONS = ("startup", "scheduled")  # the others always run
STEP_PAGES = 256  # pages copied per snapshot step while holding the lock (1 MB at 4 KB pages)
PAUSE_KEY = "offsite_paused"
Alert = Callable[[str], object]


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


@dataclass(frozen=True)
class Unreachable:
    """A destination that could not be listed."""
    destination: str
    error: str
    offsite: bool


@dataclass(frozen=True)
class Listing:
    backups: list[BackupInfo]  # newest first, by each backup's own created-at
    unreachable: list[Unreachable] = field(default_factory=list)


@dataclass(frozen=True)
class Refusal:
    """A backup that could not be restored, and why."""
    info: BackupInfo
    reason: str
    offsite: bool

    def __str__(self) -> str:
        return f"{self.info.name} ({self.info.destination}): {self.reason}"


@dataclass(frozen=True)
class StartupRestore:
    restored: Optional[BackupInfo]  # None: nothing could be restored
    passed_over: list[Refusal]  # candidates tried before, newest first
    unreachable: list[Unreachable]


@dataclass(frozen=True)
class Overview:
    """The backup state, for the admin panel."""
    newest: Optional[BackupInfo]  # the newest local backup
    kept: int  # local backups kept
    keep: int  # BACKUP_KEEP
    destinations: dict[str, DestinationStatus]
    paused: Optional[str]


class BackupEngine:
    """Creates, lists, verifies and restores backups of one live database."""

    def __init__(self, db: Optional[Database], settings: Settings, offsite: Sequence[Destination] = (),
                 clock: Clock = utc_now, step_pages: int = STEP_PAGES, alert: Optional[Alert] = None):
        self.db, self.settings, self.clock, self.step_pages = db, settings, clock, step_pages
        self.local = LocalFolder(settings.backup_dir)
        self._offsite = list(offsite)
        self._destinations: list[Destination] = [self.local, *self._offsite]
        self._status = {destination.name: DestinationStatus() for destination in self._destinations}
        self.plain_copy = Path(f"{settings.db_path}.backup")
        self.alert = alert or (lambda text: None)  # tells the admins; main.py sends it to each
        self._busy = threading.RLock()  # one backup or restore at a time
        self._restored: Optional[BackupInfo] = None  # what the live data equals after a restore
        self._too_large_told: set[str] = set()  # destinations whose copies cannot be fetched back

    # --- create ---

    def create(self, reason: str) -> CreateResult:
        """Take a backup now. Startup and scheduled backups are skipped when nothing changed.

        Raises BackupError when no local backup could be made (the admins are told once per
        streak of failures); off-site failures are in the result, never raised.
        """
        try:
            return self._create(reason)
        except BackupError as error:
            self._failed(self.local.name, str(error))
            raise

    def _create(self, reason: str) -> CreateResult:
        with self._busy, scratch_folder(self.local.folder) as workdir:
            started = time.monotonic()
            created_at = self.clock()
            for folder in (self.local.folder, self.plain_copy.parent):
                remove_stale_temporaries(folder)
            snapshot = workdir / "snapshot.db"
            try:
                self.db.snapshot_to(snapshot, self.step_pages)
            except DatabaseError as error:
                raise BackupError(str(error)) from error
            schema_version, row_counts = inspect_snapshot(snapshot, exact=False)
            digest, db_size = sha256_of(snapshot)
            newest = self.newest_local() or self._restored
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
                    self._rotate(self.local)
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
        if not self._offsite:
            return [], {}
        paused = self.offsite_paused()
        if paused:
            log.warning("backup %s kept on this machine only: %s", info.name, paused)
            return [], {d.name: f"paused: {paused}" for d in self._offsite}
        copy, copy_info = self._leaving_copy(packed, info, workdir)
        sent, failures = [], {}
        expected = sha256_of(copy)[0] if self._should_read_back(info) else None
        for destination in self._offsite:
            placed, failed = self._store(destination, copy, copy_info)
            if placed and expected:
                failed = self._read_back(destination, placed[0], expected)
                placed = [] if failed else placed
            if placed:
                self._rotate(destination)
            sent += placed
            failures.update(failed)
        return sent, failures

    def _leaving_copy(self, packed: Path, info: BackupInfo, workdir: Path) -> tuple[Path, BackupInfo]:
        """The copy of a backup that may leave the machine: encrypted when BACKUP_PASSPHRASE is
        set. The one place that decides this, for off-site copies and downloads alike."""
        passphrase = self.settings.backup_passphrase
        if not passphrase:
            return packed, info
        sealed_info = replace(info, name=info.name + ENCRYPTED_SUFFIX, encrypted=True)
        sealed = workdir / sealed_info.name
        encrypt_file(packed, sealed, passphrase)
        return sealed, sealed_info

    def _should_read_back(self, info: BackupInfo) -> bool:
        # Not at shutdown: the host gives a stopping instance only seconds.
        return self.settings.backup_read_back and info.reason != "shutdown"

    def _read_back(self, destination: Destination, placed: BackupInfo, expected: str) -> dict[str, str]:
        """Fetch the copy back: a backup nobody has read back is not a backup. Byte for byte
        what was sent (itself made from a verified snapshot), so no decryption is needed."""
        try:
            with scratch_folder(self.local.folder) as scratch:
                fetched = sha256_of(destination.fetch(placed, scratch))[0]
            if fetched != expected:
                raise DestinationError("the copy read back differs from the one sent")
        except TooLarge as error:
            if destination.name not in self._too_large_told:  # once, when backups grow past it
                self.alert(f"⚠️ Backup {placed.name} was stored in {destination.name}, but {error}.")
                self._too_large_told.add(destination.name)
            return {}
        except (DestinationError, OSError) as error:
            message = f"read-back failed: {error}"
            self._failed(destination.name, message)
            return {destination.name: message}
        self._too_large_told.discard(destination.name)  # tell again if backups grow past it
        return {}

    def _rotate(self, destination: Destination) -> None:
        """Keep the newest BACKUP_KEEP backups in `destination`; a failure to delete is logged
        and retried at the next backup, never a failed backup."""
        try:
            old = destination.list()[self.settings.backup_keep:]
            destination.delete(old)
        except (DestinationError, OSError) as error:
            log.warning("could not rotate the backups in %s: %s", destination.name, error)
            return
        for info in old:
            log.info("rotated out %s from %s", info.name, destination.name)

    def _succeeded(self, name: str) -> None:
        status = self._status[name]
        if status.failing:
            self.alert(f"✅ Backups to {name} work again.")
        status.failing, status.last_success = False, self.clock()

    def _failed(self, name: str, error: str) -> None:
        status = self._status[name]
        log.error("backup not stored in %s: %s", name, error)
        if not status.failing:  # once per streak of failures
            where = "the local backup folder" if name == self.local.name else name
            self.alert(f"⚠️ A backup could not be stored in {where}: {error}. "
                       "It is retried at the next backup.")
        status.failing, status.last_error, status.last_error_at = True, error, self.clock()

    def _keep_plain_copy(self, content: BinaryIO) -> None:
        """DB_PATH + '.backup': the newest snapshot as a plain SQLite file (the seed's path)."""
        content.seek(0)
        try:
            write_atomically(self.plain_copy, lambda out: copy_stream(content, out))
        except OSError as error:
            log.warning("could not update %s: %s", self.plain_copy, error.strerror or error)

    # --- keeping an empty database from burying a real off-site backup ---

    def offsite_paused(self) -> Optional[str]:
        """Why copies are kept from leaving the machine, or None when they may leave."""
        return self.db.get_state(PAUSE_KEY) if self.db else None

    def pause_offsite(self, why: str) -> None:
        self.db.set_state(PAUSE_KEY, why)

    def resume_offsite(self) -> None:
        self.db.set_state(PAUSE_KEY, None)

    # --- what there is ---

    def newest_local(self) -> Optional[BackupInfo]:
        return next(iter(self.local.list()), None)

    def listing(self, only: Optional[str] = None) -> Listing:
        """Every backup in every destination (or only the one named), newest first by its own
        created-at. A destination that cannot be listed is skipped and named in the result."""
        found, unreachable = [], []
        for destination in self._destinations:
            if only and destination.name != only:
                continue
            try:
                found.extend(destination.list())
            except (DestinationError, OSError) as error:
                log.warning("cannot list backups in %s: %s", destination.name, error)
                unreachable.append(Unreachable(destination.name, str(error),
                                               destination is not self.local))
        return Listing(sorted(found, key=lambda info: info.created_at, reverse=True), unreachable)

    def overview(self) -> Overview:
        local = self.local.list()
        return Overview(local[0] if local else None, len(local), self.settings.backup_keep,
                        {name: replace(status) for name, status in self._status.items()},
                        self.offsite_paused())

    @contextmanager
    def exported_newest(self) -> Iterator[Optional[tuple[Path, BackupInfo]]]:
        """The newest local backup as it may leave the machine (encrypted when a passphrase is
        set), for a download; None when there is no backup yet."""
        newest = self.newest_local()
        if newest is None:
            yield None
            return
        with scratch_folder(self.local.folder) as workdir:
            yield self._leaving_copy(Path(newest.location), newest, workdir)

    def verify(self, source: Path | BackupInfo, thorough: bool = False) -> BackupInfo:
        """Check a backup (checksum, integrity, tables, schema); returns its info."""
        with scratch_folder(self.local.folder) as workdir:
            info, _ = self._unpack(source, workdir, thorough)
            return info

    def _unpack(self, source: Path | BackupInfo, workdir: Path,
                thorough: bool = False) -> tuple[BackupInfo, Path]:
        """Fetch, decompress and verify a backup; returns its info and the verified SQLite file."""
        passphrase = self.settings.backup_passphrase
        if not isinstance(source, BackupInfo):
            return unpack_and_verify(Path(source), workdir, thorough, passphrase)
        destination = self._destination(source.destination)
        try:
            path = destination.fetch(source, workdir)
        except (DestinationError, OSError) as error:
            raise BackupError(f"cannot fetch {source.name} from {source.destination}: {error}") from error
        info, snapshot = unpack_and_verify(path, workdir, thorough, passphrase)
        return replace(info, name=source.name, destination=source.destination,
                       location=source.location, size=source.size), snapshot

    def _destination(self, name: str) -> Destination:
        for destination in self._destinations:
            if destination.name == name:
                return destination
        raise BackupError(f"there is no destination called {name}")

    # --- restore ---

    def restore(self, source: Path | BackupInfo, *, safety_backup: bool = True,
                resume_offsite: bool = True) -> BackupInfo:
        """Replace the live data with a verified backup, after a 'pre-restore' safety backup.

        Every check that could fail runs before the live database is touched (the candidate's
        integrity, its exact schema, a dry run of its migrations on a copy), so a refusal
        raises BackupError and leaves the live database byte for byte as it was. A restore asked
        for by a person also lets copies leave the machine again (see pause_offsite).
        """
        if isinstance(source, Path) and _same_file(source, self.settings.db_path):
            raise BackupError(f"refused: {source} is the live database itself")
        with self._busy, scratch_folder(self.local.folder) as workdir:
            info, snapshot = self._unpack(source, workdir)
            if safety_backup and not self.db.is_empty():
                try:
                    self.create("pre-restore")
                except (BackupError, DestinationError, OSError) as error:
                    raise BackupError(f"the safety backup failed, so nothing was restored: {error}") from error
            try:
                self.db.load_from(snapshot)  # already this code's schema: see _unpack
                self.db.migrate()  # applies nothing; switches WAL back on
            except DatabaseError as error:
                raise BackupError(str(error)) from error
            if resume_offsite:
                self.resume_offsite()
            self._restored = info
            log.info("restored %s (%s, %d rows) from %s", info.name, info.reason,
                     info.total_rows, info.destination)
            return info

    def restore_newest(self) -> StartupRestore:
        """Restore the newest backup that verifies, trying older ones when it does not."""
        listing = self.listing()
        passed_over = []
        for candidate in listing.backups + self._plain_copy_candidate():
            try:
                # resume_offsite=False: a backup taken while copies were paused stays paused
                restored = self.restore(candidate, safety_backup=False, resume_offsite=False)
                return StartupRestore(restored, passed_over, listing.unreachable)
            except BackupError as error:
                log.warning("cannot restore %s (%s): %s", candidate.name, candidate.destination, error)
                passed_over.append(Refusal(candidate, str(error), candidate.destination != self.local.name))
        return StartupRestore(None, passed_over, listing.unreachable)

    def _plain_copy_candidate(self) -> list[BackupInfo]:
        if not self.plain_copy.is_file():
            return []
        stat = self.plain_copy.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
        return [BackupInfo(modified, "plain copy", 0, {}, "", 0, stat.st_size,
                           self.local.name, str(self.plain_copy), self.plain_copy.name)]


def _same_file(path: Path, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False
