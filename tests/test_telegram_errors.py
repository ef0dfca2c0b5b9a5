"""Telegram's errors in people's words: whatever code and description the Bot API answers,
in whichever wrapping it reaches a text (bot_api's line, pyTelegramBotAPI's, a destination's),
an admin reads one sentence in their language, never the raw error; the log keeps it."""

from types import SimpleNamespace

import pytest
from helpers import bot_for
from hypothesis import given, settings
from hypothesis import strategies as st
from telebot.apihelper import ApiTelegramException

import bot_api
from admin_panel import AdminPanel
from clock import utc_now
from config import load_settings
from destinations import DestinationError
from i18n import Reader, Text
from readers import Readers
from telegram_errors import shown

KNOWN = [
    "Bad Request: chat not found",
    "Forbidden: bot is not a member of the channel chat",
    "Forbidden: bot was kicked from the supergroup chat",
    "Forbidden: bot was blocked by the user",
    "Forbidden: bot can't initiate conversation with a user",
    "Bad Request: not enough rights to manage pinned messages in the chat",
    "Bad Request: need administrator rights in the channel chat",
    "Request Entity Too Large",
    "Bad Request: file is too big",
    "Too Many Requests: retry after 37",
    "Unauthorized",
    "Not Found",
    "Conflict: terminated by other getUpdates request",
    "Bad Request: group chat was upgraded to a supergroup chat",
    "Internal Server Error",
    "Bad Request: MEDIA_CAPTION_TOO_LONG",
    "",
]
DESCRIPTIONS = st.one_of(
    st.sampled_from(KNOWN),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80).map(
        lambda t: "Bad Request: " + t
    ),
)
CODE_LIST = [400, 401, 403, 404, 409, 413, 429, 500, 502]
CODES = st.sampled_from(CODE_LIST)


def raw_library(code, description):
    """pyTelegramBotAPI's own exception, as a job that called the library directly raises it."""
    return ApiTelegramException(
        "sendDocument", None, {"ok": False, "error_code": code, "description": description}
    )


def through_bot_api(code, description):
    return bot_api.failure_of("send a backup to the chat", {"error_code": code, "description": description})


def in_a_destination(code, description):
    return DestinationError(f"part 2 of 3: {through_bot_api(code, description)}")


def as_read(error, language):
    return Reader(language)(Text("❌ {error}", error=shown(error)))


# The sentences the known errors read as: a description whose words happen to be in one ("too
# big") is recognised as that error, not echoed.
FRIENDLY = {
    as_read(through_bot_api(code, description), language)
    for code in CODE_LIST
    for description in KNOWN
    for language in ("en", "fa")
}


@settings(max_examples=300, deadline=None)
@given(
    code=CODES,
    description=DESCRIPTIONS,
    wrap=st.sampled_from([raw_library, through_bot_api, in_a_destination]),
)
def test_a_telegram_error_reads_as_one_sentence_in_each_language(code, description, wrap):
    error = wrap(code, description)
    english, persian = as_read(error, "en"), as_read(error, "fa")
    for text in (english, persian):
        assert "\n" not in text and len(text) < 300
        assert "A request to the Telegram API" not in text and "Error code" not in text
        assert "Bad Request" not in text and "Telegram would not" not in text
        words = description.split(": ", 1)[-1].strip()
        if description not in KNOWN and len(words) >= 4 and text not in FRIENDLY:
            assert words not in text  # the raw description is the log's, not the reader's
    assert english != persian and english.startswith("❌ ") and len(english) > 12


@pytest.mark.parametrize(
    "description, expected",
    [
        ("Bad Request: chat not found", "cannot find the chat"),
        ("Forbidden: bot is not a member of the channel chat", "not a member"),
        ("Too Many Requests: retry after 37", "37 s"),
        ("Request Entity Too Large", "too big"),
        ("Not Found", "TELEGRAM_API_URL"),
        ("Bad Request: wrong file identifier/HTTP URL specified", "does not have that file any more"),
        ("Bad Request: SOMETHING_NEW", "Telegram refused (error 400)"),
    ],
)
def test_each_kind_says_what_is_wrong(description, expected):
    assert expected in as_read(raw_library(404 if description == "Not Found" else 400, description), "en")


def test_other_errors_are_shown_as_they_are():
    assert as_read(OSError("No space left on device"), "en") == "❌ No space left on device"


def test_a_panel_job_that_telegram_refuses_tells_the_admin_in_words_and_logs_the_raw_line(fake, caplog):
    settings = load_settings({"BOT_TOKEN": fake.token, "ADMIN_IDS": "7"})
    panel = AdminPanel(bot_for(fake), None, None, None, settings, Readers(settings), utc_now)
    admin = SimpleNamespace(id=7, language_code="fa", type="private")

    def job():
        raise raw_library(404, "Not Found")

    panel.in_background(SimpleNamespace(chat=admin, from_user=admin), job, Text("💾 Creating a backup…"))
    told = fake.wait_for_message(7, "TELEGRAM_API_URL")["text"]
    assert "Error code" not in told and "404" not in told
    panel.close()
    assert any("Error code: 404" in record.getMessage() for record in caplog.records)


def test_what_a_line_says_before_telegrams_part_is_kept():
    error = "cannot fetch backup-x.db.zst from telegram: part 2 of 2: " + str(
        through_bot_api(400, "Bad Request: wrong file identifier/HTTP URL specified")
    )
    assert as_read(error, "en") == (
        "❌ cannot fetch backup-x.db.zst from telegram: part 2 of 2: Telegram does not have that file "
        "any more: its message may have been deleted."
    )
