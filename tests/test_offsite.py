"""Off-site copies through the Telegram chat destination, against the local Bot API stand-in:
sending and pinning, read-back, encryption, Telegram's size limits, and the startup search."""

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import NOW
from helpers import chat_index, newest_backup_message

import database
import startup
from backup_format import SQLITE_MAGIC, BackupError
from config import load_settings
from engine import BackupEngine
from sealing import SEALED_MAGIC
from telegram_index import FORMAT_UNSEALED, Seal

CHAT = -1001234567890  # a channel the bot is an admin of
MB = 1 << 20


def settings_for(tmp_path, fake, **env):
    return load_settings(
        {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "DB_PATH": str(tmp_path / "data" / "bot.db"),
            "ADMIN_IDS": "1000",
            "BACKUP_CHAT_ID": str(CHAT),
            **env,
        }
    )


pytestmark = pytest.mark.usefixtures("quick_pace")  # what the bot does in the chat, not how fast


class Setup:
    """A live database, its engine with the Telegram chat as off-site destination, and the
    alerts the admins would have received."""

    def __init__(self, tmp_path, fake, **env):
        self.settings = settings_for(tmp_path, fake, **env)
        self.db = database.open_database(self.settings.db_path)
        self.db.migrate()
        self.alerts = []
        self.engine = startup.backup_engine(
            self.db,
            self.settings,
            startup.offsite(self.settings),
            alert=lambda text: self.alerts.append(str(text)),
        )

    def add_users(self, *user_ids):
        for user_id in user_ids:
            self.db.track_message(user_id, f"user{user_id}", "N", user_id, "message", NOW, NOW)

    def pad(self, megabytes):
        """Users with incompressible names, so the backup file really is that large."""
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT INTO users (user_id, username, first_seen, last_seen)"
                " VALUES (?, randomblob(?), '2026-11-26', '2026-11-26')",
                [(10**9 + n, MB) for n in range(megabytes)],
            )


def test_a_backup_is_sent_without_sound_listed_in_the_pinned_index_and_read_back(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1, 2)
    result = s.engine.create("manual")
    assert [info.destination for info in result.stored] == ["local", "telegram"]
    assert all(sent["params"]["disable_notification"] is True for sent in fake.requests("sendDocument"))
    message = newest_backup_message(fake, CHAT)
    assert message["document"]["file_name"] == f"backup_test_bot-{result.info.name}"
    assert "manual" in message["caption"] and "users 2" in message["caption"]
    # a short checksum, for people; the whole one is in the header and the index
    assert (
        f"sha256 {result.info.sha256[:12]}…" in message["caption"]
        and result.info.sha256 not in message["caption"]
    )
    assert fake.requests("getFile") and fake.requests("downloadFile")  # the read-back
    assert fake.file_bytes(message["document"]["file_id"]) == Path(result.info.location).read_bytes()
    assert s.engine.overview().destinations["telegram"].last_success is not None and s.alerts == []


def test_older_backups_stay_in_the_chat_and_the_index_lists_them_newest_first(tmp_path, fake):
    s = Setup(tmp_path, fake)
    for user_id in (1, 2, 3):
        s.add_users(user_id)
        s.engine.create("manual")
    backups = [
        m for m in fake.messages(CHAT) if "-backup-2" in (m.get("document") or {}).get("file_name", "")
    ]
    assert len(backups) == 3
    listed = s.engine.listing(only="telegram").backups
    assert [info.row_counts["users"] for info in listed] == [3, 2, 1]
    assert [e["parts"][0]["message_id"] for e in chat_index(fake, CHAT)["backups"]] == [
        m["message_id"] for m in reversed(backups)
    ]


def test_encrypted_copies_hold_nothing_readable_and_restore_with_the_passphrase(tmp_path, fake):
    s = Setup(tmp_path, fake, BACKUP_PASSPHRASE="correct horse battery staple")
    s.add_users(11, 12)
    s.engine.create("manual")
    message = newest_backup_message(fake, CHAT)
    sent = fake.file_bytes(message["document"]["file_id"])
    assert sent.startswith(SEALED_MAGIC) and SQLITE_MAGIC not in sent and b"user11" not in sent
    assert message["document"]["file_name"].endswith(".db.zst.sealed")
    local = s.engine.listing(only="local").backups[0]
    assert SQLITE_MAGIC not in Path(local.location).read_bytes()[:64]  # local copy: zstd, not age
    assert not Path(local.location).read_bytes().startswith(SEALED_MAGIC)
    with sqlite3.connect(f"{s.settings.db_path}.backup") as plain:  # never encrypted on this disk
        assert plain.execute("SELECT count(*) FROM users").fetchone() == (2,)

    without = startup.backup_engine(s.db, settings_for(tmp_path, fake), startup.offsite(s.settings))
    with pytest.raises(BackupError, match="the backup is encrypted: set BACKUP_PASSPHRASE"):
        without.restore(without.listing(only="telegram").backups[0])  # refused before anything changes

    s.add_users(13)
    restored = s.engine.restore(s.engine.listing(only="telegram").backups[0])
    assert restored.encrypted and restored.row_counts["users"] == 2
    assert s.db.table_row_counts()["users"] == 2


def test_a_telegram_failure_never_fails_the_local_backup_and_is_alerted_once(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    fake.fail_next("sendDocument", 500, "Internal Server Error", times=2)
    first = s.engine.create("manual")
    second = s.engine.create("manual")
    for result in (first, second):
        assert [i.destination for i in result.stored] == ["local"]
        assert "Internal Server Error" in result.failures["telegram"]
    assert len(s.alerts) == 1 and "telegram" in s.alerts[0]  # once per streak
    assert s.engine.overview().destinations["telegram"].failing
    third = s.engine.create("manual")  # retried at the next backup
    assert [i.destination for i in third.stored] == ["local", "telegram"]
    assert s.alerts[-1] == "✅ Backups to telegram work again."


def test_a_copy_that_reads_back_wrong_is_a_failure(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    fake.fail_next("getFile", 400, "Bad Request: invalid file_id")
    result = s.engine.create("manual")
    assert "read-back failed" in result.failures["telegram"]
    assert [i.destination for i in result.stored] == ["local"]


def part_messages(fake):
    """The backup documents in the chat that are parts, and their sizes."""
    return [
        m
        for m in fake.messages(CHAT)
        if ".part" in (m.get("document") or {}).get("file_name", "") and not m.get("deleted")
    ]


def test_a_backup_over_the_download_limit_travels_in_parts_and_comes_back_whole(tmp_path, fake):
    s = Setup(tmp_path, fake, TELEGRAM_FILE_LIMITS="telegram")
    s.add_users(1)
    s.pad(45)  # a 45 MB backup: over what a bot may download
    result = s.engine.create("manual")
    assert result.info.size > 40 * MB and "telegram" in [i.destination for i in result.stored]
    parts = part_messages(fake)
    assert len(parts) == 3 and all(m["document"]["file_size"] <= 19 * MB for m in parts)
    (entry,) = chat_index(fake, CHAT)["backups"]
    assert [p["message_id"] for p in entry["parts"]] == [m["message_id"] for m in parts]
    assert fake.requests("downloadFile") and s.alerts == []  # read back, part by part
    restored = s.engine.verify(s.engine.listing(only="telegram").backups[0])
    assert restored.row_counts["users"] == 46


def test_a_backup_with_a_damaged_or_missing_part_is_unusable_never_half_restored(tmp_path, fake):
    s = Setup(tmp_path, fake, TELEGRAM_FILE_LIMITS="telegram", BACKUP_READBACK="off")
    s.add_users(1)
    s.pad(25)
    s.engine.create("manual")
    s.add_users(2)
    s.engine.create("manual")
    newer, older = s.engine.listing(only="telegram").backups[:2]
    _, second_of_older, first_of_newer, _ = part_messages(fake)  # in the order they were sent
    fake.damage_file(first_of_newer["document"]["file_id"])  # one bit flipped, at rest
    with pytest.raises(BackupError, match="part 1 of 2 is damaged"):
        s.engine.restore(newer)
    fake.delete_message_as_admin(CHAT, second_of_older["message_id"])  # a part deleted, file and all
    with pytest.raises(BackupError, match="part 2 of 2: Telegram would not"):
        s.engine.restore(older)
    assert s.db.table_row_counts()["users"] == 27  # untouched by either


def test_a_self_hosted_server_takes_a_large_backup_as_one_document(tmp_path, fake):
    s = Setup(tmp_path, fake, TELEGRAM_FILE_LIMITS="none")
    fake.upload_limit = fake.download_limit = 1 << 30  # a local Bot API server lifts both limits
    s.add_users(1)
    s.pad(25)
    result = s.engine.create("manual")
    assert "telegram" in [i.destination for i in result.stored] and part_messages(fake) == []
    (entry,) = chat_index(fake, CHAT)["backups"]
    assert len(entry["parts"]) == 1 and entry["parts"][0]["size"] == result.info.size


def test_a_server_said_to_have_no_limits_that_refuses_a_whole_backup_gets_it_in_parts(tmp_path, fake):
    s = Setup(tmp_path, fake, TELEGRAM_FILE_LIMITS="none")  # but it keeps the 50 MB (a proxy)
    s.add_users(1)
    s.pad(52)  # a backup over 50 MB: refused whole with 413 "Request Entity Too Large"
    result = s.engine.create("manual")
    assert result.info.size > 50 * MB and "telegram" in [i.destination for i in result.stored]
    assert 413 in [c["status"] for c in fake.requests("sendDocument")]  # tried whole first
    parts = part_messages(fake)
    assert len(parts) == 3 and all(m["document"]["file_size"] <= 19 * MB for m in parts)
    assert s.alerts == []
    restored = s.engine.verify(s.engine.listing(only="telegram").backups[0])
    assert restored.row_counts["users"] == 53


def test_startup_on_an_empty_disk_restores_the_pinned_backup(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1, 2, 3)
    s.engine.create("manual")
    s.db.close()
    empty_disk = settings_for(tmp_path / "new-instance", fake, BACKUP_CHAT_ID=str(CHAT))
    alerts = []
    db, _engine, report = startup.prepare_database(
        empty_disk, startup.offsite(empty_disk), alert=lambda text: alerts.append(str(text))
    )
    report.lock.release()
    assert report.restored.destination == "telegram"
    assert db.table_row_counts()["users"] == 3
    assert len(alerts) == 1 and "Restored at startup" in alerts[0] and "telegram" in alerts[0]


@pytest.mark.parametrize("kind", ["supergroup", "channel"])  # a channel's posts carry no sender
def test_an_index_posted_and_pinned_by_someone_else_is_never_taken_for_the_bots(kind, tmp_path, fake):
    if kind == "channel":
        fake.make_channel(CHAT)
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    s.db.close()
    # An index of the format from before the seal, which the bot trusts only when it posted it,
    # naming no backups at all: read, it would hide the real one.
    forged = {**chat_index(fake, CHAT), "format": FORMAT_UNSEALED, "backups": [], "seal": None}
    name = fake.pinned_message(CHAT)["document"]["file_name"]
    update = fake.send_document(999, name, json.dumps(forged).encode(), chat_id=CHAT)
    posted = update.get("message") or update["channel_post"]
    fake.pin(CHAT, posted["message_id"])
    assert fake.pinned_message(CHAT)["message_id"] == posted["message_id"]

    empty_disk = settings_for(tmp_path / "new-instance", fake)
    db, _engine, report = startup.prepare_database(empty_disk, startup.offsite(empty_disk))
    report.lock.release()
    assert report.restored is not None and report.restored.destination == "telegram"
    assert db.table_row_counts()["users"] == 1  # the bot's own index, found beneath
    if kind == "supergroup":  # its sender shows it is not the bot's: not even downloaded
        fetched = [c["params"].get("file_id") for c in fake.requests("getFile")]
        assert posted["document"]["file_id"] not in fetched
    db.close()


def test_startup_takes_the_newest_of_all_destinations_and_survives_a_failing_one(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")  # local and telegram
    s.add_users(2)
    BackupEngine(s.db, s.settings).create("manual")  # only locally: the newest overall
    s.db.close()
    Path(s.settings.db_path).unlink()
    fake.fail_next("getChat", 502, "Bad Gateway")
    db, _engine, report = startup.prepare_database(s.settings, startup.offsite(s.settings))
    report.lock.release()
    assert report.restored.destination == "local" and db.table_row_counts()["users"] == 2
    assert "telegram" in [u.destination for u in report.unreachable]


def test_an_empty_database_never_buries_a_real_backup(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1, 2)
    s.engine.create("manual")
    real = fake.pinned_message(CHAT)
    s.db.close()
    new_disk = settings_for(tmp_path / "new-instance", fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    fake.fail_next("getChat", 502, "Bad Gateway")  # Telegram cannot even be asked, and no wait
    alerts = []
    db, engine, report = startup.prepare_database(
        new_disk, startup.offsite(new_disk), alert=lambda text: alerts.append(str(text))
    )
    assert report.restored is None and "Bad Gateway" in report.offsite_paused
    assert any("Nothing is sent off the machine" in a for a in alerts)
    db.track_message(9, None, "N", 9, "message", NOW, NOW)
    result = engine.create("manual")
    assert [i.destination for i in result.stored] == ["local"]
    assert fake.pinned_message(CHAT) == real  # nothing new pinned
    # the pause outlives a restart on the same disk, where the database is no longer empty
    db.close()
    report.lock.release()
    db, engine, report = startup.prepare_database(new_disk, startup.offsite(new_disk))
    assert report.restore_reason is None and engine.offsite_paused()
    engine.resume_offsite()  # what /start_fresh YES does
    engine.create("manual")
    assert fake.pinned_message(CHAT) != real
    report.lock.release()


def test_a_restore_asked_for_by_a_person_lets_copies_leave_again(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    s.engine.pause_offsite("test")
    s.engine.restore(s.engine.listing(only="telegram").backups[0])
    assert s.engine.offsite_paused() is None


def test_after_a_startup_restore_an_unchanged_database_is_not_sent_again(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    s.db.close()
    empty_disk = settings_for(tmp_path / "new-instance", fake)
    _db, engine, report = startup.prepare_database(empty_disk, startup.offsite(empty_disk))
    report.lock.release()
    assert engine.create("startup").skipped
    sent = [r for r in fake.requests("sendDocument") if "-backup-2" in r["params"]["document"]["file_name"]]
    assert len(sent) == 1


def test_a_first_start_before_the_admin_wrote_to_the_bot_is_not_paused(tmp_path, fake):
    settings = settings_for(tmp_path, fake, BACKUP_CHAT_ID="1000")
    fake.fail_next("getChat", 400, "Bad Request: chat not found")
    _db, _engine, report = startup.prepare_database(settings, startup.offsite(settings))
    report.lock.release()
    assert report.restored is None and report.offsite_paused is None
    assert report.unreachable == []


def test_a_copy_whose_bytes_differ_when_read_back_is_a_failure(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    fake.corrupt_next_download()  # Telegram gives back other bytes than it was sent
    result = s.engine.create("manual")
    assert re.search(
        r"read-back failed: .*(differs from the one sent|not what was sent)", result.failures["telegram"]
    )
    assert [i.destination for i in result.stored] == ["local"]
    assert len(s.alerts) == 1 and "telegram" in s.alerts[0]


def test_a_startup_restore_of_a_backup_taken_while_paused_keeps_the_pause(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1, 2)
    s.engine.pause_offsite("started on an empty database although backups may exist")
    s.engine.create("manual")  # kept on this machine only
    assert fake.requests("sendDocument") == []
    s.db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{s.settings.db_path}{suffix}").unlink(missing_ok=True)
    db, engine, report = startup.prepare_database(s.settings, startup.offsite(s.settings))
    report.lock.release()
    assert report.restored.destination == "local" and db.table_row_counts()["users"] == 2
    assert "backups may exist" in engine.offsite_paused()
    engine.create("manual")
    assert fake.requests("sendDocument") == []  # still nothing leaves the machine


def test_a_truncated_download_is_a_one_line_failure(tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(1)
    fake.truncate_next_download()
    result = s.engine.create("manual")
    assert "read-back failed: cannot reach Telegram" in result.failures["telegram"]
    assert "\n" not in result.failures["telegram"]
    s.engine.create("manual")  # the next one is read back whole
    listed = s.engine.listing(only="telegram").backups[0]
    fake.truncate_next_download()
    with pytest.raises(BackupError, match=r"cannot fetch .* from telegram: cannot reach Telegram"):
        s.engine.verify(listed)


def test_on_change_backups_are_edited_into_one_message_per_level_and_a_scheduled_one_retires_them(
    tmp_path, fake
):
    s = Setup(tmp_path, fake)

    def backups():
        return [
            m
            for m in fake.messages(CHAT)
            if "-backup-2" in (m.get("document") or {}).get("file_name", "") and not m.get("deleted")
        ]

    s.pad(1)  # enough that a few new rows are far less than a full backup
    levels_seen = set()
    for user in range(1, 6):  # a full one (no chain yet), then deltas at levels d, d, d, c
        before = len(backups())
        s.add_users(user)
        info = s.engine.create("change").stored[-1]
        levels_seen.add(info.delta.level if info.delta else 0)
        assert len(backups()) <= before + 1  # at most one new message per on-change backup
    assert levels_seen == {0, 3, 4}
    assert len(backups()) == len(levels_seen)  # one message per level, edited in place
    index = chat_index(fake, CHAT)
    assert sorted(index["rolling"]) == sorted(m["message_id"] for m in backups())
    newest = index["backups"][0]
    assert newest["delta"]["level"] == 3 and len(newest["delta"]["chain"]) == 1
    message = next(m for m in backups() if m["message_id"] == newest["parts"][0]["message_id"])
    assert (
        fake.file_bytes(message["document"]["file_id"]) == Path(s.engine.newest_local().location).read_bytes()
    )
    s.add_users(6)
    s.engine.create("scheduled")
    assert [m["document"]["file_name"].rsplit("-", 1)[1] for m in backups()] == ["scheduled.db.zst"]
    assert chat_index(fake, CHAT)["rolling"] == []
    s.add_users(7)
    s.engine.create("change")  # the next change starts a new message
    assert len(backups()) == 2


def test_the_pause_resolves_itself_once_the_chat_answers(tmp_path, fake):
    import tasks

    s = Setup(tmp_path, fake)
    s.add_users(1, 2)
    s.engine.create("manual")  # a real backup in the chat
    s.db.close()
    fake.set_outage(True)
    empty = settings_for(tmp_path / "new-instance", fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    alerts = []
    deliver = {"ok": False}
    db, engine, report = startup.prepare_database(
        empty, startup.offsite(empty), alert=lambda text: alerts.append(str(text)) or deliver["ok"]
    )
    report.lock.release()
    assert report.paused_unreachable and engine.offsite_paused()
    resolve = tasks.PauseResolver(engine, db, lambda text: alerts.append(str(text)) or deliver["ok"])
    resolve()  # still down: nothing changes
    assert engine.offsite_paused() and db.table_row_counts()["users"] == 0
    fake.set_outage(False)
    resolve()  # it answers, holds a backup, and nothing was written since the start: restored
    assert db.table_row_counts()["users"] == 2 and engine.offsite_paused() is None
    assert "Restored" in alerts[-1] and resolve.done
    db.close()


def test_when_people_wrote_meanwhile_the_admins_are_told_until_the_alert_arrives(tmp_path, fake):
    import tasks

    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    s.db.close()
    fake.set_outage(True)
    empty = settings_for(tmp_path / "new-instance", fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    db, engine, report = startup.prepare_database(empty, startup.offsite(empty))
    report.lock.release()
    told, deliver = [], {"ok": False}
    resolve = tasks.PauseResolver(engine, db, lambda text: told.append(str(text)) or deliver["ok"])
    db.track_message(9, None, "N", 9, "message", NOW, NOW)  # a user wrote to the empty bot
    fake.set_outage(False)
    resolve()
    resolve()  # the alert did not arrive: told again
    deliver["ok"] = True
    resolve()
    resolve()  # it arrived: not again
    assert len(told) == 3 and all("🆕 Start fresh" in t and "♻️ Restore" in t for t in told)
    assert engine.offsite_paused() and db.table_row_counts()["users"] == 1  # nothing restored over it
    db.close()


def empty_disk_start(tmp_path, fake, folder="new-instance", **env):
    """A start on an empty disk, with the admins' alerts collected."""
    settings = settings_for(tmp_path / folder, fake, **env)
    alerts = []
    db, _engine, report = startup.prepare_database(
        settings,
        startup.offsite(settings, alert=lambda text: alerts.append(str(text))),
        alert=lambda text: alerts.append(str(text)),
    )
    report.lock.release()
    return db, report, alerts


@pytest.mark.parametrize("damage", ["a part missing", "a flipped byte", "the wrong passphrase"])
def test_when_the_newest_backup_is_damaged_the_next_is_restored_and_the_admins_told_why(
    damage, tmp_path, fake
):
    s = Setup(tmp_path, fake, TELEGRAM_FILE_LIMITS="telegram", BACKUP_PASSPHRASE="the right passphrase")
    s.add_users(1)
    s.pad(20)  # 21 users; two parts a backup
    s.engine.create("manual")
    s.add_users(2)
    if damage == "the wrong passphrase":  # sealed with another passphrase (an old one, say)
        startup.backup_engine(
            s.db,
            settings_for(
                tmp_path, fake, TELEGRAM_FILE_LIMITS="telegram", BACKUP_PASSPHRASE="an old passphrase"
            ),
            startup.offsite(s.settings),
        ).create("manual")
    else:
        s.engine.create("manual")
        newest = part_messages(fake)[-1]  # the second part of the newest backup
        if damage == "a part missing":
            fake.delete_message_as_admin(CHAT, newest["message_id"])
        else:
            fake.damage_file(newest["document"]["file_id"])
    s.db.close()
    db, _report, alerts = empty_disk_start(
        tmp_path, fake, TELEGRAM_FILE_LIMITS="telegram", BACKUP_PASSPHRASE="the right passphrase"
    )
    assert db.table_row_counts()["users"] == 21  # the backup before the damaged one
    (alert,) = [a for a in alerts if "Restored at startup" in a]
    reason = {
        "a part missing": "part 2 of 2: Telegram does not have that file any more",  # the raw words: the log's
        "a flipped byte": "part 2 of 2 is damaged",
        "the wrong passphrase": "wrong BACKUP_PASSPHRASE",
    }[damage]
    assert "A newer backup was passed over:" in alert and reason in alert
    db.close()


def test_a_message_pinned_over_the_index_is_found_beneath_once_and_a_fresh_index_goes_on_top(tmp_path, fake):
    """getChat shows the pinned message with the highest id: pinning the index again never
    brings it back on top. The bot looks beneath once (an empty disk), pins theirs back, and
    its next write sends a fresh index on top; their pin stays, and nobody's pins are touched
    again at the reads that follow."""
    s = Setup(tmp_path, fake)
    s.add_users(1, 2)
    s.engine.create("manual")
    s.db.close()
    old_index = fake.pinned_message(CHAT)["message_id"]
    theirs = fake.pin_by_someone(CHAT, "Welcome! Please read the rules.")
    settings = settings_for(tmp_path / "new-instance", fake)
    alerts = []
    db, engine, report = startup.prepare_database(
        settings, startup.offsite(settings, alert=alerts.append), alert=alerts.append
    )
    assert report.restored.destination == "telegram" and db.table_row_counts()["users"] == 2
    assert fake.pinned_message(CHAT)["message_id"] == theirs["message_id"]  # theirs, as it was
    unpins = len(fake.requests("unpinChatMessage"))
    engine.lease.become(2, "new-instance")
    engine.create("manual")  # the first write: a fresh index, on top
    top = fake.pinned_message(CHAT)
    assert (
        top["document"]["file_name"] == "backup_test_bot-backup-index.json"
        and top["message_id"] > theirs["message_id"]
    )
    pinned = [m["message_id"] for m in fake.pinned_messages(CHAT)]
    assert theirs["message_id"] in pinned and old_index not in pinned  # one index pinned, theirs kept
    assert [b.row_counts["users"] for b in engine.listing(only="telegram").backups][:2] == [2, 2]
    engine.listing(only="telegram")  # reads from now on find the index on top: nobody unpinned
    assert [c["params"].get("message_id") for c in fake.requests("unpinChatMessage")[unpins:]] == [old_index]
    told = [str(a) for a in alerts if "pinned another message" in str(a) or "was pinned over" in str(a)]
    assert len(told) == 2 and "found beneath it" in told[0] and "pinned a fresh index on top" in told[1]
    report.lock.release()
    db.close()


def test_with_nothing_beneath_the_other_pin_the_bot_says_it_cannot_find_its_backups(tmp_path, fake):
    fake.pin_by_someone(CHAT, "Welcome! Please read the rules.")
    db, report, alerts = empty_disk_start(tmp_path, fake)
    assert report.restored is None
    (alert,) = [a for a in alerts if "pinned another message" in a]
    assert "No index was found beneath it" in alert and "the next backup pins a new one" in alert
    db.close()


@pytest.mark.parametrize(
    "name",
    [
        "../../../../../../tmp/evil-backup-20261126T120000000Z-manual.db.zst",
        "/etc/x-backup-20261126T120000000Z-manual.db.zst",
    ],
)
def test_an_index_entry_named_like_a_path_writes_nothing_outside_the_work_folder(name, tmp_path, fake):
    s = Setup(tmp_path, fake)
    s.add_users(5)
    s.engine.create("manual")
    s.db.close()
    pinned = fake.pinned_message(CHAT)
    index = json.loads(fake.file_bytes(pinned["document"]["file_id"]))
    index["backups"][0]["name"] = name  # as if the bot's own index said so, sealed as it seals
    body = {key: value for key, value in index.items() if key != "seal"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    index["seal"] = Seal(fake.token).sign(canonical)
    fake.replace_file(pinned["document"]["file_id"], json.dumps(index).encode())
    db, report, _alerts = empty_disk_start(tmp_path, fake)
    assert report.restored is None  # the entry is left out of the index: its name is no backup's
    assert not Path("/tmp/evil-backup-20261126T120000000Z-manual.db.zst").exists()
    assert not Path("/etc/x-backup-20261126T120000000Z-manual.db.zst").exists()
    db.close()


def test_with_a_passphrase_an_unencrypted_backup_from_the_chat_is_passed_over(tmp_path, fake):
    s = Setup(tmp_path, fake)  # before the passphrase was set
    s.add_users(5)
    s.engine.create("manual")
    s.db.close()
    db, report, alerts = empty_disk_start(tmp_path, fake, BACKUP_PASSPHRASE="our passphrase")
    assert report.restored is None and db.table_row_counts()["users"] == 0
    (refusal,) = report.passed_over
    assert "not encrypted although BACKUP_PASSPHRASE is set" in refusal.reason
    assert any("not encrypted" in a for a in alerts)  # and the admins are told
    db.close()


def test_rotation_keeps_backup_keep_and_leaves_no_copy_of_the_data_in_the_chat(tmp_path, fake):
    """A bot cannot delete a message older than 48 hours, but may edit its own forever: a
    backup rotated out of the index leaves no copy of the database behind, whatever its age."""
    s = Setup(tmp_path, fake, BACKUP_KEEP="2")
    s.add_users(1)
    s.engine.create("manual")
    fake.advance_time(49 * 3600)  # the first backup is older than Telegram lets a bot delete
    for user in range(2, 5):
        s.add_users(user)
        s.engine.create("manual")
    listed = s.engine.listing(only="telegram").backups
    assert [b.row_counts["users"] for b in listed] == [4, 3]  # exactly BACKUP_KEEP, the newest
    documents = [
        m for m in fake.messages(CHAT) if "-backup-2" in (m.get("document") or {}).get("file_name", "")
    ]
    assert [bool(m.get("deleted")) for m in documents] == [True, False, False]  # the young one deleted
    blanked = [
        m for m in fake.messages(CHAT) if (m.get("document") or {}).get("file_name") == "rotated-out.txt"
    ]
    assert len(blanked) == 1  # the old one could not be deleted: its document was replaced
    assert (
        fake.file_bytes(blanked[0]["document"]["file_id"])
        == b"This backup was rotated out; its data is gone from this chat.\n"
    )
    index = chat_index(fake, CHAT)
    assert len(index["backups"]) == 2 and index["scrub"] == []
    live = {
        m["document"]["file_id"] for m in fake.messages(CHAT) if m.get("document") and not m.get("deleted")
    }
    holding_data = [f for f in live if fake.file_bytes(f).startswith((b"\x50\x2a\x4d\x18", b"telegram-bot"))]
    assert len(holding_data) == 2  # the kept backups' data, and nothing else


def test_an_on_change_backup_that_did_not_reach_the_chat_gets_there_without_a_new_write(tmp_path, fake):
    """A send that failed is tried again by the on-change job, though nothing new is written:
    else the write waits for the next one (or the scheduled backup) to leave the machine, and a
    deep sleep meanwhile loses it; and a writer never goes quiet."""
    import tasks

    s = Setup(tmp_path, fake)
    ticks = {"now": 1000.0}
    debouncer = tasks.ChangeDebouncer(5, clock=lambda: ticks["now"])

    def run():
        return tasks.backup_after_change(
            s.db,
            lambda: s.engine.create("change"),
            debouncer,
            s.engine.backed_up_changes,
            s.engine.offsite_behind,
        )

    run()
    s.add_users(1)
    assert not run()  # the window starts
    ticks["now"] += 6
    fake.set_outage(True)
    assert run()  # the on-change backup: kept here only, the chat did not answer
    assert s.engine.offsite_behind() and s.engine.everything_offsite() is None
    fake.set_outage(False)
    ticks["now"] += 6
    assert run()  # tried again: nothing new was written
    assert not s.engine.offsite_behind()
    assert s.engine.everything_offsite() is not None  # the writer may go quiet now
    index = chat_index(fake, CHAT)
    assert index is not None and fake.pinned_message(CHAT) is not None
    ticks["now"] += 100
    assert not run()  # and it stops there


def test_a_write_that_changed_nothing_leaves_the_writer_free_to_go_quiet(tmp_path, fake):
    """A write whose result is the data already off the machine (a row set to what it held):
    the on-change backup is skipped, and everything is still off the machine."""
    from conftest import sql

    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("change")
    assert s.engine.everything_offsite() is not None
    sql(s.db, "UPDATE users SET username = username")
    assert s.engine.everything_offsite() is None  # a write: it cannot know yet
    assert s.engine.create("change").info is None  # skipped: nothing changed
    assert s.engine.everything_offsite() is not None


def test_scheduled_side_pieces_are_history_in_the_chat_and_leave_it_whole_when_rotated(tmp_path, fake):
    """A scheduled backup on a chain whose full backup is history is a side piece: a new message
    that retires none of the on-change ones; rotated out, its message leaves the chat, and the
    full backup it needed stays while another kept restore point needs it."""
    s = Setup(tmp_path, fake, BACKUP_KEEP="2")
    s.pad(1)
    s.engine.create("manual")  # the full backup: history

    def live():
        return {
            m["message_id"]: m["document"]["file_name"]
            for m in fake.messages(CHAT)
            if "-backup-2" in (m.get("document") or {}).get("file_name", "") and not m.get("deleted")
        }

    s.add_users(1)
    s.engine.create("change")
    sides = []
    for user in (2, 3, 4):
        s.add_users(user)
        sides.append(s.engine.create("scheduled").stored[-1])
        assert sides[-1].delta is not None and sides[-1].delta.number == 0
    names = set(live().values())
    assert not any(sides[0].name.endswith(name.split("-", 1)[1]) for name in names)  # rotated out
    assert any(name.endswith("-manual.db.zst") for name in names)  # still needed by the others
    assert any(name.endswith("-change.delta.zst") for name in names)  # the chain's piece stayed
