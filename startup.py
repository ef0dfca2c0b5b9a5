"""DESIGN.md's startup steps 2 to 4: open the database (probe), restore only when it needs it,
migrate; and the admins are told what happened.

A healthy database is never rolled back. A damaged one is moved aside, never deleted. When the
database had to be restored but nothing could be, and backups exist off the machine (or an
off-site destination could not even be asked), copies stop leaving the machine: a new, nearly
empty backup must never be pinned over the real one. A restore, or an admin's /start_fresh, lets
them leave again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

import database
from backup import BackupEngine, Clock, utc_now
from backup_format import BackupInfo, human_age
from config import Settings
from database import Database
from destinations import Destination

log = logging.getLogger("startup")


@dataclass
class StartupReport:
    lock: Optional[database.InstanceLock] = None
    moved_aside: Optional[Path] = None  # where a damaged database went
    restore_reason: Optional[str] = None  # why a restore was attempted; None: the database was kept
    restored: Optional[BackupInfo] = None
    passed_over: list[str] = field(default_factory=list)  # "name (destination): why", per candidate
    offsite_paused: Optional[str] = None
    applied_migrations: list[str] = field(default_factory=list)


def prepare_database(settings: Settings, offsite: Sequence[Destination] = (), clock: Clock = utc_now,
                     alert: Optional[Callable[[str], object]] = None
                     ) -> tuple[Database, BackupEngine, StartupReport]:
    """Open, restore if needed, migrate. Raises database.AlreadyRunningError when another bot
    holds DB_PATH, and MigrationError (SchemaTooNewError included) when the schema cannot be
    brought up to date."""
    report = StartupReport(lock=_lock_if_possible(settings.db_path, "a running bot"))
    db = open_or_move_aside(settings.db_path, clock, report)
    report.restore_reason = _why_restore(db, report)
    engine = BackupEngine(db, settings, offsite, clock, alert=alert)
    failed_offsite: list[str] = []  # candidates off the machine that could not be restored
    if report.restore_reason:
        log.warning("%s: looking for a backup to restore", report.restore_reason)
        report.restored, passed_over = engine.restore_newest()
        report.passed_over = [f"{info.name} ({info.destination}): {why}" for info, why in passed_over]
        offsite_names = {d.name for d in engine.offsite}
        failed_offsite = [line for (info, _), line in zip(passed_over, report.passed_over)
                          if info.destination in offsite_names]
    report.applied_migrations = db.migrate()
    if report.restore_reason and report.restored is None:
        report.offsite_paused = _pause_if_a_real_backup_may_exist(engine, failed_offsite)
    _tell_admins(engine, db, report, clock())
    return db, engine, report


def _why_restore(db: Database, report: StartupReport) -> Optional[str]:
    if db.storage.in_memory:
        return "the database is in memory"
    if report.moved_aside is not None:
        return "the database was damaged"
    if db.is_empty():
        return "the database is missing or empty"
    return None


def _pause_if_a_real_backup_may_exist(engine: BackupEngine, failed: list[str]) -> Optional[str]:
    offsite = {d.name for d in engine.offsite}
    unreachable = [f"{name}: {error}" for name, error in engine.listing_errors.items() if name in offsite]
    if not failed and not unreachable:
        log.warning("no backup could be restored: starting with a fresh database")
        return None
    why = ("started on an empty database although backups may exist off the machine ("
           + "; ".join(failed + unreachable) + ")")
    engine.pause_offsite(why)
    log.error("%s: backups stay on this machine until an admin restores one or sends /start_fresh", why)
    return why


def _tell_admins(engine: BackupEngine, db: Database, report: StartupReport, now: datetime) -> None:
    if db.storage.in_memory:
        engine.alert(f"🚨 The database runs IN MEMORY: {db.storage.reason}. Everything written is "
                     "lost when the bot stops, except what reaches a backup.")
    if report.moved_aside is not None:
        engine.alert(f"🚨 The database was damaged and moved aside to {report.moved_aside}.")
    if report.restored is not None:
        info = report.restored
        engine.alert(f"♻️ Restored at startup ({report.restore_reason}): {info.name} from "
                     f"{info.destination}, taken {info.created_at:%Y-%m-%d %H:%M} UTC "
                     f"({human_age(now - info.created_at)} old), {info.total_rows} rows.")
    elif report.offsite_paused:
        engine.alert(f"🚨 The bot {report.offsite_paused}. Nothing is sent off the machine until "
                     "you restore a backup, or send /start_fresh to keep the empty database.")


def _lock_if_possible(db_path: str, holder: str) -> Optional[database.InstanceLock]:
    try:
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        return database.InstanceLock(db_path, holder)
    except OSError:
        return None  # the folder is unusable: the probe will say why and memory mode follows


def open_or_move_aside(path: str, clock: Clock, report: StartupReport) -> Database:
    try:
        db = database.open_database(path)
    except database.DamagedDatabaseError as error:
        return _reopen_after_moving_aside(path, str(error), clock, report)
    problem = None if db.storage.in_memory else db.health_problem()
    if problem is None:
        return db
    db.close()
    return _reopen_after_moving_aside(path, problem, clock, report)


def _reopen_after_moving_aside(path: str, problem: str, clock: Clock, report: StartupReport) -> Database:
    report.moved_aside = database.move_aside(path, clock())
    log.error("the database is damaged (%s); moved it aside to %s", problem, report.moved_aside)
    return database.open_database(path)
