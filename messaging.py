"""Talking to people through the bot: who is an admin, sending without failing, alerting.

Used by the handlers, the admin panel, the jobs and the wiring alike, so each rule has one home.
Every text goes out in its reader's language (i18n.py); what is logged is the English.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import requests
import telebot

from config import Settings
from i18n import Reader

log = logging.getLogger(__name__)

ReaderOf = Callable[[int], Reader]  # a person's reader, by their user id (readers.Readers.of)


def is_admin(settings: Settings, message) -> bool:
    """The message comes from one of ADMIN_IDS."""
    return message.from_user is not None and settings.is_admin(message.from_user.id)


def send(
    bot: telebot.TeleBot, chat_id: int, text, reader: Reader, redact: Callable[[str], str] = str, **kwargs
):
    """Send `text` (an i18n.Text, or plain) as `reader` reads it: the one way a message leaves
    the bot. `redact` takes the secrets out of the rendered text (an error may quote a URL, and
    a URL holds the token); then it is fitted to Telegram's 4096 (i18n.Reader.fit: a text that
    grew with the data ends with how much was left out, instead of not being sent at all)."""
    return bot.send_message(chat_id, reader.fit(redact(reader(text))), **kwargs)


def send_quietly(bot: telebot.TeleBot, chat_id: int, text, reader: Reader, **kwargs) -> bool:
    """send(), but a failure (the user blocked the bot, a network error) is logged, not raised."""
    try:
        send(bot, chat_id, text, reader, **kwargs)
        return True
    except (telebot.apihelper.ApiException, requests.RequestException) as error:
        log.warning("could not send a message to chat %s: %s", chat_id, error)
        return False
