import itertools
import threading
from datetime import timedelta

from conftest import NOW
from freezegun import freeze_time

import tasks
from clock import utc_now
from config import load_settings

SETTINGS = load_settings({"BOT_TOKEN": "1:abcdefghijklmnopqrstuvwxyz", "TRACKING_RETENTION_HOURS": "24"})


def test_auto_unblock_lifts_exactly_the_expired_blocks_and_tells_each_user(db):
    for user_id, minutes in [(1, -1), (2, 0), (3, 1)]:
        db.block_user(user_id, NOW + timedelta(minutes=minutes), "flood", notified=True, now=NOW)
    told = []
    assert tasks.auto_unblock(db, lambda user_id, text: told.append(user_id), lambda: NOW) == [1, 2]
    assert told == [1, 2]
    assert [db.user(u)["blocked_until"] is None for u in (1, 2, 3)] == [True, True, False]


def test_cleanup_tracking_removes_exactly_the_rows_past_retention(db):
    for hours in (48, 24.5, 23.5, 0):
        db.track_message(9, None, "Cy", 9, "message", NOW - timedelta(hours=hours), NOW)
    assert tasks.cleanup_tracking(db, 24, lambda: NOW) == 2
    assert db.table_row_counts()["tracking"] == 2


def test_the_scheduler_runs_unblock_every_minute_and_cleanup_every_hour(db):
    told = []
    with freeze_time("2026-11-26 12:00:00") as clock:
        runner = tasks.build_runner(
            db, SETTINGS, notify=lambda user_id, text: told.append(user_id), clock=utc_now
        )
        assert {s.name: s.interval_seconds for s in runner.statuses()} == {
            "auto_unblock": 60,
            "cleanup_tracking": 3600,
        }
        db.block_user(1, NOW + timedelta(seconds=30), "flood", notified=True, now=NOW)
        db.block_user(2, NOW + timedelta(seconds=90), "flood", notified=True, now=NOW)
        db.track_message(3, None, "Cy", 3, "message", NOW - timedelta(hours=23.5), NOW)

        clock.tick(59)
        runner.run_pending()
        assert told == []  # the block of user 1 has ended, but the job has not run yet
        clock.tick(1)
        runner.run_pending()
        assert told == [1]
        clock.tick(60)
        runner.run_pending()
        assert told == [1, 2]

        for _ in range(57):
            clock.tick(60)
            runner.run_pending()
        assert db.table_row_counts()["tracking"] == 1  # 23.5 + 0.98 hours old: kept
        clock.tick(60)
        runner.run_pending()  # 13:00, the first hourly cleanup: now 24.5 hours old
        assert db.table_row_counts()["tracking"] == 0
    statuses = {s.name: s for s in runner.statuses()}
    assert statuses["auto_unblock"].runs == 60 and statuses["cleanup_tracking"].runs == 1


def test_a_raising_job_is_logged_kept_in_its_status_and_runs_again(caplog):
    with freeze_time("2026-11-26 12:00:00") as clock:
        runner = tasks.JobRunner()  # scheduled from the frozen clock, whatever today's date
        runner.add("broken", 60, lambda: 1 / 0)
        for _ in range(3):
            clock.tick(60)
            runner.run_pending()
    (status,) = runner.statuses()
    assert (status.runs, status.failures) == (3, 3)
    assert status.last_error == "ZeroDivisionError: division by zero"
    assert "job broken failed" in caplog.text and "Traceback" in caplog.text
    assert status.next_run is not None  # still scheduled


def test_a_raising_job_stops_neither_the_other_jobs_nor_the_thread():
    failures, healthy_runs = threading.Semaphore(0), threading.Semaphore(0)

    def broken():
        failures.release()
        raise RuntimeError("boom")

    runner = tasks.JobRunner()
    runner.add("broken", 0.02, broken)
    runner.add("healthy", 0.02, healthy_runs.release)
    runner.start()
    try:
        for _ in range(3):  # the broken job fails again and again; both keep running
            assert failures.acquire(timeout=5)
            assert healthy_runs.acquire(timeout=5)
        assert runner._thread.is_alive()
    finally:
        runner.stop()
    assert not runner._thread.is_alive()
    statuses = {s.name: s for s in runner.statuses()}
    assert statuses["broken"].failures >= 3 and statuses["healthy"].failures == 0


def test_the_backup_job_runs_every_backup_interval_hours_decimals_allowed(db):
    settings = load_settings({"BOT_TOKEN": "1:abcdefghijklmnopqrstuvwxyz", "BACKUP_INTERVAL_HOURS": "0.25"})
    backups = []
    with freeze_time("2026-11-26 12:00:00") as clock:
        runner = tasks.build_runner(
            db,
            settings,
            notify=lambda *a: None,
            clock=utc_now,
            backup=lambda reason: backups.append((reason, utc_now())),
        )
        clock.tick(14 * 60 + 59)
        runner.run_pending()
        assert backups == []
        clock.tick(1)
        runner.run_pending()
        assert len(backups) == 1
    assert {s.name: s.interval_seconds for s in runner.statuses()}["backup"] == 900
    assert backups[0][0] == "scheduled"


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_burst_of_writes_gives_one_on_change_backup_within_the_window():
    ticks = Ticks()
    debouncer = tasks.ChangeDebouncer(60, clock=ticks)
    changes = 5
    assert not debouncer.due(changes)  # what was there before it started is not a change
    backups = []
    for second in range(120):  # a write every second for a minute, then quiet
        if second < 60:
            changes += 1
        if debouncer.due(changes):
            backups.append(ticks.now)
            debouncer.done(changes, seconds=0.5)
        ticks.now += 1
    assert backups == [1060.0]  # one backup, 60 s after the first write of the burst


def test_a_quiet_bot_gives_no_on_change_backup():
    ticks = Ticks()
    debouncer = tasks.ChangeDebouncer(60, clock=ticks)
    for _ in range(3600):
        assert not debouncer.due(42)
        ticks.now += 1


def backup_starts(seconds: int, backup_takes: float) -> list[float]:
    """When on-change backups start over `seconds` of one write a second (a 60 s window), each
    taking `backup_takes`."""
    ticks = Ticks()
    debouncer = tasks.ChangeDebouncer(60, clock=ticks)
    changes, started = 0, []
    debouncer.due(changes)
    for _ in range(seconds):
        changes += 1
        if debouncer.due(changes):
            started.append(ticks.now)
            debouncer.done(changes, seconds=backup_takes)
        ticks.now += 1
    return started


def test_steady_writes_give_one_backup_per_window_finishing_inside_it():
    started = backup_starts(600, backup_takes=2.0)
    gaps = {round(b - a) for a, b in itertools.pairwise(started)}
    assert gaps == {59}  # started 58 s after the first write it covers: done by 60 s


def test_slow_backups_are_spaced_by_ten_times_their_duration():
    started = backup_starts(3600, backup_takes=30.0)  # a large database on a small machine
    assert len(started) > 1 and all(
        b - a >= 300 for a, b in itertools.pairwise(started)
    )  # never over a tenth of the time
    assert len(started) >= 10


def test_the_on_change_job_backs_up_a_real_database_once_per_burst(db):
    ticks, taken = Ticks(), []
    debouncer = tasks.ChangeDebouncer(5, clock=ticks)

    def run():
        return tasks.backup_after_change(db, lambda: taken.append(db.change_count()), debouncer)

    assert not run()
    for user in (1, 2, 3):
        db.track_message(user, None, "N", user, "message", NOW, NOW)
        ticks.now += 1
        assert not run()
    ticks.now += 5
    assert run() and len(taken) == 1
    ticks.now += 100
    assert not run()  # nothing written since


def test_a_write_before_the_first_look_while_the_startup_backup_runs_is_backed_up(db):
    """The startup's backup snapshots the database; a webhook's update writes; only then does the
    on-change job look for the first time, before the startup backup says what it holds. That
    write is a change to back up, not part of "what was there before"."""
    ticks, taken = Ticks(), []
    debouncer = tasks.ChangeDebouncer(5, clock=ticks)
    at_snapshot = db.change_count()
    known = {"changes": None}  # the startup backup is still running

    def run():
        return tasks.backup_after_change(
            db, lambda: taken.append(db.change_count()), debouncer, backed_up=lambda: known["changes"]
        )

    db.track_message(7, None, "N", 7, "message", NOW, NOW)  # after the snapshot
    assert not run()  # the first look, while the startup backup runs
    known["changes"] = at_snapshot  # it finished: it holds the database up to its snapshot
    ticks.now += 1
    assert not run()
    ticks.now += 5
    assert run() and taken == [db.change_count()]


def test_a_backup_that_did_not_leave_the_machine_is_tried_again_ever_less_often():
    ticks = Ticks()
    debouncer = tasks.ChangeDebouncer(10, clock=ticks)
    debouncer.due(0)
    debouncer.done(0, seconds=0.5)  # an on-change backup whose send failed
    tries = []
    for _ in range(4000):
        if debouncer.retry_due(behind=True):
            tries.append(ticks.now - 1000)
            debouncer.done(0, seconds=0.5)
        ticks.now += 1
    gaps = [round(b - a) for a, b in itertools.pairwise([0.0, *tries])]
    assert gaps[:7] == [10, 20, 40, 80, 160, 320, 640]  # after the window, then twice as long
    assert set(gaps[7:]) == {tasks.RETRY_LIMIT_SECONDS}  # and never further apart than that
    assert not debouncer.retry_due(behind=False)  # it got there: nothing more to try
    ticks.now += 10
    assert debouncer.retry_due(behind=True)  # a new failure starts again from the window
