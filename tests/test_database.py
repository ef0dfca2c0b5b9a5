import sqlite3
from datetime import date, timedelta

import pytest
from conftest import NOW, sql

import admin_users
import database
from database import MigrationError, SchemaTooNewError

# --- storage probe and in-memory fallback ---


def test_a_writable_folder_gives_file_mode_and_leaves_no_probe_behind(tmp_path):
    path = tmp_path / "data" / "bot.db"
    db = database.open_database(str(path))
    assert db.storage.mode == "file" and db.storage.reason is None
    db.migrate()
    db.track_message(1, "ann", "Ann", 1, "message", NOW, NOW)
    db.close()
    assert sorted(p.name for p in path.parent.iterdir() if "probe" in p.name) == []
    assert sqlite3.connect(path).execute("SELECT username FROM users").fetchall() == [("ann",)]


def test_a_path_under_a_regular_file_falls_back_to_memory_with_the_reason(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("I am a file")
    db = database.open_database(str(blocker / "bot.db"))
    assert db.storage.in_memory
    assert "Not a directory" in db.storage.reason or "exists" in db.storage.reason
    db.migrate()  # and the bot can still keep its data for now
    db.track_message(7, None, "Bo", 7, "message", NOW, NOW)
    assert db.table_row_counts() == {"bot_state": 0, "daily_activity": 1, "tracking": 1, "users": 1}


def test_a_read_only_mount_falls_back_to_memory_with_the_reason(read_only_dir):
    db = database.open_database(str(read_only_dir / "bot.db"))
    assert db.storage.in_memory
    assert "Read-only file system" in db.storage.reason


def test_a_directory_in_place_of_the_database_file_falls_back_to_memory(tmp_path):
    (tmp_path / "bot.db").mkdir()
    db = database.open_database(str(tmp_path / "bot.db"))
    assert db.storage.in_memory and "not a regular file" in db.storage.reason


def test_a_file_that_is_not_a_database_is_reported_as_damaged_not_as_bad_storage(tmp_path):
    path = tmp_path / "bot.db"
    path.write_bytes(b"this is not a database, it is a shopping list" * 100)
    with pytest.raises(database.DamagedDatabaseError, match="not a usable SQLite database"):
        database.open_database(str(path))
    assert path.read_bytes().startswith(b"this is not a database")  # untouched


def test_file_mode_uses_wal_busy_timeout_and_foreign_keys(db):
    def pragma(name):
        return sql(db, f"PRAGMA {name}")[0][0]

    assert pragma("journal_mode") == "wal"
    assert pragma("busy_timeout") == database.BUSY_TIMEOUT_MS
    assert pragma("foreign_keys") == 1


# --- migrations ---


def write_migrations(folder, *bodies):
    folder.mkdir(exist_ok=True)
    for number, body in enumerate(bodies, start=1):
        (folder / f"{number:04d}_step{number}.sql").write_text(body)
    return folder


def test_a_fresh_database_gets_every_migration(tmp_path):
    db = database.open_database(str(tmp_path / "bot.db"))
    assert db.migrate() == [
        "0001_initial.sql",
        "0002_bot_state.sql",
        "0003_languages.sql",
        "0004_daily_activity.sql",
    ]
    assert db.schema_version() == 4
    assert set(db.table_row_counts()) == {"users", "tracking", "bot_state", "daily_activity"}
    assert db.migrate() == []  # idempotent


def test_an_older_database_is_upgraded_from_its_version(tmp_path):
    folder = write_migrations(tmp_path / "m", "CREATE TABLE a (x);")
    db = database.open_database(str(tmp_path / "bot.db"))
    db.migrate(folder)
    sql(db, "INSERT INTO a VALUES (41)")
    write_migrations(
        folder, "CREATE TABLE a (x);", "ALTER TABLE a ADD COLUMN y DEFAULT 1;", "UPDATE a SET x = x + 1;"
    )
    assert db.migrate(folder) == ["0002_step2.sql", "0003_step3.sql"]
    assert db.schema_version() == 3
    assert sql(db, "SELECT x, y FROM a") == [(42, 1)]


def test_a_broken_migration_rolls_back_names_its_file_and_leaves_the_database_as_it_was(tmp_path):
    folder = write_migrations(tmp_path / "m", "CREATE TABLE a (x); INSERT INTO a VALUES (1);")
    db = database.open_database(str(tmp_path / "bot.db"))
    db.migrate(folder)
    write_migrations(
        folder,
        "CREATE TABLE a (x); INSERT INTO a VALUES (1);",
        "CREATE TABLE b (y); INSERT INTO a VALUES (2); THIS IS NOT SQL;",
    )
    with pytest.raises(MigrationError, match=r"0002_step2\.sql"):
        db.migrate(folder)
    assert db.schema_version() == 1
    assert sql(db, "SELECT x FROM a") == [(1,)]  # and no transaction was left open
    assert sql(db, "SELECT name FROM sqlite_master WHERE name = 'b'") == []


def test_a_newer_database_is_refused_untouched(tmp_path):
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE future (x)")
        raw.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    db = database.open_database(str(path))
    with pytest.raises(SchemaTooNewError, match="schema version 99, newer than this code knows"):
        db.migrate()
    db.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 99
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == [("future",)]
    assert path.read_bytes()[:100] == before[:100]


def test_misnumbered_migrations_are_reported(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (folder / "0003_c.sql").write_text("CREATE TABLE c (x);")
    with pytest.raises(MigrationError, match=r"0003_c\.sql should be numbered 0002"):
        database.find_migrations(folder)


# --- users, blocks, tracking ---


def test_track_message_registers_then_refreshes_the_user(db):
    db.track_message(5, "old", "Ann", 5, "message", NOW, NOW)
    later = NOW + timedelta(minutes=3)
    state = db.track_message(5, "new", "Ann", 5, "message", later, NOW - timedelta(minutes=1))
    user = db.user(5)
    assert (user["username"], user["first_seen"], user["last_seen"]) == (
        "new",
        "2026-11-26 12:00:00",
        "2026-11-26 12:03:00",
    )
    assert state.recent_messages == 2 and not state.is_blocked(later)


def test_the_flood_window_counts_only_recent_messages(db):
    for second in range(0, 100, 10):
        db.track_message(5, None, "Ann", 5, "message", NOW + timedelta(seconds=second), NOW)
    state = db.track_message(
        5, None, "Ann", 5, "message", NOW + timedelta(seconds=100), NOW + timedelta(seconds=45)
    )
    assert state.recent_messages == 6  # at 50, 60, 70, 80, 90 and 100 seconds


def test_lift_expired_blocks_lifts_exactly_the_expired_ones(db):
    for user_id, minutes in [(1, -5), (2, 0), (3, 5)]:
        db.block_user(user_id, NOW + timedelta(minutes=minutes), "test", notified=True, now=NOW)
    assert db.lift_expired_blocks(NOW) == [1, 2]
    assert db.user(1)["blocked_until"] is None and db.user(2)["blocked_until"] is None
    assert db.user(3)["blocked_until"] == "2026-11-26 12:05:00"
    assert db.lift_expired_blocks(NOW) == []


def test_delete_tracking_before_removes_exactly_the_old_rows(db):
    for hours in (30, 25, 24, 1):
        db.track_message(9, None, "Cy", 9, "message", NOW - timedelta(hours=hours), NOW)
    assert db.delete_tracking_before(NOW - timedelta(hours=24)) == 2
    kept = [row[0] for row in sql(db, "SELECT created_at FROM tracking ORDER BY 1")]
    assert kept == ["2026-11-25 12:00:00", "2026-11-26 11:00:00"]


def test_a_failed_unit_of_work_is_rolled_back(db):
    with pytest.raises(ZeroDivisionError), db.transaction() as conn:
        conn.execute("INSERT INTO users (user_id, first_seen, last_seen) VALUES (1, 'a', 'a')")
        raise ZeroDivisionError
    assert db.table_row_counts()["users"] == 0


# --- finding people, and what they did (the panel's 👥 Users and 📊 chart) ---


def people(db, *names):
    """Users 1, 2, ... named `names`, each first seen a day after the one before."""
    for n, name in enumerate(names, start=1):
        db.track_message(n, name.lower(), name, n, "message", NOW + timedelta(days=n), NOW)


def test_statistics_count_every_user_as_a_backup_does_and_the_admins_presses_apart(db):
    people(db, "Ann", "Bob")
    for _ in range(5):
        db.track_message(99, "admin", "Admin", 99, "message", NOW + timedelta(days=2), NOW)
    stats = db.user_statistics(NOW + timedelta(days=2, hours=1), admins=(99,))
    assert (stats["users"], stats["actions"], stats["admin_actions"]) == (3, 1, 5)  # Bob's, then the admin's
    assert stats["users"] == db.table_row_counts()["users"]  # what a backup made now would say
    assert stats["new"] == 2  # Bob and the admin, first seen within the last 24 hours


def test_newest_most_active_and_blocked_users(db):
    people(db, "Ann", "Bob", "Cy")
    for _ in range(3):
        db.track_message(1, "ann", "Ann", 1, "message", NOW + timedelta(days=3), NOW)
    db.block_user(2, NOW + timedelta(days=9), "spam", notified=True, now=NOW)
    assert [u["user_id"] for u in db.newest_users(limit=2)] == [3, 2]
    assert [u["user_id"] for u in db.newest_users(admins=(3,), limit=2)] == [2, 1]
    active = db.most_active_users(NOW, admins=(3,))
    assert [(u["user_id"], u["actions"]) for u in active] == [(1, 4), (2, 1)]  # Cy is an admin here
    (blocked,) = db.blocked_users(NOW + timedelta(days=4))
    assert (blocked["user_id"], blocked["block_reason"]) == (2, "spam")


@pytest.mark.parametrize(
    "query, found",
    [
        ("2", [2]),
        ("@BOB", [2]),
        ("bo", [2]),
        ("AN", [1]),
        ("nobody", []),
        ("99999999999999999999", []),
        ("%", []),
        ("_", []),
        ("\\", []),
        ("'; DROP TABLE users; --", []),
        ("", [3, 2, 1]),
    ],
)
def test_find_users_by_id_username_or_a_part_of_a_name_wildcards_being_plain_text(db, query, found):
    people(db, "Ann", "Bob", "Cy")
    assert [u["user_id"] for u in db.find_users(query)] == found
    assert db.table_row_counts()["users"] == 3


def test_daily_counts_and_activity_outlive_the_tracking_rows(db):
    people(db, "Ann", "Bob")  # first seen on the 27th and the 28th
    db.track_message(1, "ann", "Ann", 1, "message", NOW + timedelta(days=2), NOW)  # Ann again on the 28th
    db.delete_tracking_before(NOW + timedelta(days=30))
    new, active = db.daily_counts(date(2026, 11, 26), date(2026, 11, 30))
    assert new == {"2026-11-27": 1, "2026-11-28": 1}
    assert active == {"2026-11-27": 1, "2026-11-28": 2}
    assert db.activity(1, NOW) == (2, 2)  # two actions on two days
    assert db.daily_counts(date(2026, 11, 26), date(2026, 11, 30), admins=(1,))[1] == {"2026-11-28": 1}
    assert db.forget_activity_before(date(2026, 11, 28)) == 1
    assert db.daily_counts(date(2026, 11, 26), date(2026, 11, 30))[1] == {"2026-11-28": 2}


def test_the_charts_days_are_the_databases_days_zeros_included(db):
    people(db, "Ann", "Bob")  # first seen on the 27th and the 28th
    db.track_message(1, "ann", "Ann", 1, "message", NOW + timedelta(days=2), NOW)
    db.track_message(99, "admin", "Admin", 99, "message", NOW + timedelta(days=2), NOW)
    counts = admin_users.daily(db, date(2026, 11, 28), admins=(99,), days=4)
    assert counts.days == (date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27), date(2026, 11, 28))
    assert counts.new_users == (0, 0, 1, 1) and counts.active_users == (0, 0, 1, 2)


def test_the_daily_activity_starts_from_what_tracking_still_holds(tmp_path):
    db = database.open_database(str(tmp_path / "bot.db"))
    db.migrate(up_to=3)
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO users (user_id, first_seen, last_seen) VALUES (1, '2026-11-25 09:00:00', 'x')"
        )
        conn.executemany(
            "INSERT INTO tracking (user_id, chat_id, kind, created_at) VALUES (1, 1, 'message', ?)",
            [("2026-11-25 09:00:00",), ("2026-11-25 23:59:59",), ("2026-11-26 00:00:00",)],
        )
    assert db.migrate() == ["0004_daily_activity.sql"]
    assert sql(db, "SELECT day, user_id, actions FROM daily_activity ORDER BY day") == [
        ("2026-11-25", 1, 2),
        ("2026-11-26", 1, 1),
    ]
