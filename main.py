"""Wiring: the startup sequence, the instance's life (lifecycle.py), and a graceful shutdown on
SIGTERM or SIGINT.

Run with `python main.py`. The steps are those of docs/ARCHITECTURE.md; see the README.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass, field

import telebot

import bot_api
import command_menu
import database
import handlers
import locks
import startup
import tasks
from admin_panel import AdminPanel
from clock import utc_now
from config import ConfigError, Settings, load_settings
from lifecycle import Lifecycle, State
from logs import setup_logging
from messaging import send_quietly
from outbox import Outbox
from readers import Readers
from updates import WebhookGate
from web import start_server

log = logging.getLogger("main")

PAUSE_CHECK_SECONDS = 5  # while paused because a destination did not answer at boot: one getChat
ALERTS_AT_SHUTDOWN_SECONDS = 2.0  # alerts that wait for Telegram get this much more at a shutdown
# Exit statuses: 0 stopped cleanly; 2 a setting is wrong (or Telegram rejects the token): fix the
# configuration; 1 the machine does not let it start (PORT taken, DB_PATH held by another bot, a
# database that cannot be opened or migrated): fix the environment; 3 the writer stopped without
# a final backup (what it wrote since its last backup is only on this disk). Each in one line.
EXIT_CANNOT_START, EXIT_BAD_SETTING, EXIT_NO_FINAL_BACKUP = 1, 2, 3


class HandlerErrorLogger(telebot.ExceptionHandler):
    """Logs an exception raised by a handler and keeps the bot going."""

    def handle(self, exception: Exception) -> bool:
        log.error("a handler failed", exc_info=exception)
        return True


@dataclass
class Bot:
    """What the wiring holds once the bot is built, for the steps that follow."""

    settings: Settings
    bot: telebot.TeleBot
    readers: Readers
    outbox: Outbox
    stop_requested: threading.Event
    gate: WebhookGate | None
    status: list = field(default_factory=lambda: [lambda: {"state": State.STARTING.value}])


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return EXIT_BAD_SETTING
    setup_logging(settings.log_level, settings.secrets)
    stop_requested = threading.Event()
    _install_signal_handlers(stop_requested)
    # Webhook mode runs each handler in Telegram's request, which is answered once it is done:
    # an update is marked handled only then, and Telegram retries what was not.
    webhook = settings.webhook_url is not None
    bot = bot_api.build(
        settings.bot_token,
        settings.telegram_api_url,
        threaded=not webhook,
        num_threads=4,
        use_class_middlewares=True,
        exception_handler=HandlerErrorLogger(),
    )
    if not _token_accepted(bot):
        return EXIT_BAD_SETTING
    readers = Readers(settings)  # each person's language; the database is attached once open
    outbox = Outbox(bot, settings, readers.of)  # alerts: delayed by flood control, never dropped
    gate = WebhookGate(bot, settings, refused=outbox.alert) if webhook else None
    wired = Bot(settings, bot, readers, outbox, stop_requested, gate)
    if settings.port:
        try:
            start_server(settings.port, lambda: wired.status[0](), gate)
        except OSError as error:  # another program holds it, or a port below 1024 without root
            log.error("cannot start: cannot listen on PORT %d: %s", settings.port, error.strerror or error)
            return EXIT_CANNOT_START
    return _run(wired)


def _run(wired: Bot) -> int:
    """Open the database (restoring it if need be), then serve until SIGTERM."""
    settings, bot, readers = wired.settings, wired.bot, wired.readers
    try:
        db, engine, report = startup.prepare_database(
            settings,
            startup.offsite(settings, bot, wired.outbox.alert),
            alert=wired.outbox.alert,
            stop=wired.stop_requested,
            opened=readers.attach,  # the startup's alerts in each admin's language
        )
    except (database.DatabaseError, locks.AlreadyRunningError) as error:
        log.error("cannot start: %s", error)
        return EXIT_CANNOT_START
    _log_database(db, report, settings)
    runner = tasks.build_runner(
        db,
        settings,
        clock=utc_now,
        backup=engine.create,
        backed_up=engine.backed_up_changes,
        spacing=engine.change_spacing,
        behind=engine.offsite_behind,
        notify=lambda user_id, text: send_quietly(bot, user_id, text, readers.of(user_id)),
    )
    if engine.offsite_paused():  # at every start while paused: the places may answer now
        runner.add("resolve_pause", PAUSE_CHECK_SECONDS, tasks.PauseResolver(engine, db, wired.outbox.alert))
    panel = AdminPanel(bot, db, engine, runner.statuses, settings, readers, utc_now)
    panel.register()  # first: an admin's /start opens the panel
    handlers.register(bot, db, settings, readers)
    command_menu.set_in_background(bot, settings)  # the "/" menu; never holds up the start
    runner.pause()  # nothing is written before this instance is the writer
    runner.start()
    instance = Lifecycle(
        bot, db, engine, runner, settings, wired.outbox.alert, wired.stop_requested, gate=wired.gate
    )
    wired.status[0] = lambda: {**instance.status(), "storage": db.storage.mode}
    if not wired.stop_requested.is_set():
        instance.begin(report.restored, kept_local=report.restore_reason is None)
        if instance.state is State.SERVING and report.restored is None and not instance.took_over:
            # A restored database is off the machine already: only a new one needs this backup.
            engine.backup_quietly("startup")
    log.info("bot started: %s", instance.state.value)
    wired.stop_requested.wait()
    backed_up = instance.stop()
    wired.outbox.flush(ALERTS_AT_SHUTDOWN_SECONDS)
    panel.close()
    db.close()
    if report.lock:
        report.lock.release()
    if not backed_up:  # the reason is logged above, by the backup that failed
        log.error("stopped WITHOUT a final backup: what was written since the last backup is not saved")
        return EXIT_NO_FINAL_BACKUP
    log.info("stopped cleanly")
    return 0


def _log_database(db, report, settings: Settings) -> None:
    applied = report.applied_migrations
    log.info(
        "database: %s (%s); schema version %d%s",
        db.storage.path,
        db.storage.mode,
        db.schema_version(),
        f", applied {', '.join(applied)}" if applied else "",
    )
    if not settings.admin_ids:
        log.warning(
            "ADMIN_IDS is empty: nobody can use the admin commands or get alerts "
            "(send /id to the bot to learn your user id)"
        )


def _token_accepted(bot: telebot.TeleBot) -> bool:
    """False (after saying so) when Telegram rejects the token; a network error is only a warning."""
    try:
        me = bot.user  # getMe, kept by the library: the handlers know the bot's name by it
        log.info("logged in as @%s", me.username)
    except telebot.apihelper.ApiTelegramException as error:
        if error.error_code == 401:
            log.error("Telegram rejected BOT_TOKEN (401 Unauthorized): check the token from @BotFather")
            return False
        log.warning("getMe failed (%s); carrying on", error.description)
    except Exception as error:  # network trouble at boot must not stop the bot
        log.warning("cannot reach the Bot API yet (%s); carrying on", type(error).__name__)
    return True


def _install_signal_handlers(stop_requested: threading.Event) -> None:
    def request_stop(signum, frame):
        log.info("received %s: shutting down", signal.Signals(signum).name)
        bot_api.hurry()  # a backup waiting for Telegram's minute goes now: the final one is next
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


if __name__ == "__main__":
    sys.exit(main())
