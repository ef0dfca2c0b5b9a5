"""The only module that speaks SQL.

open_database() probes the storage folder before trusting it and falls back to an in-memory
database (loudly, with the reason kept) when the folder cannot hold one. One connection, shared
by every thread behind a lock, is the only way an in-memory database can be shared at all, and it
keeps file mode simple: every unit of work is a short transaction under that lock.

Times are stored as UTC text, 'YYYY-MM-DD HH:MM:SS' (SQLite's own format), so the sqlite3 shell
shows and compares them without help.

Every SQL statement of the project is in this file: the bot's queries, the migrations runner,
the online backup API the backup engine copies with (snapshot_to, load_from), and the checks a
backup's database must pass before it may replace the live one (inspect_file).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from files import temporary_name
from locks import FairLock

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5000
REQUIRED_TABLES = ("users", "tracking")  # a database without them is not one of this bot's


class DatabaseError(Exception):
    """Base for the errors this module reports in plain words."""


class DamagedDatabaseError(DatabaseError):
    """The database file exists but SQLite cannot use it (not a database, or corrupt)."""


class MigrationError(DatabaseError):
    """A migration failed (the database is left as it was) or the migrations folder is wrong."""


class SchemaTooNewError(MigrationError):
    """The database was written by a newer version of the bot; it is refused and left untouched."""

    def __init__(self, message: str, version: int = 0, newest: int = 0):
        super().__init__(message)
        self.version, self.newest = version, newest


class ForeignDatabaseError(DatabaseError):
    """A SQLite file that works but is not a database of this bot."""


@dataclass(frozen=True)
class FileFacts:
    """What inspect_file found in a database file that passed its checks."""

    schema_version: int
    row_counts: dict[str, int]
    foreign: str | None = None  # with exact=False: what in it this bot's migrations do not make


@dataclass(frozen=True)
class Storage:
    mode: str  # "file" or "memory"
    path: str  # the database file, or ":memory:"
    reason: str | None = None  # why the bot fell back to memory

    @property
    def in_memory(self) -> bool:
        return self.mode == "memory"


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path


@dataclass(frozen=True)
class UserState:
    """What the gate needs to know about a user right after recording their message."""

    user_id: int
    blocked_until: datetime | None
    block_reason: str | None
    block_notified: bool
    recent_messages: int  # messages in the flood window, this one included

    def is_blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


# --- opening: storage probe and in-memory fallback -------------------------------------------


def open_database(path: str) -> Database:
    """Open the database at `path`, or an in-memory one when the folder fails the probe.

    Raises DamagedDatabaseError when the storage works but the file there is not a usable
    database: that is a job for restore, not a reason to run from memory.
    """
    problem = probe_storage(path)
    if problem is not None:
        log.error(
            "storage at %s is not usable (%s); running on an IN-MEMORY database: "
            "data will be lost when the process stops",
            path,
            problem,
        )
        return Database(_connect(MEMORY), Storage("memory", MEMORY, problem))
    try:
        _make_private(path)
        connection = _connect(path)
    except sqlite3.DatabaseError as error:
        raise DamagedDatabaseError(f"{path} is not a usable SQLite database: {error}") from error
    return Database(connection, Storage("file", path))


def _make_private(path: str) -> None:
    """The database and its -wal and -shm files are for this bot's user only (0600). SQLite
    gives the -wal and -shm files the database file's mode, so creating it 0600 is enough for
    new ones; existing ones are set."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.chmod(f"{path}{suffix}", 0o600)


def probe_storage(path: str) -> str | None:
    """None when the folder of `path` can keep a SQLite database; otherwise the reason why not.

    Writes, fsyncs, reads back and deletes a probe file, then does the same through SQLite on a
    scratch database (WAL included), so a folder that accepts files but not SQLite's locking is
    caught too. The real database file is not touched.
    """
    target = Path(path)
    folder = target.parent
    scratch = folder / temporary_name(f"storage-probe-{uuid.uuid4().hex[:8]}")
    scratch_db = Path(f"{scratch}.db")
    try:
        if target.exists() and not target.is_file():
            return f"{target} exists and is not a regular file"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            return f"{folder} exists and is not a folder (Not a directory)"
        except OSError as error:
            return f"cannot create the folder {folder}: {error.strerror}"
        try:
            _probe_file(scratch)
        except OSError as error:
            return f"cannot write, sync and read back a file in {folder}: {error.strerror or error}"
        try:
            _probe_sqlite(scratch_db)
        except sqlite3.Error as error:
            return f"SQLite cannot keep a database in {folder}: {error}"
        return None
    finally:
        for leftover in (scratch, scratch_db, Path(f"{scratch_db}-wal"), Path(f"{scratch_db}-shm")):
            try:
                leftover.unlink()
            except OSError:
                pass


def _probe_file(path: Path) -> None:
    payload = os.urandom(64)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.read_bytes() != payload:
        raise OSError(f"read back different bytes from {path}")


def _probe_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE probe (value TEXT)")
        token = uuid.uuid4().hex
        connection.execute("INSERT INTO probe VALUES (?)", (token,))
        if connection.execute("SELECT value FROM probe").fetchone() != (token,):
            raise sqlite3.OperationalError("probe row read back wrong")
    finally:
        connection.close()


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction means exactly
    # what transaction() says. check_same_thread=False: the lock below serialises access.
    connection = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
    )
    try:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # is it a database?
    except sqlite3.Error:
        connection.close()
        raise
    return connection


def open_or_move_aside(path: str, now: datetime) -> tuple[Database, Path | None]:
    """Open the database at `path` (or run in memory when the storage fails its probe). A file
    there that SQLite cannot use, or that fails quick_check, is moved aside with its -wal and
    -shm files, none deleted and none changed, and a new, empty database is opened in its place.
    Returns the database and where a damaged one went (None when it was fine)."""
    if probe_storage(path) is not None:
        return open_database(path), None  # memory: open_database says why
    problem = _damage(path)
    if problem is None:
        return open_database(path), None
    moved = move_aside(path, now)
    log.error("the database is damaged (%s); moved it aside to %s", problem, moved)
    return open_database(path), moved


def _damage(path: str) -> str | None:
    """What is wrong with the database file at `path`, or None (a missing or empty file is
    fine). Read-only: a read-write connection would checkpoint the WAL into a damaged file
    when it closes, and the WAL may hold the last good writes."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    try:
        connection = sqlite3.connect(_read_only_uri(Path(path)), uri=True)
    except sqlite3.Error as error:
        return str(error)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        results = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as error:
        return f"{path} is not a usable SQLite database: {error}"
    finally:
        connection.close()
    if results == ["ok"]:
        return None
    first_lines = [line for result in results for line in result.splitlines() if line.strip()]
    return "quick_check: " + "; ".join(first_lines[:3])[:300]


def move_aside(path: str, now: datetime) -> Path:
    """Rename a damaged database (and its -wal and -shm files) to PATH.corrupt-<UTC time>."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(f"{path}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{target}{suffix}")
    return target


# --- the shared connection --------------------------------------------------------------------


class Database:
    def __init__(self, connection: sqlite3.Connection, storage: Storage):
        self._connection = connection  # shared by every thread: only ever used under the lock
        self.storage = storage
        self.lock = FairLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One short unit of work: the lock, BEGIN IMMEDIATE, then COMMIT or ROLLBACK."""
        with self.lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._connection.close()

    # --- copies: the online backup API ---

    def snapshot_to(self, target: Path, step_pages: int = -1) -> None:
        """Copy this database into a new file `target` with SQLite's online backup API,
        `step_pages` pages per step (-1: all at once, in one read transaction).

        The lock is held during each step, and between steps every thread waiting for it gets its
        turn; writes made through the shared connection meanwhile are carried into the copy by
        SQLite itself, so the result is one consistent state.
        """
        os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))  # private, like the live one
        copy = sqlite3.connect(target)
        try:
            # The copy is scratch until the caller has checked and packed it: no journal and no
            # syncs for it, which roughly halves the time it takes.
            copy.execute("PRAGMA journal_mode=OFF")
            copy.execute("PRAGMA synchronous=OFF")
            with self.lock:
                self._connection.backup(copy, pages=step_pages, progress=self._between_steps)
            copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot snapshot the database: {error}") from error
        finally:
            copy.close()

    def _between_steps(self, status: int, remaining: int, total: int) -> None:
        log.debug("snapshot progress: %d of %d pages copied", total - remaining, total)
        self.lock.yield_to_waiters()

    @contextmanager
    def frozen(self) -> Iterator[Path]:
        """The database file itself, complete and unchanging for as long as the block runs: the
        lock is held, so no write gets in, and the WAL is folded into the file first. For the
        final backup of an instance that has stopped writing: no snapshot to copy first."""
        if self.storage.in_memory:
            raise DatabaseError("an in-memory database has no file")
        with self.lock:
            try:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:
                raise DatabaseError(f"cannot checkpoint the database: {error}") from error
            yield Path(self.storage.path)

    def load_from(self, snapshot: Path, adopt: bool = False) -> None:
        """Replace every page of this database with those of the file `snapshot`, in one step
        under the lock: no reader ever sees half of it, and a failure changes nothing.

        `adopt`: the file itself becomes the database (moved into place, not copied: a copy of
        a large database costs a small machine seconds), for a scratch file whose data is to
        replace everything. On another file system it is copied after all."""
        if adopt and not self.storage.in_memory and self._adopt(snapshot):
            return
        source = sqlite3.connect(_read_only_uri(snapshot), uri=True)
        try:
            with self.lock:
                if not self.storage.in_memory:
                    self._leave_wal_if_alone()
                source.backup(self._connection)
        except sqlite3.Error as error:
            raise DatabaseError(f"could not load the backup into the database: {error}") from error
        finally:
            source.close()

    def _adopt(self, snapshot: Path) -> bool:
        path = self.storage.path
        with self.lock:
            if os.stat(snapshot).st_dev != os.stat(path).st_dev:
                return False
            self._connection.close()  # the last connection: its WAL is folded in and removed
            try:
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                os.replace(snapshot, path)
                _make_private(path)
            finally:
                self._connection = _connect(path)
        return True

    def _leave_wal_if_alone(self) -> None:
        """Out of WAL for a load: pages then go straight to the file instead of through the WAL
        and a checkpoint (twice as fast), and a WAL database could not take pages of another
        size. The rollback journal still makes it all or nothing; migrate() switches WAL back on.
        When another process has the file open (a sqlite3 shell), it stays in WAL."""
        try:
            self._connection.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError as error:
            log.debug("staying in WAL for the load: %s", error)

    def change_count(self) -> int:
        """Rows inserted, changed or deleted through this connection since it opened: what the
        on-change backups watch (every write of the bot goes through this one connection)."""
        with self.lock:
            return self._connection.total_changes

    def is_empty(self) -> bool:
        """True when the database holds no tables at all (a new or zero-length file)."""
        with self.lock:
            return self._connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0

    def health_problem(self) -> str | None:
        """None when PRAGMA quick_check passes; otherwise what it (or SQLite) reported."""
        try:
            with self.lock:
                rows = self._connection.execute("PRAGMA quick_check(3)").fetchall()
        except sqlite3.DatabaseError as error:
            return str(error)
        results = [row[0] for row in rows]
        if results == ["ok"]:
            return None
        first_lines = [line for result in results for line in result.splitlines() if line.strip()]
        return "quick_check: " + "; ".join(first_lines[:3])[:300]

    # --- schema and migrations ---

    def schema_version(self) -> int:
        with self.lock:
            return self._connection.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self, migrations_dir: Path = MIGRATIONS_DIR, up_to: int | None = None) -> list[str]:
        """Apply the pending migrations in order (up to version `up_to`), each in its own
        transaction.

        Returns the file names applied. A failing migration is rolled back and raises
        MigrationError naming its file; earlier ones stay applied. A database newer than the
        newest migration raises SchemaTooNewError and is not modified.
        """
        migrations = [m for m in find_migrations(migrations_dir) if up_to is None or m.version <= up_to]
        newest = migrations[-1].version if migrations else 0
        current = self.schema_version()
        if current > newest:
            raise SchemaTooNewError(
                f"the database has schema version {current}, newer than this code knows "
                f"({newest}); it was left untouched: run the newer bot or restore an older backup"
            )
        self._use_wal()  # only now: a refused database is left byte for byte as it was
        applied = []
        for migration in migrations:
            if migration.version > current:
                self._apply(migration)
                applied.append(migration.path.name)
        return applied

    def _use_wal(self) -> None:
        if self.storage.in_memory:
            return
        with self.lock:
            mode = self._connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            log.warning("WAL journal not available on this storage; using %s", mode)

    def _apply(self, migration: Migration) -> None:
        sql = migration.path.read_text(encoding="utf-8")
        # executescript would COMMIT a transaction opened with execute(); so BEGIN and COMMIT
        # are part of the script, and a failure leaves it open for the ROLLBACK below.
        script = f"BEGIN IMMEDIATE;\n{sql}\n;PRAGMA user_version = {migration.version};\nCOMMIT;"
        with self.lock:
            try:
                self._connection.executescript(script)
            except sqlite3.Error as error:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise MigrationError(
                    f"migration {migration.path.name} failed and was rolled back: {error}"
                ) from error
        log.log(
            logging.DEBUG if self.storage.in_memory and self.storage.reason is None else logging.INFO,
            "applied migration %s",
            migration.path.name,
        )  # quiet for the reference schemas

    # --- users, blocks and tracking ---

    def track_message(
        self,
        user_id: int,
        username: str | None,
        first_name: str | None,
        chat_id: int,
        kind: str,
        now: datetime,
        window_start: datetime,
        language_code: str | None = None,
    ) -> UserState:
        """Register or refresh the user (with the language Telegram reports, when it does),
        record one action, and report their block state."""
        at = timestamp(now)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO users (user_id, username, first_name, first_seen, last_seen, telegram_language)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET username = excluded.username,"
                " first_name = excluded.first_name, last_seen = excluded.last_seen,"
                " telegram_language = coalesce(excluded.telegram_language, users.telegram_language)",
                (user_id, username, first_name, at, at, language_code),
            )
            db.execute(
                "INSERT INTO tracking (user_id, chat_id, kind, created_at) VALUES (?, ?, ?, ?)",
                (user_id, chat_id, kind, at),
            )
            db.execute(
                "INSERT INTO daily_activity (day, user_id, actions) VALUES (?, ?, 1)"
                " ON CONFLICT(day, user_id) DO UPDATE SET actions = actions + 1",
                (at[:10], user_id),
            )
            blocked_until, reason, notified = db.execute(
                "SELECT blocked_until, block_reason, block_notified FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
            (recent,) = db.execute(
                "SELECT count(*) FROM tracking WHERE user_id = ? AND kind = 'message' AND created_at >= ?",
                (user_id, timestamp(window_start)),
            ).fetchone()
        return UserState(user_id, parse_timestamp(blocked_until), reason, bool(notified), recent)

    def block_user(
        self, user_id: int, until: datetime, reason: str, *, notified: bool, now: datetime
    ) -> None:
        at = timestamp(now)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO users (user_id, first_seen, last_seen, blocked_until, block_reason,"
                " block_notified) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET blocked_until = excluded.blocked_until,"
                " block_reason = excluded.block_reason, block_notified = excluded.block_notified",
                (user_id, at, at, timestamp(until), reason, int(notified)),
            )

    def mark_block_notified(self, user_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE users SET block_notified = 1 WHERE user_id = ?", (user_id,))

    def unblock_user(self, user_id: int) -> bool:
        """Lift a block now; False when the user was not blocked."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE users SET blocked_until = NULL, block_reason = NULL, block_notified = 0"
                " WHERE user_id = ? AND blocked_until IS NOT NULL",
                (user_id,),
            )
        return cursor.rowcount > 0

    def lift_expired_blocks(self, now: datetime) -> list[int]:
        """Unblock every user whose block has ended; returns their ids."""
        at = timestamp(now)
        with self.transaction() as db:
            expired = [
                row[0]
                for row in db.execute(
                    "SELECT user_id FROM users WHERE blocked_until IS NOT NULL AND blocked_until <= ?"
                    " ORDER BY user_id",
                    (at,),
                )
            ]
            db.executemany(
                "UPDATE users SET blocked_until = NULL, block_reason = NULL, block_notified = 0"
                " WHERE user_id = ?",
                [(user_id,) for user_id in expired],
            )
        return expired

    def delete_tracking_before(self, cutoff: datetime) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM tracking WHERE created_at < ?", (timestamp(cutoff),)).rowcount

    def get_state(self, key: str) -> str | None:
        """The value remembered under `key`; None when there is none (or, before the migration
        that adds bot_state, no table for it yet)."""
        try:
            with self.lock:
                row = self._connection.execute("SELECT value FROM bot_state WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return None
        return None if row is None else row[0]

    def set_state(self, key: str, value: str | None) -> None:
        """Remember `value` under `key`; None forgets it."""
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM bot_state WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO bot_state (key, value) VALUES (?, ?) ON CONFLICT(key)"
                    " DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def languages(self, user_id: int) -> tuple[str | None, str | None]:
        """(their chosen language, the one Telegram last reported); None for what is not known.
        Before the migration that adds them, and for someone never seen: (None, None)."""
        try:
            with self.lock:
                row = self._connection.execute(
                    "SELECT language, telegram_language FROM users WHERE user_id = ?", (user_id,)
                ).fetchone()
        except sqlite3.OperationalError as error:
            if "no such column" not in str(error):
                raise
            return None, None
        return (row[0], row[1]) if row else (None, None)

    def choose_language(self, user_id: int, language: str, now: datetime) -> None:
        at = timestamp(now)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO users (user_id, first_seen, last_seen, language) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET language = excluded.language",
                (user_id, at, at, language),
            )

    def user(self, user_id: int) -> dict | None:
        with self.lock:
            cursor = self._connection.execute("SELECT * FROM users WHERE user_id = ?", (user_id,))
            row = cursor.fetchone()
            return None if row is None else dict(zip([c[0] for c in cursor.description], row))

    def user_statistics(self, now: datetime, admins: Sequence[int] = (), hours: float = 24) -> dict[str, int]:
        """Users, users blocked now, and actions tracked in the last `hours`, admins left out
        (their own actions, mostly panel presses, counted apart)."""
        since = timestamp(now - timedelta(hours=hours))
        admin_list = _id_list(admins)
        with self.transaction() as db:
            (users,) = db.execute(
                f"SELECT count(*) FROM users WHERE user_id NOT IN ({admin_list})"
            ).fetchone()
            (blocked,) = db.execute(
                "SELECT count(*) FROM users WHERE blocked_until > ?", (timestamp(now),)
            ).fetchone()
            (actions, by_admins) = db.execute(
                f"SELECT count(*) FILTER (WHERE user_id NOT IN ({admin_list})),"
                f" count(*) FILTER (WHERE user_id IN ({admin_list})) FROM tracking WHERE created_at >= ?",
                (since,),
            ).fetchone()
            (new,) = db.execute(
                f"SELECT count(*) FROM users WHERE first_seen >= ? AND user_id NOT IN ({admin_list})",
                (since,),
            ).fetchone()
        return {
            "users": users,
            "blocked": blocked,
            "actions": actions,
            "admin_actions": by_admins,
            "new": new,
        }

    # --- finding people (the panel's 👥 Users) ---

    def newest_users(self, admins: Sequence[int] = (), limit: int = 5) -> list[dict]:
        return self._users(
            f"SELECT * FROM users WHERE user_id NOT IN ({_id_list(admins)})"
            " ORDER BY first_seen DESC, user_id DESC LIMIT ?",
            (limit,),
        )

    def most_active_users(self, since: datetime, admins: Sequence[int] = (), limit: int = 5) -> list[dict]:
        """Who did the most since `since` (whole UTC days), admins left out; with `actions`."""
        return self._users(
            "SELECT users.*, sum(daily_activity.actions) AS actions FROM daily_activity"
            " JOIN users USING (user_id) WHERE day >= ?"
            f" AND user_id NOT IN ({_id_list(admins)}) GROUP BY user_id ORDER BY actions DESC, user_id"
            " LIMIT ?",
            (timestamp(since)[:10], limit),
        )

    def blocked_users(self, now: datetime, limit: int = 20) -> list[dict]:
        return self._users(
            "SELECT * FROM users WHERE blocked_until > ? ORDER BY blocked_until LIMIT ?",
            (timestamp(now), limit),
        )

    def find_users(self, query: str, limit: int = 10) -> list[dict]:
        """By id (all digits), by @username, or by a part of a name or username; case-insensitive
        for ASCII. The query is data: LIKE's wildcards in it match only themselves."""
        query = query.strip()
        if query.isascii() and query.isdigit():
            user_id = int(query)
            return self._users("SELECT * FROM users WHERE user_id = ?", (user_id,)) if user_id < 2**63 else []
        if query.startswith("@"):
            return self._users(
                "SELECT * FROM users WHERE username = ? COLLATE NOCASE LIMIT ?", (query[1:], limit)
            )
        pattern = "%" + re.sub(r"([%_\\])", r"\\\1", query) + "%"
        return self._users(
            "SELECT * FROM users WHERE first_name LIKE ? ESCAPE '\\' OR username LIKE ? ESCAPE '\\'"
            " ORDER BY last_seen DESC LIMIT ?",
            (pattern, pattern, limit),
        )

    def activity(self, user_id: int, since: datetime) -> tuple[int, int]:
        """(actions, days active) of `user_id` since `since` (whole UTC days)."""
        with self.lock:
            actions, days = self._connection.execute(
                "SELECT coalesce(sum(actions), 0), count(*) FROM daily_activity WHERE user_id = ? AND day >= ?",
                (user_id, timestamp(since)[:10]),
            ).fetchone()
        return actions, days

    def daily_counts(self, first: date, last: date, admins: Sequence[int] = ()) -> tuple[dict, dict]:
        """({day: users first seen that day}, {day: users active that day}) from `first` to
        `last` (UTC dates, 'YYYY-MM-DD' keys), admins left out; days without any are missing."""
        bounds = (first.isoformat(), last.isoformat())
        admin_list = _id_list(admins)
        with self.transaction() as db:
            new = dict(
                db.execute(
                    "SELECT substr(first_seen, 1, 10) AS day, count(*) FROM users WHERE day BETWEEN ? AND ?"
                    f" AND user_id NOT IN ({admin_list}) GROUP BY day",
                    bounds,
                ).fetchall()
            )
            active = dict(
                db.execute(
                    "SELECT day, count(*) FROM daily_activity WHERE day BETWEEN ? AND ?"
                    f" AND user_id NOT IN ({admin_list}) GROUP BY day",
                    bounds,
                ).fetchall()
            )
        return new, active

    def forget_activity_before(self, day: date) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM daily_activity WHERE day < ?", (day.isoformat(),)).rowcount

    def _users(self, sql: str, parameters: tuple) -> list[dict]:
        with self.lock:
            cursor = self._connection.execute(sql, parameters)
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def size_bytes(self) -> int:
        """The database's size: its pages (in file mode, the WAL may hold a little more)."""
        with self.lock:
            pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
            return pages * self._connection.execute("PRAGMA page_size").fetchone()[0]

    def table_row_counts(self) -> dict[str, int]:
        with self.transaction() as db:
            return _row_counts(db)


def _id_list(ids: Sequence[int]) -> str:
    """Telegram ids (integers, checked) as an SQL list: sqlite3 binds no sequences."""
    return ", ".join(str(int(i)) for i in ids) or "0"  # 0: no one (NULL would make NOT IN match nothing)


def _row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables}


def _read_only_uri(path: Path) -> str:
    """A read-only SQLite URI for any path: as_uri() percent-encodes spaces, '#', '?' and '%'."""
    return Path(path).absolute().as_uri() + "?mode=ro"


# --- checking a database file that comes from outside (a backup) -------------------------------


def inspect_file(path: Path, thorough: bool = False, exact: bool = True, check: bool = True) -> FileFacts:
    """Check that the SQLite file at `path` is intact and is a database of this bot: its schema
    exactly what this code's migrations make for its version (tables, columns, indexes, and
    nothing else: no trigger or view of anyone else's). `exact=False` (for snapshots of the
    live database) reports a difference in the facts instead of refusing.

    quick_check reads every page and b-tree (about ten times faster than integrity_check, which
    also matches each index against its table); `thorough` runs the full integrity_check;
    `check=False` none (for a snapshot of the live database taken in a hurry: a restore checks it).
    Raises DamagedDatabaseError, ForeignDatabaseError or SchemaTooNewError, each one line.
    """
    newest = len(find_migrations())
    try:
        connection = sqlite3.connect(_read_only_uri(path), uri=True)
    except sqlite3.Error as error:
        raise DamagedDatabaseError(str(error)) from error
    try:
        pragma = "integrity_check" if thorough else "quick_check"
        results = [row[0] for row in connection.execute(f"PRAGMA {pragma}(5)")] if check else ["ok"]
        if results != ["ok"]:
            raise DamagedDatabaseError(f"the integrity check failed ({results[0].splitlines()[0]})")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        counts = _row_counts(connection)
        missing = [name for name in REQUIRED_TABLES if name not in counts]
        if missing:
            raise ForeignDatabaseError(f"the table {missing[0]} is missing")
        if version > newest:
            raise SchemaTooNewError(
                f"schema version {version} is newer than this code knows ({newest})", version, newest
            )
        difference = _schema_difference(_schema(connection), expected_schema(version), version)
        if difference and exact:
            raise ForeignDatabaseError(difference)
        return FileFacts(version, counts, difference)
    except sqlite3.DatabaseError as error:
        raise DamagedDatabaseError(str(error)) from error
    finally:
        connection.close()


def upgraded_copy(path: Path, version: int, target: Path) -> Path:
    """The dry run of a restore's migrations: when the database at `path` (which passed
    inspect_file with schema `version`) is older than this code, copy it to `target`, migrate
    the copy and check it again: it must then be exactly this code's schema. Returns the file to
    restore from, `path` itself when it is current; `path` is never changed. Raises
    MigrationError or DatabaseError, each one line."""
    if version == len(find_migrations()):
        return path
    source = sqlite3.connect(_read_only_uri(path), uri=True)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot copy the backup for its migrations: {error}") from error
    finally:
        source.close()
    candidate = Database(_connect(str(target)), Storage("file", str(target)))
    try:
        candidate.migrate()
        with candidate.lock:
            candidate._leave_wal_if_alone()  # one self-contained file, read-only afterwards
    finally:
        candidate.close()
    inspect_file(target)
    return target


def _schema(connection: sqlite3.Connection) -> set[tuple]:
    """Every object of a database's schema: (type, name, table, its SQL), the SQL with comments
    and spacing taken out, so that two databases made by the same migrations compare equal."""
    return {
        (kind, name, table, _normalised(sql))
        for kind, name, table, sql in connection.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
        )
    }


def _normalised(sql: str | None) -> str | None:
    if sql is None:
        return None
    sql = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"\s*([(),;])\s*", r"\1", re.sub(r"\s+", " ", sql)).strip()


@functools.cache
def expected_schema(version: int) -> frozenset:
    """The schema this code's migrations 1..`version` make, built in memory."""
    reference = Database(_connect(MEMORY), Storage("memory", MEMORY))
    try:
        reference.migrate(up_to=version)
        with reference.lock:
            return frozenset(_schema(reference._connection))
    finally:
        reference.close()


def _schema_difference(found: set, expected: frozenset, version: int) -> str | None:
    """None when the schemas are the same; else the first difference, in words (tables first:
    an index follows from its table)."""

    def by_name(objects) -> dict:
        return {(kind, name): sql for kind, name, _, sql in objects}

    def order(key: tuple) -> tuple:
        return (
            ["table", "view", "trigger", "index"].index(key[0])
            if key[0] in ("table", "view", "trigger", "index")
            else 4,
            key[1],
        )

    found, expected = by_name(found), by_name(expected)
    for kind, name in sorted(found.keys() - expected.keys(), key=order):
        return (
            f"it holds {'an' if kind == 'index' else 'a'} {kind} {name} that schema version "
            f"{version} of this bot does not have"
        )
    for kind, name in sorted(expected.keys() - found.keys(), key=order):
        return f"the {kind} {name} of schema version {version} is missing"
    for kind, name in sorted(found.keys(), key=order):
        if found[kind, name] != expected[kind, name]:
            return f"the {kind} {name} is not the one schema version {version} makes"
    return None


def find_migrations(migrations_dir: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, in order; numbered 0001, 0002, ... with no gaps or repeats."""
    migrations = []
    for path in sorted(Path(migrations_dir).glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), path))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {migration.path.name} should be numbered "
                f"{expected:04d}: migrations run in order without gaps"
            )
    return migrations
