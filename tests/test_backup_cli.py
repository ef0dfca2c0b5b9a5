"""`python backup.py`, run as a person would: a separate process, exit codes, one-line errors."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest

import database
import locks
from bot_process import PROJECT
from conftest import NOW
from files import TEMP_PREFIX

BACKUP = str(PROJECT / "backup.py")


@pytest.fixture
def env(tmp_path):
    return {"PATH": os.environ["PATH"], "DB_PATH": str(tmp_path / "data" / "bot.db"),
            "BACKUP_KEEP": "5"}


def run(env, *args, stdin=subprocess.DEVNULL):
    return subprocess.run([sys.executable, BACKUP, *args], env=env, capture_output=True, text=True,
                          stdin=stdin, timeout=60)


def make_database(path, users=(), tracking_rows=0):
    db = database.open_database(str(path))
    db.migrate()
    for user_id in users:
        db.track_message(user_id, None, "N", user_id, "message", NOW, NOW)
    if tracking_rows:
        db.track_message(1, None, "N", 1, "message", NOW, NOW)
        with db.transaction() as conn:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO tracking (user_id, chat_id, kind, created_at)"
                " SELECT 1, i, hex(randomblob(16)), '2026-11-26 12:00:00' FROM n", (tracking_rows,))
    db.close()


def users_in(path):
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT user_id FROM users ORDER BY 1")]


def test_create_list_verify_restore_without_a_bot_token(env, tmp_path):
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1, 2])
    created = run(env, "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created ") and "4 rows" in created.stdout

    make_database(db_path, users=[3])
    listed = run(env, "list")
    assert listed.returncode == 0 and "manual" in listed.stdout and "4 rows" in listed.stdout

    verified = run(env, "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok: backup-")

    refused = run(env, "restore", "latest")  # no terminal to ask: nothing happens
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert users_in(db_path) == [1, 2, 3]

    restored = run(env, "restore", "latest", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert users_in(db_path) == [1, 2]
    assert "pre-restore" in run(env, "list").stdout


def test_every_failure_is_one_line_and_a_non_zero_exit(env, tmp_path):
    (tmp_path / "notes.txt").write_text("not a backup")
    for args, expected in [
        (("create",), "there is no database at"),
        (("verify",), "there are no backups"),
        (("verify", str(tmp_path / "notes.txt")), "not a backup"),
        (("verify", str(tmp_path / "missing.db.zst")), "cannot read"),
        (("restore", str(tmp_path / "notes.txt"), "--yes"), "not a backup"),
    ]:
        result = run(env, *args)
        assert result.returncode == 1, args
        assert result.stderr.count("\n") == 1 and expected in result.stderr, (args, result.stderr)


def test_help_on_each_command():
    for command in ("create", "list", "verify", "restore", "decrypt"):
        result = run({"PATH": os.environ["PATH"]}, command, "--help")
        assert result.returncode == 0 and f"python backup.py {command}" in result.stdout


def test_restore_is_refused_while_the_bot_holds_the_database(env, tmp_path):
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1])
    assert run(env, "create").returncode == 0
    bot_lock = locks.InstanceLock(str(db_path), "a running bot")
    try:
        result = run(env, "restore", "latest", "--yes")
        assert result.returncode == 1 and "refused" in result.stderr and "a running bot" in result.stderr
        # a backup, though, can be taken beside the running bot
        assert run(env, "create").returncode == 0
    finally:
        bot_lock.release()


@pytest.mark.parametrize("stage", ["snapshot progress", "compress progress"])
def test_a_create_killed_midway_leaves_no_backup_that_verifies_and_the_next_one_works(env, tmp_path, stage):
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1], tracking_rows=200_000)  # about 20 MB
    assert run(env, "create").returncode == 0
    good = run(env, "list").stdout

    child = subprocess.Popen([sys.executable, BACKUP, "create"], env={**env, "LOG_LEVEL": "DEBUG"},
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in child.stderr:
        if stage in line:
            child.send_signal(signal.SIGKILL)
            break
    assert child.wait(30) == -signal.SIGKILL

    assert run(env, "list").stdout == good  # only the earlier backup is listed
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "bot.db.lock"
                 and not p.name.startswith("bot.db")]
    for path in leftovers:
        verdict = run(env, "verify", str(path))
        if TEMP_PREFIX not in str(path):
            assert path.name.startswith("backup-") and verdict.returncode == 0  # the earlier one
        elif path.name.endswith(".db.zst"):  # a half-written backup file in the dead one's scratch
            assert verdict.returncode == 1, f"{path.name} verifies"
        # else: its snapshot, a plain copy of the database on its way to DB_PATH.backup; never
        # listed as a backup, and removed by the next create
    again = run(env, "create")
    assert again.returncode == 0, again.stderr
    assert len(run(env, "list").stdout.splitlines()) == 2
    assert not [p for p in tmp_path.rglob(f"{TEMP_PREFIX}*")]  # the next create cleaned up after the dead one


def test_list_and_restore_reach_the_telegram_chat(env, tmp_path):
    from fake_bot_api import FakeBotAPI
    with FakeBotAPI() as fake:
        env = {**env, "BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url, "BACKUP_CHAT_ID": "-100777"}
        db_path = tmp_path / "data" / "bot.db"
        make_database(db_path, users=[1, 2])
        created = run(env, "create")
        assert created.returncode == 0 and "stored in local, telegram" in created.stdout, created.stderr
        listed = run(env, "list", "--from", "telegram")
        assert listed.returncode == 0 and "telegram" in listed.stdout and "4 rows" in listed.stdout
        assert "local" not in listed.stdout.replace("telegram", "")

        shutil.rmtree(tmp_path / "data")  # an empty disk
        restored = run(env, "restore", "latest", "--from", "telegram", "--yes")
        assert restored.returncode == 0, restored.stderr
        assert "from telegram" in restored.stdout and users_in(db_path) == [1, 2]
        assert fake.token.split(":")[1] not in restored.stdout + restored.stderr


def test_an_encrypted_backup_is_decrypted_by_hand_and_opens_with_zstd_and_sqlite3(env, tmp_path):
    from config import load_settings
    from engine import BackupEngine
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[7, 8])
    settings = load_settings({"BOT_TOKEN": "1:abcdefghijklmnopqrstuvwxyz", "DB_PATH": str(db_path),
                              "BACKUP_PASSPHRASE": "correct horse"})
    db = database.open_database(str(db_path))
    with BackupEngine(db, settings).exported_newest() as nothing:
        assert nothing is None
    BackupEngine(db, settings).create("manual")
    with BackupEngine(db, settings).exported_newest() as (sealed, info):  # what leaves the machine
        shutil.copyfile(sealed, tmp_path / info.name)
    db.close()
    assert info.name.endswith(".db.zst.sealed")
    wrong = run({**env, "BACKUP_PASSPHRASE": "battery staple"}, "decrypt", str(tmp_path / info.name))
    assert wrong.returncode == 1 and "wrong BACKUP_PASSPHRASE" in wrong.stderr
    opened = run({**env, "BACKUP_PASSPHRASE": "correct horse"}, "decrypt", str(tmp_path / info.name))
    assert opened.returncode == 0, opened.stderr
    plain = tmp_path / info.name.removesuffix(".sealed")
    subprocess.run(["zstd", "-q", "-d", str(plain), "-o", str(tmp_path / "opened.db")], check=True)
    assert users_in(tmp_path / "opened.db") == [7, 8]
