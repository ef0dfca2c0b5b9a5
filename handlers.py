"""User-facing handlers: /start and /help, activity tracking, flood control, the blocked gate,
and the admins' /block and /unblock.

Tracking and the gate run as a pyTelegramBotAPI class middleware, so every message passes them
before any handler (the admin panel's included) sees it; a blocked or flooding user's update is
cancelled there.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Optional

import telebot
from telebot.handler_backends import BaseMiddleware, CancelUpdate

import human
from clock import Clock, utc_now
from config import Settings
from database import Database
from messaging import is_admin, send_quietly

log = logging.getLogger(__name__)

MAX_BLOCK_MINUTES = 366 * 24 * 60
BLOCK_USAGE = "Usage: /block USER_ID [MINUTES] [REASON], for example /block 12345 60 spam"
UNBLOCK_USAGE = "Usage: /unblock USER_ID, for example /unblock 12345"


class ActivityGate(BaseMiddleware):
    """Tracks every message, applies flood control, and keeps blocked users out."""

    def __init__(self, bot: telebot.TeleBot, db: Database, settings: Settings, clock: Clock):
        super().__init__()
        self.update_types = ["message"]
        self.bot, self.db, self.settings, self.clock = bot, db, settings, clock

    def pre_process(self, message, data) -> Optional[CancelUpdate]:
        user = message.from_user
        if user is None:
            return None
        now = self.clock()
        window_start = now - timedelta(seconds=self.settings.flood_window_seconds)
        state = self.db.track_message(user.id, user.username, user.first_name, message.chat.id,
                                      "message", now, window_start)
        if self.settings.is_admin(user.id):
            return None
        if state.is_blocked(now):
            if not state.block_notified:
                self._notify_blocked(user.id, message.chat.id, state.blocked_until)
            return CancelUpdate()
        if state.recent_messages > self.settings.flood_max_messages:
            until = now + timedelta(minutes=self.settings.flood_block_minutes)
            self.db.block_user(user.id, until, "flood", notified=False, now=now)
            log.info("user %s blocked for flooding until %s", user.id, human.time(until))
            self._notify_blocked(user.id, message.chat.id, until, flooding=True)
            return CancelUpdate()
        return None

    def post_process(self, message, data, exception) -> None:
        pass

    def _notify_blocked(self, user_id: int, chat_id: int, until: datetime, flooding=False) -> None:
        reason = "You are sending messages too fast. " if flooding else ""
        text = f"{reason}You are blocked until {human.time(until)}; messages until then are ignored."
        if send_quietly(self.bot, chat_id, text):
            self.db.mark_block_notified(user_id)


def register(bot: telebot.TeleBot, db: Database, settings: Settings, clock: Clock = utc_now) -> None:
    """Install the gate and the user and moderation commands on `bot`."""
    bot.setup_middleware(ActivityGate(bot, db, settings, clock))

    def admin(message) -> bool:
        return is_admin(settings, message)

    @bot.message_handler(commands=["start"])
    def start(message):
        name = message.from_user.first_name or "there"
        bot.send_message(message.chat.id, f"Hello, {name}! You are registered. Send /help to see "
                                          "what I can do.")

    @bot.message_handler(commands=["id"])
    def your_id(message):
        # How a new deployment's owner finds the number ADMIN_IDS wants, from the bot itself.
        bot.send_message(message.chat.id, f"Your Telegram user id: {message.from_user.id}")

    @bot.message_handler(commands=["help"])
    def help_(message):
        lines = ["/start: register with the bot", "/id: your Telegram user id", "/help: this list"]
        if admin(message) and message.chat.type == "private":
            lines += ["/admin: the admin panel", "/backup: take a backup now",
                      BLOCK_USAGE.removeprefix("Usage: "), UNBLOCK_USAGE.removeprefix("Usage: ")]
        bot.send_message(message.chat.id, "\n".join(lines))

    @bot.message_handler(commands=["block"], func=admin)
    def block(message):
        bot.send_message(message.chat.id, block_command(bot, db, settings, message.text, clock()))

    @bot.message_handler(commands=["unblock"], func=admin)
    def unblock(message):
        bot.send_message(message.chat.id, unblock_command(bot, db, message.text))


def block_command(bot: telebot.TeleBot, db: Database, settings: Settings, text: str,
                  now: datetime) -> str:
    """Carry out '/block USER_ID [MINUTES] [REASON]'; returns the reply for the admin."""
    parts = text.split(maxsplit=3)[1:]
    if not parts or not _is_user_id(parts[0]):
        return BLOCK_USAGE
    user_id = int(parts[0])
    minutes = settings.flood_block_minutes
    rest = parts[1:]
    if rest and rest[0].isdigit():
        minutes = int(rest.pop(0))
        if not 1 <= minutes <= MAX_BLOCK_MINUTES:
            return f"MINUTES must be from 1 to {MAX_BLOCK_MINUTES}. {BLOCK_USAGE}"
    reason = " ".join(rest) or "blocked by an admin"
    if settings.is_admin(user_id):
        return f"{user_id} is an admin; admins cannot be blocked."
    until = now + timedelta(minutes=minutes)
    db.block_user(user_id, until, reason, notified=False, now=now)
    log.info("user %s blocked by an admin until %s", user_id, human.time(until))
    if send_quietly(bot, user_id, f"You are blocked until {human.time(until)} ({reason}); "
                                  "messages until then are ignored."):
        db.mark_block_notified(user_id)
    return f"User {user_id} is blocked until {human.time(until)} ({reason})."


def unblock_command(bot: telebot.TeleBot, db: Database, text: str) -> str:
    """Carry out '/unblock USER_ID'; returns the reply for the admin."""
    parts = text.split()[1:]
    if len(parts) != 1 or not _is_user_id(parts[0]):
        return UNBLOCK_USAGE
    user_id = int(parts[0])
    if not db.unblock_user(user_id):
        return f"User {user_id} is not blocked."
    log.info("user %s unblocked by an admin", user_id)
    send_quietly(bot, user_id, "Your block was lifted; you can write again.")
    return f"User {user_id} is unblocked."


def _is_user_id(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 2 ** 63
