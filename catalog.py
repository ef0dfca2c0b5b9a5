"""What backups there are, wherever they lie, and getting one back as a verified SQLite file:
the reading side of the backup engine (engine.py), for the restores, the panel's lists and the
command line.

Everything here reads; nothing writes to a destination. A backup fetched from off the machine
must be encrypted when BACKUP_PASSPHRASE is set: anyone who can post where it was could have put
a plain one there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from backup_format import (
    PRE_RESTORE,
    BackupError,
    BackupInfo,
    file_name,
    unpack_and_verify,
    verified_state,
    write_backup_file,
)
from chains import Shortfall, rebuild
from destinations import Destination, DestinationError, LocalFolder, Unreachable
from sealing import Sealer

log = logging.getLogger("backup")


@dataclass(frozen=True)
class Unpacked:
    """A backup read back: what it says of itself, the verified SQLite file, and for a change
    backup whose chain ended early, how (the file then holds the last state that verified)."""

    info: BackupInfo
    path: Path
    shortfall: Shortfall | None = None
    applied: tuple = ()  # (piece, pages it carried) from the full backup on (asked with resume)
    everywhere: bool = False  # every place off the machine lists each of those pieces


@dataclass(frozen=True)
class Listing:
    backups: list[BackupInfo]  # newest first (BackupInfo.order: generation, then sequence)
    unreachable: list[Unreachable] = field(default_factory=list)


class Catalog:
    """The backups of the local folder and of every destination off the machine."""

    def __init__(self, local: LocalFolder, offsite: Sequence[Destination], sealer: Sealer | None):
        self.local, self.sealer = local, sealer
        self.destinations: list[Destination] = [local, *offsite]
        self._sequence: tuple[tuple, int] = ((), 0)  # the last one given: (generation, writer), number

    def next_sequence(self, generation: int, writer: str) -> int:
        """The next backup's place among its generation's (BackupInfo.order): one more than any
        this writer took, here or before a restart (the local folder's headers say). Kept out of
        the database, whose every change would be a change to back up."""
        mine = (generation, writer)
        taken = [b.sequence for b in self.local.list() if (b.generation, b.writer) == mine]
        last = self._sequence[1] if self._sequence[0] == mine else 0
        self._sequence = (mine, max([last, *taken]) + 1)
        return self._sequence[1]

    def newest_local(self) -> BackupInfo | None:
        return next(iter(self.local.list()), None)

    def listing(self, only: str | None = None) -> Listing:
        """Every backup in every destination (or only the one named), newest first by its
        generation, then its sequence (never by a clock). A destination that cannot be listed is skipped and named in the result."""
        found, unreachable = [], []
        for destination in self.destinations:
            if only and destination.name != only:
                continue
            try:
                found.extend(destination.list())
            except (DestinationError, OSError) as error:
                log.warning("cannot list backups in %s: %s", destination.name, error)
                unreachable.append(Unreachable(destination.name, str(error), destination is not self.local))
        return Listing(sorted(found, key=lambda info: info.order, reverse=True), unreachable)

    def candidates(self, plain_copy: Path) -> tuple[list[BackupInfo], list[Unreachable]]:
        """What a restore of the newest backup tries, in order: every backup, newest first, the
        safety copies taken before a person's restore last (they hold what the person chose to
        replace), then DB_PATH.backup, the plain copy; and the destinations not listed."""
        listing = self.listing()
        ordered = sorted(listing.backups, key=lambda info: info.reason == PRE_RESTORE)
        if plain_copy.is_file():
            stat = plain_copy.stat()
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            ordered.append(
                BackupInfo(
                    modified,
                    "plain copy",
                    0,
                    {},
                    "",
                    0,
                    stat.st_size,
                    self.local.name,
                    str(plain_copy),
                    plain_copy.name,
                )
            )
        return ordered, listing.unreachable

    def unpack(
        self, source: Path | BackupInfo, workdir: Path, thorough: bool = False, resume: bool = False
    ) -> Unpacked:
        """Fetch, decompress and verify a backup (a change backup through its chain). `resume`:
        also say what pieces it was made of, and whether every place off the machine has them
        (so the writer's chain may go on from it: chain_keeper.py)."""
        if not isinstance(source, BackupInfo):
            return Unpacked(*unpack_and_verify(Path(source), workdir, thorough, self.sealer))
        if source.delta is not None:
            return self._unpack_chain(source, workdir, thorough)
        if resume:
            whole = self.unpack(source, workdir, thorough)
            applied = ((source, frozenset()),)
            return replace(
                whole, applied=applied, everywhere=self._everywhere(applied, self.listing().backups)
            )
        destination = self.destination(source.destination)
        try:
            path = destination.fetch(source, workdir)
        except (DestinationError, OSError) as error:
            raise BackupError(f"cannot fetch {source.name} from {source.destination}: {error}") from error
        from_outside = destination is not self.local
        info, snapshot = unpack_and_verify(
            path, workdir, thorough, self.sealer, must_be_sealed=from_outside and self.sealer is not None
        )
        return Unpacked(
            replace(
                info,
                name=source.name,
                destination=source.destination,
                location=source.location,
                size=source.size,
            ),
            snapshot,
        )

    def _unpack_chain(self, wanted: BackupInfo, workdir: Path, thorough: bool) -> Unpacked:
        """The full backup `wanted` builds on and the deltas after it, applied in order as far
        as each verifies (chains.py), then checked as any restore checks a backup."""
        backups = self.listing().backups

        def fetch(piece: BackupInfo, folder: Path) -> Path:
            try:
                return self.destination(piece.destination).fetch(piece, folder)
            except (DestinationError, OSError) as error:
                raise BackupError(f"cannot fetch it from {piece.destination}: {error}") from error

        def must_be_sealed(piece: BackupInfo) -> bool:
            return self.sealer is not None and piece.destination != self.local.name

        rebuilt = rebuild(wanted, backups, fetch, workdir, self.sealer, must_be_sealed)
        return Unpacked(
            rebuilt.info,
            verified_state(rebuilt.path, rebuilt.info, workdir, thorough),
            rebuilt.shortfall,
            rebuilt.applied,
            self._everywhere(rebuilt.applied, backups),
        )

    def _everywhere(self, applied: tuple, backups: list[BackupInfo]) -> bool:
        """Whether every place off the machine lists every piece of `applied`."""
        held = {(info.destination, info.piece) for info in backups}
        places = [d.name for d in self.destinations if d is not self.local]
        return all((place, info.piece) in held for place in places for info, _ in applied)

    def as_full(self, info: BackupInfo, workdir: Path) -> tuple[Path, BackupInfo]:
        """A local backup as one file that restores alone: itself, or for a change backup, a full
        backup of the state its chain gives (verified first), under the full backup's name."""
        if info.delta is None:
            return Path(info.location), info
        unpacked = self.unpack(info, workdir)
        if unpacked.shortfall:
            raise BackupError(f"the newest backup's chain is broken: {unpacked.shortfall.reason}")
        whole = replace(unpacked.info, delta=None, sha256="", name=file_name(info.created_at, info.reason))
        with open(unpacked.path, "rb") as content:
            whole = write_backup_file(
                content, replace(whole, db_size=unpacked.path.stat().st_size), workdir / whole.name
            )
        return workdir / whole.name, whole

    def destination(self, name: str) -> Destination:
        for destination in self.destinations:
            if destination.name == name:
                return destination
        raise BackupError(f"there is no destination called {name}")
