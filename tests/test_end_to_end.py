"""End to end: the real main.py process against the local Bot API stand-in."""

import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime

import pytest
from bot_process import ADMIN_ID, PROJECT, BotProcess
from conftest import NOW
from helpers import (
    backup_by_admin,
    chat_index,
    free_port,
    health,
    last_word_of_main,
    newest_backup_message,
    query,
    users_in,
)

pytestmark = pytest.mark.e2e
USER = 4242


def assert_no_secret_in(log: str, token: str) -> None:
    assert token not in log
    assert token.split(":", 1)[1] not in log


def test_start_registers_the_user_and_sigterm_exits_cleanly(fake, run_bot):
    bot = run_bot()
    fake.send_text(USER, "/start", username="ann", first_name="Ann")
    assert "Hello, Ann! You are registered" in fake.wait_for_message(USER, "registered")["text"]

    code, seconds = bot.stop(signal.SIGTERM)
    assert code == 0 and seconds < 10
    row = (
        sqlite3.connect(bot.db_path)
        .execute("SELECT username, first_name FROM users WHERE user_id = ?", (USER,))
        .fetchone()
    )
    assert row == ("ann", "Ann")
    log = bot.log()
    assert "stopped cleanly" in log
    assert "urllib3" in log and "getUpdates" in log  # DEBUG really logged the requests...
    assert_no_secret_in(log, fake.token)  # ...and not the token inside their URLs


def test_flooding_blocks_the_user(fake, run_bot):
    bot = run_bot(FLOOD_MAX_MESSAGES="3")
    for n in range(4):
        fake.send_text(USER, f"message {n}")
    notice = fake.wait_for_message(USER, "too fast")["text"]
    assert "You are blocked until" in notice
    fake.send_text(USER, "/start")
    fake.send_text(ADMIN_ID, "/start")  # its update comes after the user's /start: both fetched
    fake.wait_for_message(ADMIN_ID, "Admin panel")
    assert bot.stop()[0] == 0  # every handler in progress finishes first: nothing comes later
    assert not any("registered" in (m.get("text") or "") for m in fake.messages(USER))
    blocked_until, reason = (
        sqlite3.connect(bot.db_path)
        .execute("SELECT blocked_until, block_reason FROM users WHERE user_id = ?", (USER,))
        .fetchone()
    )
    assert blocked_until is not None and reason == "flood"


def test_an_unusable_storage_path_runs_in_memory_and_still_serves(tmp_path, fake, run_bot):
    (tmp_path / "a-file").write_text("not a folder")
    unusable = {"DB_PATH": str(tmp_path / "a-file" / "bot.db"), "BACKUP_CHAT_ID": "off"}
    bot = run_bot(**unusable)
    fake.send_text(USER, "/start", first_name="Ann")
    fake.wait_for_message(USER, "registered")
    assert "Users: 2 " in admin_statistics(fake)  # the user and the admin asking, as backups count
    assert bot.stop()[0] == 3  # nowhere to keep a final backup: it says so
    log = bot.log()
    assert "stopped WITHOUT a final backup" in last_word_of_main(log)
    assert "ERROR" in log and "IN-MEMORY" in log and "Not a directory" in log
    again = run_bot(**unusable)  # no backup anywhere: what was in memory is gone
    assert "Users: 1 " in admin_statistics(fake)  # only the admin asking: the user is gone
    assert again.stop()[0] == 3


def admin_statistics(fake) -> str:
    seen = len(fake.messages(ADMIN_ID))
    fake.send_text(ADMIN_ID, "📊 Statistics")
    return fake.wait_for_message(ADMIN_ID, "Users:", after=seen)["text"]


def test_no_log_line_holds_the_token_when_the_api_is_unreachable(fake, run_bot):
    # requests' connection errors spell out the whole URL, token included.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    bot = run_bot(api_url=f"http://127.0.0.1:{closed_port}", STARTUP_RESTORE_WAIT_SECONDS="0")
    bot.wait_for_log("deleteWebhook: ConnectionError")  # polling (its first step) failed and said so
    code, _ = bot.stop()
    log = bot.log()
    assert code == 0
    assert "cannot reach Telegram" in log and "Connection refused" in log  # urllib3's DEBUG lines
    assert_no_secret_in(log, fake.token)


def test_health_endpoint_reports_state_generation_storage_and_backup_age(fake, run_bot):
    port = free_port()
    bot = run_bot(PORT=str(port))
    bot.wait_for_log("bot started:")  # serving, and its first backup taken
    asked = datetime.now(UTC)
    status = health(port)
    answered = datetime.now(UTC)
    assert status["ok"] is True and status["storage"] == "file" and status["state"] == "serving"
    assert status["generation"] == 1 and status["instance"]
    (startup_backup,) = chat_index(fake, ADMIN_ID)["backups"]  # in the admin's chat: the default
    taken = datetime.fromisoformat(startup_backup["created_at"])
    age = status["newest_offsite_backup_age_seconds"]  # that one's age, however slow the machine
    assert (asked - taken).total_seconds() - 1 <= age <= (answered - taken).total_seconds() + 1
    assert status["failing_destinations"] == [] and status["offsite_paused"] is False
    # the startup backup's upload, counted, and the month it would make at this pace
    assert 0 < status["uploaded_last_24h_bytes"] <= status["upload_month_pace_bytes"]
    fake.fail_next("sendDocument", times=3)  # the chat refuses the next backup
    seen = len(fake.messages(ADMIN_ID))
    fake.send_text(ADMIN_ID, "/backup")
    fake.wait_for_message(ADMIN_ID, "⚠️ not in telegram", after=seen, timeout=20)
    assert health(port)["failing_destinations"] == ["telegram"]  # what an uptime checker alerts on
    assert bot.stop()[0] == 0


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "BOT_TOKEN is required"),
        ({"BOT_TOKEN": "123:short"}, "BOT_TOKEN is malformed"),
        ({"BOT_TOKEN": "123456:AAbbCCddEEffGGhhIIjjKKll", "BACKUP_KEEP": "many"}, "BACKUP_KEEP"),
        (
            {"BOT_TOKEN": "123456:AAbbCCddEEffGGhhIIjjKKll", "WEBHOOK_URL": "https://b.koyeb.app/t"},
            "WEBHOOK_URL needs PORT",
        ),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(tmp_path, env, expected):
    result = subprocess.run(
        [sys.executable, str(PROJECT / "main.py")],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr


def test_a_rejected_token_is_reported_and_exits_2(tmp_path, fake):
    bot = BotProcess(tmp_path, fake.url, "999999:WrongWrongWrongWrongWrong").start()
    try:
        assert bot.wait() == 2
    finally:
        bot.kill()
    assert "Telegram rejected BOT_TOKEN (401 Unauthorized)" in bot.log()
    assert "WrongWrongWrongWrongWrong" not in bot.log()


def test_a_read_only_mount_runs_in_memory_and_still_serves(read_only_dir, fake, run_bot):
    bot = run_bot(DB_PATH=str(read_only_dir / "bot.db"))
    fake.send_text(USER, "/start", first_name="Ann")
    fake.wait_for_message(USER, "registered")
    assert bot.stop()[0] == 0
    assert "Read-only file system" in bot.wait_for_log("IN-MEMORY")


def test_sigterm_takes_a_shutdown_backup_that_the_sqlite3_shell_opens(fake, run_bot, tmp_path):
    bot = run_bot()
    for user_id in (501, 502, 503):
        fake.send_text(user_id, "/start", first_name=f"U{user_id}")
        fake.wait_for_message(user_id, "registered")
    code, seconds = bot.stop()
    assert code == 0 and seconds < 10
    assert "shutdown backup backup-" in bot.log()
    opened = unpacked_shutdown_backup(bot, tmp_path)  # with zstd, without this project
    shell = subprocess.run(
        ["sqlite3", str(opened), "SELECT user_id FROM users ORDER BY 1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split() == ["501", "502", "503"]


def unpacked_shutdown_backup(bot, folder):
    """The shutdown backup of `bot`, unpacked by the zstd command-line tool."""
    packed = next(p for p in (bot.db_path.parent / "backups").iterdir() if "shutdown" in p.name)
    subprocess.run(["zstd", "-q", "-d", str(packed), "-o", str(folder / "shutdown.db")], check=True)
    return folder / "shutdown.db"


def test_the_shutdown_backup_of_tens_of_megabytes_fits_in_ten_seconds(tmp_path, fake, run_bot):
    import database

    db = database.open_database(str(tmp_path / "data" / "bot.db"))
    db.migrate()
    db.track_message(1, None, "N", 1, "message", NOW, NOW)
    with db.transaction() as conn:  # about 40 MB of tracking rows
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000)"
            " INSERT INTO tracking (user_id, chat_id, kind, created_at)"
            " SELECT 1, i, hex(randomblob(16)), '2026-11-26 12:00:00' FROM n"
        )
    db.close()
    bot = run_bot()
    fake.send_text(USER, "/start")
    fake.wait_for_message(USER, "registered")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code, seconds = bot.stop()  # (reaps it: its CPU time joins this process's children's)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # What fits: the CPU the whole process used, its start included, which is the time on a
    # core of its own; the wall clock only guards against a hang (the machine may be loaded).
    assert code == 0 and cpu < 10 and seconds < 60, (cpu, seconds, bot.log())
    assert "shutdown backup backup-" in bot.log()
    # the backup itself, opened and checked: every row is in it, and it verifies completely
    with closing(sqlite3.connect(unpacked_shutdown_backup(bot, tmp_path))) as copy:
        assert copy.execute("SELECT count(*) FROM tracking").fetchone() == (400_002,)  # and 2 tracked
        assert copy.execute("SELECT user_id FROM users ORDER BY 1").fetchall() == [(1,), (USER,)]
    newest = next(p for p in sorted((bot.db_path.parent / "backups").iterdir()) if "shutdown" in p.name)
    verified = subprocess.run(
        [sys.executable, str(PROJECT / "backup.py"), "verify", str(newest)],
        env={"PATH": "/usr/bin:/bin", "DB_PATH": str(bot.db_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0 and "tracking 400002" in verified.stdout, verified.stderr


def test_after_a_clean_shutdown_db_path_backup_holds_the_final_state(fake, run_bot):
    bot = run_bot(BACKUP_AFTER_CHANGE_SECONDS="0")  # no on-change backup: the shutdown's is the next
    bot.wait_for_log("bot started:")  # its startup backup taken, DB_PATH.backup written
    fake.send_text(USER, "/start", first_name="Ann")
    fake.wait_for_message(USER, "registered")
    assert bot.stop()[0] == 0
    assert "shutdown backup backup-" in bot.log()
    plain = bot.db_path.with_name(bot.db_path.name + ".backup")
    for table in ("users", "tracking", "daily_activity", "bot_state"):
        rows = f"SELECT * FROM {table} ORDER BY 1"
        assert query(plain, rows) == query(bot.db_path, rows), table


def test_a_second_bot_on_the_same_database_is_refused(tmp_path, fake, run_bot):
    first = run_bot()
    fake.send_text(USER, "/start")
    fake.wait_for_message(USER, "registered")
    second = BotProcess(tmp_path / "second", fake.url, fake.token, DB_PATH=str(first.db_path))
    (tmp_path / "second").mkdir()
    second.start()
    try:
        assert second.wait() == 1
    finally:
        second.kill()
    assert "is already in use by a running bot (pid" in second.log()
    assert first.process.poll() is None  # the first one is unharmed
    assert first.stop()[0] == 0


def test_a_port_another_program_holds_is_one_line_and_exit_1(fake, run_bot):
    port = free_port()
    with socket.socket() as holder:  # another program on PORT
        holder.bind(("0.0.0.0", port))
        holder.listen()
        bot = run_bot(PORT=str(port))
        assert bot.wait() == 1  # the environment, not a setting: exit 1
    said = bot.wait_for_log("cannot start")
    assert f"cannot listen on PORT {port}: Address already in use" in said
    assert "Traceback" not in bot.log() and "CRITICAL" not in bot.log()
    assert not bot.db_path.exists()  # nothing was opened, nothing written


# --- off-site: the disk of a host like Koyeb is wiped on every redeploy ---

BACKUP_CHAT = -1009876543210


def test_a_wiped_disk_comes_back_from_the_telegram_chat(tmp_path, fake, run_bot):
    bot = run_bot(BACKUP_CHAT_ID=str(BACKUP_CHAT))
    for user_id in (601, 602, 603):
        fake.send_text(user_id, "/start", first_name=f"U{user_id}")
        fake.wait_for_message(user_id, "registered")
    reply = backup_by_admin(fake)
    assert reply.startswith("✅ Backup") and "local, telegram" in reply
    newest = newest_backup_message(fake, BACKUP_CHAT)
    assert "users 4" in newest["caption"]  # three users and the admin
    bot.kill()  # SIGKILL: no shutdown backup
    shutil.rmtree(tmp_path / "data")  # a redeploy: an empty disk

    told = len(fake.messages(ADMIN_ID))
    # after a crash, the new instance waits for a hand-over that cannot come: a second here
    again = run_bot(BACKUP_CHAT_ID=str(BACKUP_CHAT), HANDOVER_WAIT_SECONDS="1")
    alert = fake.wait_for_message(ADMIN_ID, "Restored at startup", after=told)["text"]
    assert newest["document"]["file_name"].split("-", 1)[1] in alert and "from telegram" in alert
    seen = len(fake.messages(601))
    fake.send_text(601, "/start")  # the bot serves the restored data
    fake.wait_for_message(601, "registered", after=seen)
    assert again.stop()[0] == 0
    assert users_in(again.db_path) == {601, 602, 603}
    alerts = [m.get("text") or "" for m in fake.messages(ADMIN_ID)]
    assert sum("Restored at startup" in text for text in alerts) == 1


def test_encrypted_off_site_copies_and_a_wrong_passphrase(tmp_path, fake, run_bot):
    secret = "correct horse battery staple"
    bot = run_bot(BACKUP_CHAT_ID=str(BACKUP_CHAT), BACKUP_PASSPHRASE=secret)
    fake.send_text(701, "/start", username="alice_secret_name")
    fake.wait_for_message(701, "registered")
    backup_by_admin(fake)
    pinned = fake.pinned_message(BACKUP_CHAT)
    sent = fake.file_bytes(newest_backup_message(fake, BACKUP_CHAT)["document"]["file_id"])
    assert sent.startswith(b"telegram-bot-backup-sealed/1") and b"SQLite format 3" not in sent
    assert b"alice_secret_name" not in sent
    bot.kill()
    assert secret not in bot.log()

    shutil.rmtree(tmp_path / "data")
    told = len(fake.messages(ADMIN_ID))
    wrong = run_bot(
        BACKUP_CHAT_ID=str(BACKUP_CHAT), BACKUP_PASSPHRASE="not the passphrase", HANDOVER_WAIT_SECONDS="1"
    )  # the first one was killed: no hand-over to wait for
    alert = fake.wait_for_message(ADMIN_ID, "Nothing is sent off the machine", after=told)["text"]
    assert "wrong BACKUP_PASSPHRASE" in alert
    fake.send_text(702, "/start")  # the bot runs anyway
    fake.wait_for_message(702, "registered")
    assert wrong.stop()[0] == 0  # its shutdown backup stays on this machine
    assert fake.pinned_message(BACKUP_CHAT) == pinned  # nothing new pinned
    assert users_in(wrong.db_path) == {702}

    shutil.rmtree(tmp_path / "data")
    told = len(fake.messages(ADMIN_ID))
    right = run_bot(BACKUP_CHAT_ID=str(BACKUP_CHAT), BACKUP_PASSPHRASE=secret, HANDOVER_WAIT_SECONDS="1")
    fake.wait_for_message(ADMIN_ID, "Restored at startup", after=told)
    assert right.stop()[0] == 0
    assert users_in(right.db_path) == {701}


HTML_502 = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>"
)


def s3_settings(s3_server, prefix):
    return {
        "S3_BUCKET": s3_server.bucket,
        "S3_PREFIX": prefix,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def test_html_502_pages_from_telegram_at_startup_and_on_send_document(
    tmp_path, fake, run_bot, s3_server, s3_env
):
    settings = {"BACKUP_CHAT_ID": str(BACKUP_CHAT), **s3_settings(s3_server, s3_env)}
    first = run_bot(**settings)
    for user_id in (801, 802):
        fake.send_text(user_id, "/start")
        fake.wait_for_message(user_id, "registered")
    assert "local, telegram, s3" in backup_by_admin(fake)
    first.kill()
    shutil.rmtree(tmp_path / "data")  # an empty disk

    # a proxy in front of Telegram answers with HTML: the token check, the backup chat, polling
    for method in ("getMe", "getChat", "getUpdates"):
        fake.fail_next(method, 502, body=HTML_502)
    told = len(fake.messages(ADMIN_ID))
    again = run_bot(**settings, HANDOVER_WAIT_SECONDS="1")  # the first one was killed
    restored = fake.wait_for_message(ADMIN_ID, "Restored at startup", after=told)["text"]
    assert "from s3" in restored
    fake.send_text(801, "/start")  # alive, serving the restored data
    fake.wait_for_message(801, "registered", after=1)
    again.wait_for_log("bot started:")  # up and serving, before Telegram fails again
    pinned = fake.pinned_message(BACKUP_CHAT)

    fake.fail_next("sendDocument", 502, body=HTML_502)
    reply = backup_by_admin(fake)
    assert "stored in local, s3" in reply and "not in telegram: Telegram had a problem on its side" in reply
    alert = fake.wait_for_message(ADMIN_ID, "could not be stored in telegram", after=told)["text"]
    assert "problem on its side" in alert and "<html>" not in alert
    assert "Telegram answered HTTP 502" in again.log()  # the raw words: the log's
    assert fake.pinned_message(BACKUP_CHAT) == pinned
    assert again.stop()[0] == 0
    assert users_in(again.db_path) == {801, 802}
    assert "uncaught exception" not in again.log()


@pytest.mark.parametrize("how", ["/start_fresh YES", "the panel"])
def test_start_fresh_lets_copies_leave_the_machine_again(how, tmp_path, fake, run_bot):
    first = run_bot(BACKUP_CHAT_ID=str(BACKUP_CHAT))
    backup_by_admin(fake)
    real = fake.pinned_message(BACKUP_CHAT)
    first.kill()
    shutil.rmtree(tmp_path / "data")
    fake.fail_next("getChat", 502, "Bad Gateway")  # the chat cannot be asked: the bot pauses
    told = len(fake.messages(ADMIN_ID))
    again = run_bot(
        BACKUP_CHAT_ID=str(BACKUP_CHAT), STARTUP_RESTORE_WAIT_SECONDS="0", HANDOVER_WAIT_SECONDS="1"
    )  # the first one was killed
    fake.wait_for_message(ADMIN_ID, "Nothing is sent off the machine", after=told)
    assert "stored in local" in backup_by_admin(fake) and fake.pinned_message(BACKUP_CHAT) == real

    if how == "the panel":
        seen = len(fake.messages(ADMIN_ID))
        fake.send_text(ADMIN_ID, "🆕 Start fresh")
        fake.wait_for_message(ADMIN_ID, "Starting fresh keeps the current database", after=seen)
        fake.send_text(ADMIN_ID, "✅ Confirm start fresh")
    else:
        seen = len(fake.messages(ADMIN_ID))
        fake.send_text(ADMIN_ID, how)
    fake.wait_for_message(ADMIN_ID, "the next backup leaves the machine again", after=seen)
    assert "stored in local, telegram" in backup_by_admin(fake)
    assert fake.pinned_message(BACKUP_CHAT) != real
    assert again.stop()[0] == 0


def test_a_backup_over_both_telegram_limits_comes_back_from_the_chat_alone(tmp_path, fake, run_bot):
    import database

    seeded = database.open_database(str(tmp_path / "data" / "bot.db"))
    seeded.migrate()
    with seeded.transaction() as conn:  # 64 MB that zstd cannot shrink: a backup over 50 MB
        conn.executemany(
            "INSERT INTO users (user_id, username, first_seen, last_seen)"
            " VALUES (?, randomblob(1048576), '2026-11-26', '2026-11-26')",
            [(10_000 + n,) for n in range(64)],
        )
    seeded.close()
    # Telegram the only destination off the machine, through a Bot API URL that is not Telegram's
    # (the stand-in's, which keeps Telegram's limits); TELEGRAM_FILE_LIMITS unset: assumed.
    limits = {"BACKUP_CHAT_ID": str(BACKUP_CHAT)}
    bot = run_bot(**limits)
    bot.wait_for_log("bot started:", timeout=60)  # its startup backup is in the chat, read back
    (entry,) = chat_index(fake, BACKUP_CHAT)["backups"]
    assert entry["size"] > 60 * 2**20 and len(entry["parts"]) == 4
    assert all(part["size"] <= 19 * 2**20 for part in entry["parts"])
    bot.kill()
    shutil.rmtree(tmp_path / "data")  # an empty disk
    again = run_bot(HANDOVER_WAIT_SECONDS="1", **limits)
    again.wait_for_log("bot started:", timeout=60)
    assert again.stop()[0] == 0
    with closing(sqlite3.connect(again.db_path)) as conn:
        assert conn.execute(
            "SELECT count(*), sum(length(username)) FROM users WHERE user_id >= 10000"
        ).fetchone() == (64, 64 * 2**20)  # every row back, every byte
