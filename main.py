"""Wiring: the startup sequence, polling, and a graceful shutdown on SIGTERM or SIGINT.

Run with `python main.py`. The steps follow DESIGN.md's startup sequence; see the README.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from functools import partial

import telebot

import database
import handlers
import locks
import startup
import tasks
from admin_panel import AdminPanel
from clock import utc_now
from config import ConfigError, Settings, load_settings
from engine import BackupEngine
from health import start_health_server
from logs import setup_logging
from messaging import alert_admins, send_quietly
from telegram_destination import telegram_bot

log = logging.getLogger("main")

LONG_POLLING_SECONDS = 10
SHUTDOWN_GRACE_SECONDS = 3  # for handlers and the job in progress; all of shutdown fits in 10 s


class HandlerErrorLogger(telebot.ExceptionHandler):
    """Logs an exception raised by a handler and keeps the bot going.

    Errors of the polling request itself (network, Telegram) are left to pyTelegramBotAPI, which
    backs off and retries; only the worker threads' errors are handled here.
    """

    def __init__(self, bot_ref: list):
        self._bot_ref = bot_ref

    def handle(self, exception: Exception) -> bool:
        bot = self._bot_ref[0] if self._bot_ref else None
        if bot is None or threading.current_thread() not in bot.worker_pool.workers:
            return False
        log.error("a handler failed", exc_info=exception)
        return True


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.secrets)
    stop_requested = threading.Event()
    _install_signal_handlers(stop_requested)

    bot = _make_bot(settings)
    if not _token_accepted(bot):
        return 2
    alert = partial(alert_admins, bot, settings)
    try:
        db, engine, report = startup.prepare_database(
            settings, startup.offsite_destinations(settings, bot), alert=alert)
    except (database.DatabaseError, locks.AlreadyRunningError) as error:
        log.error("cannot start: %s", error)
        return 1
    applied = report.applied_migrations
    log.info("database: %s (%s); schema version %d%s", db.storage.path, db.storage.mode,
             db.schema_version(), f", applied {', '.join(applied)}" if applied else "")
    _backup_quietly(engine, "startup")
    if not settings.admin_ids:
        log.warning("ADMIN_IDS is empty: nobody can use the admin commands or get alerts")

    runner = tasks.build_runner(db, settings, notify=partial(send_quietly, bot),
                                clock=utc_now, backup=lambda: engine.create("scheduled"))
    panel = AdminPanel(bot, db, engine, runner.statuses, settings, utc_now)
    panel.register()  # first: an admin's /start opens the panel
    handlers.register(bot, db, settings)
    runner.start()
    if settings.port:
        start_health_server(settings.port, lambda: {"storage": db.storage.mode})

    polling = threading.Thread(target=bot.infinity_polling, name="polling", daemon=True,
                               kwargs={"timeout": 20, "long_polling_timeout": LONG_POLLING_SECONDS,
                                       "logger_level": logging.ERROR})
    polling.start()
    log.info("bot started; polling for updates")
    stop_requested.wait()
    _shutdown(bot, runner)
    panel.close()
    _backup_quietly(engine, "shutdown")
    _close(db, report)
    log.info("stopped cleanly")
    return 0


def _backup_quietly(engine: BackupEngine, reason: str) -> None:
    """A failed backup is logged, never fatal: the bot keeps serving and the next one retries."""
    try:
        engine.create(reason)
    except Exception as error:
        log.error("%s backup failed: %s", reason, error)


def _close(db: database.Database, report: startup.StartupReport) -> None:
    db.close()
    if report.lock:
        report.lock.release()


def _make_bot(settings: Settings) -> telebot.TeleBot:
    bot_ref: list = []
    bot = telegram_bot(settings, threaded=True, num_threads=4, use_class_middlewares=True,
                       exception_handler=HandlerErrorLogger(bot_ref))
    bot_ref.append(bot)
    return bot


def _token_accepted(bot: telebot.TeleBot) -> bool:
    """False (after saying so) when Telegram rejects the token; a network error is only a warning."""
    try:
        me = bot.get_me()
        log.info("logged in as @%s", me.username)
    except telebot.apihelper.ApiTelegramException as error:
        if error.error_code == 401:
            log.error("Telegram rejected BOT_TOKEN (401 Unauthorized): check the token from @BotFather")
            return False
        log.warning("getMe failed (%s); polling will keep retrying", error.description)
    except Exception as error:  # network trouble at boot must not stop the bot: polling retries
        log.warning("cannot reach the Bot API yet (%s); polling will keep retrying", type(error).__name__)
    return True


def _install_signal_handlers(stop_requested: threading.Event) -> None:
    def request_stop(signum, frame):
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def _shutdown(bot: telebot.TeleBot, runner: tasks.JobRunner) -> None:
    # The long-poll request in flight is abandoned, not awaited: updates it brings back are not
    # acknowledged to Telegram, which delivers them again to the next start.
    bot.stop_polling()
    closer = threading.Thread(target=_finish_handlers, args=(bot.worker_pool,), name="close-workers",
                              daemon=True)
    closer.start()
    closer.join(SHUTDOWN_GRACE_SECONDS)
    if closer.is_alive():
        log.warning("a handler was still running after %d s; stopping anyway", SHUTDOWN_GRACE_SECONDS)
    runner.stop(timeout=SHUTDOWN_GRACE_SECONDS)


def _finish_handlers(pool) -> None:
    """Let the workers take every update already queued (Telegram considers them delivered),
    then stop them after their current handler."""
    drained = threading.Event()
    pool.put(drained.set)  # FIFO: when a worker runs this, every earlier update has been taken
    drained.wait(SHUTDOWN_GRACE_SECONDS)
    pool.close()


if __name__ == "__main__":
    sys.exit(main())
