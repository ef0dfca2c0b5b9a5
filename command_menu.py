"""Telegram's command menu (the "/" button): set at every start, in every language the bot
speaks, the admin commands only in each admin's own chat.

Telegram shows a chat the menu of its narrowest scope that has one, in the app's language if
one was set for it (core.telegram.org/bots/api#determining-list-of-commands): so everyone gets
the user commands (BotCommandScopeDefault), and each admin's private chat the user commands
and the admin ones (BotCommandScopeChat, chat_id = the admin's id). A menu without a
language_code covers every app whose language has none of its own: it is in DEFAULT_LANGUAGE;
each other language the bot speaks gets its own. The menu is a convenience: a failure (an admin
who never opened the bot is "chat not found") is one line in the log, and the bot goes on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import telebot

from bot_api import BotApiError, set_commands
from config import LANGUAGES, Settings
from i18n import N_, Reader

log = logging.getLogger(__name__)

# (command, what it does): what /help lists, for the menu; Telegram takes 1-32 characters of
# a-z, 0-9 and _ for a command, and 1-256 characters for its description.
USER_COMMANDS = (
    ("start", N_("register with the bot")),
    ("id", N_("your Telegram user id")),
    ("language", N_("choose your language")),
    ("help", N_("what I can do")),
)
ADMIN_COMMANDS = (
    ("admin", N_("the admin panel")),
    ("backup", N_("take a backup now")),
    ("start_fresh", N_("keep the empty database while backups are paused")),
    ("block", N_("block a user: /block USER_ID [MINUTES] [REASON]")),
    ("unblock", N_("lift a block: /unblock USER_ID")),
)


@dataclass(frozen=True)
class Menu:
    chat_id: int | None  # None: everyone (the default scope); else an admin's private chat
    language_code: str  # "": every app language without a menu of its own
    commands: tuple[tuple[str, str], ...]  # (command, description), translated


def menus(settings: Settings) -> list[Menu]:
    """Every menu the bot sets: for everyone and for each admin, in each language."""
    languages = [("", settings.default_language)] + [
        (code, code) for code in LANGUAGES if code != settings.default_language
    ]
    found = []
    for chat_id in (None, *sorted(settings.admin_ids)):
        commands = USER_COMMANDS + (ADMIN_COMMANDS if chat_id is not None else ())
        for code, language in languages:
            reader = Reader(language)
            found.append(Menu(chat_id, code, tuple((name, reader.gettext(text)) for name, text in commands)))
    return found


def set_menus(bot: telebot.TeleBot, settings: Settings) -> int:
    """Set every menu; returns how many Telegram took. Those it refused are one log line."""
    wanted, refused = menus(settings), []
    for menu in wanted:
        try:
            set_commands(bot, list(menu.commands), menu.chat_id, menu.language_code)
        except BotApiError as error:
            refused.append(str(error))
    if refused:
        log.warning("command menu: %d of %d not set: %s", len(refused), len(wanted), "; ".join(refused))
    else:
        log.info(
            "command menu set: for everyone and for %d admin(s), %d menus",
            len(settings.admin_ids),
            len(wanted),
        )
    return len(wanted) - len(refused)


def set_in_background(bot: telebot.TeleBot, settings: Settings) -> threading.Thread:
    """set_menus on a thread of its own: Telegram's flood control may make a call wait, and
    the start (a restore, the health check) never waits for a menu."""
    thread = threading.Thread(target=set_menus, args=(bot, settings), name="command-menu", daemon=True)
    thread.start()
    return thread
