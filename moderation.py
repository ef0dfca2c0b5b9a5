"""Blocking and unblocking people: the admins' /block and /unblock, the 👥 Users card's buttons,
and the words a block is told in. The user is told either way, in their own language."""

from __future__ import annotations

import logging
import unicodedata
from datetime import datetime, timedelta

import telebot

from config import MAX_BLOCK_MINUTES, MAX_USER_ID, Settings
from database import Database
from i18n import DETAIL, N_, Code, Text, ascii_digits
from messaging import send_quietly
from readers import Readers

log = logging.getLogger("handlers")

BLOCK_USAGE = N_("Usage: /block USER_ID [MINUTES] [REASON], for example /block 12345 60 spam")
UNBLOCK_USAGE = N_("Usage: /unblock USER_ID, for example /unblock 12345")
# The reasons the bot gives a block itself; an admin's own words are shown as they are.
FLOOD, BY_ADMIN = "flood", "blocked by an admin"
REASONS = {FLOOD: N_("sending messages too fast"), BY_ADMIN: N_("blocked by an admin")}


def reason_text(reason: str | None, most: int = DETAIL) -> Text | Code:
    """A block's reason for its reader: the bot's own translated, an admin's words as written
    (up to `most` characters, then how many more: they may be as long as a message)."""
    return Text(REASONS[reason]) if reason in REASONS else Code(reason or "", most)


def blocked_notice(until: datetime, reason: str | None) -> Text:
    return Text(
        "You are blocked until {until} ({reason}); messages until then are ignored.",
        until=until,
        reason=reason_text(reason),
    )


def block_command(
    bot: telebot.TeleBot, db: Database, settings: Settings, readers: Readers, text: str, now: datetime
) -> Text:
    """Carry out '/block USER_ID [MINUTES] [REASON]'; returns the reply for the admin."""
    parts = text.split(maxsplit=3)[1:]  # the reason as written; the numbers typed on a Persian keyboard too
    if not parts or not is_user_id(ascii_digits(parts[0])):
        return Text(BLOCK_USAGE)
    user_id = int(ascii_digits(parts[0]))
    minutes = settings.flood_block_minutes
    rest = parts[1:]
    if rest and is_minutes_word(rest[0]):
        minutes = whole_minutes(rest.pop(0))
        if minutes is None:  # 12x, -5, 5.5, 1e3, ۵x: never a reason, never another number
            return Text(
                "{minutes} must be a whole number from 1 to {most}. {usage}",
                minutes=Code("MINUTES"),
                most=MAX_BLOCK_MINUTES,
                usage=Text(BLOCK_USAGE),
            )
    return block(bot, db, settings, readers, user_id, minutes, " ".join(rest).strip() or BY_ADMIN, now)


SIGNS = "+-\u2212\ufe63\uff0b\uff0d"  # plus and minus, with Unicode's minus signs and wide forms


def is_minutes_word(word: str) -> bool:
    """Whether /block's second word is meant as MINUTES: it starts with a digit of any script
    (a Persian keyboard's too) or a sign. Such a word is MINUTES or wrong, never a reason's
    first word ("²", not a decimal digit, is a word of a reason)."""
    return unicodedata.category(word[0]) == "Nd" or word[0] in SIGNS


def whole_minutes(word: str) -> int | None:
    """MINUTES as typed (Persian digits read as ASCII ones), when it is a whole number from 1 to
    MAX_BLOCK_MINUTES; None otherwise."""
    word = ascii_digits(word)
    if not (word.isascii() and word.isdigit() and len(word) <= 7):
        return None
    return int(word) if 1 <= int(word) <= MAX_BLOCK_MINUTES else None


def block(
    bot: telebot.TeleBot,
    db: Database,
    settings: Settings,
    readers: Readers,
    user_id: int,
    minutes: int,
    reason: str,
    now: datetime,
) -> Text:
    """Block `user_id` for `minutes` and tell them; returns the reply for the admin."""
    user = Code(str(user_id))
    if settings.is_admin(user_id):
        return Text("{user} is an admin; admins cannot be blocked.", user=user)
    if db.user(user_id) is None:  # a typo, most likely: blocking it would make a user of it
        return Text(
            "{user} has never written to the bot: there is nobody to block. The id is in "
            "👥 Users, or /id tells a user theirs.",
            user=user,
        )
    until = now + timedelta(minutes=minutes)
    db.block_user(user_id, until, reason, notified=False, now=now)
    log.info("user %s blocked by an admin until %s", user_id, until.isoformat(timespec="minutes"))
    if send_quietly(bot, user_id, blocked_notice(until, reason), readers.of(user_id)):
        db.mark_block_notified(user_id)
    return Text(
        "User {user} is blocked until {until} ({reason}).", user=user, until=until, reason=reason_text(reason)
    )


def unblock_command(bot: telebot.TeleBot, db: Database, readers: Readers, text: str) -> Text:
    """Carry out '/unblock USER_ID'; returns the reply for the admin."""
    parts = ascii_digits(text).split()[1:]
    if len(parts) != 1 or not is_user_id(parts[0]):
        return Text(UNBLOCK_USAGE)
    return unblock(bot, db, readers, int(parts[0]))


def unblock(bot: telebot.TeleBot, db: Database, readers: Readers, user_id: int) -> Text:
    """Lift `user_id`'s block and tell them; returns the reply for the admin."""
    user = Code(str(user_id))
    if not db.unblock_user(user_id):
        return Text("User {user} is not blocked.", user=user)
    log.info("user %s unblocked by an admin", user_id)
    send_quietly(bot, user_id, Text("Your block was lifted; you can write again."), readers.of(user_id))
    return Text("User {user} is unblocked.", user=user)


def is_user_id(text: str) -> bool:
    """A Telegram user id as typed: ASCII digits, at most 52 bits (config.MAX_USER_ID)."""
    return text.isascii() and text.isdigit() and len(text) <= 20 and 0 < int(text) <= MAX_USER_ID
