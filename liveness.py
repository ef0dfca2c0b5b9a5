"""Whether this writer may handle what it fetched: quiet periods, and freezes.

On Koyeb's free instance an instance usually ends without SIGTERM: it sleeps (frozen,
no SIGTERM), and may be thrown away while frozen. So:

- **A quiet writer leaves nothing to wait for.** Once nothing was written and no update let in
  for a short while, and the newest backup is in every place off the machine, the writer
  publishes its head as QUIET, naming that backup: everything up to it is off the machine. An instance that starts
  after a deep sleep restores it and serves at once (no hand-over wait, no alarm of loss).
- **The next update claims the writer's place again first.** A quiet writer, or one that may
  have been frozen (its own heartbeat stopped for a while), publishes WRITING again before it
  handles anything it fetched; fenced as every head is: when a newer instance took over
  meanwhile, it learns it is stale and handles nothing (a thawed zombie never answers). A
  write seen while quiet (a job's, or a handler's let in just before) claims it again too.

Threads: the heartbeat ticks on a thread of its own; `check_quiet` runs as a job; `may_handle`
on whichever thread fetched updates (the poller, a webhook request). `_lock` keeps one claim at a
time; the network is used under it, and it is taken under no other lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import bot_api
from config import Settings
from destinations import Stale
from engine import BackupEngine
from lease import HeadState

log = logging.getLogger("lifecycle")

QUIET_AFTER_LIMITS = (5.0, 60.0)  # quiet after BACKUP_AFTER_CHANGE_SECONDS, within these
FREEZE_GAP = 5.0  # seconds the heartbeat may miss before this process counts as thawed
TICK = 1.0


class Liveness:
    def __init__(self, engine: BackupEngine, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.engine, self.lease, self.db = engine, engine.lease, engine.db
        window = settings.backup_after_change_seconds  # 0: no on-change backups, no quiet
        low, high = QUIET_AFTER_LIMITS
        self.quiet_after = min(max(window, low), high) if window > 0 else None
        self.quiet = False  # the head off the machine says QUIET
        self._thawed = False
        self._clock = clock
        self._last_tick, self._last_wall = clock(), time.time()
        self._changes: int | None = None
        self._changed_at = self._admitted_at = clock()  # last write; last update let in
        self._lock = threading.Lock()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while True:
            time.sleep(TICK)
            if self.thawed() and not self._thawed:
                self._thaw()
            self._last_tick, self._last_wall = self._clock(), time.time()

    def thawed(self) -> bool:
        """The process may have been frozen since the writer's place was last confirmed: its
        heartbeat missed FREEZE_GAP by either clock (a VM restored from a snapshot may resume
        its monotonic clock where it stopped; the wall clock is set right after it)."""
        if self._thawed:
            return True
        return self._clock() - self._last_tick > FREEZE_GAP or abs(time.time() - self._last_wall) > FREEZE_GAP

    def _thaw(self) -> None:
        log.warning("this process was frozen for %.0f s", max(self._clock() - self._last_tick, 0))
        self._thawed = True
        bot_api.forget_connections()  # those kept alive across the freeze may be dead

    def check_quiet(self) -> None:
        """A job of the writer's, every second: go quiet once nothing was written and nothing
        was let in for a while, and the newest backup is in every place off the machine; and
        claim the place again at once when something was written while quiet (a job's write,
        or a handler let in just before the head went quiet)."""
        changes = self.db.change_count()
        now = self._clock()
        if changes != self._changes:
            self._changes, self._changed_at = changes, now
            if self.quiet and self.lease.held:
                self._claim()  # the quiet head no longer names everything written
            return
        idle_since = max(self._changed_at, self._admitted_at)
        if self.quiet or self.quiet_after is None or now - idle_since < self.quiet_after:
            return
        named = self.engine.everything_offsite()
        if named is None or not self.lease.held:
            return
        with self._lock:
            # Quiet before the head says so: whatever is fetched from now on waits for this
            # lock, then claims the place again, so nothing is let in under a QUIET head.
            self.quiet = True
            try:
                unreached = self.lease.publish(HeadState.QUIET, named.created_at)
            except Stale as error:
                self.lease.went_stale(str(error))
                return
            self.quiet = len(unreached) < len(self.lease.stores)
        if self.quiet:
            log.info("quiet: everything up to %s is off the machine", named.name)

    def may_handle(self) -> bool:
        """Before anything fetched is handled: True when this instance is the writer. A quiet
        or possibly thawed writer claims its place again first (WRITING, fenced); a newer
        writer found makes it stale (False), and so does no place off the machine answering
        (it cannot know, so it must not answer)."""
        if not self.lease.held:
            return False
        claiming = (self.quiet or self.thawed()) and not self.engine.offsite_paused()
        if claiming and not self._claim():  # (while paused, nothing leaves the machine: no claim)
            return False
        self._admitted_at = self._clock()
        return True

    def _claim(self) -> bool:
        """Publish WRITING again, fenced: False when a newer writer took over or nothing off
        the machine answered."""
        with self._lock:
            if not (self.quiet or self.thawed()):
                return True  # another thread claimed it meanwhile
            if self.thawed() and not self._thawed:
                self._thaw()  # before the heartbeat saw it: a request came first
            try:
                unreached = self.lease.publish(HeadState.WRITING)
            except Stale as error:
                self.lease.went_stale(str(error))
                return False
            if self.lease.stores and len(unreached) == len(self.lease.stores):
                log.warning("cannot confirm this instance still writes: nothing off the machine answers")
                return False
            self.quiet = self._thawed = False
            self._last_tick, self._last_wall = self._clock(), time.time()
            log.info("writing again, as generation %d", self.lease.generation)
            return True
