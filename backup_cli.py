"""The command line behind `python backup.py`: create, list, verify and restore backups without
the bot and without BOT_TOKEN (the Telegram chat is reached when BOT_TOKEN is set)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import database
import human
import locks
from backup_format import PIECE_NAME, BackupError, BackupInfo, sniff
from clock import utc_now
from config import MIN_PASSPHRASE, ConfigError, Settings, load_settings
from database import Database
from destinations import DestinationError, LocalFolder
from engine import STEP_PAGES, BackupEngine
from logs import Redactor, setup_logging
from sealing import Sealer, SealError
from startup import destinations_off, offsite

WHERE = ("local", "telegram", "s3")
# A backup as `list` prints it and verify / restore take it back: DESTINATION:NAME. The prefix
# is matched loosely (any word) so that a mistyped destination is told as such, not as a file.
REFERENCE = re.compile(r"([a-z][a-z0-9_-]*):(.*)", re.DOTALL)
OWN_NAME = PIECE_NAME  # backup_format.file_name's, a full backup's or a delta's
SHOWN_LENGTH = 100  # characters of a person's argument repeated in an error line
BACKUP_HELP = "a backup as `list` prints it (local:NAME, telegram:NAME, s3:NAME), or a backup file's path"


class _CannotAsk(Exception):
    """A question the command cannot ask: a usage error (exit 2), naming what to add."""


class _ReaderGone(Exception):
    """Whoever read our standard output stopped reading (`python backup.py list | head -1`)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One line, as every other failure of this command (the usage is one --help away).
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def cli(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # A passphrase too short for the bot still opens the backups sealed with it here.
        settings = load_settings(require_token=False, short_passphrase=True)
    except ConfigError as error:
        print(f"configuration error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    if settings.backup_passphrase and len(settings.backup_passphrase) < MIN_PASSPHRASE:
        print(
            f"warning: BACKUP_PASSPHRASE is shorter than {MIN_PASSPHRASE} characters: the bot refuses it; "
            "choose a longer one (docs/configuration.md)",
            file=sys.stderr,
        )
    setup_logging(settings.log_level if settings.log_level == "DEBUG" else "WARNING", settings.secrets)
    code = _run(settings, args)
    try:
        sys.stdout.flush()  # here, not at exit, where a closed pipe would print a traceback
    except BrokenPipeError:
        return _reader_gone()
    return code


def _run(settings: Settings, args) -> int:
    try:
        return args.run(settings, args)
    except _ReaderGone:
        return _reader_gone()
    except _CannotAsk as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (BackupError, database.DatabaseError, DestinationError, locks.AlreadyRunningError) as error:
        print(f"error: {_one_line(Redactor(settings.secrets)(str(error)))}", file=sys.stderr)
        return 1


def _out(line: str) -> None:
    """A line on standard output; _ReaderGone when nobody reads it any more."""
    try:
        print(line)
    except BrokenPipeError:
        raise _ReaderGone from None


def _reader_gone() -> int:
    """The recipe of Python's "Note on SIGPIPE": the rest of the output goes to devnull, so the
    flush at exit cannot fail again; exit 1, as Python itself does on EPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 1


def _one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped: an error is one line, and
    what a person (or a file's name) put in it cannot move the terminal's cursor."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode() for c in text
    )


def _shown(text: str) -> str:
    """A person's argument, quoted and cut short, for an error line."""
    return repr(text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH] + "...")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python backup.py",
        description=(
            "Back up and restore the bot's database (DB_PATH) without the bot. BOT_TOKEN is needed "
            "only to reach the Telegram chat."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(
        commands,
        "create",
        _create,
        "take a backup now",
        "Take a backup of DB_PATH now (also while the bot runs) into BACKUP_DIR and every "
        "off-site destination.",
    )
    _command(
        commands,
        "list",
        _list,
        "list the backups, newest first",
        "List the backups of every destination, newest first, each once: time, reason, size, "
        "rows, the places that hold it, and the backup as DESTINATION:NAME, which verify and "
        "restore take. The places it does not look at, and why, go to standard error.",
        where=True,
    )
    verify = _command(
        commands,
        "verify",
        _verify,
        "check a backup completely",
        "Check a backup: checksum, full integrity check, tables, schema version. Default: the newest.",
        where=True,
    )
    verify.add_argument("file", nargs="?", metavar="BACKUP", help=f"{BACKUP_HELP}; default: the newest")
    restore = _command(
        commands,
        "restore",
        _restore,
        "replace the database with a backup",
        "Verify a backup, take a 'pre-restore' safety backup, then replace DB_PATH's "
        "data with it. Refused while the bot runs.",
        where=True,
    )
    restore.add_argument("source", metavar="BACKUP|latest", help=f"{BACKUP_HELP}, or 'latest'")
    restore.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    decrypt = _command(
        commands,
        "decrypt",
        _decrypt,
        "decrypt an encrypted backup file",
        "Decrypt a backup that left the machine encrypted (NAME.db.zst.sealed) with "
        "BACKUP_PASSPHRASE, into a .db.zst file that `zstd -d` opens.",
    )
    decrypt.add_argument("file", help="an encrypted backup file")
    decrypt.add_argument("-o", "--output", help="where to write it (default: FILE without .sealed)")
    return parser


def _command(
    commands, name: str, run, summary: str, description: str, where: bool = False
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=summary, description=description)
    command.set_defaults(run=run)
    if where:
        command.add_argument(
            "--from", dest="where", choices=WHERE, help="only this destination (default: all of them)"
        )
    return command


def _engine(
    settings: Settings, db: Database | None = None, where: str | None = None, **options
) -> BackupEngine:
    """The engine with every destination the settings turn on; refused when `where` is not one
    of them (else an unconfigured destination would read as one without backups)."""
    destinations = offsite(settings).destinations
    if where not in (None, LocalFolder.name, *(destination.name for destination in destinations)):
        raise BackupError(_not_configured(settings, where))
    # Its backups are those of the writer the database records (lease.Lease without stores).
    return BackupEngine(db, settings, destinations, **options)


def _not_configured(settings: Settings, where: str) -> str:
    """What to set to turn `where` on (the panel's ⚙️ System says the same)."""
    return f"{where} is {destinations_off(settings).get(where, 'not configured')}"


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
    _out(
        f"created {result.info.location}: {human.size(result.info.size)}, {result.info.total_rows} rows, "
        f"{result.seconds:.2f} s; stored in {where}"
    )
    for name, error in result.failures.items():
        print(_one_line(Redactor(settings.secrets)(f"not stored in {name}: {error}")), file=sys.stderr)
    return 0


def _list(settings: Settings, args) -> int:
    engine = _engine(settings, where=args.where)
    if args.where is None:
        _say_unseen(settings)
    listing = engine.listing(only=args.where)
    for unreachable in listing.unreachable:
        print(
            _one_line(
                Redactor(settings.secrets)(f"cannot list {unreachable.destination}: {unreachable.error}")
            ),
            file=sys.stderr,
        )
    if not listing.backups:
        _out("no backups found")
    backups = _by_backup(listing.backups)
    width = max((len(_places(copies)) for copies in backups), default=0)
    for copies in backups:
        info = copies[0]  # the copy verify and restore take by the reference shown
        _out(
            f"{info.created_at:%Y-%m-%d %H:%M:%S} UTC  {info.reason:<11}  {human.size(info.size):>9}  "
            f"{info.total_rows:>9} rows  {_places(copies):<{width}}  {_reference_of(info)}"
        )
    return 0


def _by_backup(copies: Sequence[BackupInfo]) -> list[list[BackupInfo]]:
    """The copies of each backup together, newest first as listed; each backup's copies in the
    order of WHERE (the local one first: the nearest). A copy's name may carry more than the
    backup's (the chat's begin with the bot's name, an encrypted one ends .sealed) and its size
    differs; the backup's own name and the checksum of the database inside do not."""
    found: dict[tuple, list[BackupInfo]] = {}
    for info in copies:
        own = OWN_NAME.search(info.name)
        key = (own.group(0), info.sha256) if own else (info.destination, info.name)
        found.setdefault(key, []).append(info)
    rank = {name: n for n, name in enumerate(WHERE)}
    return [sorted(held, key=lambda c: rank.get(c.destination, len(WHERE))) for held in found.values()]


def _places(copies: Sequence[BackupInfo]) -> str:
    return "in " + ", ".join(info.destination for info in copies)


def _say_unseen(settings: Settings) -> None:
    """On standard error: the places `list` does not look at, and why, so that a listing
    without them never reads as all there is."""
    for name, why in destinations_off(settings).items():
        if name == "telegram" and not settings.bot_token:
            why = "the chat is read with the bot's token, and BOT_TOKEN is not set"
        print(f"not looked at: {name} ({why})", file=sys.stderr)


def _reference_of(info: BackupInfo) -> str:
    """The backup as verify and restore take it back: its destination and its name there (one
    word: every destination lists only names of backup_format's patterns)."""
    return f"{info.destination}:{info.name}"


def _verify(settings: Settings, args) -> int:
    engine, source = _source(settings, args.file, args.where)
    info = engine.verify(source, thorough=True)
    tables = ", ".join(f"{name} {rows}" for name, rows in info.row_counts.items())
    _out(
        f"ok: {info.name}: {info.created_at:%Y-%m-%d %H:%M:%S} UTC, {info.reason}, "
        f"schema version {info.schema_version}, rows: {tables}"
    )
    return 0


def _restore(settings: Settings, args) -> int:
    if not args.yes and not sys.stdin.isatty():
        # The question would go unseen and unanswered (a pipe, a script, cron): say so at once.
        raise _CannotAsk(
            "restore asks before it replaces the database, and standard input is not a terminal "
            "to ask on: add --yes to restore without the question"
        )
    try:
        Path(settings.db_path).parent.mkdir(parents=True, exist_ok=True)
        lock = locks.InstanceLock(settings.db_path, "python backup.py restore")
    except OSError as error:
        raise BackupError(f"cannot use the folder of {settings.db_path}: {error.strerror}") from None
    except locks.AlreadyRunningError as error:
        raise BackupError(f"refused: {error}; stop the bot first, or restore from the admin panel") from None
    try:
        probe, source = _source(settings, None if args.source == "latest" else args.source, args.where)
        info = probe.verify(source)  # refuse a bad file before asking anything
        if not args.yes and not _confirmed(info, settings.db_path):
            print("nothing restored", file=sys.stderr)
            return 1
        db, _ = database.open_or_move_aside(settings.db_path, utc_now())
        try:
            restored = _engine(settings, db).restore(source)
        finally:
            db.close()
    finally:
        lock.release()
    _out(
        f"restored {restored.name} from {restored.destination} "
        f"({restored.created_at:%Y-%m-%d %H:%M:%S} UTC, {restored.total_rows} rows) into {settings.db_path}"
    )
    return 0


def _decrypt(settings: Settings, args) -> int:
    source = Path(args.file)
    kind = _kind_of(source)
    if kind == "backup":
        raise BackupError(
            f"{source} is not encrypted: it is a backup as it is, which `zstd -d` opens "
            "(and `python backup.py verify` checks)"
        )
    if kind == "sqlite":
        raise BackupError(f"{source} is not encrypted: it is an SQLite database as it is")
    if kind != "encrypted":
        raise BackupError(f"{source} is not an encrypted backup (nor a backup)")
    if not settings.backup_passphrase:
        raise BackupError("set BACKUP_PASSPHRASE to the passphrase the backup was encrypted with")
    target = Path(args.output) if args.output else source.with_name(source.name.removesuffix(".sealed"))
    if target == source or target.exists():
        raise BackupError(f"{target} exists already: name another one with -o")
    try:
        Sealer(settings.backup_passphrase).open(source, target)
    except (SealError, OSError) as error:
        target.unlink(missing_ok=True)
        raise BackupError(str(error)) from None
    _out(f"decrypted into {target}")
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


def _source(
    settings: Settings, text: str | None, where: str | None
) -> tuple[BackupEngine, Path | BackupInfo]:
    """The backup a person named and an engine that reaches it: the newest (None), a backup as
    `list` prints it (DESTINATION:NAME), or a backup file's path."""
    reference = None if text is None else _reference(text)
    if reference is None:
        engine = _engine(settings, where=where)
        return engine, (_newest(engine, where) if text is None else Path(text))
    destination, name = reference
    if where not in (None, destination):
        raise BackupError(f"{_shown(text)} is a backup in {destination}, not in {where} (--from)")
    engine = _engine(settings, where=destination)
    return engine, _listed(engine, destination, name)


def _reference(text: str) -> tuple[str, str] | None:
    """(destination, name) when `text` is DESTINATION:NAME; None when it is a file's path. An
    existing file whose name only looks like one (notes:1) stays a file."""
    match = REFERENCE.fullmatch(text)
    if match is None:
        return None
    destination, name = match.groups()
    if destination in WHERE:
        return destination, name
    if os.path.exists(text):
        return None
    raise BackupError(
        f"unknown destination {_shown(destination)} in {_shown(text)}: name a backup as "
        f"`python backup.py list` prints it (local:NAME, telegram:NAME, s3:NAME), or a file"
    )


def _listed(engine: BackupEngine, destination: str, name: str) -> BackupInfo:
    """The backup called `name` among those `destination` lists. Only a listed name is taken,
    compared whole: the name itself never becomes a path, so it cannot lead anywhere else."""
    listing = engine.listing(only=destination)
    found = next((info for info in listing.backups if info.name == name), None)
    if found is not None:
        return found
    if listing.unreachable:
        raise BackupError(f"cannot look for {_shown(name)} in {destination}: {listing.unreachable[0].error}")
    raise BackupError(
        f"there is no backup {_shown(name)} in {destination}: "
        f"`python backup.py list --from {destination}` shows those there"
    )


def _newest(engine: BackupEngine, where: str | None) -> BackupInfo:
    listing = engine.listing(only=where)
    backups = listing.backups
    if not backups:
        problems = "; ".join(f"{u.destination}: {u.error}" for u in listing.unreachable)
        raise BackupError(
            f"there are no backups{f' in {where}' if where else ''}{f' ({problems})' if problems else ''}"
        )
    return backups[0]


def _confirmed(info: BackupInfo, db_path: str) -> bool:
    """Ask on the terminal. The question goes to standard error, so it is seen even when
    standard output goes to a file or a pipe."""
    print(
        f"Replace the data in {db_path} with {info.name} "
        f"({info.created_at:%Y-%m-%d %H:%M} UTC, {info.total_rows} rows)? [y/N] ",
        end="",
        file=sys.stderr,
        flush=True,
    )
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _kind_of(path: Path) -> str:
    """What a file is by its first bytes (backup_format.sniff): 'backup', 'encrypted', ..."""
    try:
        with open(path, "rb") as stream:
            return sniff(stream)
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror or error}") from None
