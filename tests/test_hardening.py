"""Crafted backups, as someone hostile (or a broken network) would hand them over: each is refused
by `python backup.py verify` and by `python backup.py restore` with one line, and the live
database stays byte for byte as it was. At startup, the next candidate is restored instead."""

import hashlib
import json
import os
import sqlite3
import struct
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import zstandard
from bot_process import PROJECT
from conftest import NOW
from helpers import fingerprint

import database
import startup
from backup_format import SKIPPABLE_MAGIC, file_name
from config import load_settings

BACKUP = str(PROJECT / "backup.py")
CURRENT = len(database.find_migrations())
MB = 1 << 20


def bot_database(path: Path, version: int = CURRENT, extra_sql: str = "", users=(1, 2)) -> Path:
    """A SQLite file made by this bot's migrations up to `version`, then `extra_sql`."""
    db = database.open_database(str(path))
    db.migrate(up_to=version)
    for user_id in users:
        db.track_message(user_id, f"user{user_id}", "N", user_id, "message", NOW, NOW)
    db.close()
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(extra_sql + ";PRAGMA journal_mode=DELETE;")
    return path


def header_of(db_file: Path) -> dict:
    """The header this project would write for `db_file`."""
    with closing(sqlite3.connect(db_file)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    data = db_file.read_bytes()
    return {
        "format": "telegram-bot-backup/1",
        "created_at": NOW.isoformat(),
        "reason": "manual",
        "schema_version": version,
        "row_counts": counts,
        "sha256": hashlib.sha256(data).hexdigest(),
        "db_size": len(data),
    }


def backup_file(target: Path, header, content: bytes) -> Path:
    """[skippable frame: header as given] + [zstd frame: content]."""
    payload = header if isinstance(header, bytes) else json.dumps(header).encode()
    frame = zstandard.ZstdCompressor().compress(content)
    target.write_bytes(struct.pack("<II", SKIPPABLE_MAGIC, len(payload)) + payload + frame)
    return target


def packed(tmp_path: Path, db_file: Path, **changes) -> Path:
    return backup_file(
        tmp_path / file_name(NOW, "manual"), {**header_of(db_file), **changes}, db_file.read_bytes()
    )


def with_header(tmp_path: Path, **changes) -> Path:
    return packed(tmp_path, bot_database(tmp_path / "ok.db"), **changes)


def raw_header(tmp_path: Path, text: bytes) -> Path:
    db_file = bot_database(tmp_path / "ok.db")
    return backup_file(tmp_path / "raw.db.zst", text, db_file.read_bytes())


def expansion_bomb(tmp_path: Path) -> Path:
    """A real header of a small database, and 64 MB of zeros in its zstd frame (about 2 KB)."""
    db_file = bot_database(tmp_path / "ok.db")
    return backup_file(tmp_path / "bomb.db.zst", header_of(db_file), bytes(64 * MB))


def declared_bomb(tmp_path: Path) -> Path:
    db_file = bot_database(tmp_path / "ok.db")
    return backup_file(tmp_path / "bomb.db.zst", {**header_of(db_file), "db_size": 1 << 43}, bytes(8 * MB))


def age_file(tmp_path: Path) -> Path:
    """A file of the age tool itself (passphrase mode): another program's, not a backup."""
    path = tmp_path / "extreme.db.zst.age"
    path.write_bytes(b"age-encryption.org/v1\n-> scrypt c2FsdHNhbHRzYWx0c2FsdA 40\n" + os.urandom(4096))
    return path


def sealed_file(tmp_path: Path, work_factor: int, salt: bytes = b"c2FsdHNhbHRzYWx0c2FsdA") -> Path:
    path = tmp_path / "extreme.db.zst.sealed"
    path.write_bytes(
        b"telegram-bot-backup-sealed/1\nscrypt "
        + salt
        + b" %d\n" % work_factor
        + b"age-encryption.org/v1\n"
        + os.urandom(4096)
    )
    return path


FOREIGN_COLUMNS = """
CREATE TABLE users (user_id INTEGER PRIMARY KEY, first_seen TEXT, last_seen TEXT, secret TEXT);
CREATE TABLE tracking (id INTEGER PRIMARY KEY, user_id INTEGER, chat_id INTEGER, kind TEXT,
                       created_at TEXT, payload BLOB);
CREATE TABLE bot_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
PRAGMA user_version = 2;
"""

CRAFTED = {
    "an expansion bomb": (expansion_bomb, "unpacks to more than the"),
    "a bomb that declares 8 TB": (declared_bomb, "not enough disk space to unpack the backup"),
    "foreign columns under the right table names": (
        lambda t: packed(t, bot_database(t / "f.db", version=0, users=(), extra_sql=FOREIGN_COLUMNS)),
        "not a backup of this bot",
    ),
    "an extra trigger": (
        lambda t: packed(
            t,
            bot_database(
                t / "t.db",
                extra_sql=(
                    "CREATE TRIGGER rewrite AFTER INSERT ON tracking BEGIN "
                    "UPDATE users SET blocked_until = '2999-01-01 00:00:00'; END"
                ),
            ),
        ),
        "holds a trigger rewrite",
    ),
    "an extra view": (
        lambda t: packed(
            t, bot_database(t / "v.db", extra_sql="CREATE VIEW everyone AS SELECT * FROM users")
        ),
        "holds a view everyone",
    ),
    "an old schema version over existing tables": (
        lambda t: packed(t, bot_database(t / "o.db", extra_sql="PRAGMA user_version = 1")),
        "holds a table bot_state that schema version 1",
    ),
    "a header with an impossible date": (
        lambda t: with_header(t, created_at="2026-13-45T00:00:00+00:00"),
        "header is damaged (date)",
    ),
    "a header with a date before the year 1": (
        lambda t: with_header(t, created_at="0001-01-01T00:00:00+14:00"),
        "header is damaged (date)",
    ),
    "a header with a date without a zone": (
        lambda t: with_header(t, created_at="2026-11-26T12:00:00"),
        "header is damaged (date)",
    ),
    "a header nested a hundred thousand deep": (
        lambda t: raw_header(
            t, b'{"format": "telegram-bot-backup/1", "row_counts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        ),
        "header is damaged",
    ),
    "a header with an infinite size": (
        lambda t: raw_header(
            t, json.dumps({**header_of(bot_database(t / "i.db")), "db_size": float("inf")}).encode()
        ),
        "header is damaged (size)",
    ),
    "a header with a negative row count": (
        lambda t: with_header(t, row_counts={"users": -1, "tracking": 2, "bot_state": 0}),
        "header is damaged (row counts)",
    ),
    "a header that is a list": (lambda t: raw_header(t, b"[1, 2, 3]"), "not a JSON object"),
    "a header that is not UTF-8": (
        lambda t: raw_header(t, '{"format": "telegram-bot-backup/1", "reason": "café"}'.encode("latin-1")),
        "header is damaged (not readable JSON)",
    ),
    "an age file of the age tool, not sealed by this bot": (age_file, "not a backup"),
    "a sealed file with an extreme work factor": (
        lambda t: sealed_file(t, 31),
        "refused: decrypting this backup would take",
    ),
    "a sealed file with a damaged header": (
        lambda t: sealed_file(t, 15, salt=b"not base64 at all!!!!!"),
        "encryption header is not readable",
    ),
}


@pytest.fixture
def live(tmp_path):
    """A live database with three users, its backups folder, and the command line's setting."""
    path = bot_database(tmp_path / "data" / "bot.db", users=(1, 2, 3))
    env = {"PATH": os.environ["PATH"], "DB_PATH": str(path), "BACKUP_PASSPHRASE": "passphrase words"}
    return path, env


def run(env, *args):
    return subprocess.run(
        [sys.executable, BACKUP, *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("kind", list(CRAFTED))
def test_a_crafted_backup_is_refused_in_one_line_and_changes_nothing(kind, tmp_path, live):
    db_path, env = live
    craft, reason = CRAFTED[kind]
    crafted = craft(_folder(tmp_path))
    before = fingerprint(db_path.parent)
    for args in (("verify", str(crafted)), ("restore", str(crafted), "--yes")):
        result = run(env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and reason in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert fingerprint(db_path.parent) == before


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "crafted"
    folder.mkdir()
    return folder


def test_restoring_the_live_file_onto_itself_is_refused_at_once(live):
    db_path, env = live
    before = fingerprint(db_path.parent)
    result = run(env, "restore", str(db_path), "--yes")
    assert result.returncode == 1 and "is the live database itself" in result.stderr
    assert fingerprint(db_path.parent) == before


def test_at_startup_a_crafted_newest_backup_is_passed_over_for_the_next(tmp_path):
    settings = load_settings(
        {
            "BOT_TOKEN": "123456:AAbbCCddEEffGGhhIIjjKKll",
            "DB_PATH": str(tmp_path / "data" / "bot.db"),
            "BACKUP_CHAT_ID": "off",
        }
    )
    good = bot_database(tmp_path / "good.db", users=(7, 8))
    backups = Path(settings.backup_dir)
    backups.mkdir(parents=True)
    older = NOW.replace(hour=11)
    backup_file(
        backups / file_name(older, "manual"),
        {**header_of(good), "created_at": older.isoformat()},
        good.read_bytes(),
    )
    bomb = expansion_bomb(tmp_path)
    bomb.rename(backups / file_name(NOW, "scheduled"))
    db, _engine, report = startup.prepare_database(settings)
    report.lock.release()
    assert report.restored is not None and report.restored.row_counts["users"] == 2
    (passed,) = report.passed_over
    assert "unpacks to more than" in passed.reason and passed.info.name == file_name(NOW, "scheduled")
    db.close()
