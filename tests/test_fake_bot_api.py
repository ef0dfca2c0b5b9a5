"""Tests for the fake Telegram Bot API server, driven by pyTelegramBotAPI itself."""

import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
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


class WebhookReceiver:
    """A tiny webhook endpoint. It records each POST, then answers with the next scripted
    (status, gate): once `gate` (an Event, or None) is set; 200 when the script runs out."""

    def __init__(self, answers):
        self.answers, self.gates = list(answers), [gate for _, gate in answers if gate]
        self._received, self._cond = [], threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?from=test"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                status, gate = receiver.arrived(self)
                if gate:
                    gate.wait(10)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the stand-in stopped waiting for us

            def log_message(self, *args):
                pass

        return Handler

    def arrived(self, request):
        body = json.loads(request.rfile.read(int(request.headers["Content-Length"])))
        with self._cond:
            self._received.append(
                {
                    "update": body,
                    "path": request.path,
                    "secret": request.headers.get("X-Telegram-Bot-Api-Secret-Token"),
                    "content_type": request.headers.get("Content-Type"),
                }
            )
            self._cond.notify_all()
            return self.answers.pop(0) if self.answers else (200, None)

    def received(self):
        with self._cond:
            return list(self._received)

    def wait_for_count(self, count, timeout=10):
        with self._cond:
            assert self._cond.wait_for(lambda: len(self._received) >= count, timeout), self._received

    def close(self):
        for gate in self.gates:
            gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*answers):
        made.append(WebhookReceiver(answers))
        return made[-1]

    yield make
    for hook in made:
        hook.close()


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def a_document(content, name="x.json", caption=None):
    return types.InputMediaDocument(types.InputFile(io.BytesIO(content), file_name=name), caption=caption)


def api_error(call):
    with pytest.raises(ApiTelegramException) as error:
        call()
    return error.value.error_code, error.value.description


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
    assert fake.requests("sendDocument")[0]["params"]["document"] == {
        "file_name": name,
        "file_size": len(content),
    }


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


def test_a_newer_get_updates_ends_the_waiting_one(fake, bot):
    with ThreadPoolExecutor(2) as pool:  # two threads: two clients with their own connections
        older = pool.submit(bot.get_updates, timeout=10, long_polling_timeout=5)
        fake.wait_for_long_poll()
        newer = pool.submit(bot.get_updates, timeout=10, long_polling_timeout=5)
        error = older.exception(timeout=10)
        assert isinstance(error, ApiTelegramException) and error.error_code == 409
        assert error.description == (
            "Conflict: terminated by other getUpdates request; "
            "make sure that only one bot instance is running"
        )
        fake.wait_for_long_poll()  # the newer one keeps waiting
        fake.send_text(7, "for the newest")
        assert [u.message.text for u in newer.result(timeout=10)] == ["for the newest"]
    assert [c["status"] for c in fake.requests("getUpdates")] == [409, 200]


def test_a_short_get_updates_also_ends_the_waiting_one(fake, bot):
    with ThreadPoolExecutor(1) as pool:
        older = pool.submit(bot.get_updates, timeout=10, long_polling_timeout=5)
        fake.wait_for_long_poll()
        assert apihelper._make_request(fake.token, "getUpdates", params={"long_polling_timeout": 0}) == []
        assert older.exception(timeout=10).error_code == 409


def test_edit_message_media_replaces_the_document(fake, bot):
    sent = bot.send_document(CHAT, b"old", visible_file_name="old.json", caption="v1")
    bot.pin_chat_message(CHAT, sent.message_id)
    edited = bot.edit_message_media(
        a_document(b'{"v": 2}', "x.json", caption="v2"), chat_id=CHAT, message_id=sent.message_id
    )
    assert (edited.message_id, edited.document.file_name, edited.caption) == (sent.message_id, "x.json", "v2")
    assert edited.edit_date and edited.document.file_id != sent.document.file_id
    assert bot.download_file(bot.get_file(edited.document.file_id).file_path) == b'{"v": 2}'
    pinned = bot.get_chat(CHAT).pinned_message
    assert (pinned.document.file_name, pinned.caption) == ("x.json", "v2")
    assert fake.requests("editMessageMedia")[0]["params"]["media"]["media"].startswith("attach://")

    # an existing file_id with no caption: Telegram drops the caption
    back = types.InputMediaDocument(sent.document.file_id)
    edited = bot.edit_message_media(back, chat_id=CHAT, message_id=sent.message_id)
    assert (edited.document.file_id, edited.caption) == (sent.document.file_id, None)
    assert "caption" not in fake.messages(CHAT)[0] and "caption" not in fake.pinned_message(CHAT)
    code, description = api_error(
        lambda: bot.edit_message_media(back, chat_id=CHAT, message_id=sent.message_id)
    )
    assert code == 400 and description.startswith("Bad Request: message is not modified: ")


def test_edit_message_media_on_a_text_message_and_its_errors(make_api):
    fake, bot = make_api(upload_limit=1000)
    text = bot.send_message(CHAT, "report follows")
    edited = bot.edit_message_media(a_document(b"report", "r.txt"), chat_id=CHAT, message_id=text.message_id)
    assert (edited.text, edited.document.file_name, edited.caption) == (None, "r.txt", None)
    assert "text" not in fake.messages(CHAT)[0]
    incoming = fake.send_document(7, "theirs.bin", b"x")["message"]
    for call, expected in [
        (
            lambda: bot.edit_message_media(a_document(b"x"), chat_id=CHAT, message_id=99),
            (400, "Bad Request: message to edit not found"),
        ),
        (
            lambda: bot.edit_message_media(a_document(b"x" * 1001), chat_id=CHAT, message_id=text.message_id),
            (413, "Request Entity Too Large"),
        ),
        (
            lambda: bot.edit_message_media(
                types.InputMediaDocument("nope"), chat_id=CHAT, message_id=text.message_id
            ),
            (400, "Bad Request: wrong file identifier/HTTP URL specified"),
        ),
        (
            lambda: bot.edit_message_media(a_document(b"x"), chat_id=7, message_id=incoming["message_id"]),
            (400, "Bad Request: message can't be edited"),
        ),
    ]:
        assert api_error(call) == expected
    assert fake.messages(CHAT)[0]["document"]["file_name"] == "r.txt"  # the failed edits changed nothing


def test_a_deleted_message_is_gone(fake, bot):
    keep, status = bot.send_message(CHAT, "keep"), bot.send_message(CHAT, "status")
    bot.pin_chat_message(CHAT, status.message_id)
    assert bot.delete_message(CHAT, status.message_id) is True
    assert bot.get_chat(CHAT).pinned_message is None and fake.pinned_message(CHAT) is None
    assert [m.get("deleted", False) for m in fake.messages(CHAT)] == [False, True]
    gone = status.message_id
    assert api_error(lambda: bot.delete_message(CHAT, gone)) == (
        400,
        "Bad Request: message to delete not found",
    )
    assert api_error(lambda: bot.edit_message_text("new", CHAT, gone)) == (
        400,
        "Bad Request: message to edit not found",
    )
    assert api_error(lambda: bot.edit_message_media(a_document(b"x"), chat_id=CHAT, message_id=gone)) == (
        400,
        "Bad Request: message to edit not found",
    )
    assert api_error(lambda: bot.pin_chat_message(CHAT, gone)) == (
        400,
        "Bad Request: message to pin not found",
    )
    bot.pin_chat_message(CHAT, keep.message_id)
    bot.delete_message(CHAT, bot.send_message(CHAT, "other").message_id)
    assert bot.get_chat(CHAT).pinned_message.text == "keep"  # deleting another message leaves the pin


def test_an_undeletable_message(fake, bot):
    fake.make_undeletable(CHAT, 1)
    old = bot.send_message(CHAT, "two days old")
    assert api_error(lambda: bot.delete_message(CHAT, old.message_id)) == (
        400,
        "Bad Request: message can't be deleted for everyone",
    )
    assert "deleted" not in fake.messages(CHAT)[0]
    assert (
        bot.edit_message_text("(outdated)", CHAT, old.message_id).text == "(outdated)"
    )  # the usual fallback
    assert bot.delete_message(CHAT, bot.send_message(CHAT, "fresh").message_id) is True


def test_an_outage_drops_every_connection(fake, bot):
    update = fake.send_document(7, "a.bin", b"abc")
    path = bot.get_file(update["message"]["document"]["file_id"]).file_path
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(bot.get_updates, offset=2, timeout=10, long_polling_timeout=5)
        fake.wait_for_long_poll()
        fake.set_outage(True)
        assert isinstance(poll.exception(timeout=10), requests.exceptions.ConnectionError)
    with pytest.raises(requests.exceptions.ConnectionError):
        bot.get_me()
    with pytest.raises(requests.exceptions.ConnectionError):
        bot.download_file(path)
    assert [(c["method"], c["status"]) for c in fake.requests()[-3:]] == [
        ("getUpdates", None),
        ("getMe", None),
        ("downloadFile", None),
    ]
    fake.set_outage(False)
    assert bot.get_me().username == "backup_test_bot"
    assert bot.download_file(path) == b"abc"


def test_an_outage_fails_webhook_deliveries_until_it_ends(make_api, receiver):
    fake, bot = make_api(webhook_retry_seconds=30)  # only the outage's end can bring the retry forward
    hook = receiver()
    bot.set_webhook(hook.url)
    fake.set_outage(True)
    fake.send_text(7, "while down")
    failed = fake.wait_for_request("webhookDelivery")
    assert (failed["status"], failed["error"], hook.received()) == (None, "Connection timed out", [])
    fake.set_outage(False)
    assert fake.wait_for_request("webhookDelivery", after_count=1, timeout=5)["status"] == 200
    assert hook.received()[0]["update"]["message"]["text"] == "while down"


def test_a_webhook_gets_updates_in_order_with_the_secret_and_retries(make_api, receiver):
    fake, bot = make_api(webhook_retry_seconds=0.05)
    release = threading.Event()
    hook = receiver((500, None), (200, release))
    fake.send_text(7, "pending before the webhook")
    assert bot.set_webhook(hook.url, secret_token="s3cret_-X", max_connections=1, allowed_updates=["message"])
    fake.send_text(7, "second")
    first = fake.wait_for_request("webhookDelivery")
    assert (first["status"], first["params"]["update_id"]) == (500, 1)
    info = bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.has_custom_certificate) == (hook.url, 2, False)
    assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
    assert abs(info.last_error_date - time.time()) < 60
    assert (info.allowed_updates, info.max_connections, info.ip_address) == (["message"], 1, "127.0.0.1")
    release.set()
    fake.wait_for_request("webhookDelivery", after_count=2)
    assert [c["status"] for c in fake.requests("webhookDelivery")] == [500, 200, 200]
    received = hook.received()
    assert [r["update"]["update_id"] for r in received] == [1, 1, 2]
    assert received[0]["update"]["message"]["text"] == "pending before the webhook"
    assert {(r["secret"], r["content_type"], r["path"]) for r in received} == {
        ("s3cret_-X", "application/json", "/hook?from=test")
    }
    info = bot.get_webhook_info()
    assert info.pending_update_count == 0 and info.last_error_message.endswith("500 Internal Server Error")


def test_a_webhook_blocks_get_updates_until_deleted(fake, bot):
    assert bot.set_webhook(closed_port_url()) is True
    fake.send_text(7, "one")
    failed = fake.wait_for_request("webhookDelivery")
    assert (failed["status"], failed["error"]) == (None, "Connection refused")
    assert bot.get_webhook_info().last_error_message == "Connection refused"
    assert api_error(lambda: bot.get_updates(timeout=5, long_polling_timeout=1)) == (
        409,
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
        "webhook first",
    )
    fake.send_text(7, "two")
    assert bot.delete_webhook() is True
    info = bot.get_webhook_info()
    assert (info.url, info.pending_update_count, info.last_error_date) == ("", 2, None)
    assert [u.message.text for u in bot.get_updates(timeout=5, long_polling_timeout=1)] == ["one", "two"]


def test_set_webhook_ends_a_waiting_long_poll(fake, bot, receiver):
    hook = receiver()
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(bot.get_updates, timeout=10, long_polling_timeout=5)
        fake.wait_for_long_poll()
        bot.set_webhook(hook.url)
        error = poll.exception(timeout=10)
    assert (error.error_code, error.description) == (409, "Conflict: terminated by setWebhook request")
    fake.send_text(7, "via the webhook")
    assert fake.wait_for_request("webhookDelivery")["status"] == 200
    assert hook.received()[0]["update"]["message"]["text"] == "via the webhook"
    assert hook.received()[0]["secret"] is None  # no secret set, no header


def test_drop_pending_updates(fake, bot, receiver):
    fake.send_text(7, "stale")
    hook = receiver()
    bot.set_webhook(hook.url, drop_pending_updates=True)
    fake.send_text(7, "fresh")
    assert fake.wait_for_request("webhookDelivery")["status"] == 200
    assert [r["update"]["message"]["text"] for r in hook.received()] == ["fresh"]
    bot.set_webhook(closed_port_url())
    fake.send_text(7, "undeliverable")
    fake.wait_for_request("webhookDelivery", after_count=1)
    assert bot.get_webhook_info().pending_update_count == 1
    assert bot.delete_webhook(drop_pending_updates=True) is True
    assert bot.get_webhook_info().pending_update_count == 0
    assert bot.get_updates(timeout=5, long_polling_timeout=0.1) == []


def test_a_silent_webhook_times_out_and_stop_does_not_wait_for_it(make_api, receiver):
    fake, bot = make_api(webhook_timeout=0.3, webhook_retry_seconds=0.05)
    never = threading.Event()
    hook = receiver((200, never), (200, None), (200, never))
    bot.set_webhook(hook.url)
    fake.send_text(7, "slow")
    timed_out = fake.wait_for_request("webhookDelivery")
    assert (timed_out["status"], timed_out["error"]) == (None, "Read timeout expired")
    assert fake.wait_for_request("webhookDelivery", after_count=1)["status"] == 200
    assert [r["update"]["update_id"] for r in hook.received()] == [1, 1]
    fake.webhook_timeout = 30.0
    fake.send_text(7, "stuck")
    hook.wait_for_count(3)  # the stand-in now waits on a receiver that never answers
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 3
    assert "FakeBotAPI-webhook " + fake.url not in [t.name for t in threading.enumerate()]


def test_a_raw_error_body_for_get_updates_and_edit_media(fake, bot):
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    sent = bot.send_document(CHAT, b"v1", visible_file_name="a.json")
    fake.fail_next("getUpdates", 502, body=page)
    fake.fail_next("editMessageMedia", 502, body=page)
    with pytest.raises(apihelper.ApiHTTPException) as error:
        bot.get_updates(timeout=5, long_polling_timeout=0.1)
    assert error.value.result.status_code == 502 and error.value.result.text == page
    with pytest.raises(apihelper.ApiHTTPException) as error:
        bot.edit_message_media(a_document(b"v2", "b.json"), chat_id=CHAT, message_id=sent.message_id)
    assert error.value.result.headers["Content-Type"] == "text/html"
    assert fake.messages(CHAT)[0]["document"]["file_name"] == "a.json"  # untouched
    assert (
        bot.edit_message_media(
            a_document(b"v2", "b.json"), chat_id=CHAT, message_id=sent.message_id
        ).document.file_name
        == "b.json"
    )
    assert bot.get_updates(timeout=5, long_polling_timeout=0.1) == []
