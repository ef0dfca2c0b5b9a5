"""Redeploys and crashes lose nothing: one writer at a time, hand-over between instances, fencing,
on-change backups, a patient start. The end-to-end tests run several real `python main.py`
processes, each on a disk of its own, against the Bot API stand-in, as a host like Koyeb does."""

import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bot_process import ADMIN_ID
from conftest import NOW
from helpers import backups_in_chat, chat_index, free_port, health, users_in

import database
import startup
from config import load_settings
from lease import HeadState
from s3_destination import S3Bucket

CHAT = -1005550001


# --- fencing, on the engine ---------------------------------------------------------------------


@pytest.mark.parametrize("newer", ["writing", "final"])  # final: it has stopped cleanly already
def test_a_stale_instance_never_replaces_a_newer_generations_backup_anywhere(
    newer, tmp_path, fake, s3_server, s3_env, monkeypatch
):

    def instance(folder, generation, name):
        settings = load_settings(
            {
                "BOT_TOKEN": fake.token,
                "TELEGRAM_API_URL": fake.url,
                "DB_PATH": str(tmp_path / folder / "bot.db"),
                "ADMIN_IDS": "1000",
                "BACKUP_CHAT_ID": str(CHAT),
                "S3_BUCKET": s3_server.bucket,
                "S3_PREFIX": s3_env,
                "S3_ENDPOINT_URL": s3_server.endpoint_url,
            }
        )
        db = database.open_database(settings.db_path)
        db.migrate()
        alerts = []
        engine = startup.backup_engine(
            db, settings, startup.offsite(settings), alert=lambda text: alerts.append(str(text))
        )
        engine.lease.become(generation, name)
        return db, engine, alerts

    old_db, old, old_alerts = instance("old", 4, "old-instance")
    old_db.track_message(1, None, "N", 1, "message", NOW, NOW)
    assert [i.destination for i in old.create("manual").stored] == ["local", "telegram", "s3"]

    new_db, new, _ = instance("new", 5, "new-instance")  # restored generation 4: writes 5
    new.lease.publish(HeadState.WRITING)
    new_db.track_message(2, None, "N", 2, "message", NOW, NOW)
    newest = new.create("change" if newer == "writing" else "shutdown")
    in_chat = chat_index(fake, CHAT)
    assert in_chat["head"]["state"] == newer
    in_bucket = S3Bucket(s3_server.bucket, s3_env, s3_server.endpoint_url).list()

    old_db.track_message(3, None, "N", 3, "message", NOW, NOW)  # the old one missed the hand-over
    late = old.create("shutdown")
    assert [i.destination for i in late.stored] == ["local"]  # kept on its own disk only
    assert "newer instance" in late.failures["telegram"] and "newer instance" in late.failures["s3"]
    assert not old.writing
    assert len(old_alerts) == 1 and "stopped writing" in old_alerts[0]
    assert chat_index(fake, CHAT) == in_chat  # the chat's index and head: untouched
    assert S3Bucket(s3_server.bucket, s3_env, s3_server.endpoint_url).list() == in_bucket
    assert (
        S3Bucket(s3_server.bucket, s3_env, s3_server.endpoint_url).lease.read_head().writer == "new-instance"
    )
    assert in_chat["backups"][0]["created_at"].startswith(newest.info.created_at.isoformat()[:19])
    old_db.close()
    new_db.close()


def test_a_restore_by_a_person_is_what_a_new_instance_brings_back(tmp_path, fake, monkeypatch):
    settings = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "ADMIN_IDS": "1000",
            "DB_PATH": str(tmp_path / "one" / "bot.db"),
            "BACKUP_CHAT_ID": str(CHAT),
        }
    )
    db = database.open_database(settings.db_path)
    db.migrate()
    engine = startup.backup_engine(db, settings, startup.offsite(settings))
    engine.lease.become(1, "one")
    db.track_message(1, None, "N", 1, "message", NOW, NOW)
    chosen = engine.create("manual").info
    db.track_message(2, None, "N", 2, "message", NOW, NOW)
    engine.restore(Path(chosen.location))  # back to user 1 only
    db.close()
    empty_disk = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "ADMIN_IDS": "1000",
            "BACKUP_CHAT_ID": str(CHAT),
            "DB_PATH": str(tmp_path / "two" / "bot.db"),
        }
    )
    db, engine, report = startup.prepare_database(empty_disk, startup.offsite(empty_disk))
    report.lock.release()
    assert report.restored.reason == "restore"
    assert users_in(empty_disk.db_path) == {1}  # not the pre-restore safety copy, which had user 2
    db.close()


def test_a_knock_never_costs_the_writer_a_backup_or_its_head(tmp_path, fake, s3_server, s3_env, monkeypatch):
    """The race a knock in the writer's head lost to: the waiting instance reads the chat's
    index, the writer publishes its final backup, the waiting instance writes back what it read."""
    from lease import Knock

    env = {
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.url,
        "ADMIN_IDS": "1000",
        "BACKUP_CHAT_ID": str(CHAT),
        "S3_BUCKET": s3_server.bucket,
        "S3_PREFIX": s3_env,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    writer_settings = load_settings({**env, "DB_PATH": str(tmp_path / "a" / "bot.db")})
    db = database.open_database(writer_settings.db_path)
    db.migrate()
    writer = startup.backup_engine(db, writer_settings, startup.offsite(writer_settings))
    writer.lease.become(3, "writer-a")
    writer.lease.publish(HeadState.WRITING)
    db.track_message(1, None, "N", 1, "message", NOW, NOW)
    writer.create("manual")

    waiting = startup.offsite(load_settings({**env, "DB_PATH": str(tmp_path / "b" / "bot.db")}))
    chat_lease = waiting.lease_stores[0]
    stale_pin = chat_lease.index.pinned()  # what the waiting one read, before the writer's final backup
    chat_lease.index.pinned = lambda: stale_pin
    final = writer.create("handover").info  # the writer hands over meanwhile: head 'final'
    for store in waiting.lease_stores:
        store.knock(Knock("instance-b", datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)))

    now = startup.offsite(writer_settings)  # what anyone reads now
    for destination, store in zip(now.destinations, now.lease_stores):
        assert store.read_head().state is HeadState.FINAL and store.read_head().writer == "writer-a"
        assert final.sha256 in {b.sha256 for b in destination.list()}
        assert store.read_knock() == Knock("instance-b", datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC))
    assert "Backup index of" in fake.pinned_message(CHAT)["caption"]  # the people's text kept
    writer.create("manual")  # the writer's next index keeps the request: it is for the writer to heed
    assert startup.offsite(writer_settings).lease_stores[0].read_knock() == Knock(
        "instance-b", datetime(2026, 11, 26, 12, 0, 1, tzinfo=UTC)
    )
    assert "Backup index of" in fake.pinned_message(CHAT)["caption"]
    db.close()


# --- end to end: real processes, each on its own empty disk --------------------------------------


class Users:
    """People writing to the bot all along: each new user sends /start and waits for the answer.
    `answered` are those who got one: the bot wrote them to a database before answering. A user
    never answered is a dropped update: one() raises, and stop() of the users writing all along
    (start()) fails naming them."""

    def __init__(self, fake, first_id=7000):
        self.fake, self.next_id = fake, first_id
        self.answered, self.sent, self.unanswered = [], [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.one()
            except AssertionError:  # recorded; stop() says so
                pass

    def one(self, timeout=60):
        user, self.next_id = self.next_id, self.next_id + 1
        self.sent.append(user)
        self.fake.send_text(user, "/start")
        try:
            self.fake.wait_for_message(user, "registered", timeout=timeout)
        except AssertionError:
            self.unanswered.append(user)
            raise
        self.answered.append(user)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "a user is still waiting for an answer"
        assert not self.unanswered, f"never answered (a dropped update): {self.unanswered}"


def serving(bot, timeout=60):
    return bot.wait_for_log("serving as", timeout=timeout)


SETTINGS = {"BACKUP_CHAT_ID": str(CHAT), "BACKUP_AFTER_CHANGE_SECONDS": "2"}


@pytest.mark.e2e
def test_two_rolling_redeploys_lose_no_answered_user(fake, run_bot):
    first = run_bot(folder="a", **SETTINGS)
    serving(first)
    users = Users(fake).start()
    fake.wait_for(lambda: len(users.answered) >= 5, 30, "five users answered by the first instance")

    second = run_bot(folder="b", **SETTINGS)  # rolling: the new one starts while the old one runs
    serving(second)
    fake.wait_for(lambda: len(users.answered) >= 10, 60, "users answered by the second instance")
    assert first.stop()[0] == 0  # only then the old one is stopped
    assert "handing over to a newer instance" in first.log()  # it handed over, with its final backup
    assert "handover backup backup-" in first.log()

    third = run_bot(folder="c", **SETTINGS)
    serving(third)
    fake.wait_for(lambda: len(users.answered) >= 15, 60, "users answered by the third instance")
    assert second.stop()[0] == 0
    fake.wait_for(lambda: len(users.answered) >= 18, 60, "users answered after the overlap")
    users.stop()
    assert third.stop()[0] == 0
    assert set(users.answered) <= users_in(third.db_path)
    assert len(users.answered) >= 18


@pytest.mark.e2e
def test_an_immediate_redeploy_old_stopped_new_started_together_loses_nothing(fake, run_bot):
    first = run_bot(folder="a", **SETTINGS)
    serving(first)
    users = Users(fake).start()
    fake.wait_for(lambda: len(users.answered) >= 5, 30, "five users answered")
    second = run_bot(folder="b", **SETTINGS)
    first.process.send_signal(15)  # SIGTERM at the moment the new one starts
    assert first.wait(20) == 0
    serving(second)
    fake.wait_for(lambda: len(users.answered) >= 10, 60, "users answered by the new instance")
    users.stop()
    assert second.stop()[0] == 0
    assert set(users.answered) <= users_in(second.db_path)


@pytest.mark.e2e
def test_two_instances_started_together_one_serves_and_the_other_takes_over_later(fake, run_bot):
    first = run_bot(folder="a", **SETTINGS)
    serving(first)
    for n in range(3):
        Users(fake, first_id=100 + n).one()
    assert first.stop()[0] == 0  # a clean stop: its final backup is the newest
    b, c = run_bot(folder="b", **SETTINGS), run_bot(folder="c", **SETTINGS)
    users = Users(fake, first_id=9000)
    users.one()
    # One of them serves, the other is passive: either it lost the claim, or it served first and
    # handed over when the other made itself known. Either way, one writer at a time.
    fake.wait_for(lambda: "passive:" in b.log() + c.log(), 60, "one of them passive")
    other, server = (b, c) if "passive:" in b.log() else (c, b)
    serving(server)
    for _ in range(3):
        users.one()
    assert "passive:" not in server.log()
    assert server.stop()[0] == 0  # the one serving stops cleanly: the other takes over
    serving(other)
    for _ in range(3):
        users.one()
    assert other.stop()[0] == 0
    assert set(users.answered) | {100, 101, 102} <= users_in(other.db_path)
    assert len(users.answered) == 7


@pytest.mark.e2e
def test_a_killed_writer_loses_at_most_the_on_change_window(fake, run_bot):
    first = run_bot(folder="a", **SETTINGS)
    serving(first)
    users = Users(fake)
    for _ in range(6):
        users.one()
    first.wait_for_log("change backup backup-", timeout=30)  # within BACKUP_AFTER_CHANGE_SECONDS
    fake.wait_for(
        lambda: len(chat_index(fake, CHAT)["backups"]) and chat_index(fake, CHAT)["rolling"],
        30,
        "the on-change backup in the chat",
    )
    first.kill()  # SIGKILL: no hand-over, no shutdown backup
    second = run_bot(folder="b", HANDOVER_WAIT_SECONDS="1", **SETTINGS)
    serving(second)
    assert second.stop()[0] == 0
    assert set(users.answered) <= users_in(second.db_path)


@pytest.mark.e2e
def test_the_network_down_at_boot_the_bot_waits_then_restores(fake, run_bot):
    first = run_bot(folder="a", **SETTINGS)
    serving(first)
    for n in range(3):
        Users(fake, first_id=300 + n).one()
    assert first.stop()[0] == 0

    fake.set_outage(True)  # the new instance boots with the network not ready
    second = run_bot(folder="b", STARTUP_RESTORE_WAIT_SECONDS="60", **SETTINGS)
    second.wait_for_log("asking again in 2 s", timeout=30)  # it waited, and asks again
    assert "serving as" not in second.log()  # never serving an empty database meanwhile
    fake.set_outage(False)
    serving(second)
    assert "from telegram" in second.wait_for_log("Restored at startup")
    user = Users(fake, first_id=300)
    user.one()  # a user from before: the restored database knows them
    assert second.stop()[0] == 0
    assert users_in(second.db_path) == {300, 301, 302}


@pytest.mark.e2e
def test_the_network_down_longer_than_the_wait_starts_paused_and_lifts_the_pause(fake, run_bot):
    fake.set_outage(True)
    bot = run_bot(folder="a", STARTUP_RESTORE_WAIT_SECONDS="1", **SETTINGS)
    bot.wait_for_log("started on an empty database although backups may exist", timeout=30)
    serving(bot)
    fake.set_outage(False)
    bot.wait_for_log("holds no backup", timeout=60)  # the chat answered: nothing to bury
    before = len(fake.messages(ADMIN_ID))
    fake.send_text(ADMIN_ID, "/backup")
    assert "telegram" in fake.wait_for_message(ADMIN_ID, "✅ Backup backup-", after=before)["text"]
    assert bot.stop()[0] == 0


@pytest.mark.e2e
def test_while_it_waits_for_a_frozen_writer_the_health_endpoint_says_so(fake, run_bot):

    first = run_bot(folder="a", **SETTINGS)
    first.wait_for_log("bot started:")
    Users(fake, first_id=500).one()
    os.kill(first.process.pid, signal.SIGSTOP)  # frozen: it cannot hand over
    try:
        port = free_port()
        second = run_bot(folder="b", PORT=str(port), HANDOVER_WAIT_SECONDS="60", **SETTINGS)
        second.wait_for_log("may still be writing")
        status = health(port)  # 200 while it waits on purpose: the host must not kill it
        assert status["state"] == "waiting" and status["generation"] is None
    finally:
        os.kill(first.process.pid, signal.SIGCONT)  # it wakes up to the 409, and hands over
    serving(second)
    assert health(port)["state"] == "serving"
    first.wait_for_log("passive:")
    assert second.stop()[0] == 0 and first.stop()[0] == 0
    assert users_in(second.db_path) == {500}


@pytest.mark.e2e
def test_a_writer_whose_data_is_not_off_the_machine_yet_is_waited_for(tmp_path, fake, run_bot):
    # A writer with a database of its own whose startup backup could not reach the chat: the
    # chat holds its claim but no backup. A new instance must not serve an empty database.
    seeded = database.open_database(str(tmp_path / "a" / "data" / "bot.db"))
    seeded.migrate()
    for user in (601, 602):
        seeded.track_message(user, None, "N", user, "message", NOW, NOW)
    seeded.close()
    fake.fail_next("sendDocument", 500, when=lambda params, files: "-startup" in files["document"][0])
    first = run_bot(folder="a", **SETTINGS)
    first.wait_for_log("bot started:")
    assert chat_index(fake, CHAT)["backups"] == []
    second = run_bot(folder="b", **SETTINGS)
    serving(second)
    assert "handover" in [b["reason"] for b in backups_in_chat(fake, CHAT)]  # waited for: it handed over
    assert second.stop()[0] == 0 and first.stop()[0] == 0
    assert users_in(second.db_path) == {601, 602}


@pytest.mark.parametrize(
    "restored, head, free",
    [
        (None, None, True),  # nothing anywhere: a new deployment
        (None, ("writing", "b", 3, 0), False),  # a writer announced itself, nothing off the machine yet
        (None, ("final", "b", 3, 0), True),
        (("manual", "a", 3), None, False),  # not final: its writer may still run
        (("shutdown", "a", 3), None, True),
        (("handover", "a", 3), ("final", "a", 3, 0), True),  # the head's final is the one restored
        (("shutdown", "a", 3), ("writing", "b", 4, 0), False),  # someone announced themselves since
        (("shutdown", "a", 3), ("final", "b", 4, 0), False),  # a newer final exists (not restorable)
        (("shutdown", "a", 3), ("writing", "a", 3, 0), True),  # its own claim: the final head was lost
        (("shutdown", "a", 3), ("writing", "b", 3, 0), False),  # another claimed the same generation
        # Clocks hours apart decide nothing: the generation does.
        (("shutdown", "a", 3), ("writing", "b", 2, 3 * 3600), True),
        (("shutdown", "a", 3), ("writing", "b", 4, -3 * 3600), False),
    ],
)
def test_when_an_instance_may_serve_at_once(restored, head, free):
    from backup_format import BackupInfo
    from lease import Head
    from lifecycle import free_to_serve

    info = (
        BackupInfo(NOW, restored[0], 2, {}, "", 0, writer=restored[1], generation=restored[2])
        if restored
        else None
    )
    since = NOW + timedelta(seconds=head[3]) if head else None
    current = (
        Head(head[2], head[1], HeadState(head[0]), since, since if head[0] == "final" else None)
        if head
        else None
    )
    assert free_to_serve(info, current) is free


def test_a_quiet_writers_backup_lets_an_instance_serve_at_once():
    """A writer that wrote nothing since a backup every place holds says so (head QUIET,
    naming it): an instance that restores it, or a later one of that writer, serves at once."""
    from backup_format import BackupInfo
    from lease import Head
    from lifecycle import free_to_serve

    def backup(seconds, generation=3, writer="a"):
        return BackupInfo(
            NOW + timedelta(seconds=seconds), "change", 2, {}, "", 0, writer=writer, generation=generation
        )

    quiet = Head(3, "a", HeadState.QUIET, NOW + timedelta(seconds=70), NOW + timedelta(seconds=10))
    assert free_to_serve(backup(10), quiet)  # the one it names
    assert free_to_serve(backup(20), quiet)  # a later one of the same writer holds it too
    assert not free_to_serve(backup(5), quiet)  # an older one lacks what came after
    assert free_to_serve(backup(10, 2, "before"), quiet)  # named by it: the one its writer restored
    assert not free_to_serve(backup(10), Head(3, "a", HeadState.WRITING, NOW))  # not quiet: wait


def test_a_writer_heeds_a_new_knock_of_another_instance_while_it_is_fresh_on_its_own_clock():
    from lease import KNOCK_FRESH_SECONDS, Knock, KnockWatch

    now = [100.0]
    at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    there_before = Knock("gone", at)
    watch = KnockWatch("me", there_before, clock=lambda: now[0])
    assert not watch.asking(None)
    assert not watch.asking(there_before)  # already there when the writer began serving
    assert not watch.asking(Knock("me", at))  # its own, from its wait
    # Hours ahead, or behind, on the knocker's clock: what counts is when this writer saw it.
    assert watch.asking(Knock("new", at + timedelta(hours=3)))
    assert watch.asking(Knock("other", at - timedelta(hours=3)))
    now[0] += KNOCK_FRESH_SECONDS + 1  # the instance that knocked is gone: no new knock since
    assert not watch.asking(Knock("new", at + timedelta(hours=3)))
    assert watch.asking(Knock("new", at + timedelta(hours=3, seconds=3)))  # it knocks again


@pytest.mark.e2e
def test_a_writer_that_handed_over_to_an_instance_that_died_serves_again(
    tmp_path, fake, run_bot, monkeypatch
):
    from test_webhook import webhook_env

    from lease import Knock

    # (no on-change backups: each rewrites the index, and with it the caption a knock is on)
    writer = run_bot(
        folder="a",
        **{**webhook_env(free_port()), "HANDOVER_WAIT_SECONDS": "1", "BACKUP_AFTER_CHANGE_SECONDS": "0"},
    )
    writer.wait_for_log("bot started:")  # its startup backup, which rewrites the index, is done
    users = Users(fake)
    users.one()
    # An instance of a deploy that was then cancelled: it knocks, and is gone.
    chat = startup.offsite(
        load_settings(
            {
                "BOT_TOKEN": fake.token,
                "TELEGRAM_API_URL": fake.url,
                "DB_PATH": str(tmp_path / "gone" / "bot.db"),
                "BACKUP_CHAT_ID": str(CHAT),
            }
        )
    ).lease_stores[0]
    chat.knock(Knock("gone-instance", datetime.now(UTC)))
    writer.wait_for_log("gone-instance asks this instance to hand over", timeout=30)
    writer.wait_for_log("passive:")
    writer.wait_for_log("Nobody took over", timeout=60)
    users.one()  # answered again
    assert writer.stop()[0] == 0
    assert set(users.answered) <= users_in(writer.db_path) and len(users.answered) == 2
