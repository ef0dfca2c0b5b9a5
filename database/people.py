"""The Database's verbs for people: who wrote, when, how much, blocks, languages, and finding
them for the admin panel."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from database.connection import _id_list, rows_in
from database.records import UserState, parse_timestamp, timestamp


class People:
    """Queries about people (a mixin: Database holds the connection and lock)."""

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
        """Users (everyone the bot has seen, admins too: what a backup's header counts), new in
        the last `hours`, blocked now, and actions tracked in the last `hours`, admins' own
        actions (mostly panel presses) counted apart."""
        since = timestamp(now - timedelta(hours=hours))
        admin_list = _id_list(admins)
        with self.transaction() as db:
            users = rows_in(db, "users")
            (blocked,) = db.execute(
                "SELECT count(*) FROM users WHERE blocked_until > ?", (timestamp(now),)
            ).fetchone()
            (actions, by_admins) = db.execute(
                f"SELECT count(*) FILTER (WHERE user_id NOT IN ({admin_list})),"
                f" count(*) FILTER (WHERE user_id IN ({admin_list})) FROM tracking WHERE created_at >= ?",
                (since,),
            ).fetchone()
            (new,) = db.execute("SELECT count(*) FROM users WHERE first_seen >= ?", (since,)).fetchone()
        return {
            "users": users,
            "blocked": blocked,
            "actions": actions,
            "admin_actions": by_admins,
            "new": new,
        }

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
