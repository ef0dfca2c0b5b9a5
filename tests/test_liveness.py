"""The writer's quiet periods, on a movable clock: a QUIET head must name everything written,
or an instance that starts after a deep sleep serves at once without it."""

import json
import socketserver
import threading
import time

import pytest
import telebot
from conftest import NOW
from helpers import chat_index

import bot_api
import database
import startup
from config import load_settings
from lease import HeadState
from liveness import Liveness

CHAT = -1001234567890


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def writer(tmp_path, fake):
    settings = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "DB_PATH": str(tmp_path / "bot.db"),
            "ADMIN_IDS": "1000",
            "BACKUP_CHAT_ID": str(CHAT),
            "BACKUP_AFTER_CHANGE_SECONDS": "5",
        }
    )
    db = database.open_database(settings.db_path)
    db.migrate()
    engine = startup.backup_engine(db, settings, startup.offsite(settings), alert=lambda text: None)
    engine.lease.become(1, "writer")
    engine.lease.publish(HeadState.WRITING)
    clock = Clock()
    return db, engine, Liveness(engine, settings, clock=clock), clock


def register(db, user_id):
    db.track_message(user_id, None, "N", user_id, "message", NOW, NOW)


def head(fake):
    return chat_index(fake, CHAT)["head"]["state"]


def backed_up_and_quiet(db, engine, liveness, clock, fake):
    register(db, 1)
    engine.create("change")
    liveness.check_quiet()  # sees the write
    clock.now += 6
    liveness.check_quiet()
    assert head(fake) == "quiet" and liveness.quiet


def test_a_write_seen_while_quiet_claims_the_writers_place_again(tmp_path, fake):
    db, engine, liveness, clock = writer(tmp_path, fake)
    backed_up_and_quiet(db, engine, liveness, clock, fake)
    register(db, 2)  # a job's write, or a handler's let in just before the head went quiet
    liveness.check_quiet()
    assert head(fake) == "writing"  # the quiet head would have named a backup without user 2
    assert not liveness.quiet
    db.close()


def test_an_update_let_in_recently_keeps_the_writer_from_going_quiet(tmp_path, fake):
    db, engine, liveness, clock = writer(tmp_path, fake)
    register(db, 1)
    engine.create("change")
    liveness.check_quiet()
    clock.now += 3
    assert liveness.may_handle()  # its handler has not written yet
    clock.now += 3  # nothing written for 6 s, but the update came in 3 s ago
    liveness.check_quiet()
    assert head(fake) == "writing"
    clock.now += 3
    liveness.check_quiet()  # 6 s after the update and nothing written: quiet
    assert head(fake) == "quiet"
    db.close()


def test_the_first_update_after_a_quiet_period_claims_the_place_before_it_is_handled(tmp_path, fake):
    db, engine, liveness, clock = writer(tmp_path, fake)
    backed_up_and_quiet(db, engine, liveness, clock, fake)
    assert liveness.may_handle()
    assert head(fake) == "writing"
    db.close()


class SilentAfterOneAnswer(socketserver.BaseRequestHandler):
    """A Bot API server whose connections answer once, then go silent without closing: what a
    connection kept alive across a long freeze looks like when a NAT or the server dropped it."""

    def handle(self):
        self.request.recv(65536)
        body = json.dumps({"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "B"}}).encode()
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.server.released.wait(30)  # then nothing, on this connection, until the test ends


def test_after_a_freeze_a_request_opens_a_fresh_connection_instead_of_waiting_on_a_dead_one(monkeypatch):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SilentAfterOneAnswer)
    server.daemon_threads, server.released = True, threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(telebot.apihelper, "READ_TIMEOUT", 2)
    token = "424242:frozen-test-token"
    bot = bot_api.build(token, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        bot.get_me()  # a connection kept alive
        bot_api.forget_connections()  # what a writer does when it notices it was frozen
        started = time.monotonic()
        bot.get_me()  # on a fresh connection: answered at once
        assert time.monotonic() - started < 5
        with pytest.raises(bot_api.BotApiError), bot_api.calling("ask again on the kept connection"):
            bot.get_me()  # the kept one is dead: without forgetting, a request waits out its timeout
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
