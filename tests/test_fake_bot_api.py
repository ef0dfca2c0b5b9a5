"""Tests for the fake Telegram Bot API server, driven by pyTelegramBotAPI itself."""

import io
import itertools
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fake_bot_api import FakeBotAPI, rules
from fake_bot_api.webhooks import next_retry
from helpers import bot_for
from telebot import apihelper, types
from telebot.apihelper import ApiTelegramException

import bot_api
from bot_api import BotApiError

CHAT = 4242  # a private chat
GROUP = -4242  # a basic group
SUPERGROUP = -1001234567890
CHANNEL = -1009876543210
DAY = 86400
OTHER_POLL = rules.OTHER_POLL


@pytest.fixture
def make_api():
    """Start a FakeBotAPI and a bot talking to it. These tests see the stand-in's answers as
    they are: the bot waits for no flood control (a deadline of 0 s: bot_api.deadline)."""
    started = []

    def make(**kwargs):
        api = FakeBotAPI(**kwargs).start()
        started.append(api)
        return api, bot_for(api, threaded=False)

    with bot_api.deadline(0):
        yield make
    for api in started:
        api.stop()


@pytest.fixture
def fake_and_bot(make_api):
    return make_api()


class WebhookReceiver:
    """A tiny webhook endpoint. It records each POST, then answers with the next scripted
    (status, gate[, headers]): once `gate` (an Event, or None) is set; 200 when the script runs
    out. `decide(update)`: the (status, gate[, headers]) for an update instead of the script."""

    def __init__(self, answers, decide=None):
        self.answers, self.gates = list(answers), [answer[1] for answer in answers if answer[1]]
        self.decide = decide
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
                status, gate, *headers = receiver.arrived(self)
                if gate:
                    gate.wait(10)
                try:
                    self.send_response(status)
                    for name, value in (headers[0] if headers else {}).items():
                        self.send_header(name, value)
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
                    "at": time.monotonic(),
                }
            )
            self._cond.notify_all()
            if self.decide:
                return self.decide(body)
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

    def make(*answers, decide=None):
        made.append(WebhookReceiver(answers, decide))
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


def api_parameters(call):
    with pytest.raises(ApiTelegramException) as error:
        call()
    return error.value.result_json.get("parameters")


def download(bot, path) -> bytes:
    """A file as the bot downloads it (bot_api's own download: the library's download_file
    would go to Telegram's address, whatever server the bot talks to)."""
    out = io.BytesIO()
    bot_api.api_of(bot).download(path, out)
    return out.getvalue()


def get_updates(fake, offset=None, timeout=0, **params):
    """A raw getUpdates call: the updates as Telegram's JSON."""
    if offset is not None:
        params["offset"] = offset
    return call(fake, "getUpdates", timeout=timeout, **params)


def call(fake, method, **params):
    """A raw call of any method, as pyTelegramBotAPI makes it (the parameters in the query):
    its result as JSON, or the library's ApiTelegramException."""
    wait = float(params.get("timeout") or 0) if method == "getUpdates" else 0
    response = requests.post(f"{fake.url}/bot{fake.token}/{method}", params=params, timeout=wait + 10)
    answer = response.json()
    if not answer.get("ok"):
        raise ApiTelegramException(method, response, answer)
    return answer["result"]


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
    assert download(bot, file.file_path) == content
    resent = bot.send_document(CHAT + 1, sent.document.file_id)
    assert resent.document.file_id == sent.document.file_id
    assert fake.requests("sendDocument")[0]["params"]["document"] == {
        "file_name": name,
        "file_size": len(content),
    }


def test_incoming_document_can_be_downloaded(fake, bot):
    update = fake.send_document(7, "dump.sql", b"SELECT 1;", caption="restore")
    file_id = update["message"]["document"]["file_id"]
    assert download(bot, bot.get_file(file_id).file_path) == b"SELECT 1;"
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
    fake.send_text(7, "fourth", chat_id=SUPERGROUP)
    rest = bot.get_updates(offset=3, timeout=5, long_polling_timeout=1)
    assert [(u.update_id, u.message.chat.type) for u in rest] == [(3, "group"), (4, "supergroup")]
    assert bot.get_updates(offset=5, timeout=5, long_polling_timeout=0.2) == []
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
        bot_api.build("999:WRONG", fake.url).get_me()
    assert error.value.error_code == 401 and error.value.description == "Unauthorized"


def test_unknown_method_and_fault_injection(fake, bot):
    with pytest.raises(ApiTelegramException) as error:
        call(fake, "launchRocket")
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
    assert download(bot, path) != b"\x00" * 10
    assert download(bot, path) == b"\x00" * 10


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


def test_a_short_or_a_fruitful_get_updates_leaves_the_waiting_one(fake, bot):
    # Client::do_get_updates: only a long poll that finds nothing ends the waiting one
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(get_updates, fake, offset=10, timeout=5)  # confirms 1..9, waits for 10
        ticket = fake.wait_for_long_poll()
        assert get_updates(fake, offset=3, timeout=0) == []  # timeout 0: answered at once
        fake.send_text(7, "one")  # update 1: below the waiting call's offset
        assert [u["update_id"] for u in get_updates(fake, offset=1, timeout=5)] == [1]  # found one
        assert fake.wait_for_long_poll() == ticket and not waiting.done()
        fake.advance_time(5)  # its timeout passes
        assert waiting.result(timeout=10) == []
    assert [c["status"] for c in fake.requests("getUpdates")] == [200, 200, 200]


def test_the_same_offset_again_within_3_seconds_waits_and_gets_one_update(fake):
    # Client::process_get_updates_query
    for n in range(3):
        fake.send_text(7, f"m{n}")
    assert len(get_updates(fake, offset=1)) == 3
    assert len(get_updates(fake, offset=1)) == 1  # within 0.5 s: limit 1
    fake.advance_time(3)
    assert len(get_updates(fake, offset=1)) == 3  # 3 s later: as asked
    fake.advance_time(0.6)
    with ThreadPoolExecutor(1) as pool:
        confirming = pool.submit(get_updates, fake, offset=4, timeout=0)
        assert confirming.result(timeout=10) == []  # another offset: at once
        again = pool.submit(get_updates, fake, offset=4, timeout=0)  # within 3 s: a 3 s long poll
        fake.wait_for_long_poll()
        fake.send_text(7, "late")
        assert [u["message"]["text"] for u in again.result(timeout=10)] == ["late"]


def test_a_409_comes_at_most_every_3_seconds(fake):
    # Client::fail_query_conflict: one due sooner answers 3 s later
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(get_updates, fake, offset=1, timeout=30)
        fake.wait_for_long_poll()
        second = pool.submit(get_updates, fake, offset=2, timeout=30)
        assert api_error(lambda: first.result(timeout=10)) == (409, OTHER_POLL)
        ticket = fake.wait_for_long_poll()
        third = pool.submit(get_updates, fake, offset=3, timeout=30)
        fake.wait_for_long_poll(after=ticket)
        time.sleep(0.3)
        assert not second.done()  # its 409 is due within 3 s of the first one: it waits
        fake.advance_time(3)
        assert api_error(lambda: second.result(timeout=10)) == (409, OTHER_POLL)
        fake.advance_time(30)
        assert third.result(timeout=10) == []


def test_edit_message_media_replaces_the_document(fake, bot):
    sent = bot.send_document(CHAT, b"old", visible_file_name="old.json", caption="v1")
    bot.pin_chat_message(CHAT, sent.message_id)
    edited = bot.edit_message_media(
        a_document(b'{"v": 2}', "x.json", caption="v2"), chat_id=CHAT, message_id=sent.message_id
    )
    assert (edited.message_id, edited.document.file_name, edited.caption) == (sent.message_id, "x.json", "v2")
    assert edited.edit_date and edited.document.file_id != sent.document.file_id
    assert download(bot, bot.get_file(edited.document.file_id).file_path) == b'{"v": 2}'
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
    with pytest.raises(BotApiError, match="cannot reach Telegram"):
        download(bot, path)
    assert [(c["method"], c["status"]) for c in fake.requests()[-3:]] == [
        ("getUpdates", None),
        ("getMe", None),
        ("downloadFile", None),
    ]
    fake.set_outage(False)
    assert bot.get_me().username == "backup_test_bot"
    assert download(bot, path) == b"abc"


def test_an_outage_fails_webhook_deliveries_until_it_ends(make_api, receiver):
    fake, bot = make_api(webhook_retry_seconds=30)
    hook = receiver()
    bot.set_webhook(hook.url)
    fake.set_outage(True)
    fake.send_text(7, "while down")
    failed = fake.wait_for_request("webhookDelivery", after_count=1)  # the first retry comes at once
    assert (failed["status"], failed["error"], hook.received()) == (None, "Connection timed out", [])
    fake.set_outage(False)  # the next try is 2 s (x 30) away: the outage's end does not hurry it
    time.sleep(0.3)
    assert len(fake.requests("webhookDelivery")) == 2
    fake.advance_time(60)
    assert fake.wait_for_request("webhookDelivery", after_count=2, timeout=5)["status"] == 200
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
    fake.advance_time(1)  # setWebhook at most once a second
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


# ---- 1. pins (MessagesManager::update_message_is_pinned, DialogManager::can_pin_messages) ----


def test_get_chat_shows_the_newest_pinned_message_whatever_the_order_of_pinning(fake, bot):
    first, second, third = (bot.send_message(CHAT, f"m{n}").message_id for n in range(3))
    bot.pin_chat_message(CHAT, third)
    bot.pin_chat_message(CHAT, first)  # pinned later, but older: not on top
    assert bot.get_chat(CHAT).pinned_message.message_id == third
    bot.pin_chat_message(CHAT, second)
    assert bot.get_chat(CHAT).pinned_message.message_id == third
    assert [m["message_id"] for m in fake.pinned_messages(CHAT)] == [first, second, third]
    assert bot.unpin_chat_message(CHAT) is True  # without message_id: the one getChat shows
    assert bot.get_chat(CHAT).pinned_message.message_id == second
    assert fake.pinned_message(CHAT)["message_id"] == second
    assert call(fake, "unpinAllChatMessages", chat_id=CHAT) is True
    assert bot.get_chat(CHAT).pinned_message is None
    assert api_error(lambda: bot.unpin_chat_message(CHAT)) == (400, "Bad Request: message to unpin not found")


def test_pinning_needs_the_right_to_pin(fake, bot):
    refused = (400, "Bad Request: not enough rights to manage pinned messages in the chat")
    fake.make_channel(CHANNEL)
    for chat, rights in [
        (GROUP, {"is_admin": False}),  # a basic group: an administrator only
        (SUPERGROUP, {"can_pin_messages": False}),
        (CHANNEL, {"can_edit_messages": False}),  # a channel: the right to edit
    ]:
        message = bot.send_message(chat, "pin me").message_id
        fake.set_bot_rights(chat, **rights)
        assert api_error(lambda chat=chat, message=message: bot.pin_chat_message(chat, message)) == refused
        assert api_error(lambda chat=chat, message=message: bot.unpin_chat_message(chat, message)) == refused
        fake.set_bot_rights(chat, **dict.fromkeys(rights, True))
        assert bot.pin_chat_message(chat, message) is True
    with pytest.raises(TypeError):
        fake.set_bot_rights(GROUP, can_fly=True)


def test_every_pin_makes_a_service_message_that_reaches_the_bot(fake, bot):
    mine = bot.send_message(GROUP, "the index").message_id
    bot.pin_chat_message(GROUP, mine, disable_notification=True)
    theirs = fake.pin_by_someone(GROUP, "Welcome!", user_id=555)
    [own_pin, their_pin] = [u["message"] for u in get_updates(fake)]
    assert own_pin["from"]["id"] == fake.bot_user["id"] and own_pin["pinned_message"]["message_id"] == mine
    assert their_pin["from"]["id"] == 555 and their_pin["pinned_message"]["text"] == "Welcome!"
    assert "text" not in their_pin and their_pin["chat"]["type"] == "group"
    assert [m["message_id"] for m in fake.history(GROUP)] == [1, 2, 3, 4]  # two messages, two pins
    assert bot.get_chat(GROUP).pinned_message.message_id == theirs["message_id"]
    assert api_error(lambda: bot.pin_chat_message(GROUP, own_pin["message_id"])) == (
        400,
        "Bad Request: service messages can't be pinned",
    )
    fake.pin(GROUP, mine)  # already pinned: nothing new
    assert get_updates(fake, offset=3) == []


# ---- 2. edits (MessagesManager::can_edit_message, edit_message_text, edit_message_caption) ----


def test_the_bot_edits_its_own_messages_with_no_time_limit_and_nobody_elses(fake, bot):
    mine = bot.send_message(SUPERGROUP, "status").message_id
    fake.advance_time(365 * DAY)
    assert bot.edit_message_text("status, a year on", SUPERGROUP, mine).text == "status, a year on"
    theirs = fake.send_text(7, "mine, not yours", chat_id=SUPERGROUP)["message"]["message_id"]
    cannot = (400, "Bad Request: message can't be edited")
    assert api_error(lambda: bot.edit_message_text("x", SUPERGROUP, theirs)) == cannot
    keyboard = types.ReplyKeyboardMarkup().add("Backup now")
    menu = bot.send_message(CHAT, "choose", reply_markup=keyboard).message_id
    assert api_error(lambda: bot.edit_message_text("x", CHAT, menu)) == cannot  # a reply keyboard
    inline = types.InlineKeyboardMarkup().add(types.InlineKeyboardButton("ok", callback_data="ok"))
    buttons = bot.send_message(CHAT, "buttons", reply_markup=inline).message_id
    assert bot.edit_message_text("pressed", CHAT, buttons).text == "pressed"
    document = bot.send_document(CHAT, b"x", visible_file_name="x.txt").message_id
    assert api_error(lambda: bot.edit_message_text("x", CHAT, document)) == (
        400,
        "Bad Request: there is no text in the message to edit",
    )
    assert api_error(lambda: bot.edit_message_text("pressed", CHAT, buttons)) == (400, rules.NOT_MODIFIED)


def test_a_caption_holds_1024_utf16_code_units(fake, bot):
    sent = bot.send_document(CHAT, b"x", visible_file_name="x.txt", caption="a" * 1024)
    emoji = "💾" * 512  # 512 characters, 1024 UTF-16 code units
    assert bot.edit_message_caption(emoji, CHAT, sent.message_id).caption == emoji
    assert api_error(lambda: bot.edit_message_caption(emoji + "a", CHAT, sent.message_id)) == (
        400,
        "Bad Request: MEDIA_CAPTION_TOO_LONG",  # the server's own error, as it is
    )
    assert api_error(
        lambda: bot.send_document(CHAT, b"x", visible_file_name="y.txt", caption=emoji + "a")
    ) == (400, "Bad Request: message caption is too long")


def test_in_a_channel_posts_are_the_channels_and_edits_need_rights(fake, bot):
    fake.make_channel(CHANNEL, title="Backups")
    post = bot.send_message(CHANNEL, "a post")
    assert post.from_user is None and post.sender_chat.id == CHANNEL and post.chat.type == "channel"
    assert get_updates(fake) == []  # the bot's own messages are no updates...
    bot.pin_chat_message(CHANNEL, post.message_id)
    [update] = get_updates(fake, offset=1)  # ...but its pins are, in a channel as channel posts
    assert "from" not in update["channel_post"] and update["channel_post"]["sender_chat"]["id"] == CHANNEL
    someone = fake.send_text(7, "an admin's post", chat_id=CHANNEL)["channel_post"]
    assert "from" not in someone and someone["sender_chat"]["title"] == "Backups"
    fake.set_bot_rights(CHANNEL, can_edit_messages=False)
    assert api_error(lambda: bot.edit_message_text("x", CHANNEL, someone["message_id"]))[0] == 400
    assert bot.edit_message_text("edited", CHANNEL, post.message_id).text == "edited"  # its own
    fake.set_bot_rights(CHANNEL, can_edit_messages=True)
    assert bot.edit_message_text("edited", CHANNEL, someone["message_id"]).text == "edited"
    fake.set_bot_rights(CHANNEL, can_post_messages=False)
    assert api_error(lambda: bot.send_message(CHANNEL, "x")) == (
        400,
        "Bad Request: need administrator rights in the channel chat",
    )


# ---- 3. deletion (MessagesManager::delete_messages, can_revoke_message, can_delete_channel_message) ----


def test_nothing_older_than_48_hours_is_deleted(fake, bot):
    for chat, refusal in [
        (CHAT, "Bad Request: message can't be deleted for everyone"),
        (GROUP, "Bad Request: message can't be deleted for everyone"),
        (SUPERGROUP, "Bad Request: message can't be deleted"),
    ]:
        old, older = bot.send_message(chat, "old").message_id, bot.send_message(chat, "older").message_id
        bot.delete_message(chat, bot.send_message(chat, "fresh").message_id)
        sent = fake.messages(chat)[0]["date"]
        fake.advance_time(2 * DAY - 1)
        assert bot.delete_message(chat, old) is True  # 47:59:59 old
        fake.advance_time(1)
        if chat == SUPERGROUP:  # can_delete_channel_message: not at 48 hours either
            assert api_error(lambda chat=chat, older=older: bot.delete_message(chat, older)) == (400, refusal)
        else:  # can_revoke_message: up to 48 hours
            assert bot.delete_message(chat, older) is True
        assert fake.messages(chat)[0]["date"] == sent - 2 * DAY  # the date the bot sees has aged
    fake.advance_time(1)
    last = bot.send_message(CHAT, "last").message_id
    fake.advance_time(2 * DAY + 1)
    assert api_error(lambda: bot.delete_message(CHAT, last))[1].endswith("deleted for everyone")
    assert bot.edit_message_text("(outdated)", CHAT, last).text == "(outdated)"  # the usual fallback


def test_whose_messages_the_bot_may_delete(fake, bot):
    mine = bot.send_message(GROUP, "mine").message_id
    theirs = fake.send_text(7, "theirs", chat_id=GROUP)["message"]["message_id"]
    fake.set_bot_rights(GROUP, is_admin=False)  # a basic group: anyone's only as an administrator
    assert api_error(lambda: bot.delete_message(GROUP, theirs)) == (
        400,
        "Bad Request: message can't be deleted for everyone",
    )
    assert bot.delete_message(GROUP, mine) is True
    fake.set_bot_rights(GROUP, is_admin=True)
    assert bot.delete_message(GROUP, theirs) is True
    theirs = fake.send_text(7, "theirs", chat_id=SUPERGROUP)["message"]["message_id"]
    fake.set_bot_rights(SUPERGROUP, can_delete_messages=False)  # a supergroup: the right to delete
    assert api_error(lambda: bot.delete_message(SUPERGROUP, theirs)) == (
        400,
        "Bad Request: message can't be deleted",
    )
    assert bot.delete_message(SUPERGROUP, bot.send_message(SUPERGROUP, "mine").message_id) is True
    incoming = fake.send_text(CHAT, "a user's message")["message"]["message_id"]
    assert bot.delete_message(CHAT, incoming) is True  # a private chat: anything within 48 hours


def test_the_clock_ages_updates_and_drops_them_after_a_day(fake, bot):
    fake.send_text(7, "soon stale")
    [update] = fake.pending_updates()
    fake.advance_time(DAY)
    assert fake.pending_updates()[0]["message"]["date"] == update["message"]["date"] - DAY
    fake.advance_time(1)  # Client::add_message_update: an update lives until its date + 1 day
    assert fake.pending_updates() == [] and get_updates(fake) == []
    assert bot.get_webhook_info().pending_update_count == 0


# ---- 4. getUpdates (Client::process_get_updates_query, do_get_updates; TQueue) ----


def test_offsets_negative_and_in_the_future(fake):
    for n in range(5):
        fake.send_text(7, f"m{n}")
    assert [u["update_id"] for u in get_updates(fake, offset=-2)] == [4, 5]  # keeps the last two
    fake.advance_time(3)
    assert [u["update_id"] for u in get_updates(fake, offset=100)] == [4, 5]  # "in the future"
    assert [u["update_id"] for u in get_updates(fake, offset=5)] == [5]


def test_allowed_updates_is_kept_and_filters_updates_as_they_are_made(fake):
    fake.send_text(7, "before")
    assert len(get_updates(fake, allowed_updates=json.dumps(["callback_query"]))) == 1  # made before
    fake.send_text(7, "never made")
    fake.advance_time(3)
    assert get_updates(fake, offset=2) == []  # no allowed_updates given: the list is kept
    fake.advance_time(3)
    assert get_updates(fake, offset=2, allowed_updates="[]") == []  # back to the default...
    fake.send_text(7, "after")
    assert [u["message"]["text"] for u in get_updates(fake, offset=2)] == ["after"]  # ...from now on


# ---- 5. webhooks (Client::process_set_webhook_query, do_set_webhook; WebhookActor.cpp) ----


def test_set_webhook_at_most_once_a_second(fake, bot, receiver):
    hook = receiver()
    assert bot.set_webhook(hook.url) is True
    for again in (lambda: bot.set_webhook(hook.url), lambda: bot.set_webhook(hook.url + "x")):
        assert api_error(again) == (429, "Too Many Requests: retry after 1")
        assert api_parameters(again) == {"retry_after": 1}
    assert bot.delete_webhook() is True  # deleting is not limited
    fake.advance_time(1)
    assert bot.set_webhook(hook.url) is True
    assert [c["status"] for c in fake.requests("setWebhook")] == [200, 429, 429, 429, 429, 200]


def test_the_secret_token_and_a_refused_set_webhook(fake, bot, receiver):
    hook = receiver()
    bot.set_webhook(hook.url, secret_token="A-z_0" * 51 + "9")  # 256 characters
    fake.advance_time(1)
    assert api_error(lambda: bot.set_webhook(hook.url, secret_token="x" * 257)) == (
        400,
        "Bad Request: secret token is too long",
    )
    assert bot.get_webhook_info().url == ""  # the old webhook went before the check
    fake.advance_time(1)
    assert api_error(lambda: bot.set_webhook(hook.url, secret_token="no spaces")) == (
        400,
        "Bad Request: secret token contains unallowed characters",
    )
    fake.advance_time(1)
    assert api_error(lambda: bot.set_webhook("http://")) == (
        400,
        "Bad Request: invalid webhook URL specified",
    )


def test_webhook_retries_come_at_once_then_after_2_4_8_seconds(make_api, receiver):
    fake, bot = make_api(webhook_retry_seconds=0.1)
    hook = receiver((500, None), (500, None), (502, None), (503, None), (200, None))
    bot.set_webhook(hook.url)
    fake.send_text(7, "hello")
    hook.wait_for_count(5)
    fake.wait_for_request("webhookDelivery", after_count=4)
    at = [r["at"] for r in hook.received()]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert gaps[0] < 0.1  # at once
    for gap, seconds in zip(gaps[1:], (2, 4, 8)):
        assert seconds * 0.1 - 0.02 <= gap < seconds * 0.1 + 0.15
    assert [c["status"] for c in fake.requests("webhookDelivery")] == [500, 500, 502, 503, 200]


def test_the_retry_schedule_and_its_random_cap():
    waits, delay = [], 1
    for fails in range(9):
        delay, wait = next_retry(delay, fails, 0, randint=lambda low, high: low)
        waits.append(wait)
    assert waits == [0, 2, 4, 8, 16, 32, 60, 60, 60]  # capped at random(60, 120): here 60
    assert next_retry(32, 5, 0, randint=lambda low, high: high) == (64, 64)
    assert next_retry(64, 6, 0, randint=lambda low, high: high) == (120, 120)
    assert next_retry(4, 3, 30) == (4, 30)  # Retry-After: that wait, the doubling kept as it was
    assert next_retry(4, 3, 99999) == (4, 3600)


def test_a_webhook_retry_after_is_honoured_and_only_2xx_succeeds(make_api, receiver):
    fake, bot = make_api(webhook_retry_seconds=0.1)
    hook = receiver((302, None), (503, None, {"Retry-After": "3"}), (204, None))
    bot.set_webhook(hook.url)
    fake.send_text(7, "hello")
    hook.wait_for_count(3)
    fake.wait_for_request("webhookDelivery", after_count=2)
    at = [r["at"] for r in hook.received()]
    assert at[2] - at[1] >= 0.3 - 0.02  # 3 s (x 0.1), not the 2 s of the schedule
    assert [c["status"] for c in fake.requests("webhookDelivery")] == [302, 503, 204]
    assert (
        bot.get_webhook_info().last_error_message
        == "Wrong response from the webhook: 503 Service Unavailable"
    )


def test_each_chat_has_its_own_webhook_queue(make_api, receiver):
    fake, bot = make_api(webhook_retry_seconds=5)
    hook = receiver(decide=lambda update: (500 if update["message"]["chat"]["id"] == 7 else 200, None))
    bot.set_webhook(hook.url)
    fake.send_text(7, "stuck")  # its retry: 2 s x 5 away
    fake.send_text(7, "behind it")
    fake.send_text(8, "another chat")
    fake.wait_for(
        lambda: (
            [c["params"]["update_id"] for c in fake.requests("webhookDelivery") if c["status"] == 200] == [3]
        )
    )
    sent = [r["update"]["update_id"] for r in hook.received()]
    assert 1 in sent and 2 not in sent  # chat 7's second update waits behind its first


# ---- 6. flood control and the bot's pace ----


def test_flood_answers_429_for_a_while(fake, bot):
    fake.flood(2.5, method="sendMessage", chat_id=CHAT)
    assert api_error(lambda: bot.send_message(CHAT, "x")) == (429, "Too Many Requests: retry after 3")
    assert api_parameters(lambda: bot.send_message(CHAT, "x")) == {"retry_after": 3}
    assert bot.send_message(CHAT + 1, "another chat").text == "another chat"
    assert bot.get_me().is_bot
    fake.advance_time(2)
    assert api_error(lambda: bot.send_message(CHAT, "x")) == (429, "Too Many Requests: retry after 1")
    fake.advance_time(1)
    assert bot.send_message(CHAT, "x").text == "x"
    assert [c["status"] for c in fake.requests("sendMessage")] == [429, 429, 200, 429, 200]
    fake.flood(10)  # every call
    assert api_error(lambda: bot.get_me())[0] == 429


def test_writes_and_the_busiest_window(fake, bot):
    for n in range(3):
        bot.send_message(CHAT, f"m{n}")
    bot.pin_chat_message(CHAT, 1)
    fake.advance_time(5)
    bot.delete_message(CHAT, 2)
    bot.send_message(GROUP, "elsewhere")
    bot.get_chat(CHAT)  # reads are no writes
    fake.flood(1, chat_id=CHAT)
    with pytest.raises(ApiTelegramException):
        bot.send_message(CHAT, "refused")  # nor are refused calls
    times = fake.writes(CHAT)
    assert len(times) == 5 and times[-1] - times[0] >= 5
    assert fake.most_writes(1.0, CHAT) == 4 and fake.most_writes(60, CHAT) == 5
    assert fake.most_writes(1.0) == 4 and len(fake.writes()) == 6


# ---- 7. a group upgraded to a supergroup (Client::check_chat_access) ----


def test_a_group_upgraded_to_a_supergroup(fake, bot):
    index = bot.send_document(GROUP, b"index", visible_file_name="index.json")
    bot.pin_chat_message(GROUP, index.message_id)
    new_id = fake.upgrade_to_supergroup(GROUP)
    assert new_id == -1000000004242
    upgraded = (400, "Bad Request: group chat was upgraded to a supergroup chat")
    for write in (
        lambda: bot.send_message(GROUP, "x"),
        lambda: bot.pin_chat_message(GROUP, index.message_id),
        lambda: bot.unpin_chat_message(GROUP),
        lambda: bot.delete_message(GROUP, index.message_id),
        lambda: bot.send_chat_action(GROUP, "typing"),
    ):
        assert api_error(write) == upgraded
        assert api_parameters(write) == {"migrate_to_chat_id": new_id}
    old = bot.get_chat(GROUP)  # reading needs no write access
    assert old.type == "group" and old.pinned_message.message_id == index.message_id
    new = bot.get_chat(new_id)
    assert (
        new.type == "supergroup" and new.pinned_message is None and fake.history(new_id)[0]["message_id"] == 1
    )
    moved = [u["message"] for u in get_updates(fake)][-2:]
    assert [m.get("migrate_to_chat_id") for m in moved] == [new_id, None]
    assert [m.get("migrate_from_chat_id") for m in moved] == [None, GROUP]
    assert download(bot, bot.get_file(index.document.file_id).file_path) == b"index"
    assert bot.send_document(new_id, index.document.file_id).document.file_id == index.document.file_id
    assert api_error(lambda: bot.delete_message(new_id, 1)) == (400, "Bad Request: message can't be deleted")
    with pytest.raises(ValueError):
        fake.send_text(7, "too late", chat_id=GROUP)


# ---- 8. chat types, and who wrote a message (Client.cpp JsonChat, JsonMessage) ----


def test_chat_types_come_from_the_id(fake, bot):
    fake.make_channel(CHANNEL)
    types_seen = {chat: bot.send_message(chat, "hi").chat.type for chat in (CHAT, GROUP, SUPERGROUP, CHANNEL)}
    assert types_seen == {CHAT: "private", GROUP: "group", SUPERGROUP: "supergroup", CHANNEL: "channel"}
    assert bot.send_message(GROUP, "mine").from_user.id == fake.bot_user["id"]
    with pytest.raises(ValueError):
        fake.make_channel(GROUP)


# ---- 9. messages by other people ----


def test_a_member_posts_any_document_into_a_group_and_pins_it(fake, bot):
    name, caption = "../../etc/passwd; rm -rf *.db.zst", "💾 Backup\nrows: users 1"
    update = fake.send_document(31337, name, b"not a backup", caption=caption, chat_id=SUPERGROUP)
    message = update["message"]
    assert (message["from"]["id"], message["document"]["file_name"], message["caption"]) == (
        31337,
        name,
        caption,
    )
    fake.pin(SUPERGROUP, message["message_id"], user_id=31337)
    pinned = bot.get_chat(SUPERGROUP).pinned_message
    assert pinned.document.file_name == name and pinned.from_user.id == 31337
    assert get_updates(fake, offset=2)[0]["message"]["pinned_message"]["document"]["file_name"] == name
    assert download(bot, bot.get_file(pinned.document.file_id).file_path) == b"not a backup"


# ---- 10. files (Client::do_get_file; api.telegram.org's 50 MB) ----


def test_the_file_limits_are_telegrams_by_default():
    fake = FakeBotAPI()
    assert (fake.upload_limit, fake.download_limit) == (50 << 20, 20 << 20)
