"""Change backups that carry only the pages that changed: the page arithmetic.

A SQLite file is a row of pages of one size (its header, bytes 16-17, says which), and SQLite's
online backup keeps every page at its number, so two snapshots compare page by page. A *delta*
piece holds the pages that differ from the state it builds on, as records

    [page number: 4 bytes, big-endian, from 1] [the page's bytes: page_size]

in a zstd frame after the usual JSON header (backup_format.py), which adds the page size, the
page count of the result, the SHA-256 of the state it builds on and of the result. Applying one:
copy the base, write each page at (number - 1) * page_size, cut the file to page_count pages.

Pieces come in levels (a to d, 1 to 4) counted in base 4 from the last full backup (level 0):
the n-th delta's level is the place of n's lowest non-zero digit among its last four base-4
digits (a when they are all zero: every 64th), and it holds every change since the newest piece
of a lower level. So any restore point is a full backup and at most four deltas. A chain ends
(the next backup is full) when its deltas together outweigh its full backup: what a chain
uploads is then at most twice its deltas, whatever the database weighs.

Here: the numbering (level_of), a snapshot's page fingerprints (Pages), the chain a writer
keeps in memory (Chain), and writing and applying the records. No project module is imported:
the backup format builds on this one.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

LEVELS = 4  # a, b, c, d
SIDE = 0  # the number of a side piece: a scheduled backup of everything since the full one
MAX_DELTAS = 4**8 - 1  # then a full backup at the latest (weeks of on-change backups)
LEVEL_NAMES = " abcd"  # level 0 is the full backup
RECORD = struct.Struct(">I")  # a page's number before its bytes
READ_PAGES = 256  # pages read at a time while fingerprinting (1 MB at 4 KB pages)


class DeltaError(ValueError):
    """A delta piece cannot be applied, or its description is damaged; one line."""


def level_of(number: int) -> int:
    """The level (1..4) of the `number`-th delta after a full backup (1..MAX_DELTAS)."""
    if not 1 <= number <= MAX_DELTAS:
        raise ValueError(f"a chain holds 1 to {MAX_DELTAS} deltas, not {number}")
    level = LEVELS
    while number % 4 == 0 and level > 1:
        number //= 4
        level -= 1
    return level


def page_size_of(path: Path) -> int:
    """The page size a SQLite file's header declares (bytes 16-17; 1 means 65536)."""
    with open(path, "rb") as stream:
        header = stream.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise DeltaError("not a SQLite file")
    size = int.from_bytes(header[16:18], "big")
    size = 65536 if size == 1 else size
    if size < 512 or size & (size - 1):
        raise DeltaError(f"impossible page size {size}")
    return size


@dataclass(frozen=True)
class Delta:
    """What a delta piece's header says of it, beside the usual fields (whose sha256 and
    db_size are the result's)."""

    level: int  # 1..4
    number: int  # its place after the full backup, 1..MAX_DELTAS; SIDE (0): a side piece
    base_sha256: str  # the state it builds on
    chain: tuple[str, ...]  # the pieces it builds on, the full backup first (file names)
    page_size: int
    page_count: int  # of the result
    pages: int  # how many pages it carries

    def as_json(self) -> dict:
        return {
            "level": self.level,
            "number": self.number,
            "base_sha256": self.base_sha256,
            "chain": list(self.chain),
            "page_size": self.page_size,
            "page_count": self.page_count,
            "pages": self.pages,
        }

    @classmethod
    def from_json(cls, raw, name_pattern, sha256_pattern) -> Delta:
        """Every field checked for its type and range; DeltaError otherwise."""
        if not isinstance(raw, dict):
            raise DeltaError("delta")
        level, number, base, chain = (raw.get(k) for k in ("level", "number", "base_sha256", "chain"))
        size, count, pages = (raw.get(k) for k in ("page_size", "page_count", "pages"))
        if not (_whole(level, LEVELS) and level >= 1 and _whole(number, MAX_DELTAS)):
            raise DeltaError("delta level")
        if level != (1 if number == SIDE else level_of(number)):
            raise DeltaError("delta level")
        if not (isinstance(base, str) and sha256_pattern.match(base)):
            raise DeltaError("delta base checksum")
        if not (isinstance(chain, list) and 1 <= len(chain) <= level):
            raise DeltaError("delta chain")
        if not all(isinstance(name, str) and name_pattern.match(name) for name in chain):
            raise DeltaError("delta chain")
        if not (_whole(size, 65536) and size >= 512 and not size & (size - 1)):
            raise DeltaError("delta page size")
        if not (_whole(count, 1 << 32) and _whole(pages, count)):
            raise DeltaError("delta page count")
        return cls(level, number, base, tuple(chain), size, count, pages)


def _whole(value, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


# --- a snapshot's pages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pages:
    """A SQLite file's page size, a 16-byte BLAKE2b fingerprint of each page, and the SHA-256 of
    the whole file: what the next snapshot is compared with (instead of a second copy of the
    database on the disk)."""

    page_size: int
    digests: tuple[bytes, ...]
    sha256: str

    @property
    def count(self) -> int:
        return len(self.digests)

    def changed(self, newer: Pages) -> set[int]:
        """The page numbers (from 1) of `newer` that differ from these, new pages included."""
        old = self.digests
        return {n for n, digest in enumerate(newer.digests, 1) if n > len(old) or old[n - 1] != digest}


def fingerprint(path: Path) -> Pages:
    """One pass over a SQLite file: each page's fingerprint and the whole file's SHA-256."""
    page_size = page_size_of(path)
    whole, digests = hashlib.sha256(), []
    with open(path, "rb") as stream:
        while block := stream.read(page_size * READ_PAGES):
            whole.update(block)
            view = memoryview(block)
            for start in range(0, len(block), page_size):
                digests.append(hashlib.blake2b(view[start : start + page_size], digest_size=16).digest())
    if os.path.getsize(path) % page_size:
        raise DeltaError("the file is not a whole number of pages")
    return Pages(page_size, tuple(digests), whole.hexdigest())


# --- the chain a writer keeps -------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A piece of the chain, as this writer stored it."""

    name: str  # its file name in the local folder
    sha256: str  # of the state it stands for
    size: int  # bytes as stored (compressed)


@dataclass(frozen=True)
class Plan:
    """The next delta: its description and the pages it must carry."""

    delta: Delta
    pages: list[int]  # sorted


@dataclass
class Chain:
    """The chain since the last full backup, kept in memory by the writer that makes it: the
    newest piece at each level, and for each level the pages changed since the state a piece of
    that level would build on (chain_keeper.py keeps it, and takes it up after a restore)."""

    full: Piece
    pages: Pages  # the state the newest piece stands for
    number: int = 0  # deltas since the full backup
    newest: list[Piece | None] = field(default_factory=lambda: [None] * (LEVELS + 1))
    since: list[set[int]] = field(default_factory=lambda: [set() for _ in range(LEVELS + 1)])
    delta_bytes: int = 0  # what the deltas since the full backup weigh together

    def __post_init__(self):
        self.newest[0] = self.full

    def plan(self, snapshot: Pages) -> Plan | None:
        """The next delta for `snapshot`, or None when it must be a full backup: its deltas
        already outweigh the full backup, the page size changed, or the chain is at its end."""
        if self.number >= MAX_DELTAS or snapshot.page_size != self.pages.page_size:
            return None
        if self.delta_bytes > self.full.size:
            return None
        level = level_of(self.number + 1)
        changed = self.pages.changed(snapshot)
        pages = sorted(
            n for n in self.since[level] | changed if n <= snapshot.count
        )  # pages past the end were cut off: the page count says so
        builds_on = [piece for piece in self.newest[:level] if piece is not None]
        delta = Delta(
            level,
            self.number + 1,
            builds_on[-1].sha256,
            tuple(piece.name for piece in builds_on),
            snapshot.page_size,
            snapshot.count,
            len(pages),
        )
        return Plan(delta, pages)

    def next(self, snapshot: Pages, reason: str) -> Plan | None:
        """The piece a backup for `reason` is: an on-change one the chain's next, a scheduled
        one a side piece; None: a full backup."""
        if reason == "change":
            return self.plan(snapshot)
        return self.side_plan(snapshot) if reason == "scheduled" else None

    def side_plan(self, snapshot: Pages) -> Plan | None:
        """A side piece for `snapshot`: every page changed since the full backup, built on it
        alone, outside the chain's levels (a scheduled backup kept as history, which the
        on-change pieces never replace). None when it must be a full backup: as for plan(), or
        when the full backup is an on-change one (whose message in the chat the next chain's
        full backup takes over)."""
        if "-change." in self.full.name or self.plan(snapshot) is None:
            return None
        pages = sorted(n for n in self.since[1] | self.pages.changed(snapshot) if n <= snapshot.count)
        delta = Delta(
            1, SIDE, self.full.sha256, (self.full.name,), snapshot.page_size, snapshot.count, len(pages)
        )
        return Plan(delta, pages)

    def advance(self, plan: Plan, piece: Piece, snapshot: Pages) -> None:
        """The planned piece was stored: it is the newest at its level."""
        changed = self.pages.changed(snapshot)
        level = plan.delta.level
        for pending in self.since:
            pending |= changed
        for higher in range(level + 1, LEVELS + 1):
            self.newest[higher], self.since[higher] = None, set()
        self.newest[level] = piece
        self.number, self.pages = plan.delta.number, snapshot
        self.delta_bytes += piece.size


def following(chain: Chain | None, plan: Plan | None, piece: Piece, pages: Pages) -> Chain:
    """The chain once `piece` (made by `plan`, or a full backup without one) is stored."""
    if plan is None or chain is None:
        return Chain(piece, pages)
    if plan.delta.number == SIDE:  # outside the levels: the chain goes on as it was
        chain.delta_bytes += piece.size
    else:
        chain.advance(plan, piece, pages)
    return chain


# --- records ------------------------------------------------------------------------------------


def write_records(snapshot: Path, pages: Iterable[int], page_size: int, out: BinaryIO) -> int:
    """The records of `pages` of the file `snapshot` into `out`; returns the bytes written."""
    written = 0
    with open(snapshot, "rb") as source:
        for number in pages:
            source.seek((number - 1) * page_size)
            page = source.read(page_size)
            if len(page) != page_size:
                raise DeltaError(f"page {number} is past the end of the snapshot")
            out.write(RECORD.pack(number) + page)
            written += RECORD.size + page_size
    return written


def apply_records(records: BinaryIO, target: BinaryIO, delta: Delta) -> frozenset[int]:
    """Write the records read from `records` into `target` (a copy of the base state, opened
    r+b), then cut it to the delta's page count; returns the page numbers it carried.
    DeltaError when the records are not what the header promised (a page out of range, a part
    of a record, more or fewer pages)."""
    size, seen, carried = delta.page_size, 0, set()
    while start := records.read(RECORD.size):
        page = records.read(size)
        if len(start) != RECORD.size or len(page) != size:
            raise DeltaError("a page record is cut short")
        (number,) = RECORD.unpack(start)
        if not 1 <= number <= delta.page_count:
            raise DeltaError(f"page {number} is outside the {delta.page_count} pages of the result")
        seen += 1
        carried.add(number)
        if seen > delta.pages:
            raise DeltaError("it holds more pages than its header says")
        target.seek((number - 1) * size)
        target.write(page)
    if seen != delta.pages:
        raise DeltaError(f"it holds {seen} pages where its header says {delta.pages}")
    target.truncate(delta.page_count * size)
    return frozenset(carried)
