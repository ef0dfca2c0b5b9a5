"""The backup engine: snapshot -> verify -> compress -> store -> rotate; verify and restore.

Every backup is kept locally (BACKUP_DIR, and DB_PATH.backup) and sent to every destination off
the machine: encrypted there when BACKUP_PASSPHRASE is set, then fetched back and compared. An
off-site failure never fails the local backup. The engine knows destinations only through their
interface (destinations.py) and never asks which kind one is.

Its surface, for the startup, the admin panel and the command line, returns plain records:
create, listing, overview, exported_newest, verify, restore, restore_newest, and the pause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from backup_format import (
    FINAL_REASONS,
    PRE_RESTORE,
    BackupError,
    BackupInfo,
    file_name,
    inspect_snapshot,
)
from catalog import Catalog, Listing
from chain_keeper import ChainKeeper
from chains import Shortfall
from clock import Clock, utc_now
from config import Settings
from database import Database, DatabaseError
from deltas import fingerprint
from destination_status import DestinationStatus, OffsitePause, StatusBoard
from destinations import Destination, DestinationError, LocalFolder, Unreachable
from files import (
    copy_file,
    fsync_folder,
    remove_stale_temporaries,
    scratch_folder,
    temporary_name,
    write_atomically,
)
from i18n import Alert, Code, Text
from lease import Lease
from offsite_copies import OffsiteCopies
from sealing import Sealer
from upload_meter import UploadMeter

log = logging.getLogger("backup")

SKIPPABLE_REASONS = ("startup", "scheduled", "change")  # skipped when nothing changed
# Backups taken in a hurry: often (on change), or with seconds left (a stopping instance). They
# skip the integrity check of the snapshot (a restore checks it), compress faster, and are not
# read back; the scheduled and manual backups do all of it.
HURRIED_REASONS = ("change", "shutdown", "handover")
METER_FILE = "uploads.json"  # what backups uploaded, by the hour (upload_meter.py)
STEP_PAGES = 256  # pages copied per snapshot step while holding the lock (1 MB at 4 KB pages)


@dataclass(frozen=True)
class CreateResult:
    info: BackupInfo | None  # the new backup as stored locally; None when skipped
    seconds: float
    stored: list[BackupInfo] = field(default_factory=list)  # one per destination that took it
    failures: dict[str, str] = field(default_factory=dict)  # destination name -> why not

    @property
    def skipped(self) -> bool:
        return self.info is None


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
    restored: BackupInfo | None  # None: nothing could be restored
    passed_over: list[Refusal]  # candidates tried before, newest first
    unreachable: list[Unreachable]


@dataclass(frozen=True)
class Overview:
    """The backup state, for the admin panel."""

    newest: BackupInfo | None  # the newest local backup
    kept: int  # local backups kept
    keep: int  # BACKUP_KEEP
    destinations: dict[str, DestinationStatus]
    paused: str | None


class BackupEngine:
    """Creates, lists, verifies and restores backups of one live database."""

    def __init__(
        self,
        db: Database | None,
        settings: Settings,
        offsite: Sequence[Destination] = (),
        clock: Clock = utc_now,
        step_pages: int = STEP_PAGES,
        alert: Alert | None = None,
        lease: Lease | None = None,
    ):
        """lease: who may write off the machine (lease.py); without one, this engine writes as
        the writer its database records (the command line beside a running bot)."""
        self.db, self.settings, self.clock, self.step_pages = db, settings, clock, step_pages
        self.local = LocalFolder(settings.backup_dir)
        self._offsite = list(offsite)
        self._destinations: list[Destination] = [self.local, *self._offsite]
        self.alert = alert or (lambda text: None)  # tells the admins; main.py sends it to each
        self._status = StatusBoard([d.name for d in self._destinations], self.local.name, self.alert, clock)
        self.pause = OffsitePause(db)
        self.plain_copy = Path(f"{settings.db_path}.backup")
        self._sealer = Sealer(settings.backup_passphrase) if settings.backup_passphrase else None
        self._busy = threading.RLock()  # one backup or restore at a time
        self._restored: BackupInfo | None = None  # what the live data equals after a restore
        self.lease = lease or Lease(db=db, clock=clock, alert=self.alert)
        self.catalog = Catalog(self.local, self._offsite, self._sealer)
        self.meter = UploadMeter(
            Path(settings.backup_dir) / METER_FILE if self._offsite else None,
            settings.backup_upload_budget_gb,
            clock,
            self.alert,
        )
        self.uploads, self.change_spacing = self.meter.totals, self.meter.spacing
        self.copies = OffsiteCopies(
            self.local,
            self._offsite,
            self.lease,
            self._status,
            self._sealer,
            settings,
            self.alert,
            self.meter,
        )
        self._newest_offsite: datetime | None = None
        # The newest backup every place off the machine holds, and the database's change count
        # when it was taken: everything written up to then is off the machine.
        self._offsite_state: tuple[int, BackupInfo] | None = None
        self._changes_at_snapshot = -1
        self._backed_up_changes: int | None = None  # the change count the newest backup holds
        self.keeper = ChainKeeper()  # what the next on-change backup may build on (deltas.py)
        self.last_shortfall: Shortfall | None = None  # how the last restore's chain ended early
        self._behind = False  # the newest backup's send to a place off the machine failed

    @property
    def writing(self) -> bool:
        """Whether this instance may still write (its lease is held)."""
        return self.lease.held

    @property
    def offsite_count(self) -> int:
        return len(self._offsite)

    def backed_up_changes(self) -> int | None:
        """The database's change count when the newest backup was taken (what it holds); None
        before the first backup of this process."""
        return self._backed_up_changes

    def everything_offsite(self) -> BackupInfo | None:
        """The newest backup every place off the machine holds, when nothing was written since
        it was taken (what a writer going quiet names); None otherwise."""
        state = self._offsite_state
        return state[1] if state is not None and state[0] == self.db.change_count() else None

    def offsite_behind(self) -> bool:
        """True when a place off the machine lacks the newest backup (a send failed) and
        nothing keeps copies here: the on-change job tries again though nothing was written."""
        return self._behind and not self.offsite_paused()

    def newest_offsite_backup_at(self) -> datetime | None:
        """When the newest backup known to be off the machine was taken (one this process sent,
        or restored from there); None when there is none yet."""
        return self._newest_offsite

    # --- create ---

    def create(self, reason: str, local_only: bool = False) -> CreateResult:
        """Take a backup now. Startup, scheduled and on-change backups are skipped when nothing
        changed. `local_only`: kept on this machine (allowed to an instance that does not write).

        Raises BackupError when no local backup could be made (the admins are told once per
        streak of failures); off-site failures are in the result, never raised.
        """
        try:
            return self._create(reason, local_only)
        except BackupError as error:
            self._status.failed(self.local.name, str(error))
            raise

    def _create(self, reason: str, local_only: bool) -> CreateResult:
        with self._busy, scratch_folder(self.local.folder) as workdir:
            if not self.lease.held and not local_only:
                raise BackupError(
                    "this instance is not the writer any more (it handed over, or a "
                    "newer instance writes the backups)"
                )
            started = time.monotonic()
            created_at = self.clock()
            self._changes_at_snapshot = self.db.change_count()  # what the snapshot holds, at least
            for folder in (self.local.folder, self.plain_copy.parent):
                remove_stale_temporaries(folder)
            if reason in FINAL_REASONS and _file_is_live(self.db):
                # The instance has stopped writing: the database file itself is the snapshot.
                with self.db.frozen() as source:
                    try:
                        return self._pack_and_store(
                            reason, local_only, created_at, started, source, workdir, plain_copy=False
                        )
                    finally:  # still frozen, and after the copies that leave the machine
                        self._copy_plain(source)
            snapshot = self._snapshot_path(workdir)
            try:
                try:
                    self.db.snapshot_to(snapshot, self.step_pages)
                except DatabaseError as error:
                    raise BackupError(str(error)) from error
                return self._pack_and_store(reason, local_only, created_at, started, snapshot, workdir)
            finally:
                snapshot.unlink(missing_ok=True)  # unless it became DB_PATH.backup

    def _snapshot_path(self, workdir: Path) -> Path:
        """Where the snapshot is taken: beside DB_PATH.backup, which it becomes (moved, not
        copied: a copy of a large database costs a tenth of a core seconds); in the work folder
        when the database's folder cannot take it (memory mode)."""
        folder = self.plain_copy.parent
        if folder.is_dir() and os.access(folder, os.W_OK):
            return folder / temporary_name(self.plain_copy.name)
        return workdir / "snapshot.db"

    def _pack_and_store(
        self,
        reason: str,
        local_only: bool,
        created_at: datetime,
        started: float,
        snapshot: Path,
        workdir: Path,
        plain_copy: bool = True,
    ) -> CreateResult:
        info, packed, step = self._pack(reason, created_at, snapshot, workdir, chained=plain_copy)
        newest = self.newest_local() or self._restored
        if reason in SKIPPABLE_REASONS and self._unchanged(newest, info):
            log.info("%s backup skipped: nothing changed since %s", reason, newest.name)
            return CreateResult(None, time.monotonic() - started)
        stored, failures = self.copies.store(self.local, packed, info)
        if stored:
            self._backed_up_changes = self._changes_at_snapshot
            if plain_copy:
                self._keep_plain_copy(snapshot)
            self.copies.rotate(self.local)
        sent, offsite_failures = ([], {}) if local_only else self._send_offsite(packed, info, workdir)
        self.keeper.follow(step if stored and not offsite_failures and not local_only else None, stored)
        if not stored and not (info.final and sent):  # a final backup off the machine still counts
            elsewhere = f"; it did reach {', '.join(i.destination for i in sent)}" if sent else ""
            raise BackupError(f"the backup could not be written: {failures['local']}{elsewhere}")
        self._note_offsite(info, sent)
        if not local_only:  # (a local-only copy is not meant to leave)
            self._behind = len(sent) < len(self._offsite) and not self.offsite_paused()
        kept = (stored + sent)[0]
        result = CreateResult(
            kept, time.monotonic() - started, stored + sent, {**failures, **offsite_failures}
        )
        log.info(
            "%s backup %s: %d bytes, %d rows, %.2f s, stored in %s",
            reason,
            info.name,
            kept.size,
            info.total_rows,
            result.seconds,
            ", ".join(i.destination for i in result.stored),
        )
        return result

    def _pack(
        self, reason: str, created_at: datetime, snapshot: Path, workdir: Path, chained: bool
    ) -> tuple[BackupInfo, Path, tuple | None]:
        """The backup file of `snapshot`: for an on-change backup with a chain to build on, a
        delta of the pages that changed (deltas.py), else a full backup. Returns its info, its
        path, and the chain's next step, taken once every place has it (`chained`: the snapshot
        is one of the online backup's, which keep the pages of a chain comparable)."""
        hurry = reason in HURRIED_REASONS
        schema_version, row_counts = inspect_snapshot(snapshot, exact=False, check=not hurry)
        info = BackupInfo(
            created_at,
            reason,
            schema_version,
            row_counts,
            "",
            snapshot.stat().st_size,
            name=file_name(created_at, reason),
            generation=self.lease.generation,
            writer=self.lease.writer,
            sequence=self.catalog.next_sequence(self.lease.generation, self.lease.writer),
        )
        return self.keeper.pack(info, snapshot, workdir, chained, hurry)

    def _unchanged(self, newest: BackupInfo | None, info: BackupInfo) -> bool:
        """Whether the snapshot holds what the newest backup holds, and that one is off the
        machine wherever it should be: nothing to back up. The newest backup then holds every
        change made so far, and so does the one every place off the machine has, if equal."""
        if newest is None or newest.sha256 != info.sha256 or self.offsite_behind():
            return False
        self._backed_up_changes = self._changes_at_snapshot
        if self._offsite_state is not None and self._offsite_state[1].sha256 == info.sha256:
            self._offsite_state = (self._changes_at_snapshot, self._offsite_state[1])
        return True

    def _note_offsite(self, info: BackupInfo, sent: list[BackupInfo]) -> None:
        """What reached the machine's outside: the newest backup there, whether every place
        holds it, and a writer's final head."""
        if sent:
            self._newest_offsite = info.created_at
        if sent and len(sent) == len(self._offsite):
            self._offsite_state = (self._changes_at_snapshot, sent[0])
        if info.final and sent:
            self.lease.publish_final(info.created_at)

    def _send_offsite(
        self, packed: Path, info: BackupInfo, workdir: Path
    ) -> tuple[list[BackupInfo], dict[str, str]]:
        """Copies that leave the machine, unless the pause keeps them here."""
        paused = self.offsite_paused() if self._offsite else None
        if paused:
            log.warning("backup %s kept on this machine only: %s", info.name, paused)
            return [], {d.name: f"paused: {paused}" for d in self._offsite}
        return self.copies.send(packed, info, workdir, read_back=info.reason not in HURRIED_REASONS)

    def _keep_plain_copy(self, snapshot: Path) -> None:
        """DB_PATH + '.backup': the newest snapshot as a plain SQLite file (the seed's path),
        synced and moved into place atomically."""
        if snapshot.parent != self.plain_copy.parent:
            return  # memory mode: the database's folder is not usable
        try:
            fd = os.open(snapshot, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(snapshot, self.plain_copy)
            fsync_folder(self.plain_copy.parent)
        except OSError as error:
            log.warning("could not update %s: %s", self.plain_copy, error.strerror or error)

    def _copy_plain(self, database_file: Path) -> None:
        """DB_PATH + '.backup' at a final backup: a copy of the stopped database's own file
        (which stays the database, so it is copied, not moved); when that fails, none rather
        than an older state."""
        try:
            write_atomically(self.plain_copy, lambda out: copy_file(database_file, out))
        except OSError as error:
            log.warning("could not update %s: %s", self.plain_copy, error.strerror or error)
            with contextlib.suppress(OSError):
                self.plain_copy.unlink(missing_ok=True)

    # --- keeping an empty database from burying a real off-site backup ---

    def failing_destinations(self) -> list[str]:
        """The destinations whose last attempt to store a backup failed."""
        return self._status.failing()

    def offsite_paused(self) -> str | None:
        """Why copies are kept from leaving the machine, or None when they may leave."""
        return self.pause.why()

    def offsite_paused_seen(self) -> bool:
        return self.pause.seen()

    def pause_offsite(self, why: str) -> None:
        self.pause.set(why)

    def resume_offsite(self) -> None:
        self.pause.lift()

    # --- what there is ---

    def newest_local(self) -> BackupInfo | None:
        return self.catalog.newest_local()

    def listing(self, only: str | None = None) -> Listing:
        return self.catalog.listing(only)

    def overview(self) -> Overview:
        local = self.local.list()
        return Overview(
            local[0] if local else None,
            len(local),
            self.settings.backup_keep,
            self._status.copy(),
            self.offsite_paused(),
        )

    @contextmanager
    def exported_newest(self) -> Iterator[tuple[Path, BackupInfo] | None]:
        """The newest local backup as it may leave the machine (encrypted when a passphrase is
        set), for a download, whole (a change backup's chain applied); None when there is none."""
        newest = self.newest_local()
        if newest is None:
            yield None
            return
        with scratch_folder(self.local.folder) as workdir:
            yield self.copies.leaving_copy(*self.catalog.as_full(newest, workdir), workdir)

    def verify(self, source: Path | BackupInfo, thorough: bool = False) -> BackupInfo:
        """Check a backup (checksum, integrity, tables, schema); returns its info."""
        with scratch_folder(self.local.folder) as workdir:
            return self.catalog.unpack(source, workdir, thorough).info

    # --- restore ---

    def restore(self, source: Path | BackupInfo, *, by_person: bool = True) -> BackupInfo:
        """Replace the live data with a verified backup.

        Every check that could fail runs before the live database is touched (the candidate's
        integrity, its exact schema, a dry run of its migrations on a copy), so a refusal
        raises BackupError and leaves the live database byte for byte as it was.

        A restore asked for by a person (the panel, the command line) is framed by two backups:
        a 'pre-restore' safety copy of the data it replaces (kept and labelled, never taken for
        the newest state), and a 'restore' backup of the restored data, so that what comes back
        after a crash or a redeploy is what the person restored. It also lets copies leave the
        machine again (see pause_offsite). The startup's and a take-over's restores are not.
        """
        if isinstance(source, Path) and _same_file(source, self.settings.db_path):
            raise BackupError(f"refused: {source} is the live database itself")
        with self._busy, scratch_folder(self.local.folder) as workdir:
            if by_person and not self.lease.held:
                raise BackupError("this instance is not the writer any more: restore on the one that serves")
            unpacked = self.catalog.unpack(source, workdir, resume=not by_person)
            if unpacked.shortfall and not by_person:  # only an older state of its chain: the
                # startup's and a take-over's restores try the next candidate, never settle for less
                raise BackupError(f"its chain ends early: {unpacked.shortfall.reason}")
            info, snapshot = unpacked.info, unpacked.path
            state = fingerprint(snapshot) if unpacked.everywhere else None  # before it moves
            self.last_shortfall = unpacked.shortfall
            if by_person and not self.db.is_empty():
                try:
                    self.create(PRE_RESTORE)
                except (BackupError, DestinationError, OSError) as error:
                    raise BackupError(
                        f"the safety backup failed, so nothing was restored: {error}"
                    ) from error
            try:
                # the lifecycle's own restores replace everything: a scratch file is moved in
                adopt = not by_person and snapshot.is_relative_to(workdir)
                self.db.load_from(snapshot, adopt)  # already this code's schema: see _unpack
                self.db.migrate()  # applies nothing; switches WAL back on
            except DatabaseError as error:
                raise BackupError(str(error)) from error
            self._restored = info
            self.keeper.resume(unpacked.applied if state else (), state)
            self.lease.record()  # the restored data names the writer that took it
            self._offsite_state = None  # the connection, and its change count, began again
            self._backed_up_changes = self.db.change_count()  # the data is a backup's
            if info.destination not in (self.local.name, "file"):
                self._newest_offsite = max(filter(None, [self._newest_offsite, info.created_at]))
                if not by_person:  # the data is this backup's, which is off the machine
                    self._offsite_state = (self.db.change_count(), info)
            log.info(
                "restored %s (%s, %d rows) from %s", info.name, info.reason, info.total_rows, info.destination
            )
            if unpacked.shortfall:
                self.alert(shortfall_text(unpacked.shortfall))
            if by_person:
                self.resume_offsite()
                self.backup_quietly("restore")
            return info

    def backup_quietly(self, reason: str) -> CreateResult | None:
        """A backup whose failure is logged, never raised: the next one retries."""
        try:
            return self.create(reason)
        except BackupError as error:
            log.error("%s backup failed: %s", reason, error)
            return None

    def restore_newest(self) -> StartupRestore:
        """Restore the newest backup that verifies, trying older ones when it does not (the
        catalog's candidates, in order)."""
        candidates, unreachable = self.catalog.candidates(self.plain_copy)
        passed_over = []
        for candidate in candidates:
            try:
                restored = self.restore(candidate, by_person=False)
                return StartupRestore(restored, passed_over, unreachable)
            except BackupError as error:
                log.warning("cannot restore %s (%s): %s", candidate.name, candidate.destination, error)
                passed_over.append(Refusal(candidate, str(error), candidate.destination != self.local.name))
        return StartupRestore(None, passed_over, unreachable)


def _same_file(path: Path, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def shortfall_text(shortfall: Shortfall) -> Text:
    """What the admins read when a chain ended before the restore point asked for."""
    return Text(
        "⚠️ The backup of {wanted} could not be restored whole ({error}): the data is back as it "
        "was at {used}, the last state that verified; {count} later restore points of that "
        "chain were unusable.",
        wanted=shortfall.wanted.created_at,
        error=Code(shortfall.reason, 300),
        used=shortfall.used.created_at,
        count=shortfall.unusable,
    )


def _file_is_live(db: Database) -> bool:
    """The file at DB_PATH is the database this process writes. When it is not (deleted,
    replaced or moved under the running bot), a final backup is a snapshot through the open
    connection, which still reaches every page, like any other backup."""
    if db.storage.in_memory:
        return False
    if db.file_is_live():
        return True
    log.warning(
        "the file at DB_PATH is not the live database any more (deleted, replaced or moved): "
        "the final backup is taken from the open connection"
    )
    return False
