"""The writer's lease: which instance of a deployment may write the backups off the machine.

On a host like Koyeb a redeploy starts a new instance while the old one still runs, and every
instance starts on an empty disk. At most one of them writes (the writer); the others stay
passive. What decides it is kept off the machine, beside the backups but apart from them (as
Litestream keeps its Leaser apart from its ReplicaClient): each place off the machine that can
hold it is a `LeaseStore` with two records,

    the head   who writes: a generation, the instance, and whether it is still writing or
               stopped cleanly after a final backup (Head)
    the knock  the latest request of a newer instance to the writer: hand over to me (Knock);
               a record of its own, never the head, so that two instances never write one record

The `Lease` is this instance's side of it: the generation and name it writes as (recorded in
the database, so every backup it takes carries them), claiming and publishing its head in
every store, reading the others', knocking, and the rule that fences a stale writer. The
backup engine stores backups; the lease decides who may.

Everything read from a store came from outside: Head.from_json and Knock.from_json check every
field and answer a record or NotABackupError.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from backup_format import MAX_GENERATION, WRITER, NotABackupError, checked_moment, whole
from clock import Clock, utc_now
from database import Database
from destinations import DestinationError, Stale, Unreachable
from i18n import Alert, Code, Text

log = logging.getLogger("lease")

GENERATION_KEY, WRITER_KEY = "generation", "writer"  # this database's writer, in bot_state
KNOCK_FRESH_SECONDS = 10.0  # a writer heeds a knock this recent: its instance is still waiting


class HeadState(enum.Enum):
    WRITING = "writing"  # the writer serves; what it wrote since its newest backup may be on its disk only
    QUIET = "quiet"  # it serves, but wrote nothing since the backup named: that one holds it all
    FINAL = "final"  # it stopped cleanly: its final backup holds everything it wrote


@dataclass(frozen=True)
class Head:
    """Who writes the backups off the machine, as each store keeps it: a writer publishes
    WRITING before it handles its first update, and FINAL with its last backup when it stops
    cleanly (at shutdown, or handing over to a newer instance). Every instance that starts, or
    waits passively, reads it; a writer whose generation is behind it stops writing (fencing)."""

    generation: int
    writer: str  # the instance
    state: HeadState
    since: datetime  # when this state began
    final_backup_at: datetime | None = None  # the created-at of the backup that holds it all

    def newer_writer_than(self, generation: int, writer: str) -> bool:
        """This head belongs to a writer that supersedes `writer` of `generation`."""
        return self.generation > generation or (
            self.generation == generation and self.writer != writer and self.state is HeadState.WRITING
        )

    def as_json(self) -> dict:
        return {
            "generation": self.generation,
            "writer": self.writer,
            "state": self.state.value,
            "since": self.since.isoformat(timespec="milliseconds"),
            "final_backup_at": self.final_backup_at.isoformat(timespec="milliseconds")
            if self.final_backup_at
            else None,
        }

    @staticmethod
    def from_json(data) -> Head:
        """A Head from JSON that came from outside; NotABackupError when it is not one."""
        problem = "the writer record is damaged"
        if not isinstance(data, dict):
            raise NotABackupError(f"{problem} (not an object)")
        generation, writer, state = data.get("generation"), data.get("writer"), data.get("state")
        if not whole(generation, MAX_GENERATION):
            raise NotABackupError(f"{problem} (generation)")
        if not isinstance(writer, str) or not WRITER.match(writer):
            raise NotABackupError(f"{problem} (writer)")
        if not isinstance(state, str) or state not in {s.value for s in HeadState}:
            raise NotABackupError(f"{problem} (state)")
        final_at = data.get("final_backup_at")
        return Head(
            generation,
            writer,
            HeadState(state),
            checked_moment(data.get("since"), problem),
            checked_moment(final_at, problem) if final_at is not None else None,
        )


@dataclass(frozen=True)
class Knock:
    """A newer instance asking the writer to hand over to it: what a writer in webhook mode
    hears instead of a 409."""

    instance: str
    at: datetime

    def as_json(self) -> dict:
        return {"instance": self.instance, "at": self.at.isoformat(timespec="milliseconds")}

    @staticmethod
    def from_json(data) -> Knock:
        """A Knock from JSON that came from outside; NotABackupError when it is not one."""
        problem = "the hand-over request is damaged"
        instance = data.get("instance") if isinstance(data, dict) else None
        if not isinstance(instance, str) or not instance or not WRITER.match(instance):
            raise NotABackupError(problem)
        return Knock(instance, checked_moment(data.get("at"), problem))


def newest_head(heads) -> Head | None:
    """The head that speaks for now: the highest generation, then the latest change."""
    heads = [head for head in heads if head is not None]
    return max(heads, key=lambda head: (head.generation, head.since)) if heads else None


def newest_knock(knocks) -> Knock | None:
    knocks = [knock for knock in knocks if knock is not None]
    return max(knocks, key=lambda knock: knock.at) if knocks else None


def fence(current: Head | None, generation: int, writer: str) -> None:
    """Raise Stale when `current`, a store's head, supersedes `writer` of `generation`. Every
    place off the machine calls it before anything replaces what is there."""
    if current is not None and current.newer_writer_than(generation, writer):
        raise Stale(
            f"a newer instance writes here (generation {current.generation}, "
            f"{current.writer}); this one is generation {generation}"
        )


class KnockWatch:
    """Which knocks ask this writer to hand over, judged by this machine's own clock only (two
    machines' clocks may be hours apart): a knock counts when it is new to this watch (one
    already there when the writer began serving counts for nothing) and for KNOCK_FRESH_SECONDS
    after it was first seen. A waiting instance knocks again every few seconds, each knock a new
    one; one that died stops counting."""

    def __init__(self, instance: str, already: Knock | None, clock: Callable[[], float] = time.monotonic):
        self.instance, self.clock = instance, clock
        self._seen: dict[Knock, float] = {already: float("-inf")} if already is not None else {}

    def asking(self, knock: Knock | None) -> bool:
        if knock is None or knock.instance == self.instance:
            return False
        first = self._seen.setdefault(knock, self.clock())
        if len(self._seen) > 100:  # old knocks need no memory
            self._seen = {knock: first}
        return self.clock() - first <= KNOCK_FRESH_SECONDS


class LeaseStore(Protocol):
    """A place off the machine that keeps the head and the knock.

    read_head()       the head there, or None (none yet, or not one: what came from outside is
                      reported and ignored)
    write_head(head)  publish it; fenced: Stale when the head there names a newer writer
    read_knock()      the latest knock there, or None; keep_on_top: the writer asks, and keeps
                      its record where others look (the chat's index above other pins)
    knock(knock)      leave one (not fenced: any instance may ask)
    compare_and_set   write_head replaces only the head it read and fenced (a conditional
                      write): of two claims at once exactly one succeeds, the other is Stale

    Every failure is a one-line DestinationError without secrets."""

    name: str
    compare_and_set: bool

    def read_head(self) -> Head | None: ...

    def write_head(self, head: Head) -> None: ...

    def read_knock(self, keep_on_top: bool = False) -> Knock | None: ...

    def knock(self, knock: Knock) -> None: ...


class Lease:
    """This instance's lease over every store: who it writes as, and whether it still may."""

    def __init__(
        self,
        stores: Sequence[LeaseStore] = (),
        db: Database | None = None,
        clock: Clock = utc_now,
        alert: Alert | None = None,
    ):
        self.stores, self.db, self.clock = list(stores), db, clock
        self.alert = alert or (lambda text: None)
        self.generation, self.writer = self._recorded()
        self.held = True  # False once this instance handed over, or found a newer writer
        self.claimed = True  # a writer read from the database claimed before (the command line)
        self.on_stale: Callable[[str], object] = lambda why: None  # the instance goes passive

    def _recorded(self) -> tuple[int, str]:
        """The generation and writer recorded in the database (what the command line uses
        beside a running bot: its backups are that writer's)."""
        if self.db is None:
            return 0, ""
        generation = self.db.get_state(GENERATION_KEY)
        return (
            int(generation) if generation and generation.isdigit() else 0,
            self.db.get_state(WRITER_KEY) or "",
        )

    def record(self) -> None:
        """Write who writes into the database (after a restore replaced it)."""
        if self.writer and self.db is not None:
            self.db.set_state(GENERATION_KEY, str(self.generation))
            self.db.set_state(WRITER_KEY, self.writer)

    def become(self, generation: int, writer: str) -> None:
        """From now on this instance writes, as `writer` of `generation`; its head is published
        before its first copy leaves the machine."""
        self.generation, self.writer, self.held, self.claimed = generation, writer, True, False
        self.record()

    def release(self) -> None:
        """After a hand-over, or a newer writer found: nothing leaves the machine any more."""
        self.held = False

    def heads(self) -> tuple[Head | None, list[Unreachable]]:
        """The newest head of every store, and the stores that could not be asked."""
        found, unreachable = [], []
        for store in self.stores:
            try:
                found.append(store.read_head())
            except (DestinationError, OSError) as error:
                unreachable.append(Unreachable(store.name, str(error), True))
        return newest_head(found), unreachable

    def publish(self, state: HeadState, final_backup_at: datetime | None = None) -> list[str]:
        """Write this writer's head in every store; returns those that could not take it. Stale
        when one names a newer writer."""
        head = Head(self.generation, self.writer, state, self.clock(), final_backup_at)
        failed = []
        # Stores that decide atomically first: a claim that loses there never reaches the others.
        for store in sorted(self.stores, key=lambda store: not store.compare_and_set):
            try:
                store.write_head(head)
            except Stale:
                raise
            except (DestinationError, OSError) as error:
                log.warning("could not publish the writer in %s: %s", store.name, error)
                failed.append(store.name)
        if state is HeadState.WRITING and len(failed) < len(self.stores):
            self.claimed = True
        return failed

    def decided(self, unreached: Sequence[str]) -> bool:
        """A claim that reached a store deciding atomically is settled: a rival claiming at the
        same time lost there (and stopped) or wins there (and this one was Stale)."""
        return any(store.compare_and_set and store.name not in unreached for store in self.stores)

    def claim_if_needed(self) -> None:
        """Publish the head now when it was not yet (the writer began while copies were kept on
        the machine); a newer writer found makes this one stale."""
        if not self.claimed:
            try:
                self.publish(HeadState.WRITING)
            except Stale as error:
                self.went_stale(str(error))

    def publish_final(self, final_backup_at: datetime) -> None:
        try:
            self.publish(HeadState.FINAL, final_backup_at)
        except Stale as error:
            self.went_stale(str(error))

    def knock(self, instance: str) -> None:
        """Ask whoever writes to hand over to `instance`."""
        knock = Knock(instance, self.clock())
        for store in self.stores:
            try:
                store.knock(knock)
            except (DestinationError, OSError) as error:
                log.warning("could not ask for the hand-over in %s: %s", store.name, error)

    def latest_knock(self, writer: bool = False) -> Knock | None:
        """The newest request to hand over, of every store that answers. `writer`: the writer
        asks, and keeps its records where a newer instance looks for them."""
        found = []
        for store in self.stores:
            try:
                found.append(store.read_knock(keep_on_top=writer))
            except (DestinationError, OSError) as error:
                log.debug("could not read the hand-over requests in %s: %s", store.name, error)
        return newest_knock(found)

    def went_stale(self, why: str) -> None:
        """A newer instance writes off the machine: stop writing there, keep copies locally."""
        if self.held:
            self.held = False
            log.error("this instance is stale: %s", why)
            self.alert(
                Text(
                    "⛔ This instance stopped writing: {why}. Its backups stay on its own disk; "
                    "the newer instance's backups are untouched.",
                    why=Code(why),
                )
            )
            self.on_stale(why)
