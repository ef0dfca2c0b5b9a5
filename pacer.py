"""Telegram's pace for one process: when each write to a chat may go, within the guidance's
windows (per chat and overall) and the stops a 429 asked for, counting the writes other
processes made to the chat as far as this one knows them (the chat's index lists them:
`Pacer.writes_in`, `Pacer.learn`).

Telegram's guidance (core.telegram.org/bots/faq, "My bot is hitting limits"): about one message
a second in a chat (short bursts pass), 20 a minute in a group, 30 a second overall. Which
calls count, and which work may use how much of a chat's minute, is bot_api.py's to say; this
module only counts and waits.

Threads: any thread may call. One lock guards the windows and the stops; nobody holds it while
waiting.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping

# The guidance's windows: at most `count` writes in any `seconds`.
PRIVATE_PACE = ((3, 3.0),)
GROUP_PACE = ((3, 3.0), (20, 60.0))
OVERALL_PACE = ((30, 1.0),)
# Work that can wait (backups while serving, rotation: inside paced()) keeps to 15 of a
# group's 20 a minute, leaving room for the writes that cannot wait (inside urgent(), or with a
# deadline: a newer instance's knock, a claim, a final backup's data and index), so that
# together they keep the guidance.
BULK_GROUP_PACE = ((3, 3.0), (15, 60.0))
# A waiting instance cannot see the writer's latest write (a backup's data goes before the index
# that lists it): its knock counts one write more than it knows of (urgent(unseen=1)).
# Telegram counts a write when it arrives, the pacer when it lets it go: a little room for the
# difference, so that a request that travels slower than the next still keeps the window.
PACE_MARGIN = 0.1
# The longest of the guidance's windows: a write older than this counts toward none of them.
PACE_HORIZON = 60.0
# A process does not see the writes another one made in a chat: the chat's index lists the
# writes of its last minute, stamped by Telegram's clock (Pacer.writes_in / learn), and each
# edit of the index by someone else counts as one more (telegram_chat.py). At most this many
# are learned from one index (the guidance allows 20 a minute; the rest is not ours).
MAX_LEARNED = 100
PACE_SLICE = 0.5  # a wait for the pace looks again this often (the writer may start finishing)


class Pacer:
    """When each write may go: the guidance's windows per chat and overall, and the stops a 429
    asked for. Times are monotonic; what other processes wrote to a chat (learned from the chat
    itself) is kept apart from this one's own writes and counted with them.

    Telegram's clock: writes listed for another process are stamped by the server's clock, as
    this process knows it: the latest Date header or message date it saw (whole seconds, never
    later than the server's now, so the lower bound), else this machine's wall clock. A stamp
    is written a second late rather than early, so a reader never counts a write as older than
    it was."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] = time.sleep
    ):
        self.clock, self.sleep = clock, sleep
        self.id = secrets.token_hex(4)  # this process, in the writes it lists in a chat
        self._lock = threading.Lock()
        self._going = threading.local()  # counted: the keys and time of this thread's last write
        self._sent: dict[object, deque[float]] = {}  # chat id (or "all") -> times of recent writes
        # time of one of this process's writes -> its stamp, fixed the first time it is listed
        # (Telegram's clock is known better as time goes on: a stamp that moved would be
        # learned again as another write)
        self._stamps: dict[float, float] = {}
        # chat -> (stamp, by, n: the nth listed with that stamp and maker), or an edit's version
        # as seen -> (time counted, stamp listed, which process or message)
        self._learned: dict[object, dict[Hashable, tuple[float, float, str]]] = {}
        # this process's edits of the index, as others list them -> how many with that label
        self._own_edits: dict[tuple[float, str], int] = {}
        self._stopped: dict[object, float] = {}  # chat id (or "all") -> flood stop until
        # Telegram's clock minus self.clock, at least: from the dates of messages (what every
        # process sees alike), else from Date headers (a proxy on the way may set its own)
        self._server_offset: dict[str, float] = {}

    def wait_for_turn(
        self,
        chat: object | None,
        write: bool,
        budget: float,
        paced: bool = False,
        pace_budget: Callable[[], float | None] = lambda: None,
        urgent: int | None = None,
    ) -> float:
        """Wait (at most `budget` seconds) until a call to `chat` may go, and count it when it
        is a write; `paced`: a write within the guidance's windows for one chat too (`urgent`:
        the whole minute, less that many writes it cannot see; None: bulk work's share), waited
        for at most `pace_budget()` seconds (None: `budget`; asked again at every slice of the
        wait: the writer may start finishing meanwhile, and a backup waiting for the minute
        must then go). Returns the seconds waited."""
        return self._wait(chat, write, budget, paced, pace_budget, urgent, count=True)[0]

    def landed(self) -> None:
        """This thread's last write counted (wait_for_turn) has had its answer: Telegram counts
        it when it arrived, which may be long after it left (an upload), so it counts from now."""
        keys, at = getattr(self._going, "counted", ((), None))
        self._going.counted = ((), None)
        with self._lock:
            for key in keys:
                sent = self._sent.get(key, ())
                for i in range(len(sent) - 1, -1, -1):
                    if sent[i] == at:
                        del sent[i]
                        sent.append(self.clock())
                        break

    def wait_for_room(
        self,
        chat: object,
        budget: float,
        urgent: int | None = None,
        pace_budget: Callable[[], float | None] = lambda: None,
    ) -> tuple[float, bool]:
        """Wait until one more paced write to `chat` may go, without making it: for the pace at
        most `pace_budget()` seconds (as in wait_for_turn), for a flood stop at most `budget`.
        A read and the write based on it then follow each other at once (at_once()). Returns
        the seconds waited, and whether there is room (else the budgets ran out first)."""
        return self._wait(chat, True, budget, True, pace_budget, urgent, count=False)

    def has_room(self, chat: object, urgent: int | None = None) -> bool:
        """Whether one more paced write to `chat` may go now: after a read that learned writes
        (a knock), the room made before it may be gone."""
        with self._lock:
            return self._delay(chat, True, True, urgent) <= 0

    def stopped_for(self, chat: object | None) -> float:
        """The seconds Telegram's flood stop on `chat` (or on every call) still has to run."""
        with self._lock:
            return max(0.0, self._delay(chat, False, False))

    def _wait(self, chat, write, budget, paced, pace_budget, urgent, count) -> tuple[float, bool]:
        waited = 0.0
        while True:
            limit = pace_budget()
            limit = budget if limit is None else min(budget, limit)
            with self._lock:
                stopped = self._delay(chat, write, False)
                pace = self._delay(chat, write, paced, urgent)
                delay = stopped if waited >= limit else pace
                if delay <= 0 or waited >= budget:
                    if count and write:  # counted: all of them overall, the paced ones in their chat
                        now, keys = self.clock(), (chat, "all") if paced else ("all",)
                        for key in keys:
                            self._sent.setdefault(key, deque(maxlen=30)).append(now)
                        self._going.counted = (keys, now)
                    return waited, max(stopped, pace) <= 0
            pause = min(delay, (limit if waited < limit else budget) - waited, PACE_SLICE)
            self.sleep(pause)
            waited += pause

    # --- what the chat tells the next process ---

    def saw_server_time(self, server_time: float, source: str = "message") -> None:
        """Telegram's clock read `server_time` (whole seconds) at the latest now: a message's
        date (`source` "message"), or a Date header ("header": used until a message's date is
        known, since anything on the way may set it)."""
        with self._lock:
            offset = server_time - self.clock()
            if offset > self._server_offset.get(source, -math.inf):
                self._server_offset[source] = offset

    def writes_in(self, chat: object) -> list[tuple[float, str]]:
        """The writes to `chat` within the last minute that this process knows of (its own and
        those it learned), each as (Telegram's time, a second late; the process that made it):
        what the chat's index carries for the next process."""
        with self._lock:
            now, offset = self.clock(), self._offset()
            own = []
            for at in self._sent.get(chat, ()):
                if now - at < PACE_HORIZON:
                    own.append((self._stamps.setdefault(at, round(at + offset + 1, 1)), self.id))
            for at in [at for at in self._stamps if now - at >= PACE_HORIZON]:
                del self._stamps[at]
            learned = [
                (listed, by)
                for at, listed, by in self._learned.get(chat, {}).values()
                if now - at < PACE_HORIZON
            ]
            return sorted(own + learned)

    def learn(
        self,
        chat: object,
        writes: Iterable[tuple[float, str]],
        seen: Mapping[Hashable, tuple[float, str]] | None = None,
    ) -> None:
        """Writes other processes made to `chat`, counted toward the chat's windows from now on:
        `writes` as writes_in() listed them in the index (this process's own among them are
        known already: its id, or as many edits of the index with that label as it made);
        `seen`, edits of the index this process saw and did not make, each under its own key
        (the message's version: two edits in one second share a label, never a version), as
        (stamp, label). A stamp later than Telegram's now counts as now, and is listed as now
        (a clock this process cannot check: passed on as it is, it would be learned afresh by
        each process in turn)."""
        with self._lock:
            count: dict[tuple[float, str], int] = {}  # writes in one burst share a stamp
            for stamp, by in list(writes)[-MAX_LEARNED:]:
                count[stamp, by] = n = count.get((stamp, by), 0) + 1
                if by != self.id and n > self._own_edits.get((stamp, by), 0):
                    self._learn_one(chat, (stamp, by, n), stamp, by)
            for key, (stamp, by) in (seen or {}).items():
                self._learn_one(chat, key, stamp, by)
            now, known = self.clock(), self._learned.get(chat, {})
            for key in [key for key, (at, _, _) in known.items() if now - at >= PACE_HORIZON]:
                del known[key]

    def _learn_one(self, chat: object, key: Hashable, stamp: float, by: str) -> None:
        now, offset = self.clock(), self._offset()
        at = min(now, stamp - offset)
        if now - at < PACE_HORIZON:
            self._learned.setdefault(chat, {}).setdefault(key, (at, round(at + offset, 1), by))

    def made_edit(self, stamp: float, label: str) -> None:
        """This process made one of the writes others learn and list as (stamp, label) (an edit
        of the index, known to them only by its date): never learned back as someone else's."""
        with self._lock:
            self._own_edits[stamp, label] = self._own_edits.get((stamp, label), 0) + 1
            while len(self._own_edits) > MAX_LEARNED:
                del self._own_edits[min(self._own_edits)]

    def forget(self, chat: object, key: Hashable) -> None:
        """The edit learned under `key` (learn's `seen`) was this process's own after all (read
        back before its own answer came)."""
        with self._lock:
            self._learned.get(chat, {}).pop(key, None)

    def server_now(self) -> float:
        """Telegram's clock now, as far as this process knows it (at least that late)."""
        with self._lock:
            return self.clock() + self._offset()

    def _offset(self) -> float:
        for source in ("message", "header"):
            if source in self._server_offset:
                return self._server_offset[source]
        return time.time() - self.clock()  # nothing heard from Telegram yet: this machine's clock

    def stop(self, chat: object | None, seconds: float) -> None:
        """Telegram asked for `seconds` without calls (to `chat`, or at all)."""
        with self._lock:
            key = "all" if chat is None else chat
            self._stopped[key] = max(self._stopped.get(key, 0.0), self.clock() + seconds)

    def _delay(self, chat: object | None, write: bool, paced: bool, urgent: int | None = None) -> float:
        now = self.clock()
        delays = [self._stopped.get("all", 0.0) - now]
        if chat is not None:
            delays.append(self._stopped.get(chat, 0.0) - now)
            if write and paced:
                group = BULK_GROUP_PACE if urgent is None else GROUP_PACE
                windows = PRIVATE_PACE if isinstance(chat, int) and chat > 0 else group
                learned = [at for at, _, _ in self._learned.get(chat, {}).values()]
                unseen = [now] * (urgent or 0)  # writes it cannot see, counted as made just now
                times = sorted([*self._sent.get(chat, ()), *learned, *unseen])
                delays.append(_window_delay(times, windows, now))
        if write:
            delays.append(_window_delay(self._sent.get("all"), OVERALL_PACE, now))
        return max(delays)


def _window_delay(sent: Iterable[float] | None, windows: Iterable[tuple[int, float]], now: float) -> float:
    """How long until one more write keeps each window: at most `count` in any `seconds`."""
    times = sorted(sent or ())
    return max(
        (times[-count] + seconds + PACE_MARGIN - now if len(times) >= count else 0.0)
        for count, seconds in windows
    )
