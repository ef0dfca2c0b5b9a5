"""Telegram's errors in people's words: what an admin reads instead of a raw Bot API error.

A Bot API error reaches the bot's texts as a line: bot_api.BotApiError's ("Telegram would not
send a backup to the chat: Forbidden: bot is not a member of the channel chat"),
pyTelegramBotAPI's own ("A request to the Telegram API was unsuccessful. Error code: 404.
Description: Not Found"), or either inside a destination's error. `shown()` recognises such a
line and gives one readable sentence in the reader's language, saying what is wrong and what
to do; any other error is shown as it is (a disk's, a bucket's: those already read as words).
The raw line stays in the log, where it was written when the error happened.
"""

from __future__ import annotations

import re

from i18n import DETAIL, N_, Code, Text

# What marks a line as Telegram's answer (bot_api.py's wordings, pyTelegramBotAPI's, the
# server's own "Bad Request: ..." / "Forbidden: ..." descriptions).
TELEGRAM = re.compile(
    r"Telegram would not|Telegram answered HTTP|cannot reach Telegram|Telegram gave an answer"
    r"|A request to the Telegram API|\b(Bad Request|Forbidden|Unauthorized|Conflict|Too Many Requests)\b:?"
)
CODE = re.compile(r"Error code: (\d{3})|HTTP (\d{3})|error (\d{3})\b")
WORDS = {"Bad Request": 400, "Unauthorized": 401, "Forbidden": 403, "Conflict": 409, "Too Many Requests": 429}
CONTEXT = 200  # characters kept of what a line says before Telegram's part
RETRY_AFTER = re.compile(r"retry after (\d{1,6})")

# (pattern in the description, the sentence): the first that matches speaks. Descriptions are
# the server's (telegram-bot-api Client.cpp, TDLib), as bots meet them.
KNOWN = (
    (
        r"retry after|too many requests",
        N_("Telegram asks the bot to slow down (flood control); it can try again in {seconds} s."),
    ),
    (
        r"upgraded to a supergroup",
        N_("The group became a supergroup and has a new id: set the chat's new id."),
    ),
    (r"chat not found", N_("Telegram cannot find the chat: check its id, and that the bot was added to it.")),
    (
        r"wrong file identifier|invalid file_id|file reference",
        N_("Telegram does not have that file any more: its message may have been deleted."),
    ),
    (r"message to \w+ not found", N_("The message is not in the chat any more: it may have been deleted.")),
    (r"bot is not a member|bot was kicked", N_("The bot is not a member of the chat: add it again.")),
    (
        r"bot was blocked by the user|user is deactivated",
        N_("The person blocked the bot or deleted their account."),
    ),
    (
        r"bot can't initiate conversation",
        N_("The person has not opened the bot yet: they must send it /start first."),
    ),
    (
        r"not enough rights|need administrator rights|have no rights|chat_write_forbidden|chat_admin_required",
        N_(
            "The bot lacks a right it needs in the chat (to post, or to pin messages): make it an admin with that right."
        ),
    ),
    (r"too big|too large|entity too large|too_big", N_("The file is too big for Telegram.")),
    (r"unauthorized|\b401\b", N_("Telegram rejected the bot's token: check BOT_TOKEN.")),
    (r"conflict|\b409\b", N_("Another copy of the bot is using the same token.")),
    (
        r"cannot reach telegram|timed out|timeout|connection",
        N_("Telegram could not be reached: a network problem."),
    ),
    (r"forbidden|\b403\b", N_("Telegram does not let the bot do this in the chat.")),
    (
        r"\b5\d\d\b|internal server error|bad gateway",
        N_("Telegram had a problem on its side; try again later."),
    ),
    (r"gave an answer", N_("Telegram gave an answer the bot cannot read; try again later.")),
    (
        r"\b404\b|not found",
        N_("Telegram does not know this request or what it names: check TELEGRAM_API_URL and the chat."),
    ),
)
_KNOWN = tuple((re.compile(pattern, re.IGNORECASE), text) for pattern, text in KNOWN)
OTHER = N_("Telegram refused (error {code}); the log has its words.")


def explained(error: BaseException | str) -> Text | None:
    """Telegram's error in one readable sentence, or None when `error` is not Telegram's. What
    the line says before Telegram's part (which part of a backup, which place) is kept in front
    of it: "part 2 of 2: Telegram cannot find the chat: ..."."""
    line = " ".join(str(error).split())
    found = TELEGRAM.search(line)
    if not found:
        return None
    sentence = _sentence(error, line)
    before = line[: found.start()].rstrip(" :")
    return Text("{where}: {what}", where=Code(before, CONTEXT), what=sentence) if before else sentence


def _sentence(error: BaseException | str, line: str) -> Text:
    for pattern, text in _KNOWN:
        if pattern.search(line):
            if "{seconds}" not in text:
                return Text(text)
            asked = RETRY_AFTER.search(line)
            return Text(
                text, seconds=int(asked.group(1)) if asked else getattr(error, "retry_after", None) or 5
            )
    return Text(OTHER, code=Code(str(_code(error, line) or "?")))


def shown(error: BaseException | str, most: int = DETAIL) -> Text | Code:
    """What a reader sees of `error`: Telegram's in words, anything else as it is (its first
    `most` characters)."""
    return explained(error) or Code(str(error), most)


def _code(error: BaseException | str, line: str) -> int | str | None:
    """The error code: the exception's own, else the one its line names."""
    code = getattr(error, "code", None)
    if code:
        return code
    found = CODE.search(line)
    if found:
        return next(group for group in found.groups() if group)
    word = re.search("|".join(WORDS), line)  # the server's own word for it
    return WORDS[word.group(0)] if word else None
