"""The backup file: its format, and writing, reading and verifying one.

    backup-20261126T120000123Z-manual.db.zst
    = [zstd skippable frame: JSON header] + [zstd frame: the SQLite database file]

Copies that leave the machine may be encrypted whole (FILE.db.zst.sealed: sealing.py).

A change backup may instead carry only the pages that changed since the state it builds on
(backup-...-change.delta.zst, format telegram-bot-backup-delta/1: deltas.py); it is restored
through its chain (chains.py), never alone.

A skippable frame is part of the zstd format: `zstd -d` (and every conforming decoder) passes
over it, so `zstd -d FILE -o bot.db && sqlite3 bot.db` opens a backup without this project. The
header says when and why the backup was taken, its schema version, row counts per table, and the
SHA-256 and size of the database inside, so a backup can be checked on its own.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import struct
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import zstandard

import database
import human
from deltas import Delta, DeltaError, apply_records, write_records
from files import CHUNK
from i18n import N_, Code, Text
from sealing import Sealer, SealError, is_sealed

log = logging.getLogger("backup")

FORMAT = "telegram-bot-backup/1"
FORMAT_DELTA = "telegram-bot-backup-delta/1"  # the changed pages only (deltas.py)
SKIPPABLE_MAGIC = 0x184D2A50  # the first of zstd's sixteen skippable-frame magic numbers
SQLITE_MAGIC = b"SQLite format 3\x00"
ENCRYPTED_SUFFIX = ".sealed"  # a copy encrypted for leaving the machine (sealing.py)
MAX_HEADER_BYTES = 1 << 20
SUFFIX = ".db.zst"
DELTA_SUFFIX = ".delta.zst"
NAME_PATTERN = re.compile(r"^backup-(\d{8}T\d{9}Z)-([a-z-]+)\.(?:db|delta)\.zst(\.sealed)?\Z")
PIECE_NAME = re.compile(r"backup-\d{8}T\d{9}Z-[a-z-]+\.(?:db|delta)\.zst")  # within a stored name
FINAL_REASONS = ("shutdown", "handover")  # a writer's last backup: nothing was written after it
PRE_RESTORE = "pre-restore"  # the safety copy before a restore: kept, never taken for the newest state
# Why a backup was taken, as people read it; a reason not listed is shown as it is.
REASON_WORDS = {
    "startup": N_("at startup"),
    "scheduled": N_("scheduled"),
    "change": N_("after a change"),
    "manual": N_("manual"),
    "shutdown": N_("at shutdown"),
    "handover": N_("at a hand-over"),
    "restore": N_("after a restore"),
    PRE_RESTORE: N_("before a restore"),
}
COMPRESSION_LEVEL = 3
QUICK_COMPRESSION_LEVEL = 1  # when time counts more than size (zstd -1: 40 % less CPU, 8 % larger)
MAX_WINDOW = 1 << 24  # zstd's memory while unpacking; ours use 2 MB windows, a hostile frame asks more
ROOM_TO_SPARE = 16 << 20  # what unpacking a backup leaves free on the disk, at most


class BackupError(Exception):
    """A backup or restore was refused or failed; the message is one line that says why."""


class NotABackupError(ValueError):
    """The bytes are not a backup in this format."""


# What each table holds, in the reader's words; a table this code does not know keeps its name.
TABLE_WORDS = {
    "users": N_("users"),
    "tracking": N_("recent actions"),
    "daily_activity": N_("daily activity"),
    "bot_state": N_("the bot's own state"),
}


def shown_table(table: str) -> Text | Code:
    """A table's name as what it holds: users, daily activity."""
    return Text(TABLE_WORDS[table]) if table in TABLE_WORDS else Code(table)


# The places a backup lies, in the reader's words (English keeps the names the settings use); a
# place this code does not know keeps its name.
PLACE_WORDS = {"local": N_("local"), "telegram": N_("telegram"), "s3": N_("s3")}


def shown_place(name: str) -> Text | Code:
    return Text(PLACE_WORDS[name]) if name in PLACE_WORDS else Code(name)


def users_in(info: BackupInfo) -> int:
    """The users a backup holds: its header's row count of the users table, the same query
    📊 Statistics counts the live users with (database.rows_in)."""
    return info.row_counts.get("users", 0)


def shown_reason(reason: str) -> Text | Code:
    """A backup's reason in the reader's words."""
    return Text(REASON_WORDS[reason]) if reason in REASON_WORDS else Code(reason)


@dataclass(frozen=True)
class BackupInfo:
    """What a backup says about itself, and where this copy of it is."""

    created_at: datetime  # UTC
    reason: str
    schema_version: int
    row_counts: dict[str, int]
    sha256: str  # of the SQLite file inside; "" when unknown (a plain SQLite file)
    db_size: int  # bytes of the SQLite file inside
    size: int = 0  # bytes of this backup file as stored
    destination: str = ""  # "local", "telegram", "s3", ...
    location: str = ""  # path, file id or key, within the destination
    name: str = ""
    encrypted: bool = False  # this copy is age-encrypted (copies that leave the machine)
    generation: int = 0  # the writer's generation: an instance that restores N writes N + 1
    writer: str = ""  # the instance that took it
    sequence: int = 0  # its place among the backups of its generation (1, 2, ...; 0: not known)
    extra: dict = field(default_factory=dict)  # anything a newer format adds, kept as it came
    delta: Delta | None = None  # a change backup of the changed pages only; None: a full backup

    @property
    def order(self) -> tuple:
        """Which of two backups is newer: the higher generation, then the later one of it. Not
        the clock: two machines' clocks may be hours apart, a generation's writer is one
        machine, and its sequence counts its own backups (its clock only breaks a tie)."""
        return (self.generation, self.sequence, self.created_at)

    @property
    def final(self) -> bool:
        """The last backup of a writer that stopped cleanly: nothing was written after it."""
        return self.reason in FINAL_REASONS

    @property
    def piece(self) -> str:
        """Its name as the local folder has it (without a chat's prefix or '.sealed'): how the
        deltas after it name it in their chain."""
        found = PIECE_NAME.search(self.name)
        return found.group(0) if found else self.name

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    def at(self, destination: str, location: str, size: int) -> BackupInfo:
        return replace(self, destination=destination, location=location, size=size)


def file_name(created_at: datetime, reason: str, delta: bool = False) -> str:
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"backup-{stamp}{created_at.microsecond // 1000:03d}Z-{reason}{DELTA_SUFFIX if delta else SUFFIX}"


def header_bytes(info: BackupInfo) -> bytes:
    """The skippable frame that starts a backup file."""
    payload = json.dumps(
        {
            "format": FORMAT_DELTA if info.delta else FORMAT,
            "created_at": info.created_at.astimezone(UTC).isoformat(timespec="milliseconds"),
            "reason": info.reason,
            "schema_version": info.schema_version,
            "row_counts": info.row_counts,
            "sha256": info.sha256,
            "db_size": info.db_size,
            "generation": info.generation,
            "writer": info.writer,
            "sequence": info.sequence,
            **info.extra,
            **({"delta": info.delta.as_json()} if info.delta else {}),
        },
        sort_keys=True,
    ).encode()
    return struct.pack("<II", SKIPPABLE_MAGIC, len(payload)) + payload


def read_header(stream: BinaryIO) -> BackupInfo:
    """Read the header frame; the stream is left at the start of the compressed database.
    Whatever the bytes, the answer is a BackupInfo or a NotABackupError."""
    start = stream.read(8)
    if len(start) < 8 or struct.unpack("<I", start[:4])[0] != SKIPPABLE_MAGIC:
        raise NotABackupError("it does not start with a backup header")
    (length,) = struct.unpack("<I", start[4:])
    if length > MAX_HEADER_BYTES:
        raise NotABackupError("its header is implausibly large")
    try:
        fields = json.loads(stream.read(length))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested beyond reason
        raise NotABackupError("its header is damaged (not readable JSON)") from None
    if not isinstance(fields, dict):
        raise NotABackupError("its header is damaged (not a JSON object)")
    kind = fields.pop("format", None)
    if kind not in (FORMAT, FORMAT_DELTA):
        raise NotABackupError("it is in an unknown backup format")
    delta = fields.pop("delta", None)
    if kind == FORMAT_DELTA and delta is None:
        raise NotABackupError("its header is damaged (delta)")
    known = {
        name: fields.pop(name, None)
        for name in ("created_at", "reason", "schema_version", "row_counts", "sha256", "db_size")
    }
    return checked_info(
        **known,
        generation=fields.pop("generation", 0),
        writer=fields.pop("writer", ""),
        sequence=fields.pop("sequence", 0),
        extra=fields,
        delta=delta if kind == FORMAT_DELTA else None,
        problem="its header is damaged",
    )


# --- values from outside: every field checked for type and range ---------------------------------

EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
MAX_DB_SIZE = 1 << 44  # 16 TB: beyond any SQLite file this bot makes
MAX_ROWS = 1 << 62
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
REASON = re.compile(r"^[a-z][a-z-]{0,31}\Z")
SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
WRITER = re.compile(r"^[A-Za-z0-9._:-]{0,80}\Z")
MAX_GENERATION = 1 << 53


def checked_info(
    created_at,
    reason,
    schema_version,
    row_counts,
    sha256,
    db_size,
    *,
    problem: str,
    generation=0,
    writer="",
    sequence=0,
    delta=None,
    **more,
) -> BackupInfo:
    """A BackupInfo from values that came from outside (a header, object metadata, a caption),
    each checked for its type and range; NotABackupError (starting with `problem`) otherwise."""

    def refuse(what: str) -> NotABackupError:
        return NotABackupError(f"{problem} ({what})")

    if not isinstance(reason, str) or not REASON.match(reason):
        raise refuse("reason")
    if not isinstance(sha256, str) or not (SHA256.match(sha256) or sha256 == ""):
        raise refuse("checksum")
    if not isinstance(row_counts, dict) or len(row_counts) > 1000:
        raise refuse("row counts")
    for table, rows in row_counts.items():
        if not (isinstance(table, str) and TABLE_NAME.match(table)) or not whole(rows, MAX_ROWS):
            raise refuse("row counts")
    if not whole(schema_version, 1_000_000):
        raise refuse("schema version")
    if not whole(db_size, MAX_DB_SIZE):
        raise refuse("size")
    if not whole(generation, MAX_GENERATION) or not whole(sequence, MAX_GENERATION):
        raise refuse("generation")
    if not isinstance(writer, str) or not WRITER.match(writer):
        raise refuse("writer")
    if delta is not None:
        try:
            delta = Delta.from_json(delta, PIECE_CHAIN_NAME, SHA256)
        except DeltaError as error:
            raise refuse(str(error)) from None
        if delta.page_count * delta.page_size != db_size or not sha256:
            raise refuse("delta page count")
    return BackupInfo(
        checked_moment(created_at, problem),
        reason,
        schema_version,
        dict(row_counts),
        sha256,
        db_size,
        generation=generation,
        writer=writer,
        sequence=sequence,
        delta=delta,
        **more,
    )


PIECE_CHAIN_NAME = re.compile(r"^backup-\d{8}T\d{9}Z-[a-z-]{1,32}\.(?:db|delta)\.zst\Z")


def checked_moment(value, problem: str = "impossible date") -> datetime:
    """An aware datetime between 2000 and 2200 from a datetime or an ISO 8601 text with a zone."""
    try:
        if isinstance(value, str) and len(value) <= 40:
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("no time zone")
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise NotABackupError(f"{problem} (date)") from None
    if not EARLIEST <= value < LATEST:
        raise NotABackupError(f"{problem} (date)")
    return value


def whole(value, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def sniff(stream: BinaryIO) -> str:
    """'backup', 'encrypted', 'sqlite' or 'unknown', from the first bytes; the stream is rewound."""
    start = stream.read(64)
    stream.seek(0)
    if len(start) >= 4 and struct.unpack("<I", start[:4])[0] == SKIPPABLE_MAGIC:
        return "backup"
    if is_sealed(start):
        return "encrypted"
    if start[:16] == SQLITE_MAGIC:
        return "sqlite"
    return "unknown"


# --- writing and verifying a backup file ---------------------------------------------------


def write_backup_file(
    source: BinaryIO, info: BackupInfo, target: Path, level: int = COMPRESSION_LEVEL
) -> BackupInfo:
    """Header frame, then `source` (info.db_size bytes) compressed with zstd, content size and
    checksum included. One pass over the data: its SHA-256 is taken as it goes by, and the header,
    written first with a stand-in checksum of the same length, is filled in at the end. Returns
    `info` with its sha256."""
    # Single-threaded: zstd's worker threads would be faster but take about 45 MB more memory.
    compressor = zstandard.ZstdCompressor(
        level=level, threads=0, write_checksum=True, write_content_size=True
    )
    try:
        return _write_backup_file(source, info, target, compressor)
    except (OSError, zstandard.ZstdError) as error:
        # zstd's own error on closing can hide the OSError that caused it: look for that one
        while not isinstance(error, OSError) and error.__context__ is not None:
            error = error.__context__
        full = " (the disk is full)" if getattr(error, "errno", None) == errno.ENOSPC else ""
        raise BackupError(
            f"cannot write the backup in {target.parent}{full}: {getattr(error, 'strerror', None) or error}"
        ) from None


def _write_backup_file(source: BinaryIO, info: BackupInfo, target: Path, compressor) -> BackupInfo:
    digest = hashlib.sha256()
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "r+b") as out:
        out.write(header_bytes(replace(info, sha256="0" * 64)))
        with compressor.stream_writer(out, size=info.db_size, closefd=False) as packer:
            done = 0
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                packer.write(chunk)
                done += len(chunk)
                log.debug("compress progress: %d of %d bytes", done, info.db_size)
        info = replace(info, sha256=digest.hexdigest())
        out.seek(0)
        out.write(header_bytes(info))  # the same length: only the checksum's digits differ
        out.flush()
        os.fsync(out.fileno())
    return info


def write_delta_file(snapshot: Path, info: BackupInfo, pages: list[int], target: Path) -> BackupInfo:
    """Header frame (info.delta set, sha256 the snapshot's), then the records of `pages` of the
    SQLite file `snapshot`, compressed with zstd (deltas.py describes them)."""
    compressor = zstandard.ZstdCompressor(level=QUICK_COMPRESSION_LEVEL, write_checksum=True)
    try:
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "r+b") as out:
            out.write(header_bytes(info))
            with compressor.stream_writer(out, closefd=False) as packer:
                write_records(snapshot, pages, info.delta.page_size, packer)
            out.flush()
            os.fsync(out.fileno())
    except (OSError, zstandard.ZstdError, DeltaError) as error:
        raise BackupError(f"cannot write the change backup in {target.parent}: {error}") from None
    return info


def apply_delta_file(path: Path, state: Path, state_sha256: str) -> tuple[BackupInfo, frozenset[int]]:
    """Apply the delta piece at `path` to the SQLite file `state` (whose SHA-256 is
    `state_sha256`), in place; returns the piece's info and the pages it carried. BackupError, with `state` unusable,
    when the piece builds on another state, is damaged, or does not give the state its header
    names (the caller keeps a copy of what verified before)."""
    try:
        with open(path, "rb") as stream:
            try:
                info = read_header(stream)
            except NotABackupError as error:
                raise BackupError(f"not a valid backup: {error}") from None
            if info.delta is None:
                raise BackupError("it is a full backup, not a piece of a chain")
            if info.delta.base_sha256 != state_sha256:
                raise BackupError("it builds on another state than the pieces before it")
            need_room(state.parent, info.db_size, "apply a change backup")
            reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
                stream, read_size=CHUNK
            )
            with open(state, "r+b") as target:
                carried = apply_records(reader, target, info.delta)
    except zstandard.ZstdError as error:
        raise BackupError(f"damaged backup: the compressed data is corrupt ({error})") from None
    except DeltaError as error:
        raise BackupError(f"damaged backup: {error}") from None
    except OSError as error:
        raise BackupError(
            f"cannot apply a change backup in {state.parent}: {error.strerror or error}"
        ) from None
    if sha256_of(state) != (info.sha256, info.db_size):
        raise BackupError("damaged backup: the database it gives does not match its SHA-256 checksum")
    return info, carried


def unsealed(path: Path, workdir: Path, sealer: Sealer | None, must_be_sealed: bool, name: str) -> Path:
    """The backup file at `path` as a plain one: decrypted into `workdir` (as `name`) when it is
    encrypted; refused when it must be encrypted and is not (see unpack_and_verify)."""
    kind = _kind_of(path)
    if must_be_sealed and kind != "encrypted":
        raise BackupError(
            "refused: this backup is not encrypted although BACKUP_PASSPHRASE is set "
            "(anyone who can post where it was could have put it there)"
        )
    if kind != "encrypted":
        return path
    if sealer is None:
        raise BackupError("the backup is encrypted: set BACKUP_PASSPHRASE to open it")
    opened = workdir / name
    need_room(workdir, path.stat().st_size, "decrypt the backup")
    try:
        sealer.open(path, opened)
    except SealError as error:
        raise BackupError(str(error)) from None
    return opened


def unpack_full(path: Path, target: Path) -> BackupInfo:
    """The database inside the full backup at `path` (not encrypted) into `target`, its size and
    checksum checked, nothing more: the start of a chain."""
    if _kind_of(path) != "backup":
        raise BackupError("not a backup of this bot")
    return _decompress(path, target)


def unpack_and_verify(
    path: Path,
    workdir: Path,
    thorough: bool = False,
    sealer: Sealer | None = None,
    must_be_sealed: bool = False,
) -> tuple[BackupInfo, Path]:
    """Verify the backup at `path` and return its info and a verified SQLite file in `workdir`.

    Accepts this project's backups, encrypted or not, and plain SQLite files (the DB_PATH.backup
    copy); `path` itself is never changed. The SQLite file returned has this code's schema: an
    older backup's migrations were run on a copy of it and checked (the dry run of a restore).
    Sizes are enforced while reading. `must_be_sealed`: only an encrypted file is accepted (one
    from off the machine when BACKUP_PASSPHRASE is set: anyone who can post in the chat could have
    put a plain one there). Raises BackupError with one line saying what is wrong.
    """
    kind = _kind_of(path)
    if must_be_sealed and kind != "encrypted":
        raise BackupError(
            "refused: this backup is not encrypted although BACKUP_PASSPHRASE is set "
            "(anyone who can post where it was could have put it there)"
        )
    if kind == "encrypted":
        if sealer is None:
            raise BackupError("the backup is encrypted: set BACKUP_PASSPHRASE to open it")
        opened = workdir / "decrypted.db.zst"
        need_room(workdir, path.stat().st_size, "decrypt the backup")
        try:
            sealer.open(path, opened)
        except SealError as error:
            raise BackupError(str(error)) from None
        info, snapshot = unpack_and_verify(opened, workdir, thorough)
        return replace(
            info, name=path.name, location=str(path), size=path.stat().st_size, encrypted=True
        ), snapshot
    if kind == "sqlite":
        snapshot, info = path, None
    elif kind == "backup":
        snapshot = workdir / "restore.db"
        info = _decompress(path, snapshot)
    else:
        raise BackupError("not a backup: the file is neither a backup of this bot nor a SQLite database")
    if info is None:
        schema_version, row_counts = inspect_snapshot(snapshot, thorough)
        digest, db_size = sha256_of(snapshot)
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        info = BackupInfo(modified, "plain copy", schema_version, row_counts, digest, db_size)
        upgraded = _upgraded(snapshot, schema_version, workdir)
    else:
        upgraded = verified_state(snapshot, info, workdir, thorough)
    return replace(
        info, name=path.name, destination="file", location=str(path), size=path.stat().st_size
    ), upgraded


def verified_state(snapshot: Path, info: BackupInfo, workdir: Path, thorough: bool = False) -> Path:
    """A database a backup's checksum vouched for, checked as every restore checks it
    (integrity, the bot's schema, the row counts its header gives) and brought up to this
    code's schema on a copy; BackupError otherwise."""
    schema_version, row_counts = inspect_snapshot(snapshot, thorough)
    if (schema_version, row_counts) != (info.schema_version, info.row_counts):
        raise BackupError("damaged backup: its contents do not match its header")
    return _upgraded(snapshot, schema_version, workdir)


def _kind_of(path: Path) -> str:
    try:
        with open(path, "rb") as stream:
            return sniff(stream)
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror or error}") from error


def _decompress(path: Path, target: Path) -> BackupInfo:
    """Unpack the database inside the backup at `path` into `target`, checking it as it comes:
    never more bytes than the header declares, never more than the disk can hold."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as stream:
            try:
                info = read_header(stream)
            except NotABackupError as error:
                raise BackupError(f"not a valid backup: {error}") from None
            if info.delta is not None:
                raise BackupError(
                    "this change backup holds only the pages that changed: it is restored "
                    "through its chain, from the full backup it builds on"
                )
            need_room(target.parent, info.db_size, "unpack the backup")
            reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
                stream, read_size=CHUNK
            )
            with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                while chunk := reader.read(CHUNK):
                    size += len(chunk)
                    if size > info.db_size:
                        raise BackupError(
                            "damaged backup: it unpacks to more than the "
                            f"{human.size(info.db_size)} its header declares"
                        )
                    digest.update(chunk)
                    out.write(chunk)
    except zstandard.ZstdError as error:
        raise BackupError(f"damaged backup: the compressed data is corrupt ({error})") from None
    except OSError as error:
        raise BackupError(f"cannot unpack the backup in {target.parent}: {error.strerror or error}") from None
    if size != info.db_size:
        raise BackupError(
            f"damaged backup: {size} bytes inside where {info.db_size} were written (truncated?)"
        )
    if digest.hexdigest() != info.sha256:
        raise BackupError("damaged backup: the SHA-256 checksum does not match")
    return info


def _upgraded(snapshot: Path, version: int, workdir: Path) -> Path:
    """The snapshot brought up to this code's schema on a copy, and checked again; the snapshot
    itself when it is already current."""
    try:
        return database.upgraded_copy(snapshot, version, workdir / "upgraded.db")
    except database.MigrationError as error:
        raise BackupError(f"not a backup of this bot: its migrations fail ({error})") from None
    except database.DatabaseError as error:
        raise BackupError(f"not a backup of this bot: {error}") from None


def need_room(folder: Path, needed: int, what: str) -> None:
    """Refuse, in one line, to write `needed` bytes where the disk cannot hold them and still
    keep some room (a twentieth of the disk, at most 16 MB) for the live database beside them."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return  # the write itself will say what is wrong
    if needed + min(ROOM_TO_SPARE, usage.total // 20) > usage.free:
        raise BackupError(
            f"not enough disk space to {what}: it needs {human.size(needed)}, "
            f"{human.size(usage.free)} are free in {folder}"
        )


def inspect_snapshot(
    path: Path, thorough: bool = False, exact: bool = True, check: bool = True
) -> tuple[int, dict[str, int]]:
    """Check a SQLite file's integrity (unless `check` is False) and that it is a database of
    this bot (database.py's inspect_file); returns its schema version and row counts, or raises
    BackupError."""
    try:
        facts = database.inspect_file(path, thorough, exact, check)
    except database.SchemaTooNewError as error:
        raise BackupError(
            f"the backup has schema version {error.version}, newer than this code "
            f"knows ({error.newest}): update the bot first"
        ) from None
    except database.ForeignDatabaseError as error:
        raise BackupError(f"not a backup of this bot: {error}") from None
    except database.DatabaseError as error:
        raise BackupError(f"damaged backup: {error}") from None
    if facts.foreign:
        log.warning(
            "the database %s: backups of it will be refused by a restore until that is undone",
            facts.foreign.removeprefix("it "),
        )
    return facts.schema_version, facts.row_counts


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def info_to_metadata(info: BackupInfo) -> dict[str, str]:
    """The header as flat ASCII strings, for S3 object metadata (listed without downloading)."""
    return {
        "created-at": info.created_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "reason": info.reason,
        "schema-version": str(info.schema_version),
        "row-counts": json.dumps(info.row_counts, separators=(",", ":")),
        "sha256": info.sha256,
        "db-size": str(info.db_size),
        "encrypted": "yes" if info.encrypted else "no",
        "generation": str(info.generation),
        "writer": info.writer,
        "sequence": str(info.sequence),
        **({"delta": json.dumps(info.delta.as_json(), separators=(",", ":"))} if info.delta else {}),
    }


def info_from_metadata(metadata: dict) -> BackupInfo:
    """The reverse of info_to_metadata; NotABackupError when anything is missing or wrong."""

    def text(key: str):
        value = metadata.get(key) if isinstance(metadata, dict) else None
        return value if isinstance(value, str) else None

    try:
        row_counts = json.loads(text("row-counts") or "null")
    except (ValueError, RecursionError):
        row_counts = None
    try:
        delta = json.loads(text("delta") or "null")
    except (ValueError, RecursionError):
        delta = "damaged"  # refused by checked_info
    return checked_info(
        text("created-at"),
        text("reason"),
        _number(text("schema-version")),
        row_counts,
        text("sha256"),
        _number(text("db-size")),
        encrypted=text("encrypted") == "yes",
        problem="its metadata is incomplete",
        generation=_number(text("generation") or "0"),
        writer=text("writer") or "",
        sequence=_number(text("sequence") or "0"),
        delta=delta,
    )


def _number(text: str | None) -> int | None:
    """A whole number written in digits, or None (a missing value, a sign, a dot, 'inf'...)."""
    return int(text) if text is not None and re.fullmatch(r"[0-9]{1,20}", text) else None
