"""Telegram's "/" menu: the stand-in keeps setMyCommands per scope and language as the real
server does (tests/fake_bot_api/commands.py), and a real main.py sets it at start, the admin
commands only in the admins' chats; it answers what it does not understand, in both languages."""

import json

import pytest
import requests
from bot_process import ADMIN_ID
from fake_bot_api import commands as rules
from helpers import press
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import command_menu

USER = 5151
OTHER_ADMIN = ADMIN_ID + 1  # never opened the bot: Telegram answers "chat not found" for its chat
USER_COMMANDS = [name for name, _ in command_menu.USER_COMMANDS]
ADMIN_COMMANDS = USER_COMMANDS + [name for name, _ in command_menu.ADMIN_COMMANDS]
FAMILY = {
    "max_examples": 60,
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


def call(fake, method, **params):
    """A Bot API call as pyTelegramBotAPI sends it (form fields, structured ones as JSON)."""
    form = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in params.items()}
    return requests.post(f"{fake.url}/bot{fake.token}/{method}", data=form, timeout=10).json()


# --- the stand-in: Client.cpp's and TDLib's rules --------------------------------------------------

COMMAND = st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True)
DESCRIPTION = st.text(min_size=1, max_size=256).filter(lambda t: t.strip() == t and t)


@settings(**FAMILY)
@given(commands=st.lists(st.tuples(COMMAND, DESCRIPTION), min_size=1, max_size=100), fa=st.booleans())
def test_a_valid_menu_is_kept_per_scope_and_language(fake, commands, fa):
    language = "fa" if fa else ""
    listed = [{"command": c, "description": d} for c, d in commands]
    assert call(fake, "setMyCommands", commands=listed, language_code=language)["ok"]
    assert call(fake, "getMyCommands", language_code=language)["result"] == listed
    other = "" if fa else "fa"
    assert fake.commands(language_code=other) == []  # another language's menu is its own
    assert call(fake, "deleteMyCommands", language_code=language)["ok"]
    assert fake.commands(language_code=language) == []


BAD_COMMAND = st.one_of(
    st.text(min_size=33, max_size=40, alphabet="abc"),  # too long
    st.text(min_size=1, max_size=10).filter(
        lambda t: t.strip().lstrip("/") and not rules.COMMAND_LETTERS.fullmatch(t.strip().lstrip("/"))
    ),
    st.sampled_from(["", " ", "/", "Start", "hello-world", "команда"]),
)
BAD_DESCRIPTION = st.one_of(st.sampled_from(["", "   "]), st.text(alphabet="x", min_size=257, max_size=300))


@settings(**FAMILY)
@given(command=BAD_COMMAND, description=st.one_of(DESCRIPTION, BAD_DESCRIPTION))
def test_a_bad_command_is_refused_and_the_menu_kept(fake, command, description):
    good = [{"command": "start", "description": "begin"}]
    call(fake, "setMyCommands", commands=good)
    answer = call(fake, "setMyCommands", commands=[{"command": command, "description": description}])
    assert answer["ok"] is False and answer["error_code"] == 400
    assert answer["description"].startswith("Bad Request: ")
    assert fake.commands() == good


def test_the_stand_in_checks_counts_scopes_and_languages(fake):
    many = [{"command": f"c{i}", "description": "d"} for i in range(101)]
    assert call(fake, "setMyCommands", commands=many)["description"] == rules.TOO_MANY
    assert call(fake, "setMyCommands", commands=many[:100])["ok"]
    refusals = {
        "Bad Request: invalid language code specified": {"language_code": "fas"},
        "Bad Request: can't parse BotCommandScope: Unsupported type specified": {"scope": {"type": "x"}},
        "Bad Request: can't parse BotCommandScope: Empty chat_id specified": {
            "scope": {"type": "chat", "chat_id": ""}
        },
        "Bad Request: can't parse BotCommandScope: Invalid user_id specified": {
            "scope": {"type": "chat_member", "chat_id": -4242, "user_id": 0}
        },
        "Bad Request: can't use specified scope in private chats": {
            "scope": {"type": "chat_administrators", "chat_id": 4242}
        },
        "Bad Request: chat not found": {"scope": {"type": "chat", "chat_id": "@nobody"}},
    }
    for description, params in refusals.items():
        assert call(fake, "getMyCommands", **params)["description"] == description
    chat = {"type": "chat", "chat_id": 4242}
    mine = [{"command": "admin", "description": "panel"}]
    assert call(fake, "setMyCommands", commands=mine, scope=chat)["ok"]
    assert fake.commands(chat) == mine and len(fake.commands()) == 100  # scopes apart
    assert call(fake, "setMyCommands", commands=[], scope=chat)["ok"]  # empty: removed
    assert fake.commands(chat) == []


# --- a real start ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_start_sets_the_menu_per_scope_and_language_and_answers_what_it_does_not_know(fake, run_bot):
    bot = run_bot(ADMIN_IDS=f"{ADMIN_ID}")
    bot.wait_for_log("command menu set")
    everyone_en, everyone_fa = fake.commands(), fake.commands(language_code="fa")
    assert [c["command"] for c in everyone_en] == USER_COMMANDS
    assert [c["command"] for c in everyone_fa] == USER_COMMANDS
    assert everyone_en[0]["description"] == "register with the bot"
    assert everyone_fa[0]["description"] != everyone_en[0]["description"]  # translated
    admin = {"type": "chat", "chat_id": ADMIN_ID}
    assert [c["command"] for c in fake.commands(admin)] == ADMIN_COMMANDS
    assert [c["command"] for c in fake.commands(admin, "fa")] == ADMIN_COMMANDS
    assert fake.commands({"type": "chat", "chat_id": USER}) == []  # users have the default one

    assert press(fake, "hello bot", "/help", chat=USER)["text"].startswith("I did not understand")
    assert "متوجه" in press(fake, "سلام", "/help", chat=USER + 1, language_code="fa")["text"]
    assert "/foo" in press(fake, "/foo", "/help", chat=USER)["text"]
    reply = press(fake, "/start", "Admin panel")
    assert str(ADMIN_ID) in reply["text"] and reply.get("reply_markup")  # the panel, and the id
    assert bot.stop()[0] == 0


@pytest.mark.e2e
def test_flood_control_is_waited_for_and_a_refused_menu_is_one_line_and_the_bot_goes_on(fake, run_bot):
    fake.fail_next(
        "setMyCommands",
        400,
        "Bad Request: chat not found",
        times=2,
        when=lambda params, files: str(OTHER_ADMIN) in str(params.get("scope")),
    )
    fake.flood(3, method="setMyCommands")  # Telegram's flood control: waited for, then set
    bot = run_bot(ADMIN_IDS=f"{ADMIN_ID},{OTHER_ADMIN}")
    bot.wait_for_log("bot started")  # the start does not wait for the menu
    bot.wait_for_log("flood control: setMyCommands asked to wait")
    line = bot.wait_for_log("command menu: 2 of 6 not set")
    assert "chat not found" in line and line.count("\n") <= 1
    assert [c["command"] for c in fake.commands({"type": "chat", "chat_id": ADMIN_ID})] == ADMIN_COMMANDS
    assert "registered" in press(fake, "/start", "registered", chat=USER)["text"]
    assert bot.stop()[0] == 0
