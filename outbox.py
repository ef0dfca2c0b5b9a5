"""Alerts to the admins: delayed when Telegram asks for patience, never dropped for it.

An alert is logged (in English, secrets taken out) and sent to each admin in their language at
once, within a few seconds of the caller's time: the engine or the lifecycle raising it must not
wait out Telegram's flood control. An admin it did not reach then (a 429, the network) gets it
later from the outbox's own thread, which tries again with growing pauses for an hour; the same
alert waiting for the same admin is kept once. At shutdown, what waits gets a last few seconds.

Threads: any thread may alert; one thread of the outbox's sends what waits. `_lock` guards the
waiting alerts and is never held while sending.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import telebot

import bot_api
from config import Settings
from logs import Redactor
from messaging import ReaderOf, send_quietly

log = logging.getLogger("alerts")

AT_ONCE_SECONDS = 3.0  # what an alert may cost the thread that raises it
FIRST_PAUSE, LONGEST_PAUSE = 5.0, 300.0  # between tries of an alert that waits
GIVE_UP_SECONDS = 3600.0


@dataclass
class Waiting:
    admin_id: int
    text: str  # rendered for that admin, secrets taken out
    since: float  # monotonic
    pause: float = FIRST_PAUSE
    due: float = 0.0  # monotonic


class Outbox:
    def __init__(self, bot: telebot.TeleBot, settings: Settings, reader_of: ReaderOf):
        self.bot, self.settings, self.reader_of = bot, settings, reader_of
        self.redact = Redactor(settings.secrets)
        self._waiting: list[Waiting] = []
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None

    def alert(self, text) -> bool:
        """Tell every admin, each in their language; also logged, so an alert is never lost
        when Telegram is unreachable. True when an admin got it at once; the others get it as
        soon as Telegram lets them."""
        log.warning("alert: %s", self.redact(str(text)))
        delivered = False
        for admin_id in self.settings.admin_ids:
            reader = self.reader_of(admin_id)
            rendered = self.redact(reader(text))
            with bot_api.deadline(AT_ONCE_SECONDS):
                sent = send_quietly(self.bot, admin_id, rendered, reader)
            if sent:
                delivered = True
            else:
                self._later(admin_id, rendered)
        return delivered

    def flush(self, seconds: float) -> None:
        """Give what waits a last chance within `seconds` (the shutdown's time)."""
        end = time.monotonic() + seconds
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for item in waiting:
            left = end - time.monotonic()
            if left <= 0 or not self._send(item, left):
                log.warning("an alert to %s was not delivered: %s", item.admin_id, item.text[:200])

    def _later(self, admin_id: int, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            if any((w.admin_id, w.text) == (admin_id, text) for w in self._waiting):
                return  # the same alert already waits for this admin
            self._waiting.append(Waiting(admin_id, text, now, due=now + FIRST_PAUSE))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                item = self._next_due()
            if not self._send(item, bot_api.MAX_FLOOD_WAIT):
                self._again(item)

    def _next_due(self) -> Waiting:
        """The alert due first, once it is due (the lock held, released while waiting)."""
        while True:
            now = time.monotonic()
            due = min(self._waiting, key=lambda w: w.due, default=None)
            if due is not None and due.due <= now:
                self._waiting.remove(due)
                return due
            self._lock.wait(None if due is None else due.due - now)

    def _send(self, item: Waiting, seconds: float) -> bool:
        reader = self.reader_of(item.admin_id)
        with bot_api.deadline(seconds):
            return send_quietly(self.bot, item.admin_id, item.text, reader)

    def _again(self, item: Waiting) -> None:
        now = time.monotonic()
        if now - item.since > GIVE_UP_SECONDS:
            log.warning("an alert to %s was not delivered in an hour: %s", item.admin_id, item.text[:200])
            return
        item.pause = min(item.pause * 2, LONGEST_PAUSE)
        item.due = now + item.pause
        with self._lock:
            self._waiting.append(item)
