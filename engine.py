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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from backup_format import (
    COMPRESSION_LEVEL,
    ENCRYPTED_SUFFIX,
    FINAL_REASONS,
    PRE_RESTORE,
    QUICK_COMPRESSION_LEVEL,
    BackupError,
    BackupInfo,
    Head,
    Knock,
    file_name,
    inspect_snapshot,
    newest_head,
    newest_knock,
    sha256_of,
    unpack_and_verify,
    write_backup_file,
)
from clock import Clock, utc_now
from config import Settings
from database import Database, DatabaseError
from destinations import Destination, DestinationError, LocalFolder, Stale, TooLarge
from files import fsync_folder, remove_stale_temporaries, scratch_folder, temporary_name
from i18n import Alert, Code, Text
from sealing import Sealer, SealError

log = logging.getLogger("backup")

SKIPPABLE_REASONS = ("startup", "scheduled", "change")  # skipped when nothing changed
# Backups taken in a hurry: often (on change), or with seconds left (a stopping instance). They
# skip the integrity check of the snapshot (a restore checks it), compress faster, and are not
# read back; the scheduled and manual backups do all of it.
HURRIED_REASONS = ("change", "shutdown", "handover")
STEP_PAGES = 256  # pages copied per snapshot step while holding the lock (1 MB at 4 KB pages)
PAUSE_KEY = "offsite_paused"
GENERATION_KEY, WRITER_KEY = "generation", "writer"  # the writer of this database, in bot_state


@dataclass(frozen=True)
class CreateResult:
    info: BackupInfo | None  # the new backup as stored locally; None when skipped
    seconds: float
    stored: list[BackupInfo] = field(default_factory=list)  # one per destination that took it
    failures: dict[str, str] = field(default_factory=dict)  # destination name -> why not

    @property
    def skipped(self) -> bool:
        return self.info is None


@dataclass
class DestinationStatus:
    """How storing backups in one destination has gone, for the admin panel and the alerts."""

    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing: bool = False  # the last attempt failed
    failing_since: datetime | None = None  # when the current streak of failures began


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
    ):
        self.db, self.settings, self.clock, self.step_pages = db, settings, clock, step_pages
        self.local = LocalFolder(settings.backup_dir)
        self._offsite = list(offsite)
        self._destinations: list[Destination] = [self.local, *self._offsite]
        self._status = {destination.name: DestinationStatus() for destination in self._destinations}
        self._paused_seen: str | None = None  # the pause as last read (offsite_paused_seen)
        self.plain_copy = Path(f"{settings.db_path}.backup")
        self.alert = alert or (lambda text: None)  # tells the admins; main.py sends it to each
        self._sealer = Sealer(settings.backup_passphrase) if settings.backup_passphrase else None
        self._busy = threading.RLock()  # one backup or restore at a time
        self._restored: BackupInfo | None = None  # what the live data equals after a restore
        self._too_large_told: set[str] = set()  # destinations whose copies cannot be fetched back
        self.generation, self.writer = self._recorded_writer()
        self._claimed = True  # a writer read from the database claimed before (the command line)
        self._newest_offsite: datetime | None = None
        self._writing = True  # False once this instance handed over, or found a newer writer
        self.on_stale: Callable[[str], object] = lambda why: None  # the instance goes passive

    # --- the writer: one instance at a time writes the backups off the machine ---

    def _recorded_writer(self) -> tuple[int, str]:
        """The generation and writer recorded in the database (what the command line uses
        beside a running bot: its backups are that writer's)."""
        if self.db is None:
            return 0, ""
        generation = self.db.get_state(GENERATION_KEY)
        return (
            int(generation) if generation and generation.isdigit() else 0,
            self.db.get_state(WRITER_KEY) or "",
        )

    def become_writer(self, generation: int, writer: str) -> None:
        """From now on this instance writes, as `writer` of `generation` (recorded in the
        database, so every backup of it says so)."""
        with self._busy:
            self.generation, self.writer, self._writing = generation, writer, True
            self._claimed = False  # its head is published before its first copy leaves
            self.db.set_state(GENERATION_KEY, str(generation))
            self.db.set_state(WRITER_KEY, writer)

    def stop_writing(self) -> None:
        """After a hand-over: no backup, no restore, nothing leaves the machine any more."""
        with self._busy:
            self._writing = False

    @property
    def writing(self) -> bool:
        return self._writing

    @property
    def offsite_count(self) -> int:
        return len(self._offsite)

    def newest_offsite_backup_at(self) -> datetime | None:
        """When the newest backup known to be off the machine was taken (one this process sent,
        or restored from there); None when there is none yet."""
        return self._newest_offsite

    def heads(self) -> tuple[Head | None, list[Unreachable]]:
        """The newest head of every destination off the machine, and those that could not be
        asked."""
        found, unreachable = [], []
        for destination in self._offsite:
            try:
                found.append(destination.read_head())
            except (DestinationError, OSError) as error:
                unreachable.append(Unreachable(destination.name, str(error), True))
        return newest_head(found), unreachable

    def publish(self, state: str, final_backup_at=None) -> list[str]:
        """Write this writer's head ('writing', or 'final' with its last backup) in every
        destination off the machine; returns those that could not take it. Stale when one names
        a newer writer."""
        head = Head(self.generation, self.writer, state, self.clock(), final_backup_at)
        failed = []
        for destination in self._offsite:
            try:
                destination.write_head(head)
            except Stale:
                raise
            except (DestinationError, OSError) as error:
                log.warning("could not publish the writer in %s: %s", destination.name, error)
                failed.append(destination.name)
        if state == "writing" and len(failed) < len(self._offsite):
            self._claimed = True
        return failed

    def knock(self, instance: str) -> None:
        """Ask whoever writes off the machine to hand over to `instance`: in webhook mode there
        is no 409 to tell the writer a newer instance is here, so it watches for this."""
        if self.offsite_paused():  # nothing leaves the machine, not even this
            return
        knock = Knock(instance, self.clock())
        for destination in self._offsite:
            try:
                destination.knock(knock)
            except (DestinationError, OSError) as error:
                log.warning("could not ask for the hand-over in %s: %s", destination.name, error)

    def latest_knock(self) -> Knock | None:
        """The newest request to hand over, of every destination off the machine that answers."""
        found = []
        for destination in self._offsite:
            try:
                found.append(destination.read_knock())
            except (DestinationError, OSError) as error:
                log.debug("could not read the hand-over requests in %s: %s", destination.name, error)
        return newest_knock(found)

    def _went_stale(self, why: str) -> None:
        """A newer instance writes off the machine: stop writing there, keep copies locally."""
        if self._writing:
            self._writing = False
            log.error("this instance is stale: %s", why)
            self.alert(
                Text(
                    "⛔ This instance stopped writing: {why}. Its backups stay on its own disk; "
                    "the newer instance's backups are untouched.",
                    why=Code(why),
                )
            )
            self.on_stale(why)

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
            self._failed(self.local.name, str(error))
            raise

    def _create(self, reason: str, local_only: bool) -> CreateResult:
        with self._busy, scratch_folder(self.local.folder) as workdir:
            if not self._writing and not local_only:
                raise BackupError(
                    "this instance is not the writer any more (it handed over, or a "
                    "newer instance writes the backups)"
                )
            started = time.monotonic()
            created_at = self.clock()
            for folder in (self.local.folder, self.plain_copy.parent):
                remove_stale_temporaries(folder)
            if reason in FINAL_REASONS and not self.db.storage.in_memory:
                # The instance has stopped writing: the database file itself is the snapshot.
                with self.db.frozen() as source:
                    return self._pack_and_store(
                        reason, local_only, created_at, started, source, workdir, plain_copy=False
                    )
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
            generation=self.generation,
            writer=self.writer,
        )
        packed = workdir / info.name
        with open(snapshot, "rb") as content:
            info = write_backup_file(
                content, info, packed, QUICK_COMPRESSION_LEVEL if hurry else COMPRESSION_LEVEL
            )
        newest = self.newest_local() or self._restored
        if reason in SKIPPABLE_REASONS and newest is not None and newest.sha256 == info.sha256:
            log.info("%s backup skipped: nothing changed since %s", reason, newest.name)
            return CreateResult(None, time.monotonic() - started)
        stored, failures = self._store(self.local, packed, info)
        if stored:
            if plain_copy:
                self._keep_plain_copy(snapshot)
            self._rotate(self.local)
        sent, offsite_failures = ([], {}) if local_only else self._send_offsite(packed, info, workdir)
        if not stored:
            elsewhere = f"; it did reach {', '.join(i.destination for i in sent)}" if sent else ""
            raise BackupError(f"the backup could not be written: {failures['local']}{elsewhere}")
        if sent:
            self._newest_offsite = info.created_at
        if info.final and sent:
            self._publish_final(info)
        result = CreateResult(
            stored[0], time.monotonic() - started, stored + sent, {**failures, **offsite_failures}
        )
        log.info(
            "%s backup %s: %d bytes, %d rows, %.2f s, stored in %s",
            reason,
            info.name,
            stored[0].size,
            info.total_rows,
            result.seconds,
            ", ".join(i.destination for i in result.stored),
        )
        return result

    def _publish_final(self, info: BackupInfo) -> None:
        try:
            self.publish("final", info.created_at)
        except Stale as error:
            self._went_stale(str(error))

    def _store(
        self, destination: Destination, packed: Path, info: BackupInfo
    ) -> tuple[list[BackupInfo], dict[str, str]]:
        """Put one copy; a failure is recorded, alerted once per streak, and returned, not raised."""
        try:
            placed = destination.put(packed, info)
        except Stale as error:
            self._went_stale(str(error))
            return [], {destination.name: str(error)}
        except (DestinationError, OSError) as error:
            self._failed(destination.name, str(error))
            return [], {destination.name: str(error)}
        self._succeeded(destination.name)
        return [placed], {}

    def _send_offsite(
        self, packed: Path, info: BackupInfo, workdir: Path
    ) -> tuple[list[BackupInfo], dict[str, str]]:
        """Copies that leave the machine: encrypted when a passphrase is set, then read back."""
        if not self._offsite:
            return [], {}
        paused = self.offsite_paused()
        if paused:
            log.warning("backup %s kept on this machine only: %s", info.name, paused)
            return [], {d.name: f"paused: {paused}" for d in self._offsite}
        if not self._claimed:  # paused when it became the writer: it says so now
            try:
                self.publish("writing")
            except Stale as error:
                self._went_stale(str(error))
        copy, copy_info = self._leaving_copy(packed, info, workdir)
        sent, failures = [], {}
        expected = sha256_of(copy)[0] if self._should_read_back(info) else None
        for destination in self._offsite:
            if not self._writing:  # stale: nothing more leaves the machine
                failures[destination.name] = "not sent: a newer instance writes the backups"
                continue
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
        if self._sealer is None:
            return packed, info
        sealed_info = replace(info, name=info.name + ENCRYPTED_SUFFIX, encrypted=True)
        sealed = workdir / sealed_info.name
        try:
            self._sealer.seal(packed, sealed)
        except SealError as error:
            raise BackupError(str(error)) from None
        return sealed, sealed_info

    def _should_read_back(self, info: BackupInfo) -> bool:
        return self.settings.backup_read_back and info.reason not in HURRIED_REASONS

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
                self.alert(
                    Text(
                        "⚠️ Backup {name} was stored in {destination} but cannot be read back to check it ({error}).",
                        name=Code(placed.name),
                        destination=Code(destination.name),
                        error=Code(str(error)),
                    )
                )
                self._too_large_told.add(destination.name)
            return {}
        except (DestinationError, OSError) as error:
            message = f"read-back failed: {error}"
            self._failed(destination.name, message)
            return {destination.name: message}
        self._too_large_told.discard(destination.name)  # tell again if backups grow past it
        return {}

    def _rotate(self, destination: Destination) -> None:
        """Keep what retention() keeps in `destination`; a failure to delete is logged and
        retried at the next backup, never a failed backup."""
        try:
            old = retention(destination.list(), self.settings.backup_keep)
            destination.delete(old)
        except (DestinationError, OSError) as error:
            log.warning("could not rotate the backups in %s: %s", destination.name, error)
            return
        for info in old:
            log.info("rotated out %s from %s", info.name, destination.name)

    def _succeeded(self, name: str) -> None:
        status = self._status[name]
        if status.failing:
            self.alert(Text("✅ Backups to {destination} work again.", destination=Code(name)))
        status.failing, status.failing_since, status.last_success = False, None, self.clock()

    def _failed(self, name: str, error: str) -> None:
        status = self._status[name]
        log.error("backup not stored in %s: %s", name, error)
        if not status.failing:  # once per streak of failures
            where = Text("the local backup folder") if name == self.local.name else Code(name)
            self.alert(
                Text(
                    "⚠️ A backup could not be stored in {where}: {error}. It is retried at the next backup.",
                    where=where,
                    error=Code(error),
                )
            )
            status.failing_since = self.clock()
        status.failing, status.last_error, status.last_error_at = True, error, self.clock()

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

    # --- keeping an empty database from burying a real off-site backup ---

    def failing_destinations(self) -> list[str]:
        """The destinations whose last attempt to store a backup failed."""
        return sorted(name for name, status in self._status.items() if status.failing)

    def offsite_paused(self) -> str | None:
        """Why copies are kept from leaving the machine, or None when they may leave."""
        self._paused_seen = self.db.get_state(PAUSE_KEY) if self.db else None
        return self._paused_seen

    def offsite_paused_seen(self) -> bool:
        """Whether the pause was on when last read (every backup reads it): for the health
        endpoint, which must answer while a final backup holds the database for seconds."""
        return self._paused_seen is not None

    def pause_offsite(self, why: str) -> None:
        self.db.set_state(PAUSE_KEY, why)
        self._paused_seen = why

    def resume_offsite(self) -> None:
        self.db.set_state(PAUSE_KEY, None)
        self._paused_seen = None

    # --- what there is ---

    def newest_local(self) -> BackupInfo | None:
        return next(iter(self.local.list()), None)

    def listing(self, only: str | None = None) -> Listing:
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
                unreachable.append(Unreachable(destination.name, str(error), destination is not self.local))
        return Listing(sorted(found, key=lambda info: info.created_at, reverse=True), unreachable)

    def overview(self) -> Overview:
        local = self.local.list()
        return Overview(
            local[0] if local else None,
            len(local),
            self.settings.backup_keep,
            {name: replace(status) for name, status in self._status.items()},
            self.offsite_paused(),
        )

    @contextmanager
    def exported_newest(self) -> Iterator[tuple[Path, BackupInfo] | None]:
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

    def _unpack(
        self, source: Path | BackupInfo, workdir: Path, thorough: bool = False
    ) -> tuple[BackupInfo, Path]:
        """Fetch, decompress and verify a backup; returns its info and the verified SQLite file."""
        if not isinstance(source, BackupInfo):
            return unpack_and_verify(Path(source), workdir, thorough, self._sealer)
        destination = self._destination(source.destination)
        try:
            path = destination.fetch(source, workdir)
        except (DestinationError, OSError) as error:
            raise BackupError(f"cannot fetch {source.name} from {source.destination}: {error}") from error
        from_outside = destination is not self.local
        info, snapshot = unpack_and_verify(
            path, workdir, thorough, self._sealer, must_be_sealed=from_outside and self._sealer is not None
        )
        return replace(
            info, name=source.name, destination=source.destination, location=source.location, size=source.size
        ), snapshot

    def _destination(self, name: str) -> Destination:
        for destination in self._destinations:
            if destination.name == name:
                return destination
        raise BackupError(f"there is no destination called {name}")

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
            if by_person and not self._writing:
                raise BackupError("this instance is not the writer any more: restore on the one that serves")
            info, snapshot = self._unpack(source, workdir)
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
            self._record_writer()  # the restored data names the writer that took it
            if info.destination not in (self.local.name, "file"):
                self._newest_offsite = max(filter(None, [self._newest_offsite, info.created_at]))
            log.info(
                "restored %s (%s, %d rows) from %s", info.name, info.reason, info.total_rows, info.destination
            )
            if by_person:
                self.resume_offsite()
                self.backup_quietly("restore")
            return info

    def _record_writer(self) -> None:
        if self.writer:
            self.db.set_state(GENERATION_KEY, str(self.generation))
            self.db.set_state(WRITER_KEY, self.writer)

    def backup_quietly(self, reason: str) -> CreateResult | None:
        """A backup whose failure is logged, never raised: the next one retries."""
        try:
            return self.create(reason)
        except BackupError as error:
            log.error("%s backup failed: %s", reason, error)
            return None

    def restore_newest(self) -> StartupRestore:
        """Restore the newest backup that verifies, trying older ones when it does not. Safety
        copies taken before a restore come last: they hold what a person chose to replace."""
        listing = self.listing()
        candidates = sorted(listing.backups, key=lambda info: info.reason == PRE_RESTORE)
        passed_over = []
        for candidate in candidates + self._plain_copy_candidate():
            try:
                restored = self.restore(candidate, by_person=False)
                return StartupRestore(restored, passed_over, listing.unreachable)
            except BackupError as error:
                log.warning("cannot restore %s (%s): %s", candidate.name, candidate.destination, error)
                passed_over.append(Refusal(candidate, str(error), candidate.destination != self.local.name))
        return StartupRestore(None, passed_over, listing.unreachable)

    def _plain_copy_candidate(self) -> list[BackupInfo]:
        if not self.plain_copy.is_file():
            return []
        stat = self.plain_copy.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        return [
            BackupInfo(
                modified,
                "plain copy",
                0,
                {},
                "",
                0,
                stat.st_size,
                self.local.name,
                str(self.plain_copy),
                self.plain_copy.name,
            )
        ]


def _same_file(path: Path, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return False


def retention(backups: Sequence[BackupInfo], keep: int) -> list[BackupInfo]:
    """Which of `backups` (newest first) rotation removes: all but the newest `keep`, where an
    on-change backup stays only while it is the newest of all (anything after it says as much)."""
    kept = [info for n, info in enumerate(backups) if n == 0 or info.reason != "change"][:keep]
    return [info for info in backups if info not in kept]
