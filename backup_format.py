"""The backup file: its format, and writing, reading and verifying one.

    backup-20261126T120000123Z-manual.db.zst
    = [zstd skippable frame: JSON header] + [zstd frame: the SQLite database file]

Copies that leave the machine may be encrypted whole with age (FILE.db.zst.age, see below).

A skippable frame is part of the zstd format: `zstd -d` (and every conforming decoder) passes
over it, so `zstd -d FILE -o bot.db && sqlite3 bot.db` opens a backup without this project. The
header says when and why the backup was taken, its schema version, row counts per table, and the
SHA-256 and size of the database inside, so a backup can be checked on its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Optional

import pyrage
import zstandard

import database
from files import CHUNK

log = logging.getLogger("backup")

FORMAT = "telegram-bot-backup/1"
SKIPPABLE_MAGIC = 0x184D2A50  # the first of zstd's sixteen skippable-frame magic numbers
SQLITE_MAGIC = b"SQLite format 3\x00"
AGE_MAGIC = b"age-encryption.org/v1\n"
ENCRYPTED_SUFFIX = ".age"
MAX_HEADER_BYTES = 1 << 20
SUFFIX = ".db.zst"
NAME_PATTERN = re.compile(r"^backup-(\d{8}T\d{9}Z)-([a-z-]+)\.db\.zst(\.age)?$")
COMPRESSION_LEVEL = 3


class BackupError(Exception):
    """A backup or restore was refused or failed; the message is one line that says why."""


class NotABackupError(ValueError):
    """The bytes are not a backup in this format."""


class DecryptionError(ValueError):
    """An encrypted backup could not be opened (no passphrase, a wrong one, or damage)."""


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
    extra: dict = field(default_factory=dict)  # anything a newer format adds, kept as it came

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    def at(self, destination: str, location: str, size: int) -> "BackupInfo":
        return replace(self, destination=destination, location=location, size=size)


def file_name(created_at: datetime, reason: str) -> str:
    stamp = created_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"backup-{stamp}{created_at.microsecond // 1000:03d}Z-{reason}{SUFFIX}"


def header_bytes(info: BackupInfo) -> bytes:
    """The skippable frame that starts a backup file."""
    payload = json.dumps({
        "format": FORMAT,
        "created_at": info.created_at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "reason": info.reason,
        "schema_version": info.schema_version,
        "row_counts": info.row_counts,
        "sha256": info.sha256,
        "db_size": info.db_size,
        **info.extra,
    }, sort_keys=True).encode()
    return struct.pack("<II", SKIPPABLE_MAGIC, len(payload)) + payload


def read_header(stream: BinaryIO) -> BackupInfo:
    """Read the header frame; the stream is left at the start of the compressed database."""
    start = stream.read(8)
    if len(start) < 8 or struct.unpack("<I", start[:4])[0] != SKIPPABLE_MAGIC:
        raise NotABackupError("it does not start with a backup header")
    (length,) = struct.unpack("<I", start[4:])
    if length > MAX_HEADER_BYTES:
        raise NotABackupError("its header is implausibly large")
    payload = stream.read(length)
    try:
        fields = json.loads(payload)
        if fields.pop("format") != FORMAT:
            raise NotABackupError("it is in an unknown backup format")
        return BackupInfo(
            created_at=datetime.fromisoformat(fields.pop("created_at")).astimezone(timezone.utc),
            reason=str(fields.pop("reason")),
            schema_version=int(fields.pop("schema_version")),
            row_counts={str(k): int(v) for k, v in fields.pop("row_counts").items()},
            sha256=str(fields.pop("sha256")),
            db_size=int(fields.pop("db_size")),
            extra=fields,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise NotABackupError(f"its header is damaged ({type(error).__name__})") from None


def sniff(stream: BinaryIO) -> str:
    """'backup', 'encrypted', 'sqlite' or 'unknown', from the first bytes; the stream is rewound."""
    start = stream.read(len(AGE_MAGIC))
    stream.seek(0)
    if len(start) >= 4 and struct.unpack("<I", start[:4])[0] == SKIPPABLE_MAGIC:
        return "backup"
    if start == AGE_MAGIC:
        return "encrypted"
    if start[:16] == SQLITE_MAGIC:
        return "sqlite"
    return "unknown"


# --- writing and verifying a backup file ---------------------------------------------------

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


def unpack_and_verify(path: Path, workdir: Path, thorough: bool = False,
                      passphrase: Optional[str] = None) -> tuple[BackupInfo, Path]:
    """Verify the backup at `path` and return its info and a verified SQLite file.

    Accepts this project's backups, encrypted or not, and plain SQLite files (the DB_PATH.backup
    copy). Raises BackupError with one line saying what is wrong.
    """
    try:
        stream = open(path, "rb")
    except OSError as error:
        raise BackupError(f"cannot read {path}: {error.strerror or error}") from error
    with stream:
        kind = sniff(stream)
    if kind == "encrypted":
        opened = workdir / "decrypted.db.zst"
        try:
            decrypt_file(path, opened, passphrase)
        except DecryptionError as error:
            raise BackupError(str(error)) from None
        info, snapshot = unpack_and_verify(opened, workdir, thorough)
        return replace(info, name=path.name, location=str(path), size=path.stat().st_size,
                       encrypted=True), snapshot
    with open(path, "rb") as stream:
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
    """Check a SQLite file's integrity and that it is a database of this bot (database.py's
    inspect_file); returns its schema version and row counts, or raises BackupError."""
    try:
        facts = database.inspect_file(path, thorough)
    except database.SchemaTooNewError as error:
        raise BackupError(f"the backup has schema version {error.version}, newer than this code "
                          f"knows ({error.newest}): update the bot first") from None
    except database.ForeignDatabaseError as error:
        raise BackupError(f"not a backup of this bot: {error}") from None
    except database.DatabaseError as error:
        raise BackupError(f"damaged backup: {error}") from None
    return facts.schema_version, facts.row_counts


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# --- encryption: age (https://age-encryption.org), passphrase mode ------------------------------
#
# Copies that leave the machine are wrapped whole in age's format: scrypt key derivation and
# ChaCha20-Poly1305, authenticated in 64 KiB chunks. `age -d FILE.age > FILE` (or rage) opens one
# with the passphrase. pyrage's passphrase mode works on bytes, not streams: the file is held in
# memory (twice, plain and encrypted) while it is encrypted or decrypted.

def encrypt_file(source: Path, target: Path, passphrase: str) -> None:
    sealed = pyrage.passphrase.encrypt(source.read_bytes(), passphrase)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(sealed)


def decrypt_file(source: Path, target: Path, passphrase: Optional[str]) -> None:
    if not passphrase:
        raise DecryptionError("the backup is encrypted: set BACKUP_PASSPHRASE to open it")
    try:
        opened = pyrage.passphrase.decrypt(source.read_bytes(), passphrase)
    except pyrage.DecryptError:
        raise DecryptionError("cannot decrypt the backup: wrong BACKUP_PASSPHRASE, or the "
                              "encrypted file is damaged") from None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(opened)


def info_to_metadata(info: BackupInfo) -> dict[str, str]:
    """The header as flat ASCII strings, for S3 object metadata (listed without downloading)."""
    return {
        "created-at": info.created_at.astimezone(timezone.utc).isoformat(timespec="milliseconds"),
        "reason": info.reason,
        "schema-version": str(info.schema_version),
        "row-counts": json.dumps(info.row_counts, separators=(",", ":")),
        "sha256": info.sha256,
        "db-size": str(info.db_size),
        "encrypted": "yes" if info.encrypted else "no",
    }


def info_from_metadata(metadata: dict[str, str]) -> BackupInfo:
    """The reverse of info_to_metadata; raises NotABackupError when something is missing."""
    try:
        return BackupInfo(
            created_at=datetime.fromisoformat(metadata["created-at"]).astimezone(timezone.utc),
            reason=metadata["reason"],
            schema_version=int(metadata["schema-version"]),
            row_counts={str(k): int(v) for k, v in json.loads(metadata["row-counts"]).items()},
            sha256=metadata["sha256"],
            db_size=int(metadata["db-size"]),
            encrypted=metadata.get("encrypted") == "yes",
        )
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        raise NotABackupError(f"its metadata is incomplete ({type(error).__name__}: {error})") from None
