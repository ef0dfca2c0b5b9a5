"""The background jobs and the daemon thread that runs them.

`schedule` runs jobs in whatever thread calls run_pending(), catches nothing, and does not
reschedule a job that raised. JobRunner wraps every job so an exception is logged with its
traceback and kept in the job's status, and the job runs again at its next interval; the
thread itself never dies. It uses a Scheduler of its own, not schedule's module-level default.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import schedule

import bot_api
from backup_format import shown_place
from clock import Clock, utc_now
from config import Settings
from database import Database
from engine import BackupEngine
from i18n import Alert, Code, Plural, Text

log = logging.getLogger(__name__)

Notify = Callable[[int, Text], object]  # tell a user this, in their language


@dataclass(frozen=True)
class JobStatus:
    name: str
    interval_seconds: float
    last_run: datetime | None = None  # UTC, when the last run started
    last_duration: float | None = None  # seconds
    last_error: str | None = None  # the last run's exception; None when it succeeded
    runs: int = 0
    failures: int = 0
    next_run: datetime | None = None  # UTC


class JobRunner:
    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.scheduler = schedule.Scheduler()
        self._status: dict[str, JobStatus] = {}
        self._jobs: dict[str, schedule.Job] = {}
        self._lock = threading.Lock()
        self._running = threading.Lock()  # held while jobs run
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, interval_seconds: float, func: Callable[[], object]) -> None:
        self._status[name] = JobStatus(name, interval_seconds)
        self._jobs[name] = self.scheduler.every(interval_seconds).seconds.do(self._run, name, func)

    def run_pending(self) -> None:
        with self._running:
            if not self._paused:
                self.scheduler.run_pending()

    def pause(self) -> None:
        """No job runs from now on (an instance that handed over writes nothing); returns once
        the job in progress, if any, has finished."""
        with self._running:
            self._paused = True

    def resume(self) -> None:
        with self._running:
            self._paused = False

    def statuses(self) -> list[JobStatus]:
        with self._lock:
            return [
                replace(status, next_run=_utc(self._jobs[name].next_run))
                for name, status in self._status.items()
            ]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tasks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait for the job in progress, at most `timeout` seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_pending()
            idle = self.scheduler.idle_seconds
            # Wake at least every second so jobs added later and stop() are noticed promptly.
            self._stop.wait(1.0 if idle is None else min(max(idle, 0.01), 1.0))

    def _run(self, name: str, func: Callable[[], object]) -> None:
        started_at, started = self.clock(), time.monotonic()
        error = None
        try:
            func()
        except Exception as exc:  # a job must never take the thread down
            log.error("job %s failed:\n%s", name, traceback.format_exc().rstrip())
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            status = self._status[name]
            self._status[name] = replace(
                status,
                last_run=started_at,
                last_duration=time.monotonic() - started,
                last_error=error,
                runs=status.runs + 1,
                failures=status.failures + (error is not None),
            )


def _utc(naive_local: datetime | None) -> datetime | None:
    """schedule keeps next_run as naive local time."""
    return naive_local.astimezone(UTC) if naive_local else None


def auto_unblock(db: Database, notify: Notify, clock: Clock) -> list[int]:
    """Lift every block that has ended and tell each user."""
    lifted = db.lift_expired_blocks(clock())
    for user_id in lifted:
        log.info("user %s unblocked: the block ended", user_id)
        notify(user_id, Text("Your block has ended; you can write again."))
    return lifted


ACTIVITY_DAYS = 60  # the daily activity kept: the 📊 chart's 30 days, and room to spare


def cleanup_tracking(db: Database, retention_hours: float, clock: Clock) -> int:
    """Delete tracking rows older than the retention period, and the daily activity older than
    ACTIVITY_DAYS; returns how many tracking rows went."""
    now = clock()
    deleted = db.delete_tracking_before(now - timedelta(hours=retention_hours))
    if deleted:
        log.info("tracking cleanup removed %d rows older than %g hours", deleted, retention_hours)
    db.forget_activity_before(now.date() - timedelta(days=ACTIVITY_DAYS))
    return deleted


RETRY_LIMIT_SECONDS = 900.0  # a backup that did not leave the machine is tried again this often at least


class ChangeDebouncer:
    """When an on-change backup is due.

    After a write, a backup should be off the machine within `window` seconds: the first write
    since the last backup starts the count, the writes that follow join the same backup, and it
    starts early enough to be done by then (the last backup's duration before the deadline).
    Backups are also spaced by at least ten times the last one's duration, so a large database
    on a small machine backs up less often instead of starving the bot: they never take more
    than about a tenth of its time.
    """

    def __init__(
        self,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        spacing: Callable[[], float] = lambda: 1.0,
    ):
        """spacing(): how many times `window` to wait (more than once while uploads run over
        their budget: engine.BackupEngine.change_spacing)."""
        self.window, self.clock, self.spacing = window, clock, spacing
        self._seen: int | None = None  # the change count the last backup started from
        self._guessed = False  # _seen is only what the count was at the first look
        self._first_change: float | None = None
        self._last_end = float("-inf")
        self._last_duration = 0.0
        self._retry_wait: float | None = None  # while a backup has not left the machine

    def due(self, changes: int) -> bool:
        """Whether to start a backup now, given the database's change count."""
        now = self.clock()
        if self._seen is None:  # no backup known yet (the startup's may still run): a guess
            self._seen, self._guessed = changes, True
        if changes == self._seen:
            self._first_change = None
            return False
        if self._first_change is None:
            self._first_change = now
        window = self.window * self.spacing()
        start_by = self._first_change + max(0.0, window - self._last_duration)
        return now >= max(start_by, self._last_end + 10 * self._last_duration)

    def retry_due(self, behind: bool) -> bool:
        """Whether to try again to get the newest backup off the machine (`behind`: a place
        off it lacks the newest backup, though nothing new was written): after the window, then
        twice as long each time up to RETRY_LIMIT_SECONDS, and spaced like any backup."""
        if not behind:
            self._retry_wait = None
            return False
        wait = self._retry_wait if self._retry_wait is not None else self.window
        if self.clock() < self._last_end + max(wait, 10 * self._last_duration):
            return False
        self._retry_wait = min(wait * 2, RETRY_LIMIT_SECONDS)
        return True

    def backed_up(self, changes: int) -> None:
        """A backup (of any kind) holds the database up to `changes`: a count at or below it is
        nothing to back up. Without it, what was written before this watch began would be."""
        if self._seen is None or self._guessed or changes > self._seen:
            self._seen, self._guessed = changes, False  # (a guess gives way: writes made
            # after the startup's snapshot and before the first look are changes to back up)

    def done(self, changes_at_start: int, seconds: float) -> None:
        """A backup that started at `changes_at_start` ended, after `seconds`; changes made
        while it ran make the next one due."""
        self._seen, self._first_change, self._guessed = changes_at_start, None, False
        self._last_end, self._last_duration = self.clock(), seconds


def backup_after_change(
    db: Database,
    create: Callable[[], object],
    debouncer: ChangeDebouncer,
    backed_up: Callable[[], int | None] = lambda: None,
    behind: Callable[[], bool] = lambda: False,
) -> bool:
    """Take an on-change backup when one is due, or when the newest did not reach every place
    off the machine (a send failed: without this, nothing would try again until the next write
    or the scheduled backup, and a deep sleep meanwhile would lose it); True when it did.
    backed_up(): the change count the newest backup holds (engine.BackupEngine.backed_up_changes);
    behind(): engine.BackupEngine.offsite_behind."""
    known = backed_up()
    if known is not None:
        debouncer.backed_up(known)
    changes = db.change_count()
    if not (debouncer.due(changes) or debouncer.retry_due(behind())):
        return False
    started, waited = time.monotonic(), bot_api.time_waited()
    try:
        create()
    finally:  # the backup's own cost: time spent waiting for Telegram's pace is none
        debouncer.done(changes, time.monotonic() - started - (bot_api.time_waited() - waited))
    return True


class PauseResolver:
    """Lifts the startup's pause once the destinations off the machine answer.

    The bot started on an empty database, paused, because a destination could not be asked
    (the network was not ready): a real backup may be there. Every run asks again. When they
    all answer and hold no backup, there is nothing to bury: the pause lifts itself. When they
    hold one and nothing was written since the bot started, that backup is restored. When they
    hold one but people have written since, the admins are told what to do (again, until the
    alert reaches one of them). "Nothing written" means no user in the database: the bot's own
    bookkeeping does not count.
    """

    def __init__(self, engine: BackupEngine, db: Database, alert: Alert):
        self.engine, self.db, self.alert = engine, db, alert
        self._told = False
        self.done = False

    def __call__(self) -> None:
        if self.done or not self.engine.writing:
            return
        if not self.engine.offsite_paused():
            self.done = True
            return
        listing = self.engine.listing()
        if any(u.offsite for u in listing.unreachable):
            return
        backups = [info for info in listing.backups if info.destination != self.engine.local.name]
        if not backups:
            self.engine.resume_offsite()
            self.done = True
            self.alert(
                Text(
                    "▶️ Every place off the machine answers now and holds no backup, so nothing "
                    "can be buried: backups leave the machine again."
                )
            )
        elif self.db.table_row_counts().get("users", 0) == 0:
            restored = self.engine.restore_newest().restored
            if restored is not None:
                self.engine.resume_offsite()
                self.done = True
                self.alert(
                    Plural(
                        "♻️ Restored {name} from {destination} now that it answers ({count} row); "
                        "nothing had been written since the start.",
                        "♻️ Restored {name} from {destination} now that it answers ({count} rows); "
                        "nothing had been written since the start.",
                        restored.total_rows,
                        name=Code(restored.name),
                        destination=shown_place(restored.destination),
                    )
                )
        elif not self._told:
            self._told = bool(
                self.alert(
                    Text(
                        "🚨 {destination} answers now and holds backups (the newest taken {when}), but this bot "
                        "has been serving an empty database since it started. Restore one with ⚙️ System → 💾 Backup → "
                        "♻️ Restore, or keep this database with 🆕 Start fresh.",
                        destination=shown_place(backups[0].destination),
                        when=backups[0].created_at,
                    )
                )
            )


def build_runner(
    db: Database,
    settings: Settings,
    notify: Notify,
    clock: Clock,
    backup: Callable[[str], object] | None = None,
    backed_up: Callable[[], int | None] = lambda: None,
    spacing: Callable[[], float] = lambda: 1.0,
    behind: Callable[[], bool] = lambda: False,
) -> JobRunner:
    """The jobs: auto-unblock every minute, tracking cleanup every hour; with `backup` (the
    engine's create), the scheduled backup every BACKUP_INTERVAL_HOURS and the on-change
    backups (BACKUP_AFTER_CHANGE_SECONDS, 0: off)."""
    runner = JobRunner(clock)
    runner.add("auto_unblock", 60, lambda: auto_unblock(db, notify, clock))
    runner.add(
        "cleanup_tracking", 3600, lambda: cleanup_tracking(db, settings.tracking_retention_hours, clock)
    )
    if backup is not None:
        runner.add("backup", settings.backup_interval_hours * 3600, lambda: backup("scheduled"))
        if settings.backup_after_change_seconds > 0:
            debouncer = ChangeDebouncer(settings.backup_after_change_seconds, spacing=spacing)
            runner.add(
                "backup_after_change",
                1,
                lambda: backup_after_change(db, lambda: backup("change"), debouncer, backed_up, behind),
            )
    return runner
