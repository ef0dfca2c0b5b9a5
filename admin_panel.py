"""The admin panel: reply-keyboard menus for ADMIN_IDS, in each admin's language.

The screens and what each button does are one table (panel_screens.py); the screens' work is
in three parts: panel_users.People (👥 Users), panel_backups.Backups (⚙️ System, 💾 Backup) and
panel_restore.Restore (♻️ Restore). This module wires them: who may use the panel and where,
each admin's place in the menus (panel_screens.Place), the keyboards, and the worker thread.

Only admins ever see these keyboards; the same texts from anyone else are ordinary messages.
Every label names what it does, in any of the bot's languages, so after a restart or a change
of language any label (or /admin) brings the right menu back. No SQL here. Backups, restores
and downloads run on a worker thread of their own: the bot keeps answering everyone meanwhile.

Threads: handlers run on pyTelegramBotAPI's workers (several at once, one admin's presses
among them), jobs on the panel's one worker. `lock` guards what one admin has pending (a
restore to confirm); a list shown to an admin is replaced whole, never changed in place.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import telebot
from telebot import types

from backup_format import BackupError
from bot_api import BotApiError
from config import LANGUAGES, Settings
from database import Database
from destinations import DestinationError
from engine import BackupEngine
from i18n import LANGUAGE_LABELS, Code, Reader, Text
from logs import Redactor
from messaging import is_admin, send
from panel_backups import Backups
from panel_restore import Restore
from panel_screens import (
    ACTIONS,
    BACK,
    BACKUP_MARK,
    PERSON_MARK,
    SCREENS,
    START_FRESH,
    Place,
    Screen,
)
from panel_users import People
from readers import Readers
from telegram_errors import shown

log = logging.getLogger("admin_panel")
ERROR_SHOWN = 1000  # characters of an error's text in a "❌ …" answer (the log has all of it)


class AdminPanel:
    def __init__(
        self,
        bot: telebot.TeleBot,
        db: Database,
        engine: BackupEngine,
        job_statuses: Callable[[], list],
        settings: Settings,
        readers: Readers,
        clock: Callable[[], datetime],
    ):
        """job_statuses: the background jobs' statuses (tasks.JobRunner.statuses)."""
        self.bot, self.db, self.engine, self.job_statuses = bot, db, engine, job_statuses
        self.settings, self.readers, self.clock = settings, readers, clock
        self.started = clock()
        self.lock = threading.Lock()  # what each admin has pending (Place.pending, .restoring)
        self._places_lock = threading.Lock()  # the dict of places (taken alone, never nested)
        self.places: dict[int, Place] = {}
        self.redact = Redactor(settings.secrets)
        self.work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-work")
        self.people, self.backups, self.restore = People(self), Backups(self), Restore(self)
        # Every label in every language: one pressed in the language an admin just left, or
        # before a restart, still works.
        self.actions = {
            Reader(language).gettext(label): operator.attrgetter(action)(self)
            for label, action in ACTIONS.items()
            for language in LANGUAGES
        }
        self.actions.update(dict.fromkeys(LANGUAGE_LABELS, self.choose_language))

    # --- wiring ---

    def register(self) -> None:
        """Install the panel's handlers; call before the user handlers, so an admin's /start
        opens the panel.

        The panel lives only in an admin's private chat with the bot. In a group, channel or
        forum, its commands and labels get one line saying so, and nothing of the database
        (statistics, paths, files, status) and no admin keyboard is ever posted there."""
        here, elsewhere, add = self.in_private_chat, self.elsewhere, self.bot.register_message_handler
        add(self.start, commands=["start"], func=here)
        add(self.open_panel, commands=["admin"], func=here)
        add(self.backups.create, commands=["backup"], func=here)
        add(self.backups.start_fresh_command, commands=["start_fresh"], func=here)
        add(self.language_screen, commands=["language"], func=here)
        add(self.on_label, content_types=["text"], func=lambda m: here(m) and self.is_label(m.text))
        add(self.restore.upload, content_types=["document"], func=here)
        add(self.people.search, content_types=["text"], func=lambda m: here(m) and self.searching(m))
        add(self.only_in_private, commands=["admin", "backup", "start_fresh"], func=elsewhere)
        add(
            self.only_in_private,
            content_types=["text"],
            func=lambda m: elsewhere(m) and self.is_label(m.text) and m.text not in LANGUAGE_LABELS,
        )

    def close(self) -> None:
        self.work.shutdown(wait=False, cancel_futures=True)

    def in_private_chat(self, message) -> bool:
        """An admin, in their private chat with the bot: the only place the panel answers."""
        return is_admin(self.settings, message) and message.chat.type == "private"

    def elsewhere(self, message) -> bool:
        """An admin in a group, a channel or a forum."""
        return is_admin(self.settings, message) and message.chat.type != "private"

    def is_label(self, text: str | None) -> bool:
        return text in self.actions or (text or "").startswith((BACKUP_MARK, PERSON_MARK))

    def searching(self, message) -> bool:
        """Any other text on the 👥 Users screens is a search (a command is still a command)."""
        return (
            self.place(message).screen in (Screen.USERS, Screen.FOUND)
            and not self.is_label(message.text)
            and not (message.text or "/").startswith("/")
        )

    # --- talking to the admin ---

    def place(self, message) -> Place:
        with self._places_lock:
            return self.places.setdefault(message.from_user.id, Place())

    def reader(self, message) -> Reader:
        return self.readers.of_message(message)

    def say(self, message, text, **options) -> None:
        """Every panel message goes through here, in the admin's language: error texts can
        quote anything (a requests error quotes the URL, and the URL holds the token), so
        secrets are taken out first."""
        send(self.bot, message.chat.id, text, self.reader(message), self.redact, **options)

    def show(self, message, screen: Screen, text) -> None:
        self.place(message).screen = screen
        self.say(message, text, reply_markup=self.keyboard(message, screen))

    def keyboard(
        self, message, screen: Screen, rows: list[list[str]] | None = None
    ) -> types.ReplyKeyboardMarkup:
        """The screen's labels in the admin's language; `rows` are shown as they are."""
        markup = types.ReplyKeyboardMarkup(resize_keyboard=True)
        for row in rows or self._labels(message, screen):
            markup.row(*row)
        return markup

    def _labels(self, message, screen: Screen) -> list[list[str]]:
        reader = self.reader(message)
        labels = [[reader.gettext(label) for label in row] for row in SCREENS[screen].rows]
        if screen is Screen.BACKUP and self.engine.offsite_paused():
            labels.append([reader.gettext(START_FRESH)])
        return labels

    def in_background(self, message, job: Callable[[], None], working: Text, **options) -> None:
        """Say we are on it, then run `job` on the panel's worker thread."""
        self.say(message, working, **options)
        self.bot.send_chat_action(message.chat.id, "typing")

        def run() -> None:
            try:
                job()
            except (
                BackupError,
                BotApiError,
                DestinationError,
                OSError,
                telebot.apihelper.ApiException,
            ) as error:
                log.warning("an admin panel job failed: %s", error)  # the raw words, redacted
                self.say(message, Text("❌ {error}", error=shown(error, ERROR_SHOWN)))
            except Exception:
                log.exception("an admin panel job failed")
                self.say(message, Text("❌ Something went wrong; the log has the details."))

        self.work.submit(run)

    # --- handlers ---

    def only_in_private(self, message) -> None:
        self.say(
            message,
            Text("🔒 The admin panel works only in a private chat with me."),
            reply_markup=types.ReplyKeyboardRemove(),
        )

    def start(self, message) -> None:
        """An admin's /start: the panel, and their id, as a user's /start tells theirs."""
        self.show(
            message,
            Screen.MAIN,
            Text("🛠 Admin panel. Your Telegram user id is {id}.", id=Code(str(message.from_user.id))),
        )

    def open_panel(self, message) -> None:
        self.show(message, Screen.MAIN, Text("🛠 Admin panel"))

    def on_label(self, message) -> None:
        text = message.text
        if text in self.actions:
            self.actions[text](message)
        elif text.startswith(BACKUP_MARK):
            self.restore.choose(message)
        else:
            self.people.open_from_button(message)

    def statistics(self, message) -> None:
        from admin_users import statistics

        self.show(message, Screen.STATISTICS, statistics(self.db, self.clock(), self.settings.admin_ids))

    def language_screen(self, message) -> None:
        self.place(message).screen = Screen.LANGUAGE
        labels = [list(LANGUAGE_LABELS), [self.reader(message).gettext(BACK)]]
        self.say(
            message,
            Text("Choose your language:"),
            reply_markup=self.keyboard(message, Screen.LANGUAGE, labels),
        )

    def choose_language(self, message) -> None:
        self.readers.choose(message.from_user.id, LANGUAGE_LABELS[message.text])
        self.show(message, Screen.MAIN, Text("✅ Language: English"))  # the panel, in the new language

    def back(self, message) -> None:
        """To the screen this one comes from (panel_screens.SCREENS)."""
        place = self.place(message)
        self.restore.drop_pending(place)
        parent = SCREENS[place.screen].parent
        operator.attrgetter(SCREENS[parent].opens)(self)(message)

    def cancel(self, message) -> None:
        """❌ Cancel: of a restore waiting for its confirmation, or of a block or an unblock."""
        screen = self.place(message).screen
        outcome = self.restore.cancel(message)
        if outcome == "running":
            return
        if outcome is None:
            self.say(message, Text("Nothing to cancel."))
        if screen in (Screen.BLOCK, Screen.UNBLOCK):
            self.back(message)
        else:
            self.backups.backup_screen(message)
