"""User-facing handlers: /start, /help, /id and /language, activity tracking, flood control,
the blocked gate, the admins' /block and /unblock, and the answer to what the bot does not
understand.

Tracking and the gate run as a pyTelegramBotAPI class middleware, so every message passes them
before any handler (the admin panel's included) sees it; a blocked or flooding user's update is
cancelled there. Every reply is in its reader's language (readers.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import telebot
from telebot import types
from telebot.handler_backends import BaseMiddleware, CancelUpdate

from clock import Clock, utc_now
from config import Settings
from database import Database
from i18n import LANGUAGE_LABELS, Code, Text
from i18n import lines as lines_of
from messaging import is_admin, send, send_quietly
from moderation import BLOCK_USAGE, FLOOD, UNBLOCK_USAGE, block_command, blocked_notice, unblock_command
from readers import Readers

log = logging.getLogger(__name__)


# What a person writes (pyTelegramBotAPI's content types); anything else is a service message.
WRITTEN = frozenset(
    {"text", "document", "photo", "audio", "video", "voice", "video_note", "sticker", "animation"}
    | {"contact", "location", "venue", "poll", "dice"}
)


class ActivityGate(BaseMiddleware):
    """Tracks every message, applies flood control, and keeps blocked users out."""

    def __init__(
        self, bot: telebot.TeleBot, db: Database, settings: Settings, readers: Readers, clock: Clock
    ):
        super().__init__()
        self.update_types = ["message"]
        self.bot, self.db, self.settings, self.readers, self.clock = bot, db, settings, readers, clock
        self.addressing = Addressing(bot)

    def pre_process(self, message, data) -> CancelUpdate | None:
        user = message.from_user
        if user is None or user.is_bot or message.content_type not in WRITTEN:
            # Not a person writing: a channel's post, another bot, or a service message (a pin,
            # a group's upgrade), which Telegram sends the bot for its own actions too.
            return CancelUpdate()
        if message.chat.type != "private" and message.chat.id == self.settings.backup_chat_id:
            # The backup group is the bot's storage: no answer there (its pace is the backups'),
            # nobody registered through it, whoever writes.
            return CancelUpdate()
        if self.addressing.elsewhere(message):
            # "/start@OtherBot" in a group: pyTelegramBotAPI would run our /start for it.
            return CancelUpdate()
        now = self.clock()
        window_start = now - timedelta(seconds=self.settings.flood_window_seconds)
        state = self.db.track_message(
            user.id,
            user.username,
            user.first_name,
            message.chat.id,
            "message",
            now,
            window_start,
            language_code=user.language_code,
        )
        if self.settings.is_admin(user.id):
            return None
        if state.is_blocked(now):
            if not state.block_notified:
                self._notify_blocked(message, state.blocked_until, state.block_reason)
            return CancelUpdate()
        if state.recent_messages > self.settings.flood_max_messages:
            until = now + timedelta(minutes=self.settings.flood_block_minutes)
            self.db.block_user(user.id, until, FLOOD, notified=False, now=now)
            log.info("user %s blocked for flooding until %s", user.id, until.isoformat(timespec="minutes"))
            self._notify_blocked(message, until, FLOOD)
            return CancelUpdate()
        return None

    def post_process(self, message, data, exception) -> None:
        pass

    def _notify_blocked(self, message, until: datetime, reason: str | None) -> None:
        if send_quietly(
            self.bot, message.chat.id, blocked_notice(until, reason), self.readers.of_message(message)
        ):
            self.db.mark_block_notified(message.from_user.id)


class Commands:
    """The commands everyone has, and the admins' /block and /unblock."""

    def __init__(
        self, bot: telebot.TeleBot, db: Database, settings: Settings, readers: Readers, clock: Clock
    ):
        self.bot, self.db, self.settings, self.readers, self.clock = bot, db, settings, readers, clock
        self.addressing = Addressing(bot)

    def register(self) -> None:
        add, admin = self.bot.register_message_handler, self.admin
        add(self.start, commands=["start"])
        add(self.your_id, commands=["id"])
        add(self.language, commands=["language"])
        add(self.chosen, func=lambda m: m.text in LANGUAGE_LABELS and not admin(m))
        add(self.help, commands=["help"])
        add(self.block, commands=["block"], func=admin)
        add(self.unblock, commands=["unblock"], func=admin)
        # Last: whatever no handler above (nor the admin panel's, registered before) took.
        add(self.not_understood, content_types=list(WRITTEN), func=self.addressing.answerable)

    def admin(self, message) -> bool:
        return is_admin(self.settings, message)

    def reply(self, message, text, **options) -> None:
        send(self.bot, message.chat.id, text, self.readers.of_message(message), **options)

    def start(self, message) -> None:
        self.reply(
            message,
            Text(
                "Hello, {name}! You are registered; your Telegram user id is {id}. Send /help to "
                "see what I can do.",
                name=Code(message.from_user.first_name or ""),
                id=Code(str(message.from_user.id)),
            ),
        )

    def your_id(self, message) -> None:
        # How a new deployment's owner finds the number ADMIN_IDS wants, from the bot itself.
        self.reply(message, Text("Your Telegram user id: {id}", id=Code(str(message.from_user.id))))

    def language(self, message) -> None:
        self.reply(message, Text("Choose your language:"), reply_markup=language_keyboard())

    def chosen(self, message) -> None:  # an admin's choice is the panel's: it shows the panel in it
        reader = self.readers.choose(message.from_user.id, LANGUAGE_LABELS[message.text])
        send(
            self.bot,
            message.chat.id,
            Text("✅ Language: English"),
            reader,
            reply_markup=types.ReplyKeyboardRemove(),
        )

    def help(self, message) -> None:
        lines = [
            Text("/start: register with the bot"),
            Text("/id: your Telegram user id"),
            Text("/language: choose your language"),
            Text("/help: this list"),
        ]
        if self.admin(message) and message.chat.type == "private":
            lines += [
                Text("/admin: the admin panel"),
                Text("/backup: take a backup now"),
                Text(
                    "/start_fresh: while backups are paused after an empty start, keep the empty "
                    "database and let backups leave the machine again"
                ),
                Text(BLOCK_USAGE),
                Text(UNBLOCK_USAGE),
            ]
        self.reply(message, lines_of(*lines))

    def not_understood(self, message) -> None:
        """One short line pointing at /help: silence reads as a dead bot."""
        command = command_of(message.text)
        if command is None:
            self.reply(message, Text("I did not understand that. Send /help to see what I can do."))
        else:
            self.reply(
                message,
                Text(
                    "I do not know the command {command}. Send /help to see what I can do.",
                    command=Code("/" + command[0], most=33),
                ),
            )

    def block(self, message) -> None:
        self.reply(
            message, block_command(self.bot, self.db, self.settings, self.readers, message.text, self.clock())
        )

    def unblock(self, message) -> None:
        self.reply(message, unblock_command(self.bot, self.db, self.readers, message.text))


def command_of(text: str | None) -> tuple[str, str | None] | None:
    """A command's name and the bot it is addressed to ("/foo@SomeBot" -> ("foo", "SomeBot")),
    or None when the text is not a command."""
    if not text or not text.startswith("/"):
        return None
    name, _, to = text.split(maxsplit=1)[0][1:].partition("@")
    return name, to or None


class Addressing:
    """Whom a message speaks to. In a private chat everything is for the bot; in a group only a
    command addressed to it by name ("/foo@ThisBot"), so the bot never answers the group's
    chatter, nor a command meant for another bot there."""

    def __init__(self, bot: telebot.TeleBot):
        self.bot = bot

    def username(self) -> str | None:
        """This bot's username (getMe, cached by the library); None while Telegram cannot say."""
        try:
            return self.bot.user.username
        except Exception as error:  # the network at boot: ask again with the next message
            log.debug("getMe failed: %s", type(error).__name__)
            return None

    def elsewhere(self, message) -> bool:
        """A command addressed by name to another bot."""
        command = command_of(message.text)
        if command is None or command[1] is None:
            return False
        mine = self.username()
        return mine is not None and command[1].lower() != mine.lower()

    def answerable(self, message) -> bool:
        """Whether a message nobody handled deserves the "send /help" answer."""
        if message.chat.type == "private":
            return True
        command = command_of(message.text)
        mine = self.username() if command is not None and command[1] is not None else None
        return mine is not None and command[1].lower() == mine.lower()


def register(
    bot: telebot.TeleBot, db: Database, settings: Settings, readers: Readers, clock: Clock = utc_now
) -> None:
    """Install the gate and the user and moderation commands on `bot`."""
    bot.setup_middleware(ActivityGate(bot, db, settings, readers, clock))
    Commands(bot, db, settings, readers, clock).register()


def language_keyboard() -> types.ReplyKeyboardMarkup:
    markup = types.ReplyKeyboardMarkup(resize_keyboard=True, one_time_keyboard=True)
    markup.row(*LANGUAGE_LABELS)
    return markup
