"""Tests for the fake Telegram Bot API server, driven by pyTelegramBotAPI itself."""
import threading
import time

import pytest
import telebot
from telebot import apihelper, types
from telebot.apihelper import ApiTelegramException

try:
    from tests.fake_bot_api import FakeBotAPI
except ImportError:
    from fake_bot_api import FakeBotAPI

CHAT = 4242


@pytest.fixture
def make_api(monkeypatch):
    """Start a FakeBotAPI and point pyTelegramBotAPI at it; monkeypatch restores the URLs."""
    started = []

    def make(**kwargs):
        api = FakeBotAPI(**kwargs).start()
        started.append(api)
        monkeypatch.setattr(apihelper, "API_URL", api.url + "/bot{0}/{1}")
        monkeypatch.setattr(apihelper, "FILE_URL", api.url + "/file/bot{0}/{1}")
        return api, telebot.TeleBot(api.token, threaded=False)

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def fake_and_bot(make_api):
    return make_api()


@pytest.fixture
def fake(fake_and_bot):
    return fake_and_bot[0]


@pytest.fixture
def bot(fake_and_bot):
    return fake_and_bot[1]


def test_get_me(fake, bot):
    me = bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "backup_test_bot")
    assert fake.requests("getMe")[0]["status"] == 200


def test_send_message_with_reply_keyboard(fake, bot):
    markup = types.ReplyKeyboardMarkup(resize_keyboard=True)
    markup.add("Backup now", "Status")
    sent = bot.send_message(CHAT, "Choose", reply_markup=markup, disable_notification=True)
    assert sent.message_id == 1 and sent.text == "Choose" and sent.from_user.username == "backup_test_bot"
    [message] = fake.messages(CHAT)
    assert message["reply_markup"]["keyboard"] == [[{"text": "Backup now"}, {"text": "Status"}]]
    assert message["reply_markup"]["resize_keyboard"] is True
    params = fake.requests("sendMessage")[0]["params"]
    assert params["chat_id"] == CHAT and params["disable_notification"] is True
    assert bot.send_message(CHAT, "again").message_id == 2


def test_document_round_trip(fake, bot):
    content = bytes(range(256)) * 50 + b"\r\n--boundary\r\n\r\n"
    name = "резерв 2024; final.tar.gz"
    sent = bot.send_document(CHAT, content, visible_file_name=name, caption="Backup done")
    assert sent.document.file_name == name and sent.caption == "Backup done"
    stored = fake.messages(CHAT)[-1]
    assert stored["document"]["file_size"] == len(content)
    assert fake.file_bytes(stored["document"]["file_id"]) == content
    file = bot.get_file(sent.document.file_id)
    assert file.file_path.endswith(".gz") and file.file_size == len(content)
    assert bot.download_file(file.file_path) == content
    resent = bot.send_document(CHAT + 1, sent.document.file_id)
    assert resent.document.file_id == sent.document.file_id
    assert fake.requests("sendDocument")[0]["params"]["document"] == {"file_name": name, "file_size": len(content)}


def test_incoming_document_can_be_downloaded(fake, bot):
    update = fake.send_document(7, "dump.sql", b"SELECT 1;", caption="restore")
    file_id = update["message"]["document"]["file_id"]
    assert bot.download_file(bot.get_file(file_id).file_path) == b"SELECT 1;"
    with pytest.raises(ApiTelegramException) as error:
        bot.get_file("nope")
    assert error.value.error_code == 400 and "invalid file_id" in error.value.description


def test_pin_then_get_chat(fake, bot):
    message = bot.send_message(CHAT, "pin me")
    assert bot.pin_chat_message(CHAT, message.message_id, disable_notification=True) is True
    chat = bot.get_chat(CHAT)
    assert chat.type == "private" and chat.pinned_message.text == "pin me"
    assert chat.pinned_message.message_id == message.message_id
    assert fake.pinned_message(CHAT)["message_id"] == message.message_id
    assert fake.requests("pinChatMessage")[0]["params"]["disable_notification"] is True
    bot.unpin_chat_message(CHAT, message.message_id)
    assert fake.pinned_message(CHAT) is None and bot.get_chat(CHAT).pinned_message is None


def test_get_updates_offset_confirms(fake, bot):
    fake.send_text(7, "/start now", username="alice")
    fake.send_text(7, "hello")
    first = bot.get_updates(timeout=5, long_polling_timeout=1)
    assert [u.update_id for u in first] == [1, 2]
    assert first[0].message.text == "/start now" and first[0].message.from_user.username == "alice"
    assert first[0].message.entities[0].type == "bot_command" and first[0].message.entities[0].length == 6
    fake.send_text(7, "third", chat_id=-100)
    rest = bot.get_updates(offset=3, timeout=5, long_polling_timeout=1)
    assert [(u.update_id, u.message.chat.type) for u in rest] == [(3, "supergroup")]
    assert bot.get_updates(offset=4, timeout=5, long_polling_timeout=0.2) == []
    assert bot.get_updates(timeout=5, long_polling_timeout=0.2) == []  # confirmed ones are gone


def test_long_poll_returns_when_update_arrives(fake, bot):
    threading.Timer(0.3, fake.send_text, args=(7, "wake up")).start()
    started = time.monotonic()
    updates = bot.get_updates(timeout=10, long_polling_timeout=5)
    assert time.monotonic() - started < 2
    assert [u.message.text for u in updates] == ["wake up"]


def test_upload_over_limit_fails_with_413(make_api):
    fake, bot = make_api(upload_limit=1000)
    with pytest.raises(ApiTelegramException) as error:
        bot.send_document(CHAT, b"x" * 1001, visible_file_name="big.bin")
    assert error.value.error_code == 413
    assert fake.messages(CHAT) == [] and fake.requests("sendDocument")[0]["status"] == 413


def test_download_over_limit_fails(make_api):
    fake, bot = make_api(download_limit=100)
    update = fake.send_document(7, "big.bin", b"y" * 101)
    with pytest.raises(ApiTelegramException) as error:
        bot.get_file(update["message"]["document"]["file_id"])
    assert error.value.error_code == 400 and "file is too big" in error.value.description


def test_wrong_token_is_unauthorized(fake):
    with pytest.raises(ApiTelegramException) as error:
        telebot.TeleBot("999:WRONG").get_me()
    assert error.value.error_code == 401 and error.value.description == "Unauthorized"


def test_unknown_method_and_fault_injection(fake, bot):
    with pytest.raises(ApiTelegramException) as error:
        apihelper._make_request(fake.token, "launchRocket")
    assert error.value.error_code == 404 and fake.requests("launchRocket")
    fake.fail_next("sendMessage", 502, "Bad Gateway")
    with pytest.raises(ApiTelegramException) as error:
        bot.send_message(CHAT, "first")
    assert error.value.error_code == 502
    assert bot.send_message(CHAT, "second").text == "second"


def test_wait_helpers(fake, bot):
    threading.Timer(0.1, bot.send_message, args=(CHAT, "Backup finished: 3 files")).start()
    assert fake.wait_for_message(CHAT, "finished", timeout=5)["message_id"] == 1
    assert fake.wait_for_request("sendMessage", timeout=5)["params"]["text"].startswith("Backup")
    bot.send_chat_action(CHAT, "typing")
    with pytest.raises(AssertionError, match="sendChatAction"):
        fake.wait_for_message(CHAT, "finished", after=1, timeout=0.2)


def test_a_raw_error_body_and_a_corrupted_download(fake, bot):
    fake.fail_next("getMe", 502, body="<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(apihelper.ApiHTTPException) as error:
        bot.get_me()
    assert "502" in str(error.value)
    assert bot.get_me().username == "backup_test_bot"  # once only
    update = fake.send_document(7, "x.bin", b"\x00" * 10)
    path = bot.get_file(update["message"]["document"]["file_id"]).file_path
    fake.corrupt_next_download()
    assert bot.download_file(path) != b"\x00" * 10
    assert bot.download_file(path) == b"\x00" * 10
