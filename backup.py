"""Backups: snapshot -> verify -> compress -> store -> rotate; verify and restore; startup restore.

Also a command line that works without BOT_TOKEN, on the configured DB_PATH:

    python backup.py create | list | verify [FILE] | restore FILE|latest [--yes]
"""

from __future__ import annotations

import argparse
import hashlib
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

import zstandard

import database
from backup_format import (BackupInfo, NotABackupError, file_name, header_bytes, read_header,
                           sniff)
from config import ConfigError, Settings, load_settings
from database import Database
from destinations import (Destination, DestinationError, LocalFolder, remove_stale_temporaries,
                          write_atomically)

log = logging.getLogger("backup")

REQUIRED_TABLES = ("users", "tracking")
SKIPPABLE_REASONS = ("startup", "scheduled")  # the others always run
STEP_PAGES = 256  # pages copied per snapshot step while holding the lock (1 MB at 4 KB pages)
COMPRESSION_LEVEL = 3
CHUNK = 1 << 20
Clock = Callable[[], datetime]


class BackupError(Exception):
    """A backup or restore was refused or failed; the message is one line that says why."""


@dataclass(frozen=True)
class CreateResult:
    info: Optional[BackupInfo]  # the new backup as stored locally; None when skipped
    seconds: float
    stored: list[BackupInfo] = field(default_factory=list)  # one per destination that took it
    failures: dict[str, str] = field(default_factory=dict)  # destination name -> why not

    @property
    def skipped(self) -> bool:
        return self.info is None


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class BackupEngine:
    """Creates, lists, verifies and restores backups of one live database."""

    def __init__(self, db: Database, settings: Settings, extra_destinations: Sequence[Destination] = (),
                 clock: Clock = utc_now, step_pages: int = STEP_PAGES):
        self.db, self.settings, self.clock, self.step_pages = db, settings, clock, step_pages
        self.local = LocalFolder(settings.backup_dir)
        self.destinations: list[Destination] = [self.local, *extra_destinations]
        self.plain_copy = Path(f"{settings.db_path}.backup")
        self._busy = threading.RLock()  # one backup or restore at a time

    # --- create ---

    def create(self, reason: str) -> CreateResult:
        """Take a backup now. Startup and scheduled backups are skipped when nothing changed."""
        with self._busy, self._workdir() as workdir:
            started = time.monotonic()
            created_at = self.clock()
            for folder in (self.local.folder, self.plain_copy.parent):
                remove_stale_temporaries(folder)
            snapshot = workdir / "snapshot.db"
            self._snapshot(snapshot)
            schema_version, row_counts = inspect_snapshot(snapshot)
            digest, db_size = sha256_of(snapshot)
            newest = next(iter(self.local.list()), None)
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
                stored, failures = self._store(packed, info)
                self._keep_plain_copy(content)
            self.local.prune(self.settings.backup_keep)
            result = CreateResult(stored[0] if stored else None, time.monotonic() - started,
                                  stored, failures)
            log.info("%s backup %s: %d bytes, %d rows, %.2f s", reason, info.name,
                     stored[0].size if stored else 0, info.total_rows, result.seconds)
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

    def _store(self, packed: Path, info: BackupInfo) -> tuple[list[BackupInfo], dict[str, str]]:
        stored, failures = [], {}
        for destination in self.destinations:
            try:
                stored.append(destination.put(packed, info))
            except (DestinationError, OSError) as error:
                failures[destination.name] = str(error)
                log.error("backup %s not stored in %s: %s", info.name, destination.name, error)
        if not stored or stored[0].destination != self.local.name:
            raise BackupError(f"the backup could not be written: {failures.get(self.local.name)}")
        return stored, failures

    def _keep_plain_copy(self, content: BinaryIO) -> None:
        """DB_PATH + '.backup': the newest snapshot as a plain SQLite file (the seed's path)."""
        content.seek(0)
        try:
            write_atomically(self.plain_copy, lambda out: shutil.copyfileobj(content, out, CHUNK))
        except OSError as error:
            log.warning("could not update %s: %s", self.plain_copy, error.strerror or error)

    # --- list and verify ---

    def backups(self) -> list[BackupInfo]:
        """Every backup in every destination, newest first by its own created-at."""
        found = []
        for destination in self.destinations:
            try:
                found.extend(destination.list())
            except (DestinationError, OSError) as error:
                log.warning("cannot list backups in %s: %s", destination.name, error)
        return sorted(found, key=lambda info: info.created_at, reverse=True)

    def verify(self, source: Path | BackupInfo, thorough: bool = False) -> BackupInfo:
        """Check a backup (checksum, integrity, tables, schema); returns its info."""
        with self._workdir() as workdir:
            info, _ = self._unpack(source, workdir, thorough)
            return info

    def _unpack(self, source: Path | BackupInfo, workdir: Path,
                thorough: bool = False) -> tuple[BackupInfo, Path]:
        """Fetch, decompress and verify a backup; returns its info and the verified SQLite file."""
        if not isinstance(source, BackupInfo):
            return unpack_and_verify(Path(source), workdir, thorough)
        destination = next(d for d in self.destinations if d.name == source.destination)
        try:
            path = destination.fetch(source, workdir)
        except (DestinationError, OSError) as error:
            raise BackupError(f"cannot fetch {source.name} from {source.destination}: {error}") from error
        info, snapshot = unpack_and_verify(path, workdir, thorough)
        return replace(info, name=source.name, destination=source.destination,
                       location=source.location, size=source.size), snapshot

    # --- restore ---

    def restore(self, source: Path | BackupInfo, *, safety_backup: bool = True) -> BackupInfo:
        """Replace the live data with a verified backup, after a 'pre-restore' safety backup.

        Every refusal raises BackupError and leaves the live database untouched.
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

    def restore_newest(self) -> tuple[Optional[BackupInfo], list[str]]:
        """Restore the newest backup that verifies, trying older ones when it does not.

        Returns what was restored (None when nothing could be) and why each candidate before it
        was passed over.
        """
        passed_over = []
        for candidate in self.backups() + self._plain_copy_candidate():
            try:
                return self.restore(candidate, safety_backup=False), passed_over
            except BackupError as error:
                where = f"{candidate.name or candidate.location} ({candidate.destination})"
                log.warning("cannot restore %s: %s", where, error)
                passed_over.append(f"{where}: {error}")
        return None, passed_over

    def _plain_copy_candidate(self) -> list[BackupInfo]:
        if not self.plain_copy.is_file():
            return []
        modified = datetime.fromtimestamp(self.plain_copy.stat().st_mtime, timezone.utc)
        return [BackupInfo(modified, "plain copy", 0, {}, "", 0, self.plain_copy.stat().st_size,
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


# --- the pieces, as plain functions -------------------------------------------------------------

def write_backup_file(source: BinaryIO, info: BackupInfo, target: Path) -> None:
    """Header frame, then the snapshot compressed with zstd (content size and checksum included)."""
    # Single-threaded: zstd's worker threads would be faster but take about 45 MB more memory.
    compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL, threads=0, write_checksum=True,
                                          write_content_size=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(header_bytes(info))
        with compressor.stream_writer(out, size=info.db_size, closefd=False) as packer:
            done = 0
            while chunk := source.read(CHUNK):
                packer.write(chunk)
                done += len(chunk)
                log.debug("compress progress: %d of %d bytes", done, info.db_size)
        out.flush()
        os.fsync(out.fileno())


def unpack_and_verify(path: Path, workdir: Path, thorough: bool = False) -> tuple[BackupInfo, Path]:
    """Verify the backup at `path` and return its info and a verified SQLite file.

    Accepts this project's backups and plain SQLite files (the DB_PATH.backup copy). Raises
    BackupError with one line saying what is wrong.
    """
    try:
        stream = open(path, "rb")
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror or error}") from error
    with stream:
        kind = sniff(stream)
        if kind == "sqlite":
            snapshot, info = path, None
        elif kind == "backup":
            try:
                info = read_header(stream)
            except NotABackupError as error:
                raise BackupError(f"not a valid backup: {error}") from error
            snapshot = workdir / "restore.db"
            _decompress(stream, snapshot, info)
        else:
            raise BackupError("not a backup: the file is neither a backup of this bot nor a SQLite database")
    schema_version, row_counts = inspect_snapshot(snapshot, thorough)
    if info is None:
        digest, db_size = sha256_of(snapshot)
        modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        info = BackupInfo(modified, "plain copy", schema_version, row_counts, digest, db_size)
    elif (schema_version, row_counts) != (info.schema_version, info.row_counts):
        raise BackupError("damaged backup: its contents do not match its header")
    return replace(info, name=path.name, destination="file", location=str(path),
                   size=path.stat().st_size), snapshot


def _decompress(stream, target: Path, info: BackupInfo) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_size=CHUNK)
        with open(target, "wb") as out:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except zstandard.ZstdError as error:
        raise BackupError(f"damaged backup: the compressed data is corrupt ({error})") from error
    if size != info.db_size:
        raise BackupError(f"damaged backup: {size} bytes inside where {info.db_size} were written "
                          "(truncated?)")
    if digest.hexdigest() != info.sha256:
        raise BackupError("damaged backup: the SHA-256 checksum does not match")


def inspect_snapshot(path: Path, thorough: bool = False) -> tuple[int, dict[str, int]]:
    """Check a SQLite file's integrity and make sure it is a database of this bot.

    Returns its schema version and row counts; raises BackupError otherwise. quick_check reads
    every page and b-tree (about ten times faster than integrity_check, which also matches each
    index against its table); `thorough` runs the full integrity_check.
    """
    newest = len(database.find_migrations())
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise BackupError(f"not a usable SQLite database: {error}") from error
    try:
        pragma = "integrity_check" if thorough else "quick_check"
        check = [row[0] for row in connection.execute(f"PRAGMA {pragma}(5)")]
        if check != ["ok"]:
            raise BackupError(f"damaged backup: the integrity check failed ({check[0].splitlines()[0]})")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        missing = [name for name in REQUIRED_TABLES if name not in tables]
        if missing:
            raise BackupError(f"not a backup of this bot: the table {missing[0]} is missing")
        if version > newest:
            raise BackupError(f"the backup has schema version {version}, newer than this code "
                              f"knows ({newest}): update the bot first")
        counts = {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                  for name in tables}
        return version, counts
    except sqlite3.DatabaseError as error:
        raise BackupError(f"damaged backup: {error}") from error
    finally:
        connection.close()


def _leave_wal_if_alone(connection: sqlite3.Connection) -> None:
    """Leave WAL when no other process has the database open (e.g. a sqlite3 shell); else stay."""
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as error:
        log.debug("staying in WAL for the restore: %s", error)


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size



# --- startup: restore only when the database needs it ----------------------------------------

@dataclass
class StartupReport:
    lock: Optional[database.InstanceLock] = None
    moved_aside: Optional[Path] = None  # where a damaged database went
    restore_reason: Optional[str] = None  # why a restore was attempted; None: the database was kept
    restored: Optional[BackupInfo] = None
    passed_over: list[str] = field(default_factory=list)  # candidates that failed verification
    applied_migrations: list[str] = field(default_factory=list)


def prepare_database(settings: Settings, extra_destinations: Sequence[Destination] = (),
                     clock: Clock = utc_now) -> tuple[Database, BackupEngine, StartupReport]:
    """DESIGN.md's startup steps 2 to 4: open (probe), restore if needed, migrate.

    A healthy database is never rolled back. A damaged one is moved aside, never deleted.
    Raises database.AlreadyRunningError when another bot holds DB_PATH, and MigrationError
    (SchemaTooNewError included) when the schema cannot be brought up to date.
    """
    report = StartupReport(lock=_lock_if_possible(settings.db_path, "a running bot"))
    db = _open_or_move_aside(settings.db_path, clock, report)
    if db.storage.in_memory:
        report.restore_reason = "the database is in memory"
    elif report.moved_aside is not None:
        report.restore_reason = "the database was damaged"
    elif db.is_empty():
        report.restore_reason = "the database is missing or empty"
    engine = BackupEngine(db, settings, extra_destinations, clock)
    if report.restore_reason:
        log.warning("%s: looking for a backup to restore", report.restore_reason)
        report.restored, report.passed_over = engine.restore_newest()
        if report.restored is None:
            log.warning("no backup could be restored: starting with a fresh database")
    report.applied_migrations = db.migrate()
    return db, engine, report


def _lock_if_possible(db_path: str, holder: str) -> Optional[database.InstanceLock]:
    try:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        return database.InstanceLock(db_path, holder)
    except OSError:
        return None  # the folder is unusable: the probe will say why and memory mode follows


def _open_or_move_aside(path: str, clock: Clock, report: StartupReport) -> Database:
    try:
        db = database.open_database(path)
    except database.DamagedDatabaseError as error:
        return _reopen_after_moving_aside(path, str(error), clock, report)
    problem = None if db.storage.in_memory else db.health_problem()
    if problem is None:
        return db
    db.close()
    return _reopen_after_moving_aside(path, problem, clock, report)


def _reopen_after_moving_aside(path: str, problem: str, clock: Clock, report: StartupReport) -> Database:
    report.moved_aside = database.move_aside(path, clock())
    log.error("the database is damaged (%s); moved it aside to %s", problem, report.moved_aside)
    return database.open_database(path)


# --- the command line -----------------------------------------------------------------------------

def cli(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(require_token=False)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    from logs import setup_logging
    setup_logging(settings.log_level if settings.log_level == "DEBUG" else "WARNING", settings.secrets)
    try:
        return args.run(settings, args)
    except (BackupError, database.DatabaseError, DestinationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python backup.py", description=(
        "Back up and restore the bot's database (DB_PATH) without the bot and without BOT_TOKEN."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="take a backup now", description=(
        "Take a backup of DB_PATH now (also while the bot runs) into BACKUP_DIR."))
    create.set_defaults(run=_cli_create)
    listing = commands.add_parser("list", help="list the backups, newest first", description=(
        "List every backup, newest first: time, reason, size, rows, where."))
    listing.set_defaults(run=_cli_list)
    verify = commands.add_parser("verify", help="check a backup completely", description=(
        "Check a backup: checksum, full integrity check, tables, schema version. "
        "Default: the newest."))
    verify.add_argument("file", nargs="?", help="a backup file; default: the newest backup")
    verify.set_defaults(run=_cli_verify)
    restore = commands.add_parser("restore", help="replace the database with a backup", description=(
        "Verify a backup, take a 'pre-restore' safety backup, then replace DB_PATH's data with "
        "it. Refused while the bot runs."))
    restore.add_argument("source", metavar="FILE|latest", help="a backup file, or 'latest'")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.set_defaults(run=_cli_restore)
    return parser


def _cli_create(settings: Settings, args) -> int:
    if not Path(settings.db_path).is_file():
        raise BackupError(f"there is no database at {settings.db_path} (DB_PATH)")
    try:
        lock = database.InstanceLock(settings.db_path, "python backup.py create")
        step_pages = STEP_PAGES
    except database.AlreadyRunningError:
        # The bot is running: read the file through our own connection in one step, one read
        # transaction; WAL lets the bot keep writing meanwhile.
        lock, step_pages = None, -1
    db = _open_existing(settings.db_path)
    try:
        result = BackupEngine(db, settings, step_pages=step_pages).create("manual")
    finally:
        db.close()
        if lock:
            lock.release()
    print(f"created {result.info.location}: {_size(result.info.size)}, {result.info.total_rows} rows, "
          f"{result.seconds:.2f} s")
    return 0


def _cli_list(settings: Settings, args) -> int:
    backups = BackupEngine(None, settings).backups()
    if not backups:
        print(f"no backups in {settings.backup_dir}")
    for info in backups:
        print(f"{info.created_at:%Y-%m-%d %H:%M:%S} UTC  {info.reason:<11}  {_size(info.size):>9}  "
              f"{info.total_rows:>9} rows  {info.destination}  {info.location}")
    return 0


def _cli_verify(settings: Settings, args) -> int:
    engine = BackupEngine(None, settings)
    source = Path(args.file) if args.file else _newest(engine)
    info = engine.verify(source, thorough=True)
    tables = ", ".join(f"{name} {rows}" for name, rows in info.row_counts.items())
    print(f"ok: {info.name}: {info.created_at:%Y-%m-%d %H:%M:%S} UTC, {info.reason}, "
          f"schema version {info.schema_version}, rows: {tables}")
    return 0


def _cli_restore(settings: Settings, args) -> int:
    try:
        Path(settings.db_path).parent.mkdir(parents=True, exist_ok=True)
        lock = database.InstanceLock(settings.db_path, "python backup.py restore")
    except OSError as error:
        raise BackupError(f"cannot use the folder of {settings.db_path}: {error.strerror}") from None
    except database.AlreadyRunningError as error:
        raise BackupError(f"refused: {error}; stop the bot first, or restore from the admin panel") from None
    try:
        probe_engine = BackupEngine(None, settings)
        source = _newest(probe_engine) if args.source == "latest" else Path(args.source)
        info = probe_engine.verify(source)  # refuse a bad file before asking anything
        if not args.yes and not _confirmed(info, settings.db_path):
            print("nothing restored (add --yes to skip this question)", file=sys.stderr)
            return 1
        report = StartupReport(lock=lock)
        db = _open_or_move_aside(settings.db_path, utc_now, report)
        try:
            restored = BackupEngine(db, settings).restore(source)
        finally:
            db.close()
    finally:
        lock.release()
    print(f"restored {restored.name} ({restored.created_at:%Y-%m-%d %H:%M:%S} UTC, "
          f"{restored.total_rows} rows) into {settings.db_path}")
    return 0


def _open_existing(path: str) -> Database:
    db = database.open_database(path)
    if db.storage.in_memory:
        raise BackupError(f"cannot use {path}: {db.storage.reason}")
    problem = db.health_problem()
    if problem:
        db.close()
        raise BackupError(f"the database at {path} is damaged: {problem}")
    return db


def _newest(engine: BackupEngine) -> BackupInfo:
    backups = engine.backups()
    if not backups:
        raise BackupError(f"there are no backups in {engine.settings.backup_dir}")
    return backups[0]


def _confirmed(info: BackupInfo, db_path: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"Replace the data in {db_path} with {info.name} "
                   f"({info.created_at:%Y-%m-%d %H:%M} UTC, {info.total_rows} rows)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


if __name__ == "__main__":
    sys.exit(cli())
