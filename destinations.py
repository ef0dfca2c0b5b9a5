"""Where backup files live, behind one small interface.

    put(path, info)      store the backup file at `path` (streamed, never read whole into memory);
                         returns the stored copy's info. Fenced where the place keeps a writer's
                         lease (lease.py): refused with Stale when it names a newer writer
    list()               the backups there, newest first, as BackupInfo
    fetch(info, workdir) a local, readable file of that backup (may be the stored file itself)
    delete(backups)      remove these backups (the engine decides which: see its retention)

Every failure is a DestinationError whose message is one line, without secrets; TooLarge is one
a destination reports when a file is over what it can take or give back, and Stale one when a
newer writer's head is there. The engine treats every destination alike, by this interface
only. Here: the local folder (BACKUP_DIR). telegram_destination.py and s3_destination.py hold
the places off the machine. Each BackupInfo carries the backup's own header, so every
destination can say what it holds without the others. Who may write is the lease's business
(lease.py), not this interface's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from backup_format import NAME_PATTERN, BackupInfo, NotABackupError, read_header
from files import copy_file, fsync_folder, write_atomically

log = logging.getLogger(__name__)


class DestinationError(Exception):
    """A destination could not do what was asked; the message says why in one line."""


class TooLarge(DestinationError):
    """A file is over what a destination can store or give back; the message says what to do."""


class Stale(DestinationError):
    """The destination's head names a newer writer: this instance must not bury its backups."""


@dataclass(frozen=True)
class Unreachable:
    """A place off the machine (or the local folder) that could not be asked."""

    destination: str
    error: str
    offsite: bool


class Destination(Protocol):
    name: str

    def put(self, path: Path, info: BackupInfo) -> BackupInfo: ...

    def list(self) -> list[BackupInfo]: ...

    def fetch(self, info: BackupInfo, workdir: Path) -> Path: ...

    def delete(self, backups: Sequence[BackupInfo]) -> None: ...


class LocalFolder:
    """Backups as files in one folder (BACKUP_DIR), created 0600 in a folder made 0700."""

    name = "local"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._reported: set[str] = set()  # bad files already logged

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        target = self.folder / info.name
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                os.link(path, target)  # same file system: no copy, and atomic
            except OSError:
                write_atomically(target, lambda out: copy_file(path, out))
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
                    size = os.fstat(stream.fileno()).st_size  # the file read, even if rotated away since
            except FileNotFoundError:  # rotated away between iterdir() and open()
                continue
            except (OSError, NotABackupError) as error:
                if path.name not in self._reported:  # once, not at every listing
                    log.warning("ignoring %s, which is not a backup: %s", path, error)
                    self._reported.add(path.name)
                continue
            found.append(replace(info.at(self.name, str(path), size), name=path.name))
        return sorted(found, key=lambda i: (i.order, i.name), reverse=True)

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        return Path(info.location)

    def delete(self, backups: Sequence[BackupInfo]) -> None:
        for info in backups:
            Path(info.location).unlink(missing_ok=True)
        if backups:
            fsync_folder(self.folder)
