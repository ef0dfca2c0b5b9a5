"""Copies of a backup that leave the machine: encrypted when BACKUP_PASSPHRASE is set, put in
every destination off the machine, fetched back and compared, then rotated; and the local
folder's copy put and rotated the same way. A failure is recorded per destination (the admins
are told once per streak of failures) and returned, never raised: the local backup stands. A
place that names a newer writer (Stale) makes this instance stale, through its lease.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from backup_format import ENCRYPTED_SUFFIX, BackupError, BackupInfo, sha256_of, shown_place
from config import Settings
from destination_status import StatusBoard
from destinations import Destination, DestinationError, LocalFolder, Stale, TooLarge
from files import scratch_folder
from i18n import Alert, Code, Text
from lease import Lease
from sealing import Sealer, SealError
from telegram_errors import shown
from upload_meter import UploadMeter

log = logging.getLogger("backup")


class OffsiteCopies:
    """The copies of each backup, in the local folder and off the machine."""

    def __init__(
        self,
        local: LocalFolder,
        offsite: Sequence[Destination],
        lease: Lease,
        status: StatusBoard,
        sealer: Sealer | None,
        settings: Settings,
        alert: Alert,
        meter: UploadMeter | None = None,
    ):
        self.local, self._offsite, self.lease, self._status = local, list(offsite), lease, status
        self._sealer, self.settings, self.alert, self.meter = sealer, settings, alert, meter
        self._too_large_told: set[str] = set()  # destinations whose copies cannot be fetched back

    def store(
        self, destination: Destination, packed: Path, info: BackupInfo
    ) -> tuple[list[BackupInfo], dict[str, str]]:
        """Put one copy; a failure is recorded, alerted once per streak, and returned, not raised."""
        try:
            placed = destination.put(packed, info)
        except Stale as error:
            self.lease.went_stale(str(error))
            return [], {destination.name: str(error)}
        except (DestinationError, OSError) as error:
            self._status.failed(destination.name, str(error))
            return [], {destination.name: str(error)}
        self._status.succeeded(destination.name)
        return [placed], {}

    def send(
        self, packed: Path, info: BackupInfo, workdir: Path, read_back: bool = True
    ) -> tuple[list[BackupInfo], dict[str, str]]:
        """Copies that leave the machine: encrypted when a passphrase is set, then read back
        (unless `read_back` is False: a backup taken in a hurry)."""
        if not self._offsite:
            return [], {}
        self.lease.claim_if_needed()  # paused when it became the writer: it says so now
        copy, copy_info = self.leaving_copy(packed, info, workdir)
        sent, failures = [], {}
        expected = sha256_of(copy)[0] if read_back and self.settings.backup_read_back else None
        for destination in self._offsite:
            if not self.lease.held:  # stale: nothing more leaves the machine
                failures[destination.name] = "not sent: a newer instance writes the backups"
                continue
            placed, failed = self.store(destination, copy, copy_info)
            if placed and self.meter is not None:
                self.meter.record(destination.name, placed[0].size)
            if placed and expected:
                failed = self._read_back(destination, placed[0], expected)
                placed = [] if failed else placed
            # A final backup leaves rotation to the next writer's first backup: its seconds
            # (and the chat's pace) are for its data, its index and its head.
            if placed and not info.final:
                self.rotate(destination)
            sent += placed
            failures.update(failed)
        return sent, failures

    def leaving_copy(self, packed: Path, info: BackupInfo, workdir: Path) -> tuple[Path, BackupInfo]:
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
                        destination=shown_place(destination.name),
                        error=shown(error),
                    )
                )
                self._too_large_told.add(destination.name)
            return {}
        except (DestinationError, OSError) as error:
            message = f"read-back failed: {error}"
            self._status.failed(destination.name, message)
            return {destination.name: message}
        self._too_large_told.discard(destination.name)  # tell again if backups grow past it
        return {}

    def rotate(self, destination: Destination) -> None:
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


def retention(backups: Sequence[BackupInfo], keep: int) -> list[BackupInfo]:
    """Which of `backups` (newest first) rotation removes: all but the newest `keep` restore
    points, where an on-change one stays only while it is the newest of them (a full backup
    after it says as much; a scheduled side piece does not end its chain, which goes on), and
    never a piece a kept restore point builds on (its chain): whole chains go, never part of one."""
    changes = [n for n, info in enumerate(backups) if info.reason == "change"]
    newest = changes[0] if changes else -1
    if any(info.delta is None and info.reason != "change" for info in backups[: max(newest, 0)]):
        newest = -1  # a full backup came after it: its chain ended there
    kept = [info for n, info in enumerate(backups) if n in (0, newest) or info.reason != "change"][:keep]
    needed = {name for info in kept if info.delta for name in info.delta.chain}
    kept += [info for info in backups if info.piece in needed and info not in kept]
    return [info for info in backups if info not in kept]
