"""One instance's part in a deployment: whether it writes, and how it hands over to another.

On a host like Koyeb a redeploy starts the new instance on an empty disk while the old one still
runs. At any moment at most one instance handles updates and writes the database (the writer);
the others are passive. The states:

    starting -> waiting (for a hand-over) -> serving <-> passive -> stopping

- An instance that starts restores the newest backup. When that backup is final (its writer
  stopped cleanly) and nobody has announced themselves as writer since, it serves at once.
  Otherwise an older instance may still be writing: it makes itself known (its own getUpdates,
  confirming nothing), which Telegram answers, for the older poller, with 409; then it waits up
  to HANDOVER_WAIT_SECONDS for that instance's final backup, restores it, and only then serves.
- To become the writer it publishes its head (generation, instance, 'writing') off the machine,
  lets it settle, and reads it back: when two instances claim at once, one claim is left, and
  the other instance stays passive.
- A writer whose getUpdates gets 409 ("terminated by other getUpdates request") hands over: it
  stops taking updates, lets the handlers in progress finish, takes a final 'handover' backup
  (published as its head), and goes passive.
- A passive instance never polls. It watches the heads off the machine, and when the instance
  that took over stops cleanly (its final backup, and nobody after it), it takes over again.
- SIGTERM: a writer stops taking updates, finishes its handlers and takes a final 'shutdown'
  backup; a passive or waiting instance has nothing to hand over and just exits.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from typing import Callable, Optional

import requests
import telebot

import human
from backup_format import PRE_RESTORE, BackupError, BackupInfo, Head
from clock import Clock, utc_now
from config import Settings
from database import Database
from destinations import Stale
from engine import BackupEngine
from tasks import JobRunner

log = logging.getLogger("lifecycle")

LONG_POLL_SECONDS = 10  # Telegram holds a getUpdates this long when there is nothing to deliver
SETTLE_SECONDS = 1.0  # between publishing a claim and reading it back: two claims at once meet
WATCH_SECONDS = 5.0  # how often a passive instance looks at the heads off the machine
KNOCK_SECONDS = 1.0  # how often a waiting instance makes itself known, and looks for the hand-over
DRAIN_SECONDS = 3.0  # for the handlers in progress at a hand-over or a shutdown
LAST_UPDATE_KEY = "last_update_id"  # the last update whose effects are in the database


def instance_name() -> str:
    """This process, recognisably: host, pid, and a few random characters."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Poller:
    """Long polling of our own instead of pyTelegramBotAPI's infinity_polling: a 409 from
    getUpdates is not an error to retry here but a newer instance taking over."""

    def __init__(self, bot: telebot.TeleBot, offset: Optional[int], on_conflict: Callable[[], object]):
        self.bot, self.offset, self.on_conflict = bot, offset, on_conflict
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="polling", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No update is processed from now on. The request in flight is abandoned: what it
        brings back is not confirmed to Telegram, which delivers it again to the next start."""
        self._stopped.set()

    @property
    def last_update_id(self) -> Optional[int]:
        return self.offset - 1 if self.offset else None

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                updates = self.bot.get_updates(offset=self.offset, timeout=LONG_POLL_SECONDS + 15,
                                               long_polling_timeout=LONG_POLL_SECONDS)
            except telebot.apihelper.ApiTelegramException as error:
                if error.error_code == 409 and "other getUpdates" in (error.description or ""):
                    if not self._stopped.is_set():
                        log.warning("getUpdates: 409, a newer instance polls: handing over")
                        self.on_conflict()
                    return
                backoff = self._pause(f"getUpdates failed: {error.description}", backoff)
                continue
            except (telebot.apihelper.ApiException, requests.RequestException, ValueError,
                    KeyError, TypeError) as error:
                backoff = self._pause(f"getUpdates failed ({type(error).__name__})", backoff)
                continue
            backoff = 0.5
            if self._stopped.is_set():
                return
            if updates:
                self.offset = max(update.update_id for update in updates) + 1
                self.bot.process_new_updates(updates)

    def _pause(self, what: str, backoff: float) -> float:
        log.warning("%s; retrying in %.1f s", what, backoff)
        self._stopped.wait(backoff)
        return min(backoff * 2, 30.0)


def drain(bot: telebot.TeleBot, timeout: float = DRAIN_SECONDS) -> bool:
    """Wait until every handler already queued or running has finished: each worker thread is
    given a barrier, and all of them reach it only once the work before it is done. The workers
    keep running afterwards (a passive instance may take over again)."""
    workers = len(bot.worker_pool.workers)
    barrier = threading.Barrier(workers + 1, timeout=timeout)
    for _ in range(workers):
        bot.worker_pool.put(_pass_barrier, barrier)
    try:
        barrier.wait()
        return True
    except threading.BrokenBarrierError:
        log.warning("a handler was still running after %.0f s", timeout)
        return False


def _pass_barrier(barrier: threading.Barrier) -> None:
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass


class Lifecycle:
    def __init__(self, bot: telebot.TeleBot, db: Database, engine: BackupEngine, runner: JobRunner,
                 settings: Settings, alert: Callable[[str], object], stop: threading.Event,
                 clock: Clock = utc_now, instance: Optional[str] = None):
        self.bot, self.db, self.engine, self.runner = bot, db, engine, runner
        self.settings, self.alert, self.stop_requested, self.clock = settings, alert, stop, clock
        self.instance = instance or instance_name()
        self.state = "starting"
        self._lock = threading.RLock()  # one transition at a time
        self._poller: Optional[Poller] = None
        self._handed_over_at: Optional[BackupInfo] = None  # our own final backup, when passive
        self.took_over = False  # it serves data another instance handed over (already off-site)
        engine.on_stale = lambda why: self._go_passive_after_stale()

    # --- what the health endpoint shows ---

    def status(self) -> dict:
        return {"state": self.state, "instance": self.instance,
                "generation": self.engine.generation if self.state == "serving" else None,
                "newest_offsite_backup_age_seconds": self._newest_offsite_age()}

    def _newest_offsite_age(self) -> Optional[int]:
        newest = self.engine.newest_offsite_backup_at()
        return round((self.clock() - newest).total_seconds()) if newest else None

    # --- starting ---

    def begin(self, restored: Optional[BackupInfo], kept_local: bool) -> None:
        """Decide, after the startup's restore, whether this instance serves now, waits for a
        hand-over first, or stays passive; ends serving or passive (or stopping)."""
        head, _ = self.engine.heads()
        if kept_local:
            if head is not None and head.generation > self.engine.generation:
                self.alert(f"⏸ This instance kept its own database (generation {self.engine.generation}), "
                           f"but a newer one writes the backups off the machine (generation "
                           f"{head.generation}, {head.writer}): it stays passive and takes over "
                           "when that one stops cleanly.")
                self._become_passive(None)
                return
            self._claim_and_serve(max(self.engine.generation, head.generation if head else 0))
        elif self._free(restored, head):
            self._claim_and_serve(max(restored.generation if restored else 0,
                                      head.generation if head else 0))
        else:
            self._wait_for_handover(restored, head)

    @staticmethod
    def _free(restored: Optional[BackupInfo], head: Optional[Head]) -> bool:
        """What was restored (or nothing, when there is no backup) is the newest state there
        is: nobody is writing, or was, after it."""
        if restored is None:  # no backup anywhere: free unless someone announced themselves
            return head is None or head.state == "final"
        if not restored.final or head is None:
            return restored.final
        if head.state == "writing":
            return head.since <= restored.created_at and head.generation <= restored.generation
        return head.final_backup_at is None or head.final_backup_at <= restored.created_at

    def _wait_for_handover(self, restored: Optional[BackupInfo], head: Optional[Head]) -> None:
        self.state = "waiting"
        writer = (head.writer if head else restored.writer if restored else "") or "an older instance"
        generation = max(head.generation if head else 0, restored.generation if restored else 0)
        log.info("%s may still be writing: waiting up to %.0f s for it to hand over", writer,
                 self.settings.handover_wait_seconds)
        started = time.monotonic()
        deadline = started + self.settings.handover_wait_seconds
        why = f"No hand-over came within {self.settings.handover_wait_seconds:.0f} s"
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            self._make_known()
            final = self._final_after(restored)
            if final is not None:
                try:
                    taken = self.engine.restore(final, by_person=False)
                except BackupError as error:
                    log.error("the hand-over backup %s cannot be restored: %s", final.name, error)
                    why = f"The hand-over backup {final.name} cannot be restored ({error})"
                    break
                waited = time.monotonic() - started
                self.took_over = True
                if self._claim_and_serve(max(generation, taken.generation)):
                    self.alert(f"♻️ {final.writer or writer} (generation {taken.generation}) handed "
                               f"over after {waited:.1f} s; generation {self.engine.generation} "
                               f"serves now, from its last backup ({taken.total_rows} rows).")
                return
            self.stop_requested.wait(KNOCK_SECONDS)
        if self.stop_requested.is_set():
            return
        if self._claim_and_serve(generation):
            since = (f"the newest backup, taken {human.time(restored.created_at)} "
                     f"({human.age(self.clock() - restored.created_at)} ago): what it wrote after "
                     "that is lost" if restored else "an empty database: it left no backup")
            self.alert(f"⚠️ {why} from {writer} (generation {generation}), which was writing: "
                       f"it probably stopped without a final backup (a crash?). Serving from {since}.")

    def _make_known(self) -> None:
        """A getUpdates of our own, confirming nothing: Telegram ends the older poller's
        request with 409, which is its signal to hand over."""
        try:
            # Through apihelper's request function: bot.get_updates would turn a long-polling
            # timeout of 0 into its default of 10 s, and this call must return at once.
            telebot.apihelper._make_request(self.bot.token, "getUpdates", params={
                "timeout": 10, "long_polling_timeout": 0, "limit": 1})
        except (telebot.apihelper.ApiException, requests.RequestException) as error:
            log.debug("making ourselves known: %s", error)

    def _final_after(self, restored: Optional[BackupInfo]) -> Optional[BackupInfo]:
        """A final backup newer than `restored` (any, without one), off the machine."""
        head, _ = self.engine.heads()
        if head is None or head.state != "final" or head.final_backup_at is None \
                or (restored is not None and head.final_backup_at <= restored.created_at):
            return None
        for candidate in self.engine.listing().backups:
            if candidate.created_at == head.final_backup_at and candidate.destination != "local":
                return candidate
        return None

    # --- becoming the writer ---

    def _claim_and_serve(self, base_generation: int) -> bool:
        """Publish this instance as the writer of the next generation, let the claim settle,
        read it back; serve when it is still ours, else stay passive."""
        with self._lock:
            head, _ = self.engine.heads()
            generation = max(base_generation, head.generation if head else 0) + 1
            self.engine.become_writer(generation, self.instance)
            if self.engine.offsite_paused():  # nothing leaves the machine, not even a claim
                self._serve()
                return True
            try:
                unreached = self.engine.publish("writing")
            except Stale as error:
                log.warning("not the writer: %s", error)
                self._become_passive(None)
                return False
            if len(unreached) < self.engine.offsite_count:  # a claim is out there: let it settle
                self.stop_requested.wait(SETTLE_SECONDS)
                head, _ = self.engine.heads()
                if head is not None and (head.writer, head.generation) != (self.instance, generation):
                    log.warning("%s claimed generation %d at the same time; it serves", head.writer,
                                head.generation)
                    self._become_passive(None)
                    return False
            self._serve()
            return True

    def _serve(self) -> None:
        recorded = self.db.get_state(LAST_UPDATE_KEY)
        offset = int(recorded) + 1 if recorded and recorded.isdigit() else None
        self._poller = Poller(self.bot, offset, self._on_conflict)
        self.runner.resume()
        self._poller.start()
        self.state = "serving"
        log.info("serving as %s, generation %d", self.instance, self.engine.generation)

    # --- handing over, and taking over again ---

    def _on_conflict(self) -> None:
        """The poller's getUpdates got 409: a newer instance polls. Hand over to it."""
        with self._lock:
            if self.state != "serving":
                return
            self.state = "handing over"
            final = self._finish_writing("handover")
            self._become_passive(final)

    def _finish_writing(self, reason: str) -> Optional[BackupInfo]:
        """Stop taking updates, let the handlers finish, stop the jobs, and take the final
        backup (published as this writer's head); returns it."""
        self._poller.stop()
        drain(self.bot)
        self.runner.pause()
        self.db.set_state(LAST_UPDATE_KEY, str(self._poller.last_update_id or 0))
        result = self.engine.backup_quietly(reason)
        self.engine.stop_writing()
        return result.info if result else None

    def _become_passive(self, final: Optional[BackupInfo]) -> None:
        self.engine.stop_writing()
        self.runner.pause()
        self._handed_over_at = final
        self.state = "passive"
        threading.Thread(target=self._watch, name="passive-watch", daemon=True).start()
        log.info("passive: not polling; watching the backups off the machine")

    def _go_passive_after_stale(self) -> None:
        """The engine found a newer writer's head: stop taking updates, as after a 409."""
        def later() -> None:  # not on the thread taking the backup that found it
            with self._lock:
                if self.state == "serving":
                    self._poller.stop()
                    drain(self.bot)
                    self._become_passive(None)

        threading.Thread(target=later, name="stale", daemon=True).start()

    def _watch(self) -> None:
        """While passive: when the instance that took over stops cleanly, take over again."""
        while self.state == "passive" and not self.stop_requested.wait(WATCH_SECONDS):
            try:
                self._take_over_if_free()
            except Exception:  # a watcher must keep watching
                log.exception("watching the backups off the machine failed")

    def _take_over_if_free(self) -> None:
        head, _ = self.engine.heads()
        if head is None or head.state != "final" or head.writer == self.instance:
            return
        mine = self._handed_over_at
        if mine is not None and head.final_backup_at is not None and head.final_backup_at <= mine.created_at:
            return
        final = next((c for c in self.engine.listing().backups
                      if c.created_at == head.final_backup_at and c.destination != "local"), None)
        with self._lock:
            if final is None or self.state != "passive":
                return
            self.state = "starting"
            if mine is None:  # data of its own that never left the machine: keep a copy
                self.engine.create(PRE_RESTORE, local_only=True)
            taken = self.engine.restore(final, by_person=False)
            if self._claim_and_serve(max(head.generation, taken.generation)):
                self.alert(f"▶️ {head.writer} stopped cleanly; this instance took over again from "
                           f"its final backup and serves as generation {self.engine.generation}.")

    # --- stopping ---

    def stop(self) -> None:
        """SIGTERM: a writer takes its final backup; anyone else has nothing to hand over."""
        with self._lock:
            serving = self.state == "serving"
            self.state = "stopping"
            if serving:
                self._finish_writing("shutdown")
            self.runner.stop(timeout=DRAIN_SECONDS)
