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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

import schedule

from clock import Clock, utc_now
from config import Settings
from database import Database

log = logging.getLogger(__name__)

Notify = Callable[[int, str], object]


@dataclass(frozen=True)
class JobStatus:
    name: str
    interval_seconds: float
    last_run: Optional[datetime] = None  # UTC, when the last run started
    last_duration: Optional[float] = None  # seconds
    last_error: Optional[str] = None  # the last run's exception; None when it succeeded
    runs: int = 0
    failures: int = 0
    next_run: Optional[datetime] = None  # UTC


class JobRunner:
    def __init__(self, clock: Clock = utc_now) -> None:
        self.clock = clock
        self.scheduler = schedule.Scheduler()
        self._status: dict[str, JobStatus] = {}
        self._jobs: dict[str, schedule.Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, name: str, interval_seconds: float, func: Callable[[], object]) -> None:
        self._status[name] = JobStatus(name, interval_seconds)
        self._jobs[name] = self.scheduler.every(interval_seconds).seconds.do(self._run, name, func)

    def run_pending(self) -> None:
        self.scheduler.run_pending()

    def statuses(self) -> list[JobStatus]:
        with self._lock:
            return [replace(status, next_run=_utc(self._jobs[name].next_run))
                    for name, status in self._status.items()]

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
                status, last_run=started_at, last_duration=time.monotonic() - started,
                last_error=error, runs=status.runs + 1, failures=status.failures + (error is not None))


def _utc(naive_local: Optional[datetime]) -> Optional[datetime]:
    """schedule keeps next_run as naive local time."""
    return naive_local.astimezone(timezone.utc) if naive_local else None


def auto_unblock(db: Database, notify: Notify, clock: Clock) -> list[int]:
    """Lift every block that has ended and tell each user."""
    lifted = db.lift_expired_blocks(clock())
    for user_id in lifted:
        log.info("user %s unblocked: the block ended", user_id)
        notify(user_id, "Your block has ended; you can write again.")
    return lifted


def cleanup_tracking(db: Database, retention_hours: float, clock: Clock) -> int:
    """Delete tracking rows older than the retention period; returns how many went."""
    deleted = db.delete_tracking_before(clock() - timedelta(hours=retention_hours))
    if deleted:
        log.info("tracking cleanup removed %d rows older than %g hours", deleted, retention_hours)
    return deleted


def build_runner(db: Database, settings: Settings, notify: Notify, clock: Clock,
                 backup: Optional[Callable[[], object]] = None) -> JobRunner:
    runner = JobRunner(clock)
    runner.add("auto_unblock", 60, lambda: auto_unblock(db, notify, clock))
    runner.add("cleanup_tracking", 3600,
               lambda: cleanup_tracking(db, settings.tracking_retention_hours, clock))
    if backup is not None:
        runner.add("backup", settings.backup_interval_hours * 3600, backup)
    return runner
