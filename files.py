"""Files that never half-exist, and the scratch space this project writes.

Every temporary file or folder this project creates carries TEMP_PREFIX and its process id, so
the cleanup after a killed process removes exactly what this project left behind and never
another program's files (the default folder is /tmp, shared with everyone).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # every stream in the project is copied a megabyte at a time
TEMP_PREFIX = ".botbackup-tmp-"
_OURS = re.compile(rf"^{re.escape(TEMP_PREFIX)}(\d+)-")


def temporary_name(target_name: str) -> str:
    return f"{TEMP_PREFIX}{os.getpid()}-{target_name}"


def write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file: fsync, rename over `target`, fsync the folder. Mode 0600.

    A crash at any moment leaves either the old `target` or the new one, and at worst a
    temporary file that no listing takes for a backup.
    """
    temporary = target.with_name(temporary_name(target.name))
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


def copy_stream(source: BinaryIO, out: BinaryIO) -> None:
    shutil.copyfileobj(source, out, CHUNK)


def copy_file(source: Path, out: BinaryIO) -> None:
    with open(source, "rb") as stream:
        copy_stream(stream, out)


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def scratch_directory(near: Path) -> tempfile.TemporaryDirectory:
    """A private (0700) scratch folder inside `near`, so that files made there can be linked,
    not copied, into it; in the system's temporary folder when `near` cannot be used."""
    try:
        near.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A folder removed under it (someone emptied the disk) is no reason to fail what it held.
        return tempfile.TemporaryDirectory(
            prefix=f"{TEMP_PREFIX}{os.getpid()}-work-", dir=near, ignore_cleanup_errors=True
        )
    except OSError:  # an unusable backup folder must not stop a verify or a restore
        return tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-work-")


@contextmanager
def scratch_folder(near: Path) -> Iterator[Path]:
    """scratch_directory(near) for the length of a with block, removed whatever happens."""
    with scratch_directory(near) as path:
        yield Path(path)


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files and folders that a killed process of this project left in
    `folder`. Those of live processes (a backup command running beside the bot) are kept, and
    nothing without this project's prefix is ever touched."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        pid = _pid_in(path.name)
        if pid is None or _alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.info("removed %s, left by a process that stopped mid-write", path.name)


def _pid_in(name: str) -> int | None:
    match = _OURS.match(name)
    return int(match.group(1)) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
