"""The gate, flood control and the moderation commands, driven through a real TeleBot whose
replies go to the local Bot API stand-in; the clock is a plain variable the test moves."""

from datetime import timedelta

import pytest
from conftest import NOW
from helpers import bot_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telebot import types

import handlers
from config import MAX_BLOCK_MINUTES, load_settings
from database import parse_timestamp
from moderation import BY_ADMIN
from readers import Readers

ADMIN = 1000
USER = 2000
GROUP = -1001234567890  # a supergroup
ME = "backup_test_bot"  # the stand-in's bot
NOT_UNDERSTOOD = "I did not understand that. Send /help to see what I can do."
NO_COMMAND = "I do not know the command {}. Send /help to see what I can do."


class Harness:
    def __init__(self, fake, db, **env):
        self.fake, self.db, self.now = fake, db, NOW
        self.settings = load_settings(
            {
                "BOT_TOKEN": fake.token,
                "ADMIN_IDS": str(ADMIN),
                "FLOOD_MAX_MESSAGES": "3",
                "FLOOD_WINDOW_SECONDS": "60",
                "FLOOD_BLOCK_MINUTES": "10",
                **env,
            }
        )
        self.bot = bot_for(fake, threaded=False, use_class_middlewares=True)
        self.readers = Readers(self.settings, clock=lambda: self.now)
        self.readers.attach(db)
        handlers.register(self.bot, db, self.settings, self.readers, clock=lambda: self.now)

    def say(self, user_id, text, seconds_later=0, chat_id=None, language_code=None):
        """Deliver one message to the bot (in the user's private chat, or in `chat_id`) and
        return the replies to that chat it caused."""
        self.now += timedelta(seconds=seconds_later)
        chat = chat_id or user_id
        before = len(self.fake.messages(chat))
        update = self.fake.send_text(
            user_id, text, first_name=f"U{user_id}", chat_id=chat_id, language_code=language_code
        )
        self.bot.process_new_updates([types.Update.de_json(update)])
        return [m["text"] for m in self.fake.messages(chat)[before:] if m["from"]["is_bot"]]


@pytest.fixture
def harness(db, fake):
    return Harness(fake, db)


def test_start_registers_the_user_and_answers(harness):
    replies = harness.say(USER, "/start")
    assert replies and "registered" in replies[0]
    user = harness.db.user(USER)
    assert user["first_name"] == f"U{USER}" and user["first_seen"] == "2026-11-26 12:00:00"


def test_every_message_is_tracked(harness):
    harness.say(USER, "hello")
    harness.say(USER, "/start", seconds_later=5)
    assert harness.db.table_row_counts()["tracking"] == 2


def test_flooding_blocks_the_user_tells_them_once_then_ignores_them(harness):
    for _ in range(3):
        assert "blocked" not in " ".join(harness.say(USER, "hi", seconds_later=1))
    replies = harness.say(USER, "/start", seconds_later=1)  # the 4th message within 60 s
    assert replies == [
        "You are blocked until 2026-11-26 12:10 UTC (sending messages too fast); "
        "messages until then are ignored."
    ]
    assert harness.db.user(USER)["block_reason"] == "flood"
    assert harness.say(USER, "/start", seconds_later=120) == []  # ignored, no second notice


def test_messages_spread_over_the_window_are_not_flooding(harness):
    for _ in range(10):
        harness.say(USER, "hi", seconds_later=30)
    assert harness.db.user(USER)["blocked_until"] is None


def test_admins_are_never_flood_blocked(harness):
    for _ in range(10):
        harness.say(ADMIN, "hi")
    assert harness.db.user(ADMIN)["blocked_until"] is None
    assert "registered" in harness.say(ADMIN, "/start")[0]


def test_block_and_unblock_by_an_admin(harness):
    harness.say(USER, "/start")
    reply = harness.say(ADMIN, f"/block {USER} 30 spamming links")
    assert reply == [f"User {USER} is blocked until 2026-11-26 12:30 UTC (spamming links)."]
    told = harness.fake.messages(USER)[-1]["text"]
    assert "blocked until 2026-11-26 12:30 UTC (spamming links)" in told
    assert harness.say(USER, "/start") == []  # already told once: silently ignored

    assert harness.say(ADMIN, f"/unblock {USER}") == [f"User {USER} is unblocked."]
    assert harness.fake.messages(USER)[-1]["text"] == "Your block was lifted; you can write again."
    assert "registered" in harness.say(USER, "/start")[0]


def test_block_defaults_to_the_flood_block_length(harness):
    harness.say(USER, "hi")
    assert harness.say(ADMIN, f"/block {USER}") == [
        f"User {USER} is blocked until 2026-11-26 12:10 UTC (blocked by an admin)."
    ]


@pytest.mark.parametrize(
    "command, expected",
    [
        ("/block", handlers.BLOCK_USAGE),
        ("/block someone", handlers.BLOCK_USAGE),
        (f"/block {USER} 0", "MINUTES must be a whole number from 1"),
        (f"/block {ADMIN}", "admins cannot be blocked"),
        (f"/block {USER} 30", "has never written to the bot"),  # a typo, not a user to invent
        ("/block 99999999999999999999", handlers.BLOCK_USAGE),
        ("/unblock", handlers.UNBLOCK_USAGE),
        (f"/unblock {USER} extra", handlers.UNBLOCK_USAGE),
        (f"/unblock {USER}", f"User {USER} is not blocked."),
    ],
)
def test_bad_moderation_commands_get_a_clear_answer_and_change_nothing(harness, command, expected):
    replies = harness.say(ADMIN, command)
    assert len(replies) == 1 and expected in replies[0]
    assert harness.db.user(USER) is None or harness.db.user(USER)["blocked_until"] is None


def test_ids_and_minutes_typed_on_a_persian_keyboard_are_numbers(harness):
    harness.say(USER, "hi")
    persian = str(USER).translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    assert harness.say(ADMIN, f"/block {persian} ۳۰") == [
        f"User {USER} is blocked until 2026-11-26 12:30 UTC (blocked by an admin)."
    ]
    assert harness.say(ADMIN, f"/unblock {persian}") == [f"User {USER} is unblocked."]
    harness.say(ADMIN, f"/block {USER} ² spam")  # a digit int() refuses: a word of the reason
    assert harness.db.user(USER)["block_reason"] == "² spam"


def test_non_admins_cannot_block(harness):
    harness.say(USER, "/start")
    assert harness.say(USER, f"/block {ADMIN + 1}") == [NO_COMMAND.format("/block")]
    assert harness.db.user(ADMIN + 1) is None


def test_anyone_can_learn_their_user_id_for_admin_ids(harness):
    assert harness.say(USER, "/id") == [f"Your Telegram user id: {USER}"]
    assert "/id: your Telegram user id" in harness.say(USER, "/help")[0]


# --- /block's MINUTES: a number, or the usage line; never a reason, never another number --------

PERSIAN = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")


def whole(word):
    """What /block takes for MINUTES: a whole number of minutes in range, in ASCII or Persian digits."""
    ascii_word = word.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789"))
    return ascii_word.isascii() and ascii_word.isdigit() and 1 <= int(ascii_word) <= MAX_BLOCK_MINUTES


MALFORMED = st.one_of(
    st.sampled_from(["12x", "-5", "5.5", "۵x", "+5", "1e3", "0", "00", "−5", "0x10", "5,5", "٣٠m", "१०"]),
    st.integers().map(str),
    st.floats().map(str).filter(lambda w: w[0] in "-0123456789"),  # not "inf", "nan": those are words
    st.tuples(st.integers(0, 9), st.text(min_size=1, max_size=8).filter(lambda t: not t.isdigit())).map(
        lambda p: f"{p[0]}{p[1]}".split()[0]
    ),
    st.tuples(st.sampled_from("+-"), st.text(max_size=6)).map(lambda p: (p[0] + p[1]).split()[0]),
).filter(lambda word: not whole(word))
WHOLE = st.integers(1, MAX_BLOCK_MINUTES).flatmap(
    lambda n: st.sampled_from([str(n), str(n).translate(PERSIAN)])
)
REASON = st.one_of(st.just(""), st.text(min_size=1, max_size=40).filter(lambda t: t.strip()))
FAMILY = {
    "max_examples": 100,
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


@pytest.fixture
def blockable(harness):
    harness.say(USER, "hi")
    return harness


def state_of(harness):
    user = harness.db.user(USER)
    return user["blocked_until"], user["block_reason"], len(harness.fake.messages(USER))


@settings(**FAMILY)
@given(word=MALFORMED, reason=REASON)
def test_malformed_minutes_get_the_usage_line_and_change_nothing(blockable, word, reason):
    harness = blockable
    before = state_of(harness)
    replies = harness.say(ADMIN, f"/block {USER} {word} {reason}".rstrip())
    assert len(replies) == 1 and handlers.BLOCK_USAGE in replies[0], (word, replies)
    assert state_of(harness) == before  # not blocked, and not told anything


@settings(**FAMILY)
@given(minutes=WHOLE, reason=REASON)
def test_whole_minutes_block_for_that_long_with_the_reason_as_written(blockable, minutes, reason):
    harness = blockable
    replies = harness.say(ADMIN, f"/block {USER} {minutes} {reason}".rstrip())
    assert len(replies) == 1 and "is blocked until" in replies[0], replies
    until, why, _ = state_of(harness)
    shown = int(minutes.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")))
    assert parse_timestamp(until) == harness.now + timedelta(minutes=shown)
    assert why == (reason.strip() or BY_ADMIN)  # after MINUTES, the rest as written
    harness.db.unblock_user(USER)


@settings(**FAMILY)
@given(
    reason=st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and not t.split()[0][0].isdecimal())
)
def test_a_reason_that_does_not_start_like_a_number_is_the_reason(blockable, reason):
    harness = blockable
    if reason.split()[0][0] in "+-\u2212\ufe63\uff0b\uff0d":
        return  # a sign starts MINUTES
    harness.say(ADMIN, f"/block {USER} {reason}")
    until, why, _ = state_of(harness)
    assert parse_timestamp(until) == harness.now + timedelta(minutes=10)  # FLOOD_BLOCK_MINUTES
    assert why == " ".join(reason.strip().split(maxsplit=1))
    harness.db.unblock_user(USER)


# --- what the bot does not understand: one line pointing at /help ---------------------------------

KNOWN = {"/start", "/id", "/language", "/help", "/block", "/unblock"}
PLAIN = st.text(min_size=1, max_size=60).filter(
    lambda t: t.strip() and not t.startswith("/") and t not in handlers.LANGUAGE_LABELS
)
UNKNOWN_COMMAND = st.from_regex(r"/[a-z0-9_]{1,32}", fullmatch=True).filter(lambda c: c not in KNOWN)


@settings(**FAMILY)
@given(text=PLAIN, persian=st.booleans())
def test_text_the_bot_does_not_understand_gets_one_line_pointing_at_help(harness, text, persian):
    replies = harness.say(USER, text, seconds_later=61, language_code="fa" if persian else "en")
    if persian:
        assert len(replies) == 1 and "/help" in replies[0] and "understand" not in replies[0]
    else:
        assert replies == [NOT_UNDERSTOOD]


@settings(**FAMILY)
@given(command=UNKNOWN_COMMAND, tail=st.sampled_from(["", f"@{ME}", f"@{ME.upper()}", " some words"]))
def test_an_unknown_command_is_named_in_the_answer(harness, command, tail):
    assert harness.say(USER, command + tail, seconds_later=61) == [NO_COMMAND.format(command)]


def test_persian_readers_are_answered_in_persian(harness):
    (reply,) = harness.say(USER, "سلام", language_code="fa")
    assert "/help" in reply and "متوجه" in reply
    (reply,) = harness.say(USER, "/foo", seconds_later=61, language_code="fa")
    assert "/foo" in reply and "/help" in reply and "know" not in reply


def test_admins_unknown_text_gets_the_same_answer(harness):
    assert harness.say(ADMIN, "hello bot") == [NOT_UNDERSTOOD]
    assert harness.say(ADMIN, "/foo") == [NO_COMMAND.format("/foo")]


def test_a_blocked_or_flooding_user_gets_nothing_more(harness):
    for _ in range(3):
        assert harness.say(USER, "hello bot") == [NOT_UNDERSTOOD]
    assert "blocked until" in harness.say(USER, "hello bot")[0]  # the 4th: the notice, once
    assert harness.say(USER, "hello bot") == []
    assert harness.say(USER, "/foo") == []


@pytest.mark.parametrize(
    "text",
    ["hello everyone", "سلام", "/foo", "/foo@OtherBot", "/start@OtherBot", "/help@other_bot now"],
)
def test_in_a_group_chatter_and_other_bots_commands_are_left_alone(harness, text):
    assert harness.say(USER, text, chat_id=GROUP) == []


def test_in_a_group_commands_addressed_to_the_bot_are_answered(harness):
    assert harness.say(USER, f"/foo@{ME}", chat_id=GROUP) == [NO_COMMAND.format("/foo")]
    assert "/help: this list" in harness.say(USER, f"/help@{ME}", chat_id=GROUP, seconds_later=61)[0]


def test_a_command_for_another_bot_is_not_ours_in_a_private_chat_either(harness):
    assert harness.say(USER, "/start@OtherBot") == []
