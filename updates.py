"""Where updates come from: our own long polling, or Telegram's requests in webhook mode; and
letting the handlers in progress finish before a hand-over.

Both sources hand updates to pyTelegramBotAPI's process_new_updates, and both keep the ids of the
updates they handled, which the final backup carries (bot_state: last_update_id, the offset a
poller confirms; handled_update_ids, what a webhook skips when Telegram delivers it again): the
next writer, polling or not, never handles an update twice.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
import telebot
from telebot import types

from config import Settings
from database import Database
from i18n import Alert, Code, Text

log = logging.getLogger("updates")

LONG_POLL_SECONDS = 10  # Telegram holds a getUpdates this long when there is nothing to deliver
ALLOWED_UPDATES = ["message"]  # what the handlers handle: texts, commands and documents
HOLD_SECONDS = 25.0  # a webhook request arriving while the instance starts waits this long for it
# How long the handlers in progress may take to finish before the final backup goes without
# them (their updates are then not recorded as handled: the next writer gets them again). At a
# shutdown the host's grace period bounds it (Koyeb's is not documented: "a few seconds"; Docker's
# default is 10 s, and the final backup needs its own few); at a hand-over the next writer waits.
SHUTDOWN_DRAIN_SECONDS, HANDOVER_DRAIN_SECONDS = 5.0, 30.0
DRAIN_SECONDS = SHUTDOWN_DRAIN_SECONDS  # the jobs' and a webhook request's share of a shutdown
BATCH_WAIT_SECONDS = 1.0  # the poller looks at whether it was stopped this often while a batch runs
LAST_UPDATE_KEY = "last_update_id"  # the last update whose effects are in the database
# Webhook mode remembers the ids it handled, not only the highest: after a week without updates
# (a quiet bot may well have one) Telegram picks the next id at random, and it may be lower.
HANDLED_KEY = "handled_update_ids"
RECENT_UPDATES = 500  # retried deliveries are of the newest updates: these are plenty


class Handled:
    """The ids of the last RECENT_UPDATES updates handled, in the order they came."""

    def __init__(self, recorded: str | None = None):
        self._ids: deque[int] = deque(_update_ids(recorded), maxlen=RECENT_UPDATES)

    def __contains__(self, update_id: int) -> bool:
        return update_id in self._ids

    def add(self, update_id: int) -> None:
        self._ids.append(update_id)

    @property
    def last(self) -> int | None:
        return self._ids[-1] if self._ids else None

    def as_json(self) -> str:
        return json.dumps(list(self._ids))

    def remember(self, db: Database, last_update_id: int | None) -> None:
        """Keep them in the database, with the offset a poller confirms from."""
        db.set_state(HANDLED_KEY, self.as_json())
        if last_update_id is not None:
            db.set_state(LAST_UPDATE_KEY, str(last_update_id))


class Poller:
    """Long polling of our own instead of pyTelegramBotAPI's infinity_polling: a 409 from
    getUpdates is not an error to retry here but a newer instance taking over ("terminated by
    other getUpdates request"; or a webhook set by one in webhook mode)."""

    def __init__(
        self,
        bot: telebot.TeleBot,
        db: Database,
        on_conflict: Callable[[], bool],
        may_handle: Callable[[], bool] = lambda: True,
    ):
        """on_conflict(): a 409; True when this instance hands over (the polling ends), False
        when it keeps serving. may_handle(): asked before a batch is handled (liveness.py)."""
        self.bot, self.on_conflict, self.may_handle = bot, on_conflict, may_handle
        recorded = db.get_state(LAST_UPDATE_KEY)
        self.offset = int(recorded) + 1 if recorded and recorded.isdigit() else None
        self.handled = Handled(db.get_state(HANDLED_KEY))  # for a webhook writer after this one
        self._stopped = threading.Event()
        # stop() against queueing a batch: once stop() returns, no batch is queued any more, so
        # every batch queued is ahead of the lifecycle's drain, and none runs after the final backup.
        self._queueing = threading.Lock()
        self._running: list[int] = []  # the ids of the batch queued and not known to be handled
        self._thread = threading.Thread(target=self._loop, name="polling", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, seconds: float = DRAIN_SECONDS) -> None:
        """No update is queued from now on (a batch being queued is, before this returns; the
        handlers are waited for by drain(), not here, so `seconds` is unused). The
        request in flight is abandoned: what it brings back is not confirmed to Telegram, which
        delivers it again to the next start."""
        with self._queueing:
            self._stopped.set()

    def remember(self, db: Database, drained: bool = True) -> None:
        """Record what was handled: the final backup carries it. `drained`: the handlers are all
        done, so the batch last queued was handled too; else it is left to the next writer."""
        if drained:
            self._handled_batch()
        self.handled.remember(db, self.offset - 1 if self.offset else None)

    def _loop(self) -> None:
        backoff = 0.5
        while not self._stopped.is_set() and not self._webhook_deleted():
            backoff = self._pause("deleteWebhook failed", backoff)
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                updates = self.bot.get_updates(
                    offset=self.offset,
                    timeout=LONG_POLL_SECONDS + 15,
                    long_polling_timeout=LONG_POLL_SECONDS,
                    allowed_updates=ALLOWED_UPDATES,
                )
            except telebot.apihelper.ApiTelegramException as error:
                if error.error_code == 409:
                    log.warning("getUpdates: 409 (%s)", error.description)
                    if self._stopped.is_set() or self.on_conflict():
                        return
                    backoff = self._pause("another getUpdates: this instance keeps serving", backoff)
                    continue
                backoff = self._pause(f"getUpdates failed: {error.description}", backoff)
                continue
            except (
                telebot.apihelper.ApiException,
                requests.RequestException,
                ValueError,
                KeyError,
                TypeError,
            ) as error:
                backoff = self._pause(f"getUpdates failed ({type(error).__name__})", backoff)
                continue
            backoff = 0.5
            if self._stopped.is_set():
                return
            if updates and not self.may_handle():  # not confirmed to Telegram: the writer gets them
                return
            if updates and not self._handle(updates):
                return

    def _handle(self, updates: list[types.Update]) -> bool:
        """Queue a batch to the handlers and wait until it is handled: only then does the next
        getUpdates confirm it to Telegram (the offset). False when stopped meanwhile."""
        with self._queueing:
            if self._stopped.is_set():  # stopped since the check above: not queued, not confirmed
                return False
            self._running = [update.update_id for update in updates]
            self.bot.process_new_updates(updates)
        while not drain(self.bot, BATCH_WAIT_SECONDS):
            if self._stopped.is_set():  # the lifecycle's drain decides whether it was handled
                return False
        self._handled_batch()
        return not self._stopped.is_set()

    def _handled_batch(self) -> None:
        with self._queueing:
            running, self._running = self._running, []
        for update_id in running:
            self.handled.add(update_id)
        if running:
            self.offset = max(max(running) + 1, self.offset or 0)

    def _webhook_deleted(self) -> bool:
        """A webhook left from webhook mode would make every getUpdates a 409; once it is gone, a
        409 means what it should: a newer instance (its getUpdates, or its webhook)."""
        try:
            self.bot.delete_webhook()
            return True
        except telebot.apihelper.ApiTelegramException as error:
            log.warning("deleteWebhook: %s", error.description)
        except (telebot.apihelper.ApiException, requests.RequestException, ValueError) as error:
            log.warning("deleteWebhook: %s", type(error).__name__)
        return False

    def _pause(self, what: str, backoff: float) -> float:
        log.warning("%s; retrying in %.1f s", what, backoff)
        self._stopped.wait(backoff)
        return min(backoff * 2, 30.0)


def drain(bot: telebot.TeleBot, timeout: float = DRAIN_SECONDS) -> bool:
    """Wait until every handler already queued or running has finished: each worker thread is
    given a barrier, and all of them reach it only once the work before it is done. The workers
    keep running afterwards (a passive instance may take over again)."""
    if not bot.threaded:  # webhook mode: handlers run in the request, the gate waits for it
        return True
    started = time.monotonic()
    # One drain at a time: the workers share one queue, so two sets of barriers would each hold
    # some of the workers and neither would ever be complete.
    if not _DRAINING.acquire(timeout=timeout):
        log.warning("a handler was still running after %.0f s", timeout)
        return False
    try:
        workers = len(bot.worker_pool.workers)
        barrier = threading.Barrier(workers + 1, timeout=max(0.01, timeout - (time.monotonic() - started)))
        for _ in range(workers):
            bot.worker_pool.put(_pass_barrier, barrier)
        try:
            barrier.wait()
            return True
        except threading.BrokenBarrierError:
            log.log(
                logging.DEBUG if timeout < SHUTDOWN_DRAIN_SECONDS else logging.WARNING,
                "a handler was still running after %.0f s",
                timeout,
            )
            return False
    finally:
        _DRAINING.release()


_DRAINING = threading.Lock()


def _pass_barrier(barrier: threading.Barrier) -> None:
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass


class GateState(enum.Enum):
    HOLDING = "holding"  # the instance starts or takes over: a request waits for it
    OPEN = "open"  # it serves: updates are handled
    SHUT = "shut"  # passive or stopping: 503 at once, Telegram delivers again later


class WebhookGate:
    """Webhook mode's source: Telegram's requests (web.py checks the secret and the body), one at
    a time, handled while this instance writes; an update handled before is acknowledged and
    skipped, across restarts too (the last update handled is kept in the database).

    It holds, opens or shuts. Holding (while the instance starts or takes over: it woke up for
    this request, on an empty disk, and restores first), a request waits up to HOLD_SECONDS for
    it to open. Shut (passive, stopping), a request is answered 503 at once: Telegram delivers it
    again later, to whichever instance writes then."""

    def __init__(self, bot: telebot.TeleBot, settings: Settings, refused: Alert):
        """refused: told when Telegram will not take WEBHOOK_URL (the admins must hear of it)."""
        self.bot, self.refused = bot, refused
        self.db: Database | None = None  # the instance's, once it serves
        self.url, self.path = settings.webhook_url, urlsplit(settings.webhook_url).path or "/"
        self.secret = settings.webhook_secret
        self._state = GateState.HOLDING
        self._changed = threading.Condition()
        self._one_at_a_time = threading.Lock()
        self.handled = Handled()
        self.may_handle: Callable[[], bool] = lambda: True

    def hold(self) -> None:
        self._set(GateState.HOLDING)

    def start(self, db: Database, may_handle: Callable[[], bool] = lambda: True) -> None:
        """Serve Telegram's requests from `db`, and (again) tell Telegram where to send them.
        may_handle(): asked before each update is handled (liveness.py)."""
        self.db, self.may_handle = db, may_handle
        # A poller before this writer recorded what it handled too: the updates it had not
        # confirmed yet come again now, by webhook, and are skipped.
        self.handled = Handled(db.get_state(HANDLED_KEY))
        self._set(GateState.OPEN)
        threading.Thread(target=self._register, name="set-webhook", daemon=True).start()

    def _register(self) -> None:
        """setWebhook, retried while the network fails and this instance serves. Each writer
        sets it when it starts serving: a polling writer before it deleted the webhook."""
        backoff = 0.5
        while self._state is GateState.OPEN:
            try:
                self.bot.set_webhook(
                    url=self.url, secret_token=self.secret, allowed_updates=ALLOWED_UPDATES, max_connections=1
                )  # one at a time, in order: they are handled so
                log.info("webhook set: Telegram POSTs the updates to %s", self.path)
                return
            except telebot.apihelper.ApiTelegramException as error:
                if error.error_code < 500 and error.error_code != 429:
                    why = str(error.description or error.error_code)[:200]
                    log.error("Telegram refused WEBHOOK_URL: %s", why)
                    self.refused(
                        Text(
                            "❗ Telegram refused the webhook address (WEBHOOK_URL): {why}. "
                            "No updates arrive until it is fixed.",
                            why=Code(why),
                        )
                    )
                    return
                log.warning("setWebhook failed: %s", error.description)
            except (telebot.apihelper.ApiException, requests.RequestException, ValueError) as error:
                log.warning("setWebhook failed (%s)", type(error).__name__)
            with self._changed:
                self._changed.wait_for(lambda: self._state is not GateState.OPEN, backoff)
            backoff = min(backoff * 2, 30.0)

    def stop(self, seconds: float = DRAIN_SECONDS) -> None:
        """No update is taken from now on; returns once the one in progress is done, or after
        `seconds` (a handler stuck on the network must not cost the final backup: that update
        is then answered 503, and delivered again to the next writer)."""
        self._set(GateState.SHUT)
        if self._one_at_a_time.acquire(timeout=seconds):
            self._one_at_a_time.release()
        else:
            log.warning("a handler was still running after %.0f s", seconds)

    def remember(self, db: Database, drained: bool = True) -> None:
        """Record the updates handled (an update still running is answered 503: not among them)."""
        self.handled.remember(db, self.handled.last)

    def _set(self, state: GateState) -> None:
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def handle(self, update: dict) -> int:
        """The HTTP status to answer Telegram with: 200 once handled (or handled before), 503
        when this instance is not the writer now."""
        with self._changed:
            self._changed.wait_for(lambda: self._state is not GateState.HOLDING, HOLD_SECONDS)
        with self._one_at_a_time:
            if self._state is not GateState.OPEN or not self.may_handle():
                return 503
            update_id = update["update_id"]
            if update_id in self.handled:
                log.info("update %d was handled before: acknowledged, skipped", update_id)
                return 200
            try:
                parsed = types.Update.de_json(update)
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("update %d is not one pyTelegramBotAPI can read: skipped", update_id)
                parsed = None
            if parsed is not None:
                self.bot.process_new_updates([parsed])  # handlers run here, before the answer
            if self._state is not GateState.OPEN:  # shut meanwhile: maybe after the final backup was taken
                return 503  # so Telegram delivers it again, to the next writer
            self.handled.add(update_id)
            self.db.set_state(HANDLED_KEY, self.handled.as_json())
            return 200


def _update_ids(recorded: str | None) -> list[int]:
    """The update ids kept under HANDLED_KEY; none when there are none, or they do not read."""
    try:
        ids = json.loads(recorded) if recorded else []
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []
