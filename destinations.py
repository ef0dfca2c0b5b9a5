"""Where backup files live, behind one small interface.

    put(path, info)     store the backup file at `path` (streamed, never read whole into memory)
    list()              the backups there, newest first, as BackupInfo
    fetch(info, dir)    a local, readable file of that backup (may be the stored file itself)
    prune(keep)         delete all but the newest `keep`; returns what went

The local folder is the first destination; a Telegram chat and an S3 bucket follow the same shape.
Each BackupInfo carries the backup's own header, so every destination can say what it holds
without the others.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Protocol

from backup_format import NAME_PATTERN, BackupInfo, NotABackupError, read_header

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20


class DestinationError(Exception):
    """A destination could not do what was asked; the message says why in one line."""


class Destination(Protocol):
    name: str

    def put(self, path: Path, info: BackupInfo) -> BackupInfo: ...

    def list(self) -> list[BackupInfo]: ...

    def fetch(self, info: BackupInfo, workdir: Path) -> Path: ...

    def prune(self, keep: int) -> list[BackupInfo]: ...


class LocalFolder:
    """Backups as files in one folder (BACKUP_DIR), created 0600 in a folder made 0700."""

    name = "local"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        target = self.folder / info.name
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                os.link(path, target)  # same file system: no copy, and atomic
            except OSError:
                write_atomically(target, lambda out: _copy_from(path, out))
            fsync_folder(self.folder)
        except OSError as error:
            raise DestinationError(f"cannot write to {self.folder}: {error.strerror or error}") from error
        return info.at(self.name, str(target), target.stat().st_size)

    def list(self) -> list[BackupInfo]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            if not NAME_PATTERN.match(path.name):
                continue
            try:
                with open(path, "rb") as stream:
                    info = read_header(stream)
            except (OSError, NotABackupError) as error:
                log.warning("ignoring %s: %s", path, error)
                continue
            found.append(replace(info.at(self.name, str(path), path.stat().st_size), name=path.name))
        return sorted(found, key=lambda i: (i.created_at, i.name), reverse=True)

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        return Path(info.location)

    def prune(self, keep: int) -> list[BackupInfo]:
        removed = self.list()[keep:]
        for info in removed:
            Path(info.location).unlink(missing_ok=True)
            log.info("rotated out %s", info.name)
        if removed:
            fsync_folder(self.folder)
        return removed


# --- writing files so that a crash never leaves half of one --------------------------------------

def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file: fsync, rename over `target`, fsync the folder. Mode 0600.

    A crash at any moment leaves either the old `target` or the new one, and at worst a
    '.tmp-' file that no listing takes for a backup.
    """
    temporary = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the '.tmp-' files and folders that a killed process left in `folder`.

    Their names end with (or, for work folders, carry) the pid of the process writing them;
    those of live processes, such as a backup command running beside the bot, are kept.
    """
    if not folder.is_dir():
        return
    for path in folder.glob(".tmp-*"):
        pid = _pid_in(path.name)
        if pid is None or _alive(pid):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by a process that stopped mid-write", path.name)


def _pid_in(name: str) -> Optional[int]:
    match = re.match(r"^\.tmp-work-(\d+)-", name) or re.search(r"-(\d+)$", name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_from(source: Path, out: BinaryIO) -> None:
    with open(source, "rb") as stream:
        shutil.copyfileobj(stream, out, COPY_CHUNK)
