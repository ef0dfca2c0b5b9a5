"""`python backup.py`, run as a person would: a separate process, exit codes, one-line errors."""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
from bot_process import PROJECT
from conftest import NOW
from helpers import fingerprint, users_in
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import database
import locks
from config import load_settings
from engine import BackupEngine
from files import TEMP_PREFIX

BACKUP = str(PROJECT / "backup.py")


@pytest.fixture
def env(tmp_path):
    return {"PATH": os.environ["PATH"], "DB_PATH": str(tmp_path / "data" / "bot.db"), "BACKUP_KEEP": "5"}


def run(env, *args, stdin=subprocess.DEVNULL):
    return subprocess.run(
        [sys.executable, BACKUP, *args], env=env, capture_output=True, text=True, stdin=stdin, timeout=60
    )


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
                " SELECT 1, i, hex(randomblob(16)), '2026-11-26 12:00:00' FROM n",
                (tracking_rows,),
            )
    db.close()


def rows_in(path):
    """Every row of every table, as a backup counts them (whatever tables the schema has now)."""
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sum(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)


def references(listed):
    """The last column of `list`: each backup as verify and restore take it."""
    return [line.split()[-1] for line in listed.stdout.splitlines()]


def one_line_error(result, expected=""):
    """What a person sees when it fails: a non-zero exit, one line on stderr, nothing else."""
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_create_list_verify_restore_without_a_bot_token(env, tmp_path):
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1, 2])
    created = run(env, "create")
    assert created.returncode == 0, created.stderr
    rows = rows_in(db_path)
    assert created.stdout.startswith("created ") and f"{rows} rows" in created.stdout

    make_database(db_path, users=[3])
    listed = run(env, "list")
    assert listed.returncode == 0 and "manual" in listed.stdout and f"{rows} rows" in listed.stdout
    assert listed.stderr.splitlines() == UNSEEN  # what it did not look at, and why

    verified = run(env, "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok: backup-")

    refused = run(env, "restore", "latest")  # no terminal to ask on: an error naming --yes
    one_line_error(refused, "standard input is not a terminal to ask on: add --yes")
    assert refused.returncode == 2
    assert users_in(db_path, admins=()) == {1, 2, 3}

    restored = run(env, "restore", "latest", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert users_in(db_path, admins=()) == {1, 2}
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

    child = subprocess.Popen(
        [sys.executable, BACKUP, "create"],
        env={**env, "LOG_LEVEL": "DEBUG"},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    for line in child.stderr:
        if stage in line:
            child.send_signal(signal.SIGKILL)
            break
    assert child.wait(30) == -signal.SIGKILL

    assert run(env, "list").stdout == good  # only the earlier backup is listed
    leftovers = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != "bot.db.lock" and not p.name.startswith("bot.db")
    ]
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
    assert not list(tmp_path.rglob(f"{TEMP_PREFIX}*"))  # the next create cleaned up after the dead one


def test_list_and_restore_reach_the_telegram_chat(env, tmp_path, fake):
    env = {**env, "BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url, "BACKUP_CHAT_ID": "-100777"}
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1, 2])
    created = run(env, "create")
    assert created.returncode == 0 and "stored in local, telegram" in created.stdout, created.stderr
    listed = run(env, "list", "--from", "telegram")
    assert listed.returncode == 0 and "telegram" in listed.stdout
    assert f"{rows_in(db_path)} rows" in listed.stdout
    assert "local" not in listed.stdout.replace("telegram", "")

    shutil.rmtree(tmp_path / "data")  # an empty disk
    restored = run(env, "restore", "latest", "--from", "telegram", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "from telegram" in restored.stdout and users_in(db_path, admins=()) == {1, 2}
    assert fake.token.split(":")[1] not in restored.stdout + restored.stderr


def test_an_encrypted_backup_is_decrypted_by_hand_and_opens_with_zstd_and_sqlite3(env, tmp_path):
    from config import load_settings
    from engine import BackupEngine

    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[7, 8])
    settings = load_settings(
        {
            "BOT_TOKEN": "1:abcdefghijklmnopqrstuvwxyz",
            "DB_PATH": str(db_path),
            "BACKUP_PASSPHRASE": "correct horse",
        }
    )
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
    assert users_in(tmp_path / "opened.db", admins=()) == {7, 8}


TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"
NAME = "backup-20261126T120000000Z-manual.db.zst"  # the name of the backup one_backup() takes
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  [a-z-]+ +[0-9.]+ [KMG]?B +\d+ rows  "
    r"in (local|telegram|s3)(, (telegram|s3))* +(local|telegram|s3):\S+$"
)
UNSEEN = [  # what `list` says it did not look at, without BOT_TOKEN and S3_BUCKET
    "not looked at: telegram (the chat is read with the bot's token, and BOT_TOKEN is not set)",
    "not looked at: s3 (off: set S3_BUCKET)",
]


def one_backup(env, users=(1, 2)):
    """A live database and one backup of it in BACKUP_DIR, taken at NOW (so called NAME)."""
    db_path = env["DB_PATH"]
    make_database(db_path, users=users)
    db = database.open_database(db_path)
    try:
        settings = load_settings({"DB_PATH": db_path}, require_token=False)
        return BackupEngine(db, settings, clock=lambda: NOW).create("manual").info
    finally:
        db.close()


@pytest.mark.parametrize(
    "setting, where, message",
    [
        ({}, "telegram", "telegram is off: set BOT_TOKEN and BACKUP_CHAT_ID (or ADMIN_IDS)"),
        ({"ADMIN_IDS": "5"}, "telegram", "telegram is off: set BOT_TOKEN"),
        ({"BOT_TOKEN": TOKEN}, "telegram", "telegram is off: set BACKUP_CHAT_ID (or ADMIN_IDS)"),
        (
            {"BOT_TOKEN": TOKEN, "ADMIN_IDS": "5", "BACKUP_CHAT_ID": "off"},
            "telegram",
            "telegram is off: set BACKUP_CHAT_ID",
        ),
        ({"BOT_TOKEN": TOKEN, "ADMIN_IDS": "5"}, "s3", "s3 is off: set S3_BUCKET"),
    ],
)
def test_a_destination_that_is_not_configured_is_named_with_what_to_set(
    env, tmp_path, setting, where, message
):
    one_backup(env)
    before = fingerprint(tmp_path / "data")
    env = {**env, **setting}
    for args in (
        ("list", "--from", where),
        ("verify", "--from", where),
        ("verify", f"{where}:{NAME}"),
        ("restore", "latest", "--from", where, "--yes"),
        ("restore", f"{where}:{NAME}", "--yes"),
    ):
        result = run(env, *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"error: {message}\n"), args
    assert fingerprint(tmp_path / "data") == before


def test_list_prints_each_backup_as_verify_and_restore_take_it_back(env, tmp_path):
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1])
    assert run(env, "create").returncode == 0
    make_database(db_path, users=[2])
    assert run(env, "create").returncode == 0

    listed = run(env, "list")
    assert listed.returncode == 0 and all(LINE.match(line) for line in listed.stdout.splitlines()), (
        listed.stdout
    )
    newer, older = references(listed)
    assert older.startswith("local:backup-") and older.endswith("-manual.db.zst")
    assert references(run(env, "list", "--from", "local")) == [newer, older]

    verified = run(env, "verify", older)
    assert verified.returncode == 0 and verified.stdout.startswith(f"ok: {older.removeprefix('local:')}: ")
    assert "users 1" in verified.stdout
    one_line_error(run(env, "verify", older, "--from", "s3"), "is a backup in local, not in s3 (--from)")

    restored = run(env, "restore", older, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restored {older.removeprefix('local:')} from local")
    assert users_in(db_path, admins=()) == {1}
    # a file's path still works as before
    path = tmp_path / "data" / "backups" / newer.removeprefix("local:")
    assert run(env, "verify", str(path)).stdout.startswith(f"ok: {path.name}: ")


def verified_and_restored_on_an_empty_disk(env, tmp_path, reference):
    """`reference` (DESTINATION:NAME, as `list` printed it) verifies and restores once the local
    disk is gone, from that destination, with users 1 and 2."""
    shutil.rmtree(tmp_path / "data")
    verified = run(env, "verify", reference)
    assert verified.returncode == 0 and "users 2" in verified.stdout, verified.stderr
    restored = run(env, "restore", reference, "--yes")
    destination = reference.split(":")[0]
    assert restored.returncode == 0 and f"from {destination}" in restored.stdout, restored.stderr
    assert users_in(tmp_path / "data" / "bot.db", admins=()) == {1, 2}


def test_a_backup_in_the_telegram_chat_is_verified_and_restored_by_what_list_prints(env, tmp_path, fake):
    env = {**env, "BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url, "BACKUP_CHAT_ID": "-100777"}
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1, 2])
    assert run(env, "create").returncode == 0
    listed = run(env, "list", "--from", "telegram")
    (reference,) = references(listed)
    assert LINE.match(listed.stdout.strip()) and reference.startswith("telegram:")
    assert reference.endswith("-manual.db.zst") and fake.token.split(":")[1] not in listed.stdout

    verified_and_restored_on_an_empty_disk(env, tmp_path, reference)  # only the chat has it
    one_line_error(run(env, "verify", reference.replace("manual", "change")), "there is no backup '")


def test_a_backup_in_s3_is_verified_and_restored_by_what_list_prints(env, tmp_path, s3_server, s3_env):
    env = {
        **env,
        "S3_BUCKET": s3_server.bucket,
        "S3_PREFIX": s3_env,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    db_path = tmp_path / "data" / "bot.db"
    make_database(db_path, users=[1, 2])
    created = run(env, "create")
    assert created.returncode == 0 and "stored in local, s3" in created.stdout, created.stderr
    (reference,) = references(run(env, "list", "--from", "s3"))
    assert reference.startswith("s3:backup-") and s3_env not in reference  # the name, not the key

    verified_and_restored_on_an_empty_disk(env, tmp_path, reference)  # only the bucket has it
    one_line_error(
        run(env, "restore", f"s3:{s3_env}{reference.removeprefix('s3:')}", "--yes"), "there is no backup '"
    )  # the key with its prefix is no name


ARGUMENT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
HOSTILE = st.tuples(
    st.sampled_from(["", "local:", "s3:", "telegram:", "local:../", "ftp:", "local:/"]), ARGUMENT
).map("".join)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(HOSTILE)
@example(f"local:../backups/{NAME}")
@example(f"local:./{NAME}")
@example(f"local:{NAME}/")
@example(f"local: {NAME}")
@example(f"local:{NAME.upper()}")
@example(f"local:{NAME}\n")
@example(f"LOCAL:{NAME}")
@example("local:../../../../../../etc/passwd")
@example("local:/etc/passwd")
@example("local:" + "../" * 2000)
@example("local:")
@example(":")
@example("s3:" + NAME)
@example("telegram:x")
@example("ftp://example.com/backup.db.zst")
@example("a\nb\x1b[2J\x1b[31mred\r")
@example("\udcff\udc80")  # bytes that are no UTF-8, as a shell passes them
@example("x" * 5000)
@example("-x")
def test_a_hostile_backup_argument_is_refused_in_one_line_and_changes_nothing(env, tmp_path, text):
    if not (tmp_path / "data").exists():
        one_backup(env)  # once for all the examples: the test is that nothing changes it
        (tmp_path / "cwd").mkdir()
    before = fingerprint(tmp_path / "data")
    commands = [("verify", "--", text), ("restore", "--yes", "--", text)]
    children = [
        subprocess.Popen(
            [sys.executable, BACKUP, *args],
            env=env,
            cwd=tmp_path / "cwd",
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]
    for args, child in zip(commands, children):
        stdout, stderr = child.communicate(timeout=60)
        one_line_error(subprocess.CompletedProcess(args, child.returncode, stdout, stderr))
    assert fingerprint(tmp_path / "data") == before


def test_list_piped_into_head_ends_quietly(env, tmp_path):
    one_backup(env)
    backups = tmp_path / "data" / "backups"
    for n in range(1500):  # the same backup under many names: more than a pipe holds
        os.link(
            backups / NAME, backups / f"backup-20261126T11{n // 60 % 60:02d}{n % 60:02d}000Z-manual.db.zst"
        )
    whole = run(env, "list").stdout
    assert len(whole) > 2 * 65536  # more than a pipe holds: the writer is still writing when the reader goes

    child = subprocess.Popen(
        [sys.executable, BACKUP, "list"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    first = child.stdout.readline()  # `| head -1`
    child.stdout.close()
    stderr = child.stderr.read()
    assert child.wait(30) in (0, 1)
    assert first == whole.splitlines(keepends=True)[0] and LINE.match(first.strip())
    assert stderr.splitlines() == UNSEEN  # no traceback, no BrokenPipeError, no "Exception ignored"


# --- what the command line cannot see, and what it cannot ask ------------------------------------


def test_list_shows_each_backup_once_with_the_places_that_hold_it(env, tmp_path, fake):
    env = {
        **env,
        "BOT_TOKEN": fake.token,
        "TELEGRAM_API_URL": fake.url,
        "BACKUP_CHAT_ID": "-100777",
        "BACKUP_PASSPHRASE": "correct horse battery",  # the chat's copy is sealed: the same backup
    }
    make_database(tmp_path / "data" / "bot.db", users=[1, 2])
    assert run(env, "create").returncode == 0
    assert run(env, "create").returncode == 0
    listed = run(env, "list")
    lines = listed.stdout.splitlines()
    assert len(lines) == 2 and all(LINE.match(line) for line in lines), listed.stdout
    assert all(" in local, telegram " in line for line in lines)
    assert [r.split(":")[0] for r in references(listed)] == ["local", "local"]  # the nearest copy
    assert listed.stderr.splitlines() == UNSEEN[1:]  # the chat was looked at
    only_chat = run(env, "list", "--from", "telegram")
    assert all(" in telegram " in line for line in only_chat.stdout.splitlines()) and only_chat.stderr == ""


def test_restore_asks_on_the_terminal_even_when_its_output_is_piped(env, tmp_path):
    import pty

    db_path = tmp_path / "data" / "bot.db"
    one_backup(env, users=(1, 2))
    make_database(db_path, users=[3])
    for answer, users in (("n", {1, 2, 3}), ("y", {1, 2})):
        terminal, its_side = pty.openpty()
        child = subprocess.Popen(
            [sys.executable, BACKUP, "restore", "latest"],
            env=env,
            stdin=its_side,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(its_side)
        os.write(terminal, f"{answer}\n".encode())
        stdout, stderr = child.communicate(timeout=60)
        os.close(terminal)
        assert stderr.startswith(f"Replace the data in {db_path} with {NAME} ("), stderr
        assert users_in(db_path, admins=()) == users
        assert child.returncode == (1 if answer == "n" else 0) and ("restored" in stdout) == (answer == "y")


def test_decrypt_says_what_a_file_is_when_it_is_not_encrypted(env, tmp_path):
    info = one_backup(env)
    env = {**env, "BACKUP_PASSPHRASE": "correct horse battery"}
    plain = run(env, "decrypt", info.location)
    one_line_error(plain, "is not encrypted: it is a backup as it is, which `zstd -d` opens")
    assert "damaged" not in plain.stderr
    one_line_error(run(env, "decrypt", env["DB_PATH"]), "is not encrypted: it is an SQLite database")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(
        run(env, "decrypt", str(tmp_path / "notes.txt")), "is not an encrypted backup (nor a backup)"
    )
    assert not list(tmp_path.rglob("*.db.zst.db.zst"))  # nothing written


def test_a_change_backup_is_listed_verified_and_restored_through_its_chain(env, tmp_path):
    """A delta piece is a restore point like any other for the command line: `list` prints it,
    `verify` and `restore` of what it printed go through its chain; its file alone is refused."""
    from config import load_settings
    from engine import BackupEngine

    db = database.open_database(env["DB_PATH"])
    db.migrate()
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO users (user_id, username, first_seen, last_seen) VALUES (?, ?, 0, 0)",
            [(n, f"user{n}" * 4) for n in range(1000, 21_000)],
        )
    engine = BackupEngine(db, load_settings(env, require_token=False))
    engine.create("manual")
    for user in (1, 2, 3, 4, 5):
        db.track_message(user, None, "N", user, "message", NOW, NOW)
        engine.create("change")
    db.track_message(6, None, "N", 6, "message", NOW, NOW)  # after the last backup
    db.close()

    listed = run(env, "list")
    assert all(LINE.match(line) for line in listed.stdout.splitlines()), listed.stdout
    newest = references(listed)[0]
    assert newest.endswith("-change.delta.zst")
    verified = run(env, "verify", newest)
    assert verified.returncode == 0 and f"users {20_005}" in verified.stdout, verified.stderr
    one_line_error(
        run(env, "verify", str(tmp_path / "data" / "backups" / newest.removeprefix("local:"))),
        "through its chain",
    )
    restored = run(env, "restore", newest, "--yes")
    assert restored.returncode == 0, restored.stderr
    assert {1, 2, 3, 4, 5} <= users_in(env["DB_PATH"], admins=()) and 6 not in users_in(
        env["DB_PATH"], admins=()
    )
