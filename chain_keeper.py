"""The writer's chain of change backups (deltas.py), for the engine: which file a backup becomes
(a delta, a side piece or a full backup), the chain after it is stored, and the chain taken up
again after a restore, so that a wake or a hand-over does not begin with a full upload.

The chain lives in memory. It is taken up after a restore only when the restored file is exactly
the state its backup stands for (the same SHA-256) and every place off the machine lists every
piece of it; otherwise the next backup is full.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from backup_format import (
    COMPRESSION_LEVEL,
    QUICK_COMPRESSION_LEVEL,
    BackupInfo,
    file_name,
    write_backup_file,
    write_delta_file,
)
from deltas import SIDE, Chain, Pages, Piece, fingerprint, following

Step = tuple  # (Plan | None, Pages): what the chain becomes once the backup is stored


class ChainKeeper:
    """The chain this writer builds on; None: the next backup is full."""

    def __init__(self):
        self.chain: Chain | None = None

    def pack(
        self, info: BackupInfo, snapshot: Path, workdir: Path, chained: bool, hurry: bool
    ) -> tuple[BackupInfo, Path, Step | None]:
        """The backup file of `snapshot` (`info` without its checksum): a delta or a side piece
        when the chain allows, else a full backup. Returns its info, its path and the chain's
        step, taken once every place has it (`chained`: the snapshot is one of the online
        backup's, which keep the pages of a chain comparable)."""
        pages = fingerprint(snapshot) if chained else None
        plan = self.chain.next(pages, info.reason) if pages and self.chain else None
        if plan is not None:
            info = replace(
                info,
                sha256=pages.sha256,
                delta=plan.delta,
                name=file_name(info.created_at, info.reason, delta=True),
            )
            packed = workdir / info.name
            return write_delta_file(snapshot, info, plan.pages, packed), packed, (plan, pages)
        packed = workdir / info.name
        with open(snapshot, "rb") as content:
            info = write_backup_file(
                content, info, packed, QUICK_COMPRESSION_LEVEL if hurry else COMPRESSION_LEVEL
            )
        return info, packed, (None, pages) if pages else None

    def follow(self, step: Step | None, stored: Sequence[BackupInfo]) -> None:
        """The chain after a backup (deltas.following); without a step (a piece some place
        lacks, a final backup) the next backup is full."""
        plan, pages = step or (None, None)
        piece = Piece(stored[0].piece, pages.sha256, stored[0].size) if pages and stored else None
        self.chain = following(self.chain, plan, piece, pages) if piece else None

    def resume(self, applied: Sequence[tuple[BackupInfo, frozenset]], state: Pages | None) -> None:
        """After a restore of the state `state` (its pages' fingerprints) made of `applied` (the
        full backup, then each delta with the pages it carried): the chain goes on from there.
        The pages each level waits for are those the pieces after its base carried."""
        self.chain = None
        if not applied or state is None or state.sha256 != applied[-1][0].sha256:
            return
        full = applied[0][0]
        if full.delta is not None or any(info.delta.number == SIDE for info, _ in applied[1:]):
            return
        chain = Chain(Piece(full.piece, full.sha256, full.size), state)
        for info, carried in applied[1:]:
            level = info.delta.level
            for pending in chain.since:
                pending |= carried
            for higher in range(level + 1, len(chain.newest)):
                chain.newest[higher], chain.since[higher] = None, set()
            chain.newest[level] = Piece(info.piece, info.sha256, info.size)
            chain.number, chain.delta_bytes = info.delta.number, chain.delta_bytes + info.size
        self.chain = chain
