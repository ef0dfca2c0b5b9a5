"""The command line behind `python backup.py`: create, list, verify and restore backups without
the bot and without BOT_TOKEN (the Telegram chat is reached when BOT_TOKEN is set)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import database
import human
import locks
from backup_format import BackupError, BackupInfo
from clock import utc_now
from config import ConfigError, Settings, load_settings
from database import Database
from destinations import DestinationError
from engine import STEP_PAGES, BackupEngine
from logs import Redactor, setup_logging
from sealing import SealError, Sealer
from startup import offsite_destinations

WHERE = ("local", "telegram", "s3")


def cli(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(require_token=False)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level if settings.log_level == "DEBUG" else "WARNING", settings.secrets)
    try:
        return args.run(settings, args)
    except (BackupError, database.DatabaseError, DestinationError, locks.AlreadyRunningError) as error:
        print(f"error: {Redactor(settings.secrets)(str(error))}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python backup.py", description=(
        "Back up and restore the bot's database (DB_PATH) without the bot. BOT_TOKEN is needed "
        "only to reach the Telegram chat."))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(commands, "create", _create, "take a backup now",
             "Take a backup of DB_PATH now (also while the bot runs) into BACKUP_DIR and every "
             "off-site destination.")
    _command(commands, "list", _list, "list the backups, newest first",
             "List the backups of every destination, newest first: time, reason, size, rows, where.",
             where=True)
    verify = _command(commands, "verify", _verify, "check a backup completely",
                      "Check a backup: checksum, full integrity check, tables, schema version. "
                      "Default: the newest.", where=True)
    verify.add_argument("file", nargs="?", help="a backup file; default: the newest backup")
    restore = _command(commands, "restore", _restore, "replace the database with a backup",
                       "Verify a backup, take a 'pre-restore' safety backup, then replace DB_PATH's "
                       "data with it. Refused while the bot runs.", where=True)
    restore.add_argument("source", metavar="FILE|latest", help="a backup file, or 'latest'")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    decrypt = _command(commands, "decrypt", _decrypt, "decrypt an encrypted backup file",
                       "Decrypt a backup that left the machine encrypted (NAME.db.zst.sealed) with "
                       "BACKUP_PASSPHRASE, into a .db.zst file that `zstd -d` opens.")
    decrypt.add_argument("file", help="an encrypted backup file")
    decrypt.add_argument("-o", "--output", help="where to write it (default: FILE without .sealed)")
    return parser


def _command(commands, name: str, run, summary: str, description: str,
             where: bool = False) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=summary, description=description)
    command.set_defaults(run=run)
    if where:
        command.add_argument("--from", dest="where", choices=WHERE,
                             help="only this destination (default: all of them)")
    return command


def _engine(settings: Settings, db: Optional[Database] = None, **options) -> BackupEngine:
    return BackupEngine(db, settings, offsite_destinations(settings), **options)


def _create(settings: Settings, args) -> int:
    if not Path(settings.db_path).is_file():
        raise BackupError(f"there is no database at {settings.db_path} (DB_PATH)")
    try:
        lock = locks.InstanceLock(settings.db_path, "python backup.py create")
        step_pages = STEP_PAGES
    except locks.AlreadyRunningError:
        # The bot is running: read the file through our own connection in one step, one read
        # transaction; WAL lets the bot keep writing meanwhile.
        lock, step_pages = None, -1
    db = _open_existing(settings.db_path)
    try:
        result = _engine(settings, db, step_pages=step_pages).create("manual")
    finally:
        db.close()
        if lock:
            lock.release()
    where = ", ".join(info.destination for info in result.stored)
    print(f"created {result.info.location}: {human.size(result.info.size)}, {result.info.total_rows} rows, "
          f"{result.seconds:.2f} s; stored in {where}")
    for name, error in result.failures.items():
        print(Redactor(settings.secrets)(f"not stored in {name}: {error}"), file=sys.stderr)
    return 0


def _list(settings: Settings, args) -> int:
    listing = _engine(settings).listing(only=args.where)
    for unreachable in listing.unreachable:
        print(Redactor(settings.secrets)(f"cannot list {unreachable.destination}: {unreachable.error}"),
              file=sys.stderr)
    if not listing.backups:
        print("no backups found")
    for info in listing.backups:
        print(f"{info.created_at:%Y-%m-%d %H:%M:%S} UTC  {info.reason:<11}  {human.size(info.size):>9}  "
              f"{info.total_rows:>9} rows  {info.destination:<8}  {info.location}")
    return 0


def _verify(settings: Settings, args) -> int:
    engine = _engine(settings)
    source = Path(args.file) if args.file else _newest(engine, args.where)
    info = engine.verify(source, thorough=True)
    tables = ", ".join(f"{name} {rows}" for name, rows in info.row_counts.items())
    print(f"ok: {info.name}: {info.created_at:%Y-%m-%d %H:%M:%S} UTC, {info.reason}, "
          f"schema version {info.schema_version}, rows: {tables}")
    return 0


def _restore(settings: Settings, args) -> int:
    try:
        Path(settings.db_path).parent.mkdir(parents=True, exist_ok=True)
        lock = locks.InstanceLock(settings.db_path, "python backup.py restore")
    except OSError as error:
        raise BackupError(f"cannot use the folder of {settings.db_path}: {error.strerror}") from None
    except locks.AlreadyRunningError as error:
        raise BackupError(f"refused: {error}; stop the bot first, or restore from the admin panel") from None
    try:
        probe = _engine(settings)
        source = _newest(probe, args.where) if args.source == "latest" else Path(args.source)
        info = probe.verify(source)  # refuse a bad file before asking anything
        if not args.yes and not _confirmed(info, settings.db_path):
            print("nothing restored (add --yes to skip this question)", file=sys.stderr)
            return 1
        db, _ = database.open_or_move_aside(settings.db_path, utc_now())
        try:
            restored = _engine(settings, db).restore(source)
        finally:
            db.close()
    finally:
        lock.release()
    print(f"restored {restored.name} from {restored.destination} "
          f"({restored.created_at:%Y-%m-%d %H:%M:%S} UTC, {restored.total_rows} rows) into {settings.db_path}")
    return 0


def _decrypt(settings: Settings, args) -> int:
    if not settings.backup_passphrase:
        raise BackupError("set BACKUP_PASSPHRASE to the passphrase the backup was encrypted with")
    source = Path(args.file)
    target = Path(args.output) if args.output else source.with_name(
        source.name.removesuffix(".sealed").removesuffix(".age"))
    if target == source or target.exists():
        raise BackupError(f"{target} exists already: name another one with -o")
    try:
        Sealer(settings.backup_passphrase).open(source, target)
    except (SealError, OSError) as error:
        target.unlink(missing_ok=True)
        raise BackupError(str(error)) from None
    print(f"decrypted into {target}")
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


def _newest(engine: BackupEngine, where: Optional[str]) -> BackupInfo:
    listing = engine.listing(only=where)
    backups = listing.backups
    if not backups:
        problems = "; ".join(f"{u.destination}: {u.error}" for u in listing.unreachable)
        raise BackupError(f"there are no backups{f' in {where}' if where else ''}"
                          f"{f' ({problems})' if problems else ''}")
    return backups[0]


def _confirmed(info: BackupInfo, db_path: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"Replace the data in {db_path} with {info.name} "
                   f"({info.created_at:%Y-%m-%d %H:%M} UTC, {info.total_rows} rows)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")
