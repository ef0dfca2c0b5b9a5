"""Webhook mode: only Telegram gets in (web.py), each update is handled once and never against an
empty database (updates.WebhookGate), and, end to end with real `python main.py` processes, a
bot that sleeps with its host, wakes on a message on an empty disk, and loses nothing."""

import http.client
import json
import logging
import selectors
import shutil
import socket
import struct
import threading
import time

import pytest
from bot_process import ADMIN_ID
from edge_proxy import EdgeProxy
from helpers import bot_for, free_port, health, users_in
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_handover import CHAT, Users, serving

import database
import updates
import web
from config import load_settings

PATH = "/telegram"
SECRET = "s3cret-Token_1"


# --- web.py: what gets in ----------------------------------------------------------------------


class Recorder:
    """A webhook that records what reaches it."""

    path, secret = PATH, SECRET

    def __init__(self):
        self.updates = []

    def handle(self, update):
        self.updates.append(update)
        return 200


@pytest.fixture(scope="module")
def server():
    recorder, port = Recorder(), free_port()
    http_server = web.start_server(port, lambda: {"state": "serving"}, recorder, host="127.0.0.1")
    yield recorder, port
    http_server.shutdown()
    http_server.server_close()


def post(port, body: bytes, headers: dict, path=PATH, method="POST"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def update(update_id=1, user=4242, text="/start"):
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1795000000,
            "text": text,
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "U"},
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
            if text.startswith("/")
            else [],
        },
    }


SOME_BODY = st.one_of(st.binary(max_size=300), st.just(json.dumps(update()).encode()))
NOT_THE_SECRET = st.one_of(
    st.none(),
    st.just(""),
    st.just(SECRET.upper()),
    st.just(SECRET + "x"),
    st.just(SECRET[:-1]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=300),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=NOT_THE_SECRET, body=SOME_BODY)
def test_without_the_secret_nothing_gets_in_whatever_the_body(server, secret, body):
    recorder, port = server
    before = len(recorder.updates)
    headers = {"Content-Length": str(len(body)), "Content-Type": "application/json"}
    if secret is not None:
        headers[web.SECRET_HEADER] = secret
    status, _ = post(port, body, headers)
    assert status == (200 if secret == SECRET else 401)
    assert len(recorder.updates) == before


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=400),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4).map(lambda d: json.dumps(d).encode()),
    st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans(), st.none()).map(
        lambda u: json.dumps({"update_id": u, "message": {}}).encode()
    ),
    st.integers(min_value=0, max_value=2**53 - 1).map(lambda u: json.dumps(update(u)).encode()),
    st.just(b"[" * 100_000),
    st.just(b'{"update_id": 1, "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_with_the_secret_only_an_update_gets_through(server, body):
    recorder, port = server
    before = len(recorder.updates)
    status, _ = post(port, body, {"Content-Length": str(len(body)), web.SECRET_HEADER: SECRET})
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    is_update = (
        isinstance(parsed, dict) and type(parsed.get("update_id")) is int and 0 <= parsed["update_id"] < 2**53
    )
    assert status == (200 if is_update else 400)
    assert recorder.updates[before:] == ([parsed] if is_update else [])


def test_wrong_methods_paths_lengths_and_sizes_get_a_4xx_and_reach_nothing(server):
    recorder, port = server
    before = len(recorder.updates)
    body = json.dumps(update()).encode()
    right = {web.SECRET_HEADER: SECRET, "Content-Length": str(len(body))}
    assert post(port, b"", {}, method="GET")[0] == 405
    assert post(port, body, right, method="PUT")[0] == 405
    assert post(port, body, right, path="/telegram/")[0] == 404
    assert post(port, body, right, path="/healthz")[0] == 405
    assert post(port, body, right, path="/other")[0] == 404
    assert post(port, body, {**right, "Content-Length": "-1"})[0] == 411
    assert post(port, body, {**right, "Content-Length": "abc"})[0] == 411
    assert post(port, body, {**right, "Content-Length": "²"})[0] == 411  # a digit to isdigit(), not to int()
    assert post(port, b"", {}, path="/healthz", method="HEAD") == (200, b"")
    assert recorder.updates[before:] == []

    # Over the limit: refused from the headers alone, before a byte of the body is waited for.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{web.SECRET_HEADER}: {SECRET}\r\n"
            f"Content-Length: {web.MAX_BODY + 1}\r\n\r\n".encode()
        )
        assert raw.recv(100).startswith(b"HTTP/1.0 413")
    assert recorder.updates[before:] == []


@pytest.mark.parametrize("trickle", [False, True])
def test_a_slow_client_is_cut_off_and_others_are_served_meanwhile(monkeypatch, trickle):
    unset = web.CLIENT_TIMEOUT  # what a request would get without the deadlines set here
    monkeypatch.setattr(web, "CLIENT_TIMEOUT", 0.5)
    monkeypatch.setattr(web, "HEADER_TIMEOUT", 0.5)
    recorder, port = Recorder(), free_port()
    http_server = web.start_server(port, lambda: {"state": "serving"}, recorder, host="127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\n".encode())
            started = time.monotonic()
            assert health(port)["state"] == "serving"  # the others are served while it stalls
            closed = False
            while not closed and time.monotonic() - started < 60:  # only a server that never cuts
                if trickle:  # a header line now and then, each well within the socket's timeout
                    try:
                        slow.sendall(b"X-Slow: 1\r\n")
                    except OSError:
                        break
                slow.settimeout(0.2)
                try:
                    closed = slow.recv(100) == b""
                except TimeoutError:
                    pass
                except OSError:
                    closed = True
            assert closed, "never cut off"
            # cut off by the deadlines of 0.5 s, not after the unset one (or never): a margin of 20
            assert time.monotonic() - started < unset
        assert recorder.updates == []
    finally:
        http_server.shutdown()
        http_server.server_close()


def test_a_failing_handler_gets_500_and_the_endpoint_keeps_serving():
    class Failing(Recorder):
        def handle(self, update):
            raise RuntimeError("the database went away")

    port = free_port()
    http_server = web.start_server(port, lambda: {"state": "serving"}, Failing(), host="127.0.0.1")
    try:
        body = json.dumps(update()).encode()
        headers = {"Content-Length": str(len(body)), web.SECRET_HEADER: SECRET}
        assert post(port, body, headers)[0] == 500  # Telegram delivers it again later
        assert post(port, body, headers)[0] == 500 and health(port)["state"] == "serving"
    finally:
        http_server.shutdown()
        http_server.server_close()


def test_idle_connections_take_no_thread_and_the_oldest_make_room(monkeypatch):
    monkeypatch.setattr(web, "MAX_WAITING", 4)
    port = free_port()
    http_server = web.start_server(port, lambda: {"state": "serving"}, Recorder(), host="127.0.0.1")
    try:
        threads = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(12)]
        for connection in idle[:8]:  # the oldest, closed as newer ones came, without a word
            assert connection.recv(10) == b""
        assert threading.active_count() <= threads  # waiting for headers costs no thread (another
        # test's leftover thread in this worker may end meanwhile: fewer is no failure)
        assert health(port)["state"] == "serving"  # and the health check is served meanwhile
        for connection in idle:
            connection.close()
    finally:
        http_server.shutdown()
        http_server.server_close()


class Idlers:
    """`count` connections to a port that never send a byte, kept open: each one the server
    closes is opened again at once, as a client bent on taking the port's capacity would."""

    def __init__(self, port, count=40):
        self.port, self.count = port, count
        self.opened = 0
        self._more = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._selector = selectors.DefaultSelector()

    def __enter__(self):
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()

    def _open(self):
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self._selector.register(connection, selectors.EVENT_READ)
        with self._more:
            self.opened += 1
            self._more.notify_all()

    def wait_for(self, opened, timeout):
        """Until `opened` connections were opened in all (those the server closed came back)."""
        with self._more:
            assert self._more.wait_for(lambda: self.opened >= opened, timeout), self.opened

    def _run(self):
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):  # readable: closed by the server
                self._selector.unregister(key.fileobj)
                key.fileobj.close()
                self._open()


def timed(call, *args):
    started = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - started


def test_idle_connections_never_starve_the_health_check_or_telegram():
    recorder, port = Recorder(), free_port()
    http_server = web.start_server(port, lambda: {"state": "serving"}, recorder, host="127.0.0.1")
    try:
        with Idlers(port) as idlers:
            for n in range(1, 16):  # across several of the doorway's 2-s cuts of the idle ones
                status, seconds = timed(health, port)
                assert status["state"] == "serving" and seconds < web.HEADER_TIMEOUT
                body = json.dumps(update(n)).encode()
                headers = {"Content-Length": str(len(body)), web.SECRET_HEADER: SECRET}
                answer, seconds = timed(post, port, body, headers)
                assert answer[0] == 200 and seconds < web.HEADER_TIMEOUT
                if n % 5 == 0:  # the server cuts the idle ones after 2 s: wait until they are back
                    idlers.wait_for(idlers.opened + idlers.count, 3 * web.HEADER_TIMEOUT)
            assert idlers.opened >= 3 * idlers.count  # the idle ones were there all along, and cut
        assert [u["update_id"] for u in recorder.updates] == list(range(1, 16))
    finally:
        http_server.shutdown()
        http_server.server_close()


def test_a_client_that_hangs_up_before_its_answer_leaves_no_traceback(caplog):
    caplog.set_level(logging.DEBUG, logger="web")
    release, working = threading.Event(), threading.Event()

    class Slow(Recorder):
        def handle(self, update):
            working.set()
            release.wait(10)  # the answer comes after the client is gone
            return 200

    port = free_port()
    http_server = web.start_server(port, lambda: {"state": "serving"}, Slow(), host="127.0.0.1")
    try:
        hung_up = LogLine("hung up before its answer")
        logging.getLogger("web").addHandler(hung_up)
        body = json.dumps(update()).encode()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{web.SECRET_HEADER}: {SECRET}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert working.wait(10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset: the client is gone
        release.set()
        assert hung_up.seen.wait(10)
        assert health(port)["state"] == "serving"
    finally:
        logging.getLogger("web").removeHandler(hung_up)
        http_server.shutdown()
        http_server.server_close()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


class LogLine(logging.Handler):
    """Sets `seen` when a record containing `text` is logged."""

    def __init__(self, text):
        super().__init__(logging.DEBUG)
        self.text, self.seen = text, threading.Event()

    def emit(self, record):
        if self.text in record.getMessage():
            self.seen.set()


# --- updates.WebhookGate: once, and never against an empty database ----------------------------


class Seen(list):
    """The texts the bot's handler saw; wait() blocks until there are so many."""

    def __init__(self):
        super().__init__()
        self._more = threading.Condition()

    def append(self, item):
        with self._more:
            super().append(item)
            self._more.notify_all()

    def wait(self, count, timeout=10):
        with self._more:
            assert self._more.wait_for(lambda: len(self) >= count, timeout), list(self)


@pytest.fixture
def gate_parts(tmp_path, fake, monkeypatch):
    conf = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "DB_PATH": str(tmp_path / "bot.db"),
            "WEBHOOK_URL": "http://127.0.0.1:9/telegram",
            "PORT": "9",
        }
    )
    bot = bot_for(fake, threaded=False)
    handled = Seen()
    bot.message_handler(func=lambda m: True)(lambda m: handled.append(m.text))

    def open_db():
        db = database.open_database(conf.db_path)
        db.migrate()
        return db

    return bot, conf, handled, open_db


def test_an_update_delivered_again_is_acknowledged_and_handled_once_across_restarts(gate_parts, fake):
    bot, conf, handled, open_db = gate_parts
    db = open_db()
    gate = updates.WebhookGate(bot, conf, refused=print)
    gate.start(db)
    assert [gate.handle(update(500, text="one")), gate.handle(update(500, text="one"))] == [200, 200]
    assert gate.handle(update(501, text="two")) == 200
    assert handled == ["one", "two"]
    fake.wait_for(lambda: any(c["method"] == "setWebhook" for c in fake.requests()), 10, "setWebhook")
    hook = fake.requests("setWebhook")[-1]["params"]
    assert hook["url"] == conf.webhook_url and hook["secret_token"] == conf.webhook_secret
    assert hook["allowed_updates"] == ["message"]
    gate.stop()
    db.close()

    db = open_db()  # a restart, from the same data (a restored backup carries the same row)
    again = updates.WebhookGate(bot, conf, refused=print)
    again.start(db)
    assert again.handle(update(500, text="one")) == 200 and again.handle(update(501, text="two")) == 200
    assert handled == ["one", "two"]
    # A week without updates: Telegram picks the next id at random, maybe lower. Handled.
    assert again.handle(update(17, text="after a quiet week")) == 200
    assert handled == ["one", "two", "after a quiet week"]
    again.stop()
    db.close()


def test_updates_a_poller_handled_are_not_handled_again_by_webhook(gate_parts, fake):
    bot, conf, handled, open_db = gate_parts
    db = open_db()
    sent = [fake.send_text(4242, f"polled {n}") for n in range(3)]
    poller = updates.Poller(bot, db, on_conflict=lambda: None)
    poller.start()
    handled.wait(3)
    poller.stop()
    poller.remember(db)  # what its final backup carries; not confirmed to Telegram yet
    gate = updates.WebhookGate(bot, conf, refused=print)
    gate.start(db)  # the next writer, in webhook mode: Telegram delivers those three again
    assert [gate.handle(u) for u in sent] == [200, 200, 200]
    assert handled == ["polled 0", "polled 1", "polled 2"]
    assert gate.handle(update(17, text="after a quiet week")) == 200  # a lower id: still new
    assert handled[-1] == "after a quiet week"
    gate.stop()
    db.close()


def start_held(gate, request):
    """Start `request` (a thread calling gate.handle) and return once it waits in the gate's
    hold, not let through: at the moment it began to wait, what it waits for had not happened."""
    entered, let_through = threading.Event(), []
    wait_for = gate._changed.wait_for

    def waiting(predicate, timeout=None):
        let_through.append(predicate())
        entered.set()
        return wait_for(predicate, timeout)

    gate._changed.wait_for = waiting
    request.start()
    assert entered.wait(10), "the request never reached the gate"
    assert let_through == [False]  # it waits
    request.join(0.3)  # and nothing but the gate's change ends the wait
    assert request.is_alive()


def test_a_request_while_the_instance_starts_is_held_until_it_serves(gate_parts):
    bot, conf, handled, open_db = gate_parts
    db = open_db()
    gate = updates.WebhookGate(bot, conf, refused=print)
    answers = []
    request = threading.Thread(target=lambda: answers.append(gate.handle(update(7, text="woke me"))))
    start_held(gate, request)
    assert handled == []  # held: the database is not restored yet
    gate.start(db)  # restored, and serving
    request.join(10)
    assert answers == [200] and handled == ["woke me"]
    gate.stop()
    assert gate.handle(update(8, text="too late")) == 503  # passive or stopping: Telegram retries
    assert handled == ["woke me"]
    db.close()


def test_a_request_held_while_the_instance_gives_up_serving_gets_503(gate_parts, monkeypatch):
    bot, conf, handled, _open_db = gate_parts
    gate = updates.WebhookGate(bot, conf, refused=print)
    answers = []
    request = threading.Thread(target=lambda: answers.append(gate.handle(update(7))))
    start_held(gate, request)
    gate.stop()  # it turned passive instead (another instance writes): Telegram retries there
    request.join(10)
    assert answers == [503] and handled == []


def test_telegram_refusing_the_webhook_address_is_told_to_the_admins(gate_parts, fake):
    bot, conf, _handled, open_db = gate_parts
    db = open_db()
    fake.fail_next("setWebhook", 502, "Bad Gateway")  # first a passing trouble: retried
    fake.fail_next("setWebhook", 400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
    told, telling = [], threading.Event()
    gate = updates.WebhookGate(bot, conf, refused=lambda text: (told.append(str(text)), telling.set()))
    gate.start(db)
    assert telling.wait(10), "the admins were not told"
    assert "HTTPS url must be provided" in told[0] and "No updates arrive" in told[0]
    assert [c["status"] for c in fake.requests("setWebhook")] == [502, 400]  # then it gave up
    gate.stop()
    db.close()


# --- end to end: real processes ----------------------------------------------------------------


def webhook_env(port, url=None):
    return {
        "PORT": str(port),
        "WEBHOOK_URL": url or f"http://127.0.0.1:{port}{PATH}",
        "BACKUP_CHAT_ID": str(CHAT),
        "BACKUP_AFTER_CHANGE_SECONDS": "2",
    }


def _call(fake, method):
    connection = http.client.HTTPConnection(fake.url.split("//")[1], timeout=10)
    try:
        connection.request("POST", f"/bot{fake.token}/{method}", b"", {"Content-Length": "0"})
        return json.loads(connection.getresponse().read())["result"]
    finally:
        connection.close()


@pytest.mark.e2e
def test_users_are_answered_by_webhook_and_nothing_else_gets_in(fake, run_bot):
    port = free_port()
    bot = run_bot(folder="a", **webhook_env(port))
    serving(bot)
    fake.wait_for(lambda: _call(fake, "getWebhookInfo")["url"], 10, "the webhook set")
    info = _call(fake, "getWebhookInfo")
    assert info["url"] == f"http://127.0.0.1:{port}{PATH}" and info["allowed_updates"] == ["message"]
    users = Users(fake)
    for _ in range(3):
        users.one()
    assert len(users.answered) == 3
    assert all(c["status"] == 200 for c in fake.requests("webhookDelivery"))
    assert health(port)["updates"] == "webhook"

    forged = json.dumps(update(10_000, user=6666)).encode()  # a stranger posing as Telegram
    for headers in ({}, {web.SECRET_HEADER: "guess"}, {web.SECRET_HEADER: ""}):
        assert post(port, forged, {"Content-Length": str(len(forged)), **headers})[0] == 401
    secret = fake.requests("setWebhook")[-1]["params"]["secret_token"]
    assert secret and secret not in bot.log() and fake.token.split(":")[1] not in secret
    assert (
        post(port, b'{"update_id": 1, "mess', {"Content-Length": "22", web.SECRET_HEADER: secret})[0] == 400
    )
    users.one()  # still serving
    assert bot.stop()[0] == 0
    assert users_in(bot.db_path) == set(users.answered) and 6666 not in users_in(bot.db_path)
    assert len(users.answered) == 4


@pytest.mark.e2e
def test_forty_idle_connections_on_port_and_still_telegram_delivers_and_the_host_checks_health(fake, run_bot):
    port = free_port()
    bot = run_bot(folder="a", **webhook_env(port))
    serving(bot)
    fake.wait_for(lambda: _call(fake, "getWebhookInfo")["url"], 10, "the webhook set")
    users = Users(fake)
    with Idlers(port) as idlers:
        for n in range(1, 7):
            status, seconds = timed(health, port)
            assert status["state"] == "serving" and seconds < web.HEADER_TIMEOUT
            _, seconds = timed(users.one, 10)  # the stand-in delivers it; the bot answers
            assert users.answered[-1] == users.sent[-1] and seconds < 10
            if n % 3 == 0:  # across the server's cuts of the idle ones, which come back at once
                idlers.wait_for(idlers.opened + idlers.count, 3 * web.HEADER_TIMEOUT)
    assert all(c["status"] == 200 for c in fake.requests("webhookDelivery"))  # never refused
    assert "Traceback" not in bot.log()
    assert bot.stop()[0] == 0


@pytest.mark.e2e
def test_telegram_hanging_up_before_the_answer_leaves_no_traceback_in_the_log(fake, run_bot):
    port = free_port()
    bot = run_bot(folder="a", **webhook_env(port))
    serving(bot)
    secret = fake.wait_for(
        lambda: (fake.requests("setWebhook") or [{}])[-1].get("params", {}).get("secret_token"),
        10,
        "the secret",
    )
    fake.flood(3, "sendMessage", chat_id=6060)  # the answer to this user waits: the handler takes a while
    body = json.dumps(update(90_000, user=6060)).encode()
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{web.SECRET_HEADER}: {secret}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    fake.wait_for(
        lambda: [c for c in fake.requests("sendMessage") if str(c["params"].get("chat_id")) == "6060"],
        10,
        "the handler at work",
    )
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # gone before the answer, as a Telegram that timed out would be
    bot.wait_for_log("hung up before its answer", timeout=20)
    fake.wait_for_message(6060, "registered")  # the update itself was handled
    assert health(port)["state"] == "serving"
    assert "Traceback" not in bot.log() and "WARNING web" not in bot.log()
    assert bot.stop()[0] == 0


@pytest.mark.e2e
def test_sleep_then_a_message_wakes_a_bot_on_an_empty_disk_and_nothing_is_lost(fake, run_bot):
    port = free_port()
    first = run_bot(folder="a", **webhook_env(port))
    serving(first)
    users = Users(fake)
    for _ in range(3):
        users.one()
    assert first.stop()[0] == 0  # the host puts it to sleep: SIGTERM, the final backup
    shutil.rmtree(first.workdir / "data")

    failed = len([c for c in fake.requests("webhookDelivery") if c["error"]])
    waking = users.next_id
    fake.send_text(waking, "/start")  # arrives while no process runs
    fake.wait_for(
        lambda: len([c for c in fake.requests("webhookDelivery") if c["error"]]) >= failed + 2,
        10,
        "the delivery failed, and was retried",
    )
    assert "Connection refused" in _call(fake, "getWebhookInfo")["last_error_message"]

    woken = run_bot(folder="b", **webhook_env(port))  # a new instance, another empty disk
    assert "registered" in fake.wait_for_message(waking, "registered", timeout=60)["text"]
    assert "Restored at startup" in woken.log()
    fake.send_text(ADMIN_ID, "/start")
    fake.wait_for_message(ADMIN_ID, "Admin panel")
    seen = len(fake.messages(ADMIN_ID))
    fake.send_text(ADMIN_ID, "⚙️ System")  # where an admin sees that webhook mode works
    system = fake.wait_for_message(ADMIN_ID, "System", after=seen)["text"]
    assert f"Updates: by webhook, to http://127.0.0.1:{port}{PATH}" in system
    assert "Last delivery error: Connection refused" in system and "⚠️" not in system
    assert woken.stop()[0] == 0
    assert users_in(woken.db_path) == set(users.answered) | {waking}


@pytest.mark.e2e
def test_the_same_update_delivered_twice_is_handled_once_even_after_a_restart(fake, run_bot):
    port = free_port()
    first = run_bot(folder="a", **webhook_env(port))
    serving(first)
    fake.wait_for(lambda: fake.requests("setWebhook"), 10, "the webhook set")
    secret = fake.requests("setWebhook")[-1]["params"]["secret_token"]
    body = json.dumps(update(77_000, user=5151, text="/start")).encode()
    headers = {"Content-Length": str(len(body)), web.SECRET_HEADER: secret}
    assert post(port, body, headers)[0] == 200
    assert post(port, body, headers)[0] == 200  # Telegram retrying: our answer was lost, say
    fake.wait_for_message(5151, "registered")
    assert first.stop()[0] == 0

    second = run_bot(folder="b", **webhook_env(port))  # on an empty disk: restored from the chat
    serving(second)
    assert post(port, body, headers)[0] == 200  # delivered again after the wake-up
    fake.send_text(ADMIN_ID, "/start")  # handled after it: a barrier
    fake.wait_for_message(ADMIN_ID, "Admin panel")
    assert len([m for m in fake.messages(5151) if "registered" in (m.get("text") or "")]) == 1
    assert second.stop()[0] == 0


@pytest.mark.e2e
def test_switching_back_to_polling_works_at_the_next_start(fake, run_bot):
    port = free_port()
    first = run_bot(folder="a", **webhook_env(port))
    serving(first)
    users = Users(fake)
    users.one()
    assert first.stop()[0] == 0

    polling = run_bot(folder="b", BACKUP_CHAT_ID=str(CHAT))  # WEBHOOK_URL removed
    serving(polling)
    users.one()
    assert _call(fake, "getWebhookInfo")["url"] == ""  # deleted: Telegram lets it poll
    assert polling.stop()[0] == 0
    assert users_in(polling.db_path) == set(users.answered) and len(users.answered) == 2


@pytest.mark.e2e
def test_a_rolling_redeploy_in_webhook_mode_hands_over_and_loses_no_answered_user(fake, run_bot):
    """Both instances behind one public address, as on Koyeb: the traffic moves to the new one
    once its health check answers, while the old one still writes. No 409 here: the new one
    knocks off the machine, the old one hands over."""
    proxy = EdgeProxy().start()
    try:
        old_port, new_port = free_port(), free_port()
        url = proxy.url + PATH
        old = run_bot(folder="a", **webhook_env(old_port, url))
        proxy.route_to(old_port)
        serving(old)
        users = Users(fake).start()
        fake.wait_for(lambda: len(users.answered) >= 4, 30, "users answered by the old instance")

        new = run_bot(folder="b", **webhook_env(new_port, url))
        fake.wait_for(lambda: _responds(new_port), 30, "the new instance's health check")
        proxy.route_to(new_port)  # the host moves the traffic: held there until it serves
        serving(new)
        fake.wait_for(lambda: len(users.answered) >= 8, 60, "users answered by the new instance")
        assert "asks this instance to hand over" in old.log() and "passive:" in old.log()
        assert old.stop()[0] == 0
        users.stop()
        assert new.stop()[0] == 0
        assert set(users.answered) <= users_in(new.db_path)
        writers = [port for _, status, port in proxy.forwarded if status == 200]
        assert writers == sorted(writers, key=lambda p: p == new_port)  # old, then new: never back
    finally:
        proxy.stop()


def _responds(port):
    try:
        return health(port)["state"] in ("waiting", "starting", "serving")
    except OSError:
        return False
