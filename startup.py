"""The startup's database steps: open the database (probe), restore only when it needs it,
migrate; and the admins are told what happened. Also which destinations the settings turn on.

A healthy database is never rolled back. A damaged one is moved aside, never deleted. When the
database had to be restored but nothing could be, and backups exist off the machine (or an
off-site destination could not even be asked), copies stop leaving the machine: a new, nearly
empty backup must never be pinned over the real one. A restore, or an admin's /start_fresh, lets
them leave again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import bot_api
import database
import locks
from backup_format import BackupInfo, shown_place
from clock import Clock, utc_now
from config import Settings
from database import Database
from destinations import Destination, Unreachable
from engine import BackupEngine, Refusal, StartupRestore
from i18n import DETAIL, N_, Alert, Code, Plural, Reader, Text, lines
from lease import Lease, LeaseStore
from telegram_destination import ChatIndex, ChatLease, TelegramChat
from telegram_errors import shown

log = logging.getLogger("startup")


@dataclass
class StartupReport:
    lock: locks.InstanceLock | None = None
    moved_aside: Path | None = None  # where a damaged database went
    restore_reason: str | None = None  # why a restore was attempted; None: the database was kept
    restored: BackupInfo | None = None
    passed_over: list[Refusal] = field(default_factory=list)  # candidates that could not be restored
    unreachable: list[Unreachable] = field(default_factory=list)  # destinations that could not be asked
    offsite_paused: str | None = None
    paused_unreachable: bool = False  # the pause came (also) from a destination that did not answer
    applied_migrations: list[str] = field(default_factory=list)


DOUBTS_KEPT = 3  # the reasons a pause keeps and shows (why a restore was not possible)
MOVED_KEY = "backup_chat_moved"  # in bot_state: "OLD NEW", a backup group upgraded to a supergroup


@dataclass
class Offsite:
    """The places off the machine the settings turn on: where backups go, and where the
    writer's lease is kept (the same places, each seen through its own interface)."""

    destinations: list[Destination] = field(default_factory=list)
    lease_stores: list[LeaseStore] = field(default_factory=list)
    chat: ChatIndex | None = None
    db: Database | None = None  # where a move of the backup chat is remembered, once open

    def attach(self, db: Database) -> None:
        """The database is open: a move of the backup chat it remembers is followed (a group
        upgraded to a supergroup answers reads on its old id as if nothing happened)."""
        self.db = db
        moved = (db.get_state(MOVED_KEY) or "").split()
        if (
            self.chat is not None
            and len(moved) == 2
            and moved[0] == str(self.chat.chat_id)
            and moved[1].lstrip("-").isdigit()
        ):
            self.chat.follow(int(moved[1]))

    def remember_move(self, old: int, new: int) -> None:
        if self.db is not None:
            self.db.set_state(MOVED_KEY, f"{old} {new}")


def offsite(settings: Settings, bot=None, alert: Alert | None = None) -> Offsite:
    """The places off this machine that the settings turn on."""
    places = Offsite()
    off = destinations_off(settings)  # the one rule for which are on
    if "telegram" not in off:
        alert = alert or (lambda text: None)

        def moved(old: int, new: int) -> None:
            places.remember_move(old, new)
            alert(Text(_MOVED, setting=Code("BACKUP_CHAT_ID"), new=Code(str(new)), old=Code(str(old))))

        # The backup chat is the deployment's, not one person's: its captions are in DEFAULT_LANGUAGE.
        places.chat = ChatIndex(
            bot or bot_api.build(settings.bot_token, settings.telegram_api_url),
            settings.backup_chat_id,
            alert=alert,
            reader=Reader(settings.default_language, settings.time_zone),
            moved=moved,
            pointer_chat=settings.admin_ids[0] if settings.admin_ids else None,
        )
        places.destinations.append(TelegramChat(places.chat, official_api=settings.telegram_file_limits))
        places.lease_stores.append(ChatLease(places.chat))
    if "s3" not in off:
        from s3_destination import S3Bucket  # boto3 is only imported when S3 is used

        bucket = S3Bucket(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url)
        places.destinations.append(bucket)
        places.lease_stores.append(bucket.lease)
    return places


def backup_engine(
    db: Database | None,
    settings: Settings,
    places: Offsite | None = None,
    clock: Clock = utc_now,
    alert: Alert | None = None,
    **options,
) -> BackupEngine:
    """The backup engine of `db` over `places`, with this instance's lease over their stores."""
    places = places or Offsite()
    lease = Lease(places.lease_stores, db, clock, alert)
    return BackupEngine(db, settings, places.destinations, clock, alert=alert, lease=lease, **options)


_MOVED = N_(
    "🔀 The backup group was upgraded to a supergroup: backups go to the supergroup now. Set "
    "{setting} to {new} (it is {old}): the bot follows the move by itself meanwhile."
)


def destinations_off(settings: Settings) -> dict[str, Text]:
    """Each destination off the machine the settings leave off, with the setting that turns it
    on (offsite() builds the others)."""
    off = {}
    missing = [] if settings.bot_token else ["BOT_TOKEN"]
    if settings.backup_chat_id is None:  # ADMIN_IDS stand in only while BACKUP_CHAT_ID is unset
        missing.append("BACKUP_CHAT_ID" if settings.admin_ids else "BACKUP_CHAT_ID (or ADMIN_IDS)")
    if missing:
        setting = (
            Text("{one} and {other}", one=Code(missing[0]), other=Code(missing[1]))
            if len(missing) == 2
            else Code(missing[0])
        )
        off["telegram"] = Text("off: set {setting}", setting=setting)
    if not settings.s3_bucket:
        off["s3"] = Text("off: set {setting}", setting=Code("S3_BUCKET"))
    return off


def prepare_database(
    settings: Settings,
    places: Offsite | None = None,
    clock: Clock = utc_now,
    alert: Alert | None = None,
    stop: threading.Event | None = None,
    opened: Callable[[Database], None] = lambda db: None,
) -> tuple[Database, BackupEngine, StartupReport]:
    """Open, restore if needed, migrate. Raises locks.AlreadyRunningError when another bot
    holds DB_PATH, and MigrationError (SchemaTooNewError included) when the schema cannot be
    brought up to date. `places`: off the machine (offsite()).

    A patient start: when a restore is needed, nothing could be restored, and a destination off
    the machine could not be asked (the network not ready at boot, a Telegram 5xx), it asks
    again with backoff for up to STARTUP_RESTORE_WAIT_SECONDS before starting on an empty
    database (`stop`, set by SIGTERM, ends the wait). `opened(db)` is called once the database
    is restored and migrated, before the admins are told (so they are told in their languages)."""
    alert = alert or (lambda text: None)
    report = StartupReport(lock=_lock_if_possible(settings.db_path, "a running bot"))
    db, report.moved_aside = database.open_or_move_aside(settings.db_path, clock())
    report.restore_reason = _why_restore(db, report)
    engine = backup_engine(db, settings, places, clock, alert)
    outcome = None
    if report.restore_reason:
        log.warning("%s: looking for a backup to restore", report.restore_reason)
        outcome = _restore_patiently(engine, settings.startup_restore_wait_seconds, stop or threading.Event())
        report.restored, report.passed_over = outcome.restored, outcome.passed_over
        report.unreachable = outcome.unreachable
    report.applied_migrations = db.migrate()
    if outcome is not None and outcome.restored is None:
        report.offsite_paused = _pause_if_a_real_backup_may_exist(engine, outcome)
        report.paused_unreachable = bool(report.offsite_paused) and any(
            u.offsite for u in outcome.unreachable
        )
    if places is not None:
        places.attach(db)
    opened(db)
    _tell_admins(alert, db, report, clock())
    return db, engine, report


def _restore_patiently(engine: BackupEngine, wait: float, stop: threading.Event) -> StartupRestore:
    deadline, delay = time.monotonic() + wait, 1.0
    while True:
        outcome = engine.restore_newest()
        silent = [u for u in outcome.unreachable if u.offsite]
        if outcome.restored or not silent or stop.is_set() or time.monotonic() + delay > deadline:
            return outcome
        log.warning(
            "cannot ask %s yet (%s); asking again in %.0f s", silent[0].destination, silent[0].error, delay
        )
        stop.wait(delay)
        delay = min(delay * 2, 15.0)


def _why_restore(db: Database, report: StartupReport) -> str | None:
    if db.storage.in_memory:
        return N_("the database is in memory")
    if report.moved_aside is not None:
        return N_("the database was damaged")
    if db.is_empty():
        return N_("the database is missing or empty")
    return None


def _pause_if_a_real_backup_may_exist(engine: BackupEngine, outcome: StartupRestore) -> str | None:
    doubts = [str(refusal) for refusal in outcome.passed_over if refusal.offsite]
    doubts += [f"{u.destination}: {u.error}" for u in outcome.unreachable if u.offsite]
    if not doubts:
        log.warning("no backup could be restored: starting with a fresh database")
        return None
    # What the admins read, in a sentence of their language, and what is kept with the pause:
    # the first few (each backup of each place may have been refused: a thousand, say).
    why = "; ".join(doubt if len(doubt) <= DETAIL else f"{doubt[:DETAIL]}…" for doubt in doubts[:DOUBTS_KEPT])
    if len(doubts) > DOUBTS_KEPT:
        why += f"; and {len(doubts) - DOUBTS_KEPT} more (the log names each)"
    engine.pause_offsite(why)
    log.error(
        "started on an empty database although backups may exist off the machine (%s): backups stay "
        "on this machine until an admin restores one or sends /start_fresh",
        why,
    )
    return why


def _passed_over(refusal: Refusal) -> Text:
    """A backup the startup's restore passed over, and why (Telegram's errors in words)."""
    return Text(
        "A newer backup was passed over: {backup}",
        backup=Text(
            "{name} ({destination}): {why}",
            name=Code(refusal.info.name),
            destination=Code(refusal.info.destination),
            why=shown(refusal.reason),
        ),
    )


def _tell_admins(alert: Alert, db: Database, report: StartupReport, now: datetime) -> None:
    if db.storage.in_memory:
        alert(
            Text(
                "🚨 The database runs IN MEMORY: {reason}. Everything written is lost when the bot "
                "stops, except what reaches a backup. Give DB_PATH a writable place (a volume) and "
                "restart.",
                reason=Code(db.storage.reason, DETAIL),
            )
        )
    if report.moved_aside is not None:
        alert(
            Text("🚨 The database was damaged and moved aside to {path}.", path=Code(str(report.moved_aside)))
        )
    if report.restored is not None:
        info = report.restored
        passed = [_passed_over(refusal) for refusal in report.passed_over[:DOUBTS_KEPT]]
        if len(report.passed_over) > DOUBTS_KEPT:
            passed.append(
                Text(
                    "…and {count} more passed over (the log names each).",
                    count=len(report.passed_over) - DOUBTS_KEPT,
                )
            )
        alert(
            lines(
                Plural(
                    "♻️ Restored at startup ({why}): {name} from {destination}, taken {when} ({age} old), "
                    "{count} row.",
                    "♻️ Restored at startup ({why}): {name} from {destination}, taken {when} ({age} old), "
                    "{count} rows.",
                    info.total_rows,
                    why=Text(report.restore_reason),
                    name=Code(info.name),
                    destination=shown_place(info.destination),
                    when=info.created_at,
                    age=now - info.created_at,
                ),
                *passed,
            )
        )
    elif report.offsite_paused:
        alert(
            Text(
                "🚨 The bot started on an empty database although backups may exist off the machine "
                "({why}). Nothing is sent off the machine until you restore a backup "
                "(⚙️ System → 💾 Backup → ♻️ Restore), or keep the empty database with 🆕 Start fresh there "
                "(or /start_fresh).",
                why=Code(report.offsite_paused, 4 * DETAIL),
            )
        )


def _lock_if_possible(db_path: str, holder: str) -> locks.InstanceLock | None:
    try:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        return locks.InstanceLock(db_path, holder)
    except OSError as error:
        # The folder is unusable: the probe will say why and memory mode follows. Else only the
        # lock file is (a folder in its place, say): a second bot would not be stopped; said so.
        if Path(db_path).parent.is_dir():
            log.warning(
                "cannot take the lock %s.lock (%s): a second bot on this DB_PATH would not be stopped",
                db_path,
                error.strerror or error,
            )
        return None
