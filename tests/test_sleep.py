"""Koyeb's sleep, end to end: real main.py processes frozen (SIGSTOP), thawed (SIGCONT), and
killed without SIGTERM with their disks emptied, as a light and a deep sleep do to them; in
polling and in webhook mode. What people would notice: the next message is answered at once
(no hand-over wait for an instance that no longer exists), nothing anyone was answered is lost,
the admins get no alarm of a loss that did not happen, and a thawed instance that was replaced
answers nobody."""

import os
import shutil
import signal
import time

import pytest
from bot_process import ADMIN_ID
from helpers import backup_by_admin, free_port, press, users_in
from test_handover import CHAT, Users, serving
from test_webhook import webhook_env

from i18n import ENGLISH, Text

pytestmark = pytest.mark.e2e
POLLING = {"BACKUP_CHAT_ID": str(CHAT), "BACKUP_AFTER_CHANGE_SECONDS": "2"}
LOSS = "No hand-over came"  # the alarm of a writer that stopped without a final backup


def settings_for(mode):
    return webhook_env(free_port()) if mode == "webhook" else dict(POLLING)


def head_state(fake):
    from helpers import chat_index

    pinned = fake.pinned_message(CHAT)
    return chat_index(fake, CHAT)["head"]["state"] if pinned and pinned.get("document") else None


def quiet(fake, timeout=40):
    """Wait until the writer says it is quiet: everything it wrote is off the machine."""
    return fake.wait_for(lambda: head_state(fake) == "quiet", timeout, "the writer's head: quiet")


def newest_users(fake):
    from helpers import backups_in_chat

    backups = backups_in_chat(fake, CHAT)
    return backups[0]["row_counts"].get("users", 0) if backups else 0


def alerts(fake):
    return [m.get("text") or "" for m in fake.messages(ADMIN_ID)]


@pytest.mark.parametrize("mode", ["polling", "webhook"])
def test_a_light_sleep_then_a_message_is_answered_at_once_by_the_same_writer(mode, fake, run_bot):
    bot = run_bot(folder="a", **settings_for(mode))
    serving(bot)
    users = Users(fake, first_id=9100)
    users.one()
    quiet(fake)
    os.kill(bot.process.pid, signal.SIGSTOP)  # light sleep: frozen, no SIGTERM
    waking = users.next_id
    fake.send_text(waking, "/start")  # the message that wakes it
    time.sleep(6)  # the freeze itself: longer than the heartbeat allows, so it must notice
    os.kill(bot.process.pid, signal.SIGCONT)
    assert "registered" in fake.wait_for_message(waking, "registered", timeout=30)["text"]
    fake.wait_for(lambda: head_state(fake) in ("writing", "quiet"), 10, "its head again")
    users.one()
    assert bot.stop()[0] == 0
    assert users_in(bot.db_path) == {*users.answered, waking}
    assert not any(LOSS in text for text in alerts(fake))


@pytest.mark.parametrize("mode", ["polling", "webhook"])
def test_a_deep_sleep_without_sigterm_then_a_message_on_an_empty_disk(mode, fake, run_bot):
    env = {**settings_for(mode), "HANDOVER_WAIT_SECONDS": "60"}
    first = run_bot(folder="a", **env)
    serving(first)
    users = Users(fake, first_id=9200)
    for _ in range(3):
        users.one()
    quiet(fake)
    messages, writes = len(fake.history(CHAT)), len(fake.writes(CHAT))
    os.kill(first.process.pid, signal.SIGSTOP)  # asleep, then thrown away: no SIGTERM, ever
    first.kill()
    shutil.rmtree(first.workdir / "data")
    waking = users.next_id
    fake.send_text(waking, "/start")
    started = time.monotonic()
    woken = run_bot(folder="b", **env)  # the next request starts a new instance, an empty disk
    assert "registered" in fake.wait_for_message(waking, "registered", timeout=50)["text"]
    assert time.monotonic() - started < 30  # not the 60 s hand-over wait for a writer that is gone
    quiet(fake)  # the waking user's registration is off the machine: ready to sleep again
    assert len(fake.history(CHAT)) == messages  # a sleep costs the chat no new message (only edits)
    assert len(fake.writes(CHAT)) > writes  # (the claim, the backup, the quiet head: edits)
    assert woken.stop()[0] == 0
    assert users_in(woken.db_path) == {*users.answered, waking}  # nothing lost
    assert not any(LOSS in text for text in alerts(fake))  # and no alarm of a loss


def test_a_redeploy_during_a_deep_sleep_leaves_one_writer_and_loses_nothing(fake, run_bot):
    first = run_bot(folder="a", **POLLING)
    serving(first)
    users = Users(fake, first_id=9300)
    users.one()
    users.one()
    quiet(fake)
    os.kill(first.process.pid, signal.SIGSTOP)
    first.kill()
    b = run_bot(folder="b", **POLLING)
    c = run_bot(folder="c", **POLLING)  # a redeploy while it starts
    for _ in range(4):
        users.one()
    for bot in (b, c):
        bot.stop()
    assert newest_users(fake) == len(users.answered)  # the newest backup off the machine holds all
    assert len(users.answered) == len(users.sent)  # everyone answered, once
    for user in users.answered:
        replies = [m for m in fake.messages(user) if "registered" in (m.get("text") or "")]
        assert len(replies) == 1, user  # by one writer only
    assert not any(LOSS in text for text in alerts(fake))


def test_a_writer_frozen_until_replaced_answers_nobody_when_thawed(fake, run_bot):
    env = {**POLLING, "HANDOVER_WAIT_SECONDS": "3"}
    first = run_bot(folder="a", **env)
    serving(first)
    users = Users(fake, first_id=9400)
    users.one()
    quiet(fake)  # 9400 is off the machine: whoever takes over has it
    users.one()
    fake.wait_for(  # 9401 is off the machine too, and the writer has not gone quiet again
        lambda: head_state(fake) == "writing" and newest_users(fake) >= 2, 20, "9401's on-change backup"
    )
    os.kill(first.process.pid, signal.SIGSTOP)  # frozen while writing: a new instance must wait
    second = run_bot(folder="b", **env)
    serving(second, timeout=60)  # after the hand-over wait, as the next generation
    users.one()
    frozen_knows = users_in(first.db_path)
    os.kill(first.process.pid, signal.SIGCONT)  # thawed
    for _ in range(3):
        users.one()  # answered by the new writer only
    first.wait_for_log("passive:", timeout=30)  # it learned it is stale
    assert users_in(first.db_path) == frozen_knows  # it answered nobody after the thaw
    assert first.stop()[0] == 0  # its final backup stays on its own disk
    users.one()  # nobody handed over to it: the new writer serves on
    assert second.stop()[0] == 0
    assert users_in(second.db_path) == set(users.answered)
    for user in users.answered:
        assert len([m for m in fake.messages(user) if "registered" in (m.get("text") or "")]) == 1


def test_a_start_without_network_then_one_with_an_empty_chat_lifts_the_pause(fake, run_bot):
    fake.set_outage(True)
    bot = run_bot(folder="a", STARTUP_RESTORE_WAIT_SECONDS="1", **POLLING)
    bot.wait_for_log("started on an empty database although backups may exist", timeout=30)
    assert bot.stop()[0] == 0  # stopped before the network came back
    fake.set_outage(False)
    again = run_bot(folder="a", **POLLING)  # the same disk: still paused, the chat empty
    serving(again)
    told = ENGLISH(
        Text(
            "▶️ Every place off the machine answers now and holds no backup, so nothing "
            "can be buried: backups leave the machine again."
        )
    )
    fake.wait_for_message(ADMIN_ID, told[:40], timeout=30)
    assert "local, telegram" in backup_by_admin(fake)  # backups leave the machine again
    assert "Storage:" in press(fake, "💾 Backup", "Storage:")["text"]
    assert again.stop()[0] == 0
