"""One instance's part in a deployment: whether it writes, and how it hands over to another.

On a host like Koyeb a redeploy starts the new instance on an empty disk while the old one still
runs. At any moment at most one instance handles updates and writes the database (the writer);
the others are passive. The states:

    starting -> waiting (for a hand-over) -> serving <-> passive -> stopping

- An instance that starts restores the newest backup. When that backup is final (its writer
  stopped cleanly) and nobody has announced themselves as writer since, it serves at once.
  Otherwise an older instance may still be writing: it makes itself known (its own getUpdates,
  confirming nothing, which Telegram answers, for the older poller, with 409; and a request to
  hand over left off the machine, a knock, the only sign a writer in webhook mode gets); then
  it waits up to HANDOVER_WAIT_SECONDS for that instance's final backup, restores it, serves.
- To become the writer it publishes its head (generation, instance, 'writing') off the machine,
  lets it settle, and reads it back: when two instances claim at once, one claim is left, and
  the other instance stays passive.
- A writer whose getUpdates gets 409, or that finds a knock of another instance made after it
  began serving, hands over: it stops taking updates, lets the handlers in progress finish, takes a final
  'handover' backup (published as its head), and goes passive.
- A writer tells Telegram where the updates go as it starts serving: a poller deletes any
  webhook first, a writer in webhook mode (re)sets its webhook (updates.py).
- A passive instance takes no updates (in webhook mode it answers 503: Telegram delivers again
  later, to the writer). It watches the heads off the machine, and when the instance
  that took over stops cleanly (its final backup, and nobody after it), it takes over again;
  when nobody took over from it at all (the instance that asked died), it serves again.
- SIGTERM: a writer stops taking updates, finishes its handlers and takes a final 'shutdown'
  backup; a passive or waiting instance has nothing to hand over and just exits.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import socket
import threading
import time
import uuid

import requests
import telebot

import bot_api
from backup_format import PRE_RESTORE, BackupError, BackupInfo
from clock import Clock, utc_now
from config import Settings
from database import Database
from destinations import Stale
from engine import BackupEngine
from i18n import Alert, Code, Plural, Text
from lease import Head, HeadState, KnockWatch
from liveness import Liveness
from tasks import JobRunner
from telegram_errors import shown
from updates import DRAIN_SECONDS, HANDOVER_DRAIN_SECONDS, SHUTDOWN_DRAIN_SECONDS, Poller, WebhookGate, drain

log = logging.getLogger("lifecycle")

SETTLE_SECONDS = 1.0  # between publishing a claim and reading it back: two claims at once meet
WATCH_SECONDS = 5.0  # how often a passive instance looks at the heads off the machine
KNOCK_SECONDS = 1.0  # how often a waiting instance makes itself known, and looks for the hand-over
LONG_POLL_SECONDS = 1  # its own getUpdates: a long poll (only one ends a waiting one with 409)
# How often a writer looks for a knock (a getChat: a read, which Telegram's pace leaves alone):
# the waiting instance gives up after HANDOVER_WAIT_SECONDS, and the hand-over must fit in it.
KNOCK_WATCH_SECONDS = 3.0
# What Telegram's flood control may cost a final backup: at SIGTERM the host gives seconds (its
# grace period is not documented: keep well within it); at a hand-over the next writer waits.
SHUTDOWN_BACKUP_SECONDS, HANDOVER_BACKUP_SECONDS = 6.0, 60.0
DRAIN_AT = {"shutdown": SHUTDOWN_DRAIN_SECONDS, "handover": HANDOVER_DRAIN_SECONDS}  # the handlers' time
# A waiting instance knocks again when its knock is older: a knock counts for KNOCK_FRESH_SECONDS
# (10 s) after the writer first sees it, at most KNOCK_WATCH_SECONDS after it was left, so one
# every 8 s always counts. Each is a write to the chat the writer cannot foresee: seldom enough
# to fall after a hand-over it asked for (the writer's final backup takes a few seconds).
KNOCK_REFRESH_SECONDS = 8.0


def instance_name() -> str:
    """This process, recognisably: host, pid, and a few random characters."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class State(enum.Enum):
    """Where an instance is in its life (the health endpoint shows the value)."""

    STARTING = "starting"  # restoring, or taking over from a backup
    WAITING = "waiting"  # for an older writer's hand-over
    SERVING = "serving"  # the writer: handles updates, takes backups
    HANDING_OVER = "handing over"  # a newer instance asked: finishing, then the final backup
    PASSIVE = "passive"  # takes no updates; watches the heads off the machine
    STOPPING = "stopping"  # SIGTERM


class Lifecycle:
    def __init__(
        self,
        bot: telebot.TeleBot,
        db: Database,
        engine: BackupEngine,
        runner: JobRunner,
        settings: Settings,
        alert: Alert,
        stop: threading.Event,
        clock: Clock = utc_now,
        instance: str | None = None,
        gate: WebhookGate | None = None,
    ):
        """gate: webhook mode's source of updates (web.py hands it Telegram's requests); without
        it, the instance polls."""
        self.bot, self.db, self.engine, self.runner, self.gate = bot, db, engine, runner, gate
        self.mode = "webhook" if gate is not None else "polling"
        self.settings, self.alert, self.stop_requested, self.clock = settings, alert, stop, clock
        self.instance = instance or instance_name()
        self.state = State.STARTING
        self._lock = threading.RLock()  # one transition at a time
        self._source: Poller | WebhookGate | None = None  # while serving
        self._handed_over_at: BackupInfo | None = None  # our own final backup, when passive
        self._passive_since = 0.0  # monotonic
        self._watcher: threading.Thread | None = None
        self.took_over = False  # it serves data another instance handed over (already off-site)
        self.lease = engine.lease
        self.lease.on_stale = lambda why: self._go_passive_after_stale()
        self.liveness = Liveness(engine, settings)  # quiet periods, freezes
        self._knocks: KnockWatch | None = None  # while serving
        runner.add("quiet", 1, self.liveness.check_quiet)

    # --- what the health endpoint shows ---

    def status(self) -> dict:
        return {
            "state": self.state.value,
            "instance": self.instance,
            "updates": self.mode,
            "generation": self.lease.generation if self.state is State.SERVING else None,
            "newest_offsite_backup_age_seconds": self._newest_offsite_age(),
            "failing_destinations": self.engine.failing_destinations(),
            "offsite_paused": self.engine.offsite_paused_seen(),
            **self.engine.meter.health(),
        }

    def _newest_offsite_age(self) -> int | None:
        newest = self.engine.newest_offsite_backup_at()
        return max(0, round((self.clock() - newest).total_seconds())) if newest else None

    # --- starting ---

    def begin(self, restored: BackupInfo | None, kept_local: bool) -> None:
        """Decide, after the startup's restore, whether this instance serves now, waits for a
        hand-over first, or stays passive; ends serving or passive (or stopping)."""
        head, _ = self.lease.heads()
        if kept_local:
            if head is not None and head.generation > self.lease.generation:
                self.alert(
                    Text(
                        "⏸ This instance kept its own database (generation {mine}), but a newer one "
                        "writes the backups off the machine (generation {theirs}, {writer}): it "
                        "stays passive and takes over when that one stops cleanly.",
                        mine=self.lease.generation,
                        theirs=head.generation,
                        writer=Code(head.writer),
                    )
                )
                self._become_passive(None)
                return
            self._claim_and_serve(max(self.lease.generation, head.generation if head else 0))
        elif free_to_serve(restored, head):
            self._claim_and_serve(max(restored.generation if restored else 0, head.generation if head else 0))
        else:
            self._wait_for_handover(restored, head)

    def _wait_for_handover(self, restored: BackupInfo | None, head: Head | None) -> None:
        self.state = State.WAITING
        name = head.writer if head else restored.writer if restored else ""
        writer = Code(name) if name else Text("an older instance")
        generation = max(head.generation if head else 0, restored.generation if restored else 0)
        log.info(
            "%s may still be writing: waiting up to %.0f s for it to hand over",
            writer,
            self.settings.handover_wait_seconds,
        )
        started = time.monotonic()
        deadline = started + self.settings.handover_wait_seconds
        why = Text("No hand-over came within {seconds} s", seconds=round(self.settings.handover_wait_seconds))
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            self._make_known()
            final = self._final_after(restored)
            if final is not None:
                why = self._take_handover(final, generation, writer, started)
                if why is None:
                    return
                break
            self.stop_requested.wait(KNOCK_SECONDS)
        if not self.stop_requested.is_set():
            self._serve_without_handover(why, writer, generation, restored)

    def _take_handover(self, final: BackupInfo, generation: int, writer, started: float) -> Text | None:
        """Restore the older writer's final backup and serve from it; None when that was done,
        else why it could not be."""
        try:
            taken = self.engine.restore(final, by_person=False)
        except BackupError as error:
            log.error("the hand-over backup %s cannot be restored: %s", final.name, error)
            return Text(
                "The hand-over backup {name} cannot be restored ({error})",
                name=Code(final.name),
                error=shown(error),
            )
        waited = time.monotonic() - started
        self.took_over = True
        if self._claim_and_serve(max(generation, taken.generation)):
            self.alert(
                Plural(
                    "♻️ {writer} (generation {old}) handed over after {seconds} s; "
                    "generation {new} serves now, from its last backup ({count} row).",
                    "♻️ {writer} (generation {old}) handed over after {seconds} s; "
                    "generation {new} serves now, from its last backup ({count} rows).",
                    taken.total_rows,
                    writer=Code(final.writer) if final.writer else writer,
                    old=taken.generation,
                    seconds=round(waited, 1),
                    new=self.lease.generation,
                )
            )
        return None

    def _serve_without_handover(
        self, why: Text, writer, generation: int, restored: BackupInfo | None
    ) -> None:
        if not self._claim_and_serve(generation):
            return
        since = (
            Text(
                "the newest backup, taken {when} ({age} ago): what it wrote after that is lost",
                when=restored.created_at,
                age=self.clock() - restored.created_at,
            )
            if restored
            else Text("an empty database: it left no backup")
        )
        log.warning("%s from %s: serving from %s", why, writer, since)
        self.alert(
            Text(
                "⚠️ {why} from {writer} (generation {generation}), which was writing: it probably "
                "stopped without a final backup (a crash?). Serving from {since}.",
                why=why,
                writer=writer,
                generation=generation,
                since=since,
            )
        )

    def _make_known(self) -> None:
        """Tell the writer a newer instance is here: a request to hand over left off the machine
        (a knock), which every writer watches for; then a long poll of our own, confirming
        nothing, which Telegram answers a polling writer's waiting getUpdates with 409 when
        there is nothing to deliver (a sooner sign than the knock; while a webhook is set this
        one gets the 409, and nobody minds)."""
        if not self.engine.offsite_paused():  # nothing leaves the machine, not even a knock
            knock = self.lease.latest_knock()
            if (
                knock is None
                or knock.instance != self.instance
                or (self.clock() - knock.at).total_seconds() > KNOCK_REFRESH_SECONDS
            ):
                self.lease.knock(self.instance)  # kept fresh: a writer heeds only a recent one
        try:
            self.bot.get_updates(
                limit=1, timeout=LONG_POLL_SECONDS + 5, long_polling_timeout=LONG_POLL_SECONDS
            )
        except (telebot.apihelper.ApiException, requests.RequestException) as error:
            log.debug("making ourselves known: %s", error)

    def _final_after(self, restored: BackupInfo | None) -> BackupInfo | None:
        """A final backup newer than `restored` (any, without one), off the machine: the one
        the head names, or the newest backup when it is a final one (its writer stopped, even
        if a destination could not take its head)."""
        head, _ = self.lease.heads()
        named = head if head is not None and head.state is HeadState.FINAL else None
        candidates = _offsite_backups(self.engine)
        for candidate in candidates:
            newer = restored is None or candidate.order > restored.order
            if newer and (_named_by(named, candidate) or (candidate is candidates[0] and candidate.final)):
                return candidate
        return None

    # --- becoming the writer ---

    def _claim_and_serve(self, base_generation: int) -> bool:
        """Publish this instance as the writer of the next generation, let the claim settle,
        read it back; serve when it is still ours, else stay passive."""
        with self._lock:
            head, _ = self.lease.heads()
            generation = max(base_generation, head.generation if head else 0) + 1
            self.lease.become(generation, self.instance)
            if self.engine.offsite_paused():  # nothing leaves the machine, not even a claim
                self._serve()
                return True
            try:
                unreached = self.lease.publish(HeadState.WRITING)
            except Stale as error:
                log.warning("not the writer: %s", error)
                self._become_passive(None)
                return False
            if self.lease.decided(unreached):
                log.info("generation %d is ours: a conditional write decided it", generation)
            elif len(unreached) < len(self.lease.stores):  # a claim is out: let it settle, read it back
                self.stop_requested.wait(SETTLE_SECONDS)
                head, _ = self.lease.heads()
                if head is not None and (head.writer, head.generation) != (self.instance, generation):
                    log.warning(
                        "%s claimed generation %d at the same time; it serves", head.writer, head.generation
                    )
                    self._become_passive(None)
                    return False
            self._serve()
            return True

    def _serve(self) -> None:
        if not self.stop_requested.is_set():
            bot_api.hurry(False)  # (serving again after a hand-over nobody took)
        self.runner.resume()
        self.state = State.SERVING
        if self.gate is not None:
            self._source = self.gate
            self.gate.start(self.db, self.liveness.may_handle)
        else:
            self._source = Poller(self.bot, self.db, self._on_conflict, self.liveness.may_handle)
            self._source.start()
        self._knocks = KnockWatch(self.instance, self.lease.latest_knock())
        threading.Thread(
            target=self._watch_knocks, args=(self._knocks,), name="knock-watch", daemon=True
        ).start()
        log.info("serving as %s, generation %d (%s)", self.instance, self.lease.generation, self.mode)

    def _watch_knocks(self, watch: KnockWatch) -> None:
        """While serving: a newer instance that asks this writer to hand over gets its
        hand-over (in webhook mode the only way it can ask; Telegram's 409 is another sign)."""
        generation = self.lease.generation
        while not self.stop_requested.wait(KNOCK_WATCH_SECONDS):
            if self.state is not State.SERVING or self.lease.generation != generation:
                return
            try:
                knock = self.lease.latest_knock(writer=True)
            except Exception:  # the watch must go on
                log.exception("reading the hand-over requests off the machine failed")
                continue
            if watch.asking(knock):
                log.warning("%s asks this instance to hand over", knock.instance)
                self._hand_over()
                return

    # --- handing over, and taking over again ---

    def _on_conflict(self) -> bool:
        """The poller's getUpdates got 409: someone else polls. That says nobody is newer: hand
        over only to an instance that claimed a newer generation (this one is stale then) or
        that knocked for it; else keep serving (True: the polling ends)."""
        head, _ = self.lease.heads()
        if head is not None and head.newer_writer_than(self.lease.generation, self.instance):
            self.lease.went_stale(f"generation {head.generation} of {head.writer} writes now")
            return True
        if self._knocks is not None and self._knocks.asking(self.lease.latest_knock(writer=True)):
            self._hand_over()
            return True
        log.warning("another instance polls, but none newer asked for the hand-over: serving on")
        return False

    def _hand_over(self) -> None:
        """A newer instance asked: hand over to it."""
        with self._lock:
            if self.state is not State.SERVING:
                return
            self.state = State.HANDING_OVER
            log.warning("handing over to a newer instance")
            final = self._finish_writing("handover", HANDOVER_BACKUP_SECONDS)
            self._become_passive(final)

    def _finish_writing(self, reason: str, seconds: float) -> BackupInfo | None:
        """Stop taking updates, let the handlers finish, stop the jobs, take the final backup
        (published as this writer's head) within `seconds` of flood control; returns it."""
        bot_api.hurry()  # a backup still running keeps the pace's waits short from here
        self._source.stop(DRAIN_AT[reason])  # from here no update is queued or let in
        drained = drain(self.bot, DRAIN_AT[reason])
        self.runner.pause()
        self._source.remember(self.db, drained)  # an update still running is left to the next writer
        with bot_api.deadline(seconds):
            result = self.engine.backup_quietly(reason)
        self.lease.release()
        return result.info if result else None

    def _become_passive(self, final: BackupInfo | None) -> None:
        if self.gate is not None:
            self.gate.stop()  # Telegram's requests get 503 now, and come again to the writer
        self.lease.release()
        self.runner.pause()
        self._handed_over_at = final
        self._passive_since = time.monotonic()
        self.state = State.PASSIVE
        if self._watcher is None or not self._watcher.is_alive():  # one watcher, however we got here
            self._watcher = threading.Thread(target=self._watch, name="passive-watch", daemon=True)
            self._watcher.start()
        log.info("passive: taking no updates; watching the backups off the machine")

    def _go_passive_after_stale(self) -> None:
        """The engine found a newer writer's head: stop taking updates, as after a 409."""

        def later() -> None:  # not on the thread taking the backup that found it
            with self._lock:
                if self.state is State.SERVING:
                    self._source.stop()
                    drain(self.bot)
                    self._become_passive(None)

        threading.Thread(target=later, name="stale", daemon=True).start()

    def _watch(self) -> None:
        """While passive: when the instance that took over stops cleanly, take over again."""
        while self.state is State.PASSIVE and not self.stop_requested.wait(WATCH_SECONDS):
            try:
                self._take_over_if_free()
            except Exception:  # a watcher must keep watching
                log.exception("watching the backups off the machine failed")

    def _take_over_if_free(self) -> None:
        head, _ = self.lease.heads()
        if head is None or head.state is not HeadState.FINAL:
            return
        mine = self._handed_over_at
        if head.writer == self.instance:
            self._serve_again_if_nobody_came(head)
            return
        if mine is not None and head.generation <= mine.generation:  # nothing newer than its own
            return
        final = next(
            (c for c in _offsite_backups(self.engine) if _named_by(head, c)),
            None,
        )
        with self._lock:
            if final is None or self.state is not State.PASSIVE:
                return
            self.state = State.STARTING
            if self.gate is not None:
                self.gate.hold()
            try:
                if mine is None:  # data of its own that never left the machine: keep a copy
                    self.engine.create(PRE_RESTORE, local_only=True)
                taken = self.engine.restore(final, by_person=False)
            except BackupError:
                self._become_passive(mine)  # watching on; the next look may find a better one
                raise
            if self._claim_and_serve(max(head.generation, taken.generation)):
                self.alert(
                    Text(
                        "▶️ {writer} stopped cleanly; this instance took over again from its final "
                        "backup and serves as generation {generation}.",
                        writer=Code(head.writer),
                        generation=self.lease.generation,
                    )
                )

    def _serve_again_if_nobody_came(self, head: Head) -> None:
        """This instance handed over, and its final backup is still the newest state: when the
        instance that asked has not taken over long after it could have (it died, or its deploy
        was cancelled), serve again from its own database, which is that final backup."""
        waited = time.monotonic() - self._passive_since
        if self._handed_over_at is None or waited < self.settings.handover_wait_seconds + 2 * WATCH_SECONDS:
            return
        with self._lock:
            if self.state is not State.PASSIVE:
                return
            if self._claim_and_serve(head.generation):
                self.alert(
                    Text(
                        "▶️ Nobody took over in {seconds} s after this instance handed over (the "
                        "instance that asked for it is gone?): it serves again, as generation "
                        "{generation}, from its own final backup.",
                        seconds=round(waited),
                        generation=self.lease.generation,
                    )
                )

    # --- stopping ---

    def stop(self) -> bool:
        """SIGTERM: a writer takes its final backup (False when it could make none)."""
        with self._lock:
            serving = self.state is State.SERVING
            self.state = State.STOPPING
            final = self._finish_writing("shutdown", SHUTDOWN_BACKUP_SECONDS) if serving else None
            if not serving and self.gate is not None:  # nothing to hand over
                self.gate.stop()
            self.runner.stop(timeout=DRAIN_SECONDS)
            return final is not None or not serving


def _offsite_backups(engine: BackupEngine) -> list[BackupInfo]:
    """The backups every place off the machine lists (the local folder's left out)."""
    return [c for c in engine.listing().backups if c.destination != engine.local.name]


def _named_by(head: Head | None, info: BackupInfo) -> bool:
    """`info` is the final backup a FINAL head names: its writer's, of its generation, taken
    when the head says (both times from that one writer's clock)."""
    return (
        head is not None
        and head.final_backup_at == info.created_at
        and (head.generation, head.writer) == (info.generation, info.writer)
    )


def free_to_serve(restored: BackupInfo | None, head: Head | None) -> bool:
    """What was restored (or nothing, when there is no backup) is the newest state there is:
    nobody is writing, or was, after it. Decided by generations, writers and the backups the
    heads name, never by comparing two machines' clocks."""
    if restored is None:  # no backup anywhere: free unless someone announced themselves
        return head is None or head.state is HeadState.FINAL
    if head is not None and head.state is HeadState.QUIET and _quiet_up_to(head, restored):
        return True  # a quiet writer: everything it wrote is in what was restored
    if not restored.final:
        return False
    if head is None or head.generation < restored.generation:
        return True
    # The head of its generation is its own writer's (a final it could not publish in every
    # place leaves a WRITING head of the same writer); anyone else's is newer.
    return head.generation == restored.generation and head.writer == restored.writer


def _quiet_up_to(head: Head, restored: BackupInfo) -> bool:
    """`restored` holds all a quiet writer wrote: the backup its head names, or a later one of
    that writer's own (both times from its one clock)."""
    if head.final_backup_at is None:
        return False
    if head.final_backup_at == restored.created_at:
        return True
    same_writer = (head.generation, head.writer) == (restored.generation, restored.writer)
    return same_writer and restored.created_at >= head.final_backup_at
