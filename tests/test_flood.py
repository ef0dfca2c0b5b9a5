"""Telegram's flood control, end to end: a 429 "Too Many Requests: retry after N" is obeyed by
every call the bot makes (the real main.py against the stand-in, whose flood() answers 429 on
demand). What people would notice: the backup still arrives once the storm is over, exactly one
index is pinned, someone else's pin stays pinned, nothing anyone was answered is lost; and the
bot does not hammer Telegram while it was asked to wait."""

import pytest
from bot_process import ADMIN_ID
from helpers import backup_by_admin, backups_in_chat, press, users_in
from test_handover import Users, serving

pytestmark = pytest.mark.e2e
GROUP = -1005550042  # a supergroup the admins use for backups
INDEX = "backup_test_bot-backup-index.json"


def chat_calls(fake):
    return [c for c in fake.requests() if c["params"].get("chat_id") in (GROUP, str(GROUP))]


def indexes_pinned(fake):
    return [m for m in fake.pinned_messages(GROUP) if (m.get("document") or {}).get("file_name") == INDEX]


def test_a_429_storm_during_a_backup_is_waited_out(fake, run_bot):
    bot = run_bot(BACKUP_CHAT_ID=str(GROUP))
    press(fake, "/start", "registered", chat=4242)
    fake.wait_for(lambda: backups_in_chat(fake, GROUP), 30, "the startup backup in the chat")
    note = fake.pin_by_someone(GROUP, "Rules: be kind, and keep the bot's index pinned.")
    before = len(chat_calls(fake))
    fake.flood(4, chat_id=GROUP)
    reply = backup_by_admin(fake)  # answered once the storm is over
    assert "local, telegram" in reply
    storm = chat_calls(fake)[before:]
    refused = [c for c in storm if c["status"] == 429]
    assert 1 <= len(refused) <= 2  # the first call learned to wait; no retry inside the wait
    after = [c for c in storm if c["time"] > refused[0]["time"]]
    assert after and min(c["time"] for c in after) - refused[0]["time"] >= 3.9
    assert len(indexes_pinned(fake)) == 1  # never a second index because of a 429
    pinned = [m["message_id"] for m in fake.pinned_messages(GROUP)]
    assert note["message_id"] in pinned  # theirs stays pinned
    assert fake.pinned_message(GROUP)["document"]["file_name"] == INDEX  # a fresh index on top
    assert bot.stop()[0] == 0


def test_a_429_storm_during_a_hand_over_loses_nobody_and_pins_one_index(fake, run_bot):
    settings = {"BACKUP_CHAT_ID": str(GROUP), "BACKUP_AFTER_CHANGE_SECONDS": "2"}
    first = run_bot(folder="a", **settings)
    serving(first)
    note = fake.pin_by_someone(GROUP, "Welcome to the backups group.")
    users = Users(fake, first_id=8100)
    users.one()
    users.start()
    second = run_bot(folder="b", **settings)  # a rolling redeploy
    second.wait_for_log("may still be writing", timeout=60)
    fake.flood(6, chat_id=GROUP)  # the storm breaks as the old writer hands over
    second.wait_for_log("serving as", timeout=90)
    users.stop()
    users.one()  # the new writer answers
    assert second.stop()[0] == 0
    assert first.stop()[0] == 0
    assert set(users.answered) <= users_in(second.db_path)  # whoever was answered is kept
    reasons = [b["reason"] for b in backups_in_chat(fake, GROUP)]
    assert "handover" in reasons  # the final backup waited the storm out, and reached the chat
    assert len(indexes_pinned(fake)) == 1
    assert note["message_id"] in [m["message_id"] for m in fake.pinned_messages(GROUP)]
    refused = [c for c in chat_calls(fake) if c["status"] == 429]
    assert len(refused) <= 6  # each process learns once per call it had in flight, then waits
    assert ADMIN_ID not in users.answered
