"""The backup engine on real SQLite files: create, rotate, verify, restore, startup restore."""

import shutil
import sqlite3
import stat
import struct
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW, sql

import backup_format
import database
import locks
import startup
from backup_format import BackupError, BackupInfo, file_name, read_header
from config import load_settings
from engine import BackupEngine

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"
CURRENT_SCHEMA = len(database.find_migrations())


def make_settings(tmp_path, **env):
    return load_settings(
        {"BOT_TOKEN": TOKEN, "DB_PATH": str(tmp_path / "data" / "bot.db"), "BACKUP_KEEP": "3", **env}
    )


class Clock:
    """Each backup gets its own, later, time."""

    def __init__(self):
        self.now = NOW

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def live(settings):
    db = database.open_database(settings.db_path)
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def engine(live, settings):
    return BackupEngine(live, settings, clock=Clock())


def add_users(db, *user_ids):
    for user_id in user_ids:
        db.track_message(user_id, f"user{user_id}", "Name", user_id, "message", NOW, NOW)


def user_ids(db):
    return [row[0] for row in sql(db, "SELECT user_id FROM users ORDER BY 1")]


def fill_tracking(db, rows):
    """Many tracking rows, quickly, in SQL."""
    add_users(db, 1)
    with db.transaction() as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO tracking (user_id, chat_id, kind, created_at)"
            " SELECT 1, i, 'message', printf('2026-11-26 %02d:%02d:%02d', i % 24, i % 60, i % 60)"
            " FROM n",
            (rows,),
        )


# --- create ---


def test_a_backup_describes_itself_and_opens_with_common_tools(engine, live, settings):
    add_users(live, 1, 2, 3)
    result = engine.create("manual")
    path = Path(result.info.location)
    with open(path, "rb") as stream:
        info = read_header(stream)
    assert (info.reason, info.schema_version) == ("manual", CURRENT_SCHEMA)
    assert info.row_counts == {"bot_state": 0, "daily_activity": 3, "tracking": 3, "users": 3}
    assert info.created_at == NOW + timedelta(seconds=1) and len(info.sha256) == 64
    # without this project: zstd, then the sqlite3 shell
    plain = path.with_suffix(".plain")
    subprocess.run(["zstd", "-q", "-d", str(path), "-o", str(plain)], check=True)
    shell = subprocess.run(
        ["sqlite3", str(plain), "SELECT count(*) FROM users"], capture_output=True, text=True, check=True
    )
    assert shell.stdout.strip() == "3"
    # and the newest snapshot is also a plain SQLite file at DB_PATH.backup
    copy = sqlite3.connect(f"{settings.db_path}.backup")
    assert copy.execute("SELECT count(*) FROM users").fetchone() == (3,)


def test_backup_files_are_readable_by_their_owner_only(engine, live, settings):
    add_users(live, 1)
    result = engine.create("manual")
    for path in (Path(result.info.location), Path(f"{settings.db_path}.backup")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(settings.backup_dir).stat().st_mode) == 0o700


def test_rotation_keeps_exactly_backup_keep(engine, live):
    for n in range(5):
        add_users(live, n)
        engine.create("manual")
    kept = engine.listing().backups
    assert len(kept) == 3
    assert [b.row_counts["users"] for b in kept] == [5, 4, 3]  # the newest three
    assert len(list(Path(engine.local.folder).glob("backup-*"))) == 3


def test_unchanged_content_is_skipped_for_startup_and_scheduled_but_not_manual(engine, live, caplog):
    caplog.set_level("INFO")
    add_users(live, 1)
    assert not engine.create("startup").skipped
    assert engine.create("scheduled").skipped
    assert engine.create("startup").skipped
    assert "nothing changed since" in caplog.text
    assert not engine.create("manual").skipped
    assert not engine.create("shutdown").skipped
    add_users(live, 2)
    assert not engine.create("scheduled").skipped
    assert [b.reason for b in engine.listing().backups] == ["scheduled", "shutdown", "manual"]


def test_a_backup_taken_while_a_writer_inserts_is_consistent(live, settings):
    fill_tracking(live, 100_000)  # several MB: many snapshot steps
    initial = live.table_row_counts()["tracking"]
    committed = {initial}
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            with live.transaction() as conn:
                conn.execute(
                    "INSERT INTO tracking (user_id, chat_id, kind, created_at)"
                    " VALUES (1, 1, 'message', '2026-11-26 12:00:00')"
                )
                conn.execute(
                    "INSERT INTO tracking (user_id, chat_id, kind, created_at)"
                    " VALUES (1, 2, 'message', '2026-11-26 12:00:00')"
                )
                (count,) = conn.execute("SELECT count(*) FROM tracking").fetchone()
            committed.add(count)

    engine = BackupEngine(live, settings, clock=Clock(), step_pages=8)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = engine.create("manual")
    finally:
        stop.set()
        thread.join()
    backed_up = result.info.row_counts["tracking"]
    assert backed_up in committed  # a state some commit really produced, never half of one
    assert (backed_up - initial) % 2 == 0  # both inserts of a transaction, or neither
    assert len(committed) > 2  # the writer did get in while the backup ran
    assert engine.verify(result.info).row_counts["tracking"] == backed_up


def test_a_full_disk_fails_the_backup_in_one_line_and_keeps_the_earlier_ones(live, tmp_path, small_disk):
    engine = BackupEngine(live, make_settings(tmp_path, BACKUP_DIR=str(small_disk)), clock=Clock())
    add_users(live, 1)
    first = engine.create("manual")
    with live.transaction() as conn:  # 1 MB that does not compress: more than the disk holds
        conn.execute("UPDATE users SET username = randomblob(1048576) WHERE user_id = 1")
    with pytest.raises(BackupError) as failed:
        engine.create("manual")
    assert "full" in str(failed.value) and "\n" not in str(failed.value)
    assert engine.listing().backups == [first.info]
    assert engine.verify(first.info).row_counts["users"] == 1
    assert [p.name for p in small_disk.iterdir()] == [first.info.name]  # no temporary left


# --- verify and restore refusals ---


def packed_backup(tmp_path, db_file, reason="manual"):
    """A real backup file of `db_file`, made with the engine's own writer."""
    with sqlite3.connect(db_file) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    digest, size = backup_format.sha256_of(db_file)
    info = BackupInfo(NOW, reason, version, counts, digest, size, name=file_name(NOW, reason))
    target = tmp_path / info.name
    with open(db_file, "rb") as content:
        backup_format.write_backup_file(content, info, target)
    return target


def raw_sqlite(path, sql):
    with sqlite3.connect(path) as conn:
        conn.executescript(sql)
    return path


@pytest.fixture
def good_backup(engine, live):
    add_users(live, 1, 2)
    path = Path(engine.create("manual").info.location)
    add_users(live, 3)  # the live data moves on
    return path


def bad_files(tmp_path, good_backup):
    data = good_backup.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "notes.txt").write_text("my shopping list\n")
    (tmp_path / "truncated.db.zst").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "flipped.db.zst").write_bytes(bytes(flipped))
    raw_sqlite(tmp_path / "other.db", "CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
    raw_sqlite(
        tmp_path / "future.db",
        (Path(database.MIGRATIONS_DIR) / "0001_initial.sql").read_text() + "PRAGMA user_version = 99;",
    )
    return {
        "a text file": (tmp_path / "notes.txt", "not a backup"),
        "a truncated backup": (tmp_path / "truncated.db.zst", "damaged backup"),
        "a bit-flipped backup": (tmp_path / "flipped.db.zst", "damaged backup"),
        "a SQLite file without the tables": (tmp_path / "other.db", "the table users is missing"),
        "a backup from a newer schema": (
            packed_backup(tmp_path, tmp_path / "future.db"),
            rf"schema version 99, newer than this code knows \({CURRENT_SCHEMA}\)",
        ),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "a text file",
        "a truncated backup",
        "a bit-flipped backup",
        "a SQLite file without the tables",
        "a backup from a newer schema",
    ],
)
def test_restore_refuses_bad_input_and_leaves_the_live_database_untouched(
    kind, tmp_path, engine, live, good_backup
):
    path, reason = bad_files(tmp_path, good_backup)[kind]
    backups_before = engine.listing().backups
    with pytest.raises(BackupError, match=reason) as refused:
        engine.restore(path)
    assert "\n" not in str(refused.value)
    assert user_ids(live) == [1, 2, 3]
    assert engine.listing().backups == backups_before  # not even a safety backup was taken


def test_restore_takes_a_safety_backup_then_brings_the_data_back(engine, live, good_backup):
    info = engine.restore(good_backup)
    assert info.row_counts["users"] == 2
    assert user_ids(live) == [1, 2]
    restored, safety = engine.listing().backups[:2]
    assert restored.reason == "restore" and restored.row_counts["users"] == 2  # what comes back next
    assert safety.reason == "pre-restore" and safety.row_counts["users"] == 3
    engine.restore(safety)  # and the safety backup undoes the restore
    assert user_ids(live) == [1, 2, 3]


# --- startup ---


def start(settings):
    db, _engine, report = startup.prepare_database(settings, clock=Clock())
    report.lock.release()
    return db, report


def test_the_safety_copy_is_never_restored_as_the_newest_even_when_it_is_the_newest_file(
    engine, live, settings, good_backup
):
    engine.restore(good_backup)  # a person chose users 1 and 2 over 1, 2 and 3
    after, safety = engine.listing().backups[:2]
    assert (after.reason, safety.reason) == ("restore", "pre-restore")
    Path(after.location).unlink()  # the backup after it is gone: the safety copy is the newest file
    Path(settings.db_path + ".backup").unlink()
    assert engine.listing().backups[0].reason == "pre-restore"
    live.close()
    Path(settings.db_path).unlink()  # an empty disk but for the backups
    db, report = start(settings)
    assert report.restored.reason == "manual" and user_ids(db) == [1, 2]  # what the person chose
    db.close()


def test_startup_keeps_a_healthy_database_even_when_a_backup_is_older(engine, live, settings):
    add_users(live, 1)
    engine.create("manual")
    add_users(live, 2)  # newer than the backup
    live.close()
    db, report = start(settings)
    assert report.restore_reason is None and report.restored is None
    assert user_ids(db) == [1, 2]


def test_startup_restores_a_missing_database(engine, live, settings):
    add_users(live, 1, 2)
    engine.create("manual")
    live.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{settings.db_path}{suffix}").unlink(missing_ok=True)
    db, report = start(settings)
    assert report.restore_reason == "the database is missing or empty"
    assert report.restored.reason == "manual" and user_ids(db) == [1, 2]


def test_startup_moves_a_garbage_database_aside_and_restores(engine, live, settings):
    add_users(live, 1)
    engine.create("manual")
    live.close()
    Path(f"{settings.db_path}-wal").unlink(missing_ok=True)
    Path(settings.db_path).write_bytes(b"garbage " * 5000)
    db, report = start(settings)
    assert report.moved_aside.read_bytes() == b"garbage " * 5000  # kept, never deleted
    assert report.moved_aside.name.startswith("bot.db.corrupt-")
    assert report.restore_reason == "the database was damaged" and user_ids(db) == [1]


def test_startup_moves_aside_a_database_that_fails_quick_check(engine, live, settings):
    fill_tracking(live, 20_000)
    engine.create("manual")
    live.close()
    path = Path(settings.db_path)
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 200] = b"\xff" * 200  # smash a b-tree page, keep the header
    path.write_bytes(bytes(data))
    db, report = start(settings)
    assert report.moved_aside is not None and report.restored is not None
    assert db.table_row_counts()["tracking"] == 20_001  # fill_tracking adds one for the user


def test_startup_uses_the_older_backup_when_the_newest_is_damaged(engine, live, settings):
    add_users(live, 1)
    engine.create("manual")
    add_users(live, 2)
    newest = Path(engine.create("manual").info.location)
    newest.write_bytes(newest.read_bytes()[:-100])
    live.close()
    for suffix in ("", "-wal", "-shm", ".backup"):
        Path(f"{settings.db_path}{suffix}").unlink(missing_ok=True)
    db, report = start(settings)
    assert user_ids(db) == [1]
    assert len(report.passed_over) == 1 and newest.name in str(report.passed_over[0])


def test_startup_without_any_backup_gives_a_fresh_database_and_a_warning(settings, caplog):
    db, report = start(settings)
    assert report.restored is None and report.restore_reason == "the database is missing or empty"
    assert db.schema_version() == CURRENT_SCHEMA
    assert db.table_row_counts() == {"bot_state": 0, "daily_activity": 0, "tracking": 0, "users": 0}
    assert "no backup could be restored: starting with a fresh database" in caplog.text


def test_a_second_process_on_the_same_database_is_refused(settings):
    _db, _engine, report = startup.prepare_database(settings)
    try:
        with pytest.raises(locks.AlreadyRunningError, match="already in use by a running bot"):
            startup.prepare_database(settings)
    finally:
        report.lock.release()
    startup.prepare_database(settings)[2].lock.release()  # free again once released


def test_restore_works_while_another_process_reads_the_database(engine, live, good_backup, settings):
    # e.g. someone looking at the data with the sqlite3 shell: the restore cannot leave WAL then
    reader = sqlite3.connect(settings.db_path)
    try:
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (3,)
        engine.restore(good_backup)
        assert user_ids(live) == [1, 2]
        assert reader.execute("SELECT count(*) FROM users").fetchone() == (2,)
    finally:
        reader.close()
    assert sql(live, "PRAGMA journal_mode") == [("wal",)]


def test_a_damaged_database_is_moved_aside_with_its_wal_and_shm_files(live, settings, tmp_path):
    fill_tracking(live, 20_000)
    live.close()  # everything checkpointed into the main file
    db = database.open_database(settings.db_path)
    add_users(db, 2)  # a last write, still in the WAL
    crashed = tmp_path / "crashed"  # the files as a crash leaves them, WAL and all
    crashed.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{settings.db_path}{suffix}", crashed / f"bot.db{suffix}")
    db.close()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(crashed / f"bot.db{suffix}", f"{settings.db_path}{suffix}")
    data = bytearray(Path(settings.db_path).read_bytes())
    data[4096 * 5 : 4096 * 5 + 200] = b"\xff" * 200  # then a b-tree page of the main file is smashed
    Path(settings.db_path).write_bytes(bytes(data))
    originals = {suffix: Path(f"{settings.db_path}{suffix}").read_bytes() for suffix in ("", "-wal")}
    assert originals["-wal"]  # there is something in the WAL to keep
    db, report = start(settings)
    assert report.restore_reason == "the database was damaged"
    for suffix, content in originals.items():
        assert Path(f"{report.moved_aside}{suffix}").read_bytes() == content  # kept, byte for byte
    assert Path(f"{report.moved_aside}-shm").is_file()  # the WAL's index: kept, rebuilt by readers
    db.close()


def test_another_programs_files_beside_the_database_survive_a_backup(engine, live, settings):
    folder, backups = Path(settings.db_path).parent, Path(settings.backup_dir)
    backups.mkdir(exist_ok=True)
    theirs = [
        folder / ".tmp-report-99999999",
        backups / ".tmp-backup-x.db.zst-99999999",
        folder / "upload.tmp-99999999",
        backups / ".botbackup-tmp-their-own-idea",
    ]
    for path in theirs:
        path.write_text("not ours")
    (folder / ".tmp-work-99999999-abc").mkdir()  # a folder named like ours but in another pattern
    add_users(live, 1)
    engine.create("manual")
    assert all(path.read_text() == "not ours" for path in theirs)
    assert (folder / ".tmp-work-99999999-abc").is_dir()


def test_a_database_path_with_odd_characters_backs_up_and_restores(tmp_path):
    settings = make_settings(tmp_path / "we#ird ?%20 ünï cödé")
    db = database.open_database(settings.db_path)
    db.migrate()
    add_users(db, 1, 2)
    engine = BackupEngine(db, settings, clock=Clock())
    made = engine.create("manual")
    assert engine.verify(made.info).row_counts["users"] == 2
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{settings.db_path}{suffix}").unlink(missing_ok=True)
    db, report = start(settings)  # an empty disk: restored from the folder with odd characters
    assert report.restored.name == made.info.name and user_ids(db) == [1, 2]
    add_users(db, 3)
    BackupEngine(db, settings, clock=Clock()).restore(Path(made.info.location))
    assert user_ids(db) == [1, 2]
    db.close()


def test_the_live_database_and_its_wal_and_shm_are_private(live, settings):
    add_users(live, 1)
    for suffix in ("", "-wal", "-shm"):
        assert stat.S_IMODE(Path(f"{settings.db_path}{suffix}").stat().st_mode) == 0o600, suffix


def test_files_in_the_backup_folder_that_are_not_backups_never_fail_a_backup(engine, live, settings, caplog):
    backups = Path(settings.backup_dir)
    backups.mkdir(exist_ok=True)
    (backups / file_name(NOW, "manual")).write_bytes(b"not a backup at all")
    (backups / file_name(NOW.replace(hour=13), "manual")).write_bytes(
        struct.pack("<II", backup_format.SKIPPABLE_MAGIC, 200_000) + b"[" * 100_000 + b"]" * 100_000
    )
    add_users(live, 1)
    assert engine.create("manual").info.row_counts["users"] == 1
    engine.create("manual")
    assert caplog.text.count("which is not a backup") == 2  # each reported, once
    assert [b.reason for b in engine.listing().backups] == ["manual", "manual"]


def test_the_health_endpoints_pause_flag_answers_while_a_final_backup_holds_the_database(engine, live):
    """A shutdown or hand-over backup holds the database while it uploads; /healthz must not wait."""
    engine.pause_offsite("an empty start")
    with ThreadPoolExecutor(1) as other_thread, live.frozen():
        assert other_thread.submit(engine.offsite_paused_seen).result(timeout=5) is True
    engine.resume_offsite()
    assert engine.offsite_paused_seen() is False
