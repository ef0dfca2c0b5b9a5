"""Restoring a change backup through its chain: the full backup it builds on, then each delta in
order (deltas.py), each one's base checked before it is applied and its result after.

A missing, damaged or misplaced piece ends the chain at the last state that verified: that state
is what comes back, never a half one, and the Shortfall says what was wanted, why it ended
there, and how many later restore points were unusable. The caller then checks the state as any
backup (integrity, schema) before it may replace the live database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from backup_format import BackupError, BackupInfo, apply_delta_file, unpack_full, unsealed
from sealing import Sealer

log = logging.getLogger("backup")

Fetch = Callable[[BackupInfo, Path], Path]  # a piece's stored copy as a local file


@dataclass(frozen=True)
class Shortfall:
    """A chain that ended before the restore point asked for."""

    wanted: BackupInfo
    used: BackupInfo  # the restore point whose state came back
    reason: str  # why the next piece could not be used
    unusable: int  # restore points of the chain after the one used


@dataclass(frozen=True)
class Rebuilt:
    info: BackupInfo  # the restore point whose state `path` holds
    path: Path  # the SQLite file, as the writer's snapshot was (not yet checked or upgraded)
    shortfall: Shortfall | None
    applied: tuple = ()  # (piece, the pages it carried) for each piece applied, the full first


def find_pieces(wanted: BackupInfo, backups: Sequence[BackupInfo]) -> list[list[BackupInfo]]:
    """For each piece `wanted` is made of (the full backup first, `wanted` last), its copies,
    those in `wanted`'s own destination first; none for a piece found nowhere."""
    names = [*wanted.delta.chain, wanted.piece] if wanted.delta else [wanted.piece]
    copies = []
    for name in names:
        found = [info for info in backups if info.piece == name and info != wanted]
        found.sort(key=lambda info: info.destination != wanted.destination)
        copies.append([wanted, *found] if name == wanted.piece else found)
    return copies


def rebuild(
    wanted: BackupInfo,
    backups: Sequence[BackupInfo],
    fetch: Fetch,
    workdir: Path,
    sealer: Sealer | None,
    must_be_sealed: Callable[[BackupInfo], bool],
) -> Rebuilt:
    """The state of restore point `wanted`, or of the last piece of its chain that verifies; a
    piece that cannot be fetched or applied is tried from its other copies first (another
    destination). BackupError when not even its full backup can be read."""
    copies = find_pieces(wanted, backups)
    chosen = [0] * len(copies)  # which copy of each piece is used

    def local(number: int, copy: BackupInfo) -> Path:
        return _local(copy, fetch, workdir, sealer, must_be_sealed(copy), number)

    names = [*wanted.delta.chain, wanted.piece] if wanted.delta else [wanted.piece]
    files, reason = _fetch(copies, chosen, 0, local)
    if len(files) < len(copies) and not copies[len(files)]:
        reason = f"{names[len(files)]} is missing"
    if not files:
        raise BackupError(f"the full backup this builds on cannot be read ({reason})")
    state = workdir / "chain.db"
    while True:
        pieces = [copies[n][chosen[n]] for n in range(len(files))]
        try:
            used, failed, applied = _apply(pieces, files, state)
        except BackupError:  # the full backup itself is damaged: another copy of it, if any
            if chosen[0] + 1 >= len(copies[0]):
                raise
            used, failed = -1, "the full backup is damaged"
        if not failed:
            break
        bad = used + 1
        if chosen[bad] + 1 >= len(copies[bad]):  # no other copy: the chain ends before it
            reason = failed
            applied = _apply(pieces, files[:bad], state)[2]  # it held part of the piece: made again
            break
        chosen[bad] += 1
        more, reason = _fetch(copies, chosen, bad, local)
        files = files[:bad] + more
        if not files:
            raise BackupError(f"the full backup this builds on cannot be read ({reason})")
    info = replace(pieces[used], destination=wanted.destination)
    if used == len(copies) - 1:
        return Rebuilt(info, state, None, applied)
    log.warning("the chain of %s ends at %s: %s", wanted.name, info.name, reason)
    return Rebuilt(info, state, Shortfall(wanted, info, reason, len(copies) - 1 - used), applied)


def _fetch(copies: list, chosen: list[int], start: int, local: Callable) -> tuple[list[Path], str]:
    """The pieces from `start` on as local files, each from the first of its copies (from
    `chosen`) that can be fetched, up to one that none can; and why that one could not."""
    files: list[Path] = []
    reason = ""
    for number in range(start, len(copies)):
        while chosen[number] < len(copies[number]):
            copy = copies[number][chosen[number]]
            try:
                files.append(local(number, copy))
                break
            except BackupError as error:
                reason = f"{copy.piece}: {error}"
                chosen[number] += 1
        else:
            return files, reason or "it is missing"
    return files, ""


def _local(
    piece: BackupInfo, fetch: Fetch, workdir: Path, sealer: Sealer | None, sealed: bool, number: int
) -> Path:
    try:
        path = fetch(piece, workdir)
    except BackupError:
        raise
    except Exception as error:  # a destination's failure, whatever its kind: the piece is missing
        raise BackupError(f"cannot fetch it ({error})") from error
    return unsealed(path, workdir, sealer, sealed, f"piece-{number}.zst")


def _apply(pieces: list, files: list[Path], state: Path) -> tuple[int, str, tuple]:
    """The full backup, then the deltas of `files` in order, as far as each verifies; returns
    which piece's state `state` holds, why the next one failed ("" when none did), and each
    piece applied with the pages it carried."""
    state.unlink(missing_ok=True)
    full = unpack_full(files[0], state)
    if full.delta is not None or full.sha256 != pieces[0].sha256:
        raise BackupError("the chain does not start with the full backup it names")
    used, sha256, applied = 0, full.sha256, [(pieces[0], frozenset())]
    for number, path in enumerate(files[1:], start=1):
        try:
            info, carried = apply_delta_file(path, state, sha256)
        except BackupError as error:
            return used, f"{pieces[number].piece}: {error}", tuple(applied)
        if info.sha256 != pieces[number].sha256:
            return used, f"{pieces[number].piece}: it is not the piece its listing names", tuple(applied)
        used, sha256 = number, info.sha256
        applied.append((pieces[number], carried))
    return used, "", tuple(applied)
