"""Talking to people through the bot: who is an admin, sending without failing, alerting.

Used by the handlers, the admin panel, the jobs and the wiring alike, so each rule has one home.
"""

from __future__ import annotations

import logging

import requests
import telebot

from config import Settings
from logs import Redactor

log = logging.getLogger(__name__)


def is_admin(settings: Settings, message) -> bool:
    """The message comes from one of ADMIN_IDS."""
    return message.from_user is not None and settings.is_admin(message.from_user.id)


def send_quietly(bot: telebot.TeleBot, chat_id: int, text: str, **kwargs) -> bool:
    """Send a message; a failure (the user blocked the bot, a network error) is logged, not raised."""
    try:
        bot.send_message(chat_id, text, **kwargs)
        return True
    except (telebot.apihelper.ApiException, requests.RequestException) as error:
        log.warning("could not send a message to chat %s: %s", chat_id, error)
        return False


def alert_admins(bot: telebot.TeleBot, settings: Settings, text: str) -> bool:
    """Tell every admin; also logged, so an alert is never lost when Telegram is unreachable.
    Secrets are taken out first: an alert quotes error messages, and those may quote anything.
    True when at least one admin got it."""
    text = Redactor(settings.secrets)(text)
    log.warning("alert: %s", text)
    return sum(send_quietly(bot, admin_id, text) for admin_id in settings.admin_ids) > 0
