"""Change-backup benchmark: what on-change backups upload, and what a restore through the longest
chain costs.

    python bench/delta_bench.py [--sizes 20,100,500] [--steps 360] [--keep DIR]

For each size (MB), a database of that weight (20,000 users and tracking rows, as in
backup_bench.py), then time accelerated: one new user every 3 s (the handlers' own verb,
Database.track_message), and an on-change backup every BACKUP_AFTER_CHANGE_SECONDS (60 s by
default, so 20 new users per backup) through the real engine, to a place off the machine (a
folder standing in for the chat or the bucket: the engine counts what it uploads there with its
upload meter). `--steps` backups are simulated (360: the six hours between two scheduled full
backups), the first one after a full backup as the scheduled job leaves it.

Upload per month: what the on-change backups and the scheduled one at the end (a side piece:
the pages changed since the full backup) uploaded over the steps, scaled to a month of 60-s
intervals (month_gb); and in the steady state (month_steady_gb), where the weight rule adds full
on-change backups that upload as much as the deltas (a chain ends when its deltas outweigh its
full backup), plus four scheduled backups a day. Restore: the chain with the most pieces (a full backup and
four deltas) restored from the off-machine folder onto an empty disk, wall time at a full core;
at a tenth of a core, estimated as ten times the CPU time the restore used (the CPU-bound part
stretches ten-fold; cgroups and taskset are not available here). Not part of the test suite: it
prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import database
from config import load_settings
from destinations import LocalFolder
from engine import BackupEngine

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"
START = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
USERS_PER_BACKUP = 20  # one new user every 3 s, a backup every 60 s
MONTH_INTERVALS = 30 * 24 * 60  # on-change backups a month at one a minute


class Remote(LocalFolder):
    """A folder standing in for a place off the machine."""

    name = "remote"


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self):
        return self.now


def build(path: Path, megabytes: int) -> None:
    db = database.open_database(str(path))
    db.migrate()
    with db.transaction() as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)"
            " INSERT INTO users (user_id, username, first_name, first_seen, last_seen)"
            " SELECT 100000 + i, 'user' || i, 'Name ' || i, '2026-11-01 00:00:00',"
            " '2026-11-26 12:00:00' FROM n"
        )
        rows = megabytes * 7_300
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO tracking (user_id, chat_id, kind, created_at)"
            " SELECT 100001 + abs(random()) % 20000, -1000000000000 - abs(random()) % 5000,"
            " 'message', datetime(1795000000 + i * 86400 / ?, 'unixepoch') FROM n",
            (rows, rows),
        )
    db.close()


def engine_for(folder: Path, clock: Clock) -> tuple[database.Database, BackupEngine]:
    settings = load_settings({"BOT_TOKEN": TOKEN, "DB_PATH": str(folder / "bot.db"), "BACKUP_KEEP": "3"})
    db = database.open_database(settings.db_path)
    db.migrate()
    return db, BackupEngine(db, settings, offsite=[Remote(folder / "remote")], clock=clock)


def simulate(folder: Path, megabytes: int, steps: int) -> dict:
    build(folder / "bot.db", megabytes)
    clock = Clock()
    db, engine = engine_for(folder, clock)
    full = engine.create("scheduled").info
    uploaded_before = sum(engine.meter.last_24h().values())
    sizes, levels, cpu, restore = [], {}, 0.0, {}
    user = 1
    for _ in range(steps):
        for _ in range(USERS_PER_BACKUP):
            clock.now += timedelta(seconds=3)
            db.track_message(user, f"user{user}", "New", user, "message", clock.now, clock.now)
            user += 1
        started = time.process_time()
        info = engine.create("change").info
        cpu += time.process_time() - started
        sizes.append(info.size if info.delta else 0)  # the deltas' bytes (full ones apart)
        level = info.delta.level if info.delta else 0
        levels[level] = levels.get(level, 0) + 1
        if info.delta and len(info.delta.chain) == 4 and not restore:  # the longest chain
            restore = measure_restore(folder, info)
    for _ in range(USERS_PER_BACKUP):  # the six-hourly backup, after the last interval's writes
        clock.now += timedelta(seconds=3)
        db.track_message(user, f"user{user}", "New", user, "message", clock.now, clock.now)
        user += 1
    side = engine.create("scheduled").info
    uploaded = sum(engine.meter.last_24h().values()) - uploaded_before
    db.close()
    per_month = uploaded / steps * MONTH_INTERVALS
    return {
        "size_mb": round((folder / "bot.db").stat().st_size / 1e6, 1),
        "full_backup_mb": round(full.size / 1e6, 2),
        "steps": steps,
        "levels": {("full", "a", "b", "c", "d")[k]: v for k, v in sorted(levels.items())},
        "change_upload_mean_kb": round((uploaded - side.size) / steps / 1e3, 1),
        "change_upload_max_kb": round(max(sizes) / 1e3, 1),
        "scheduled_kb": round(side.size / 1e3, 1),
        "scheduled_is_side_piece": side.delta is not None,
        "month_gb": round(per_month / 1e9, 2),
        # A chain ends when its deltas outweigh its full backup: over months, full on-change
        # backups upload as much as the deltas, and a side piece is at most a full backup.
        "month_steady_gb": round((2 * sum(sizes) / steps * MONTH_INTERVALS + 120 * side.size) / 1e9, 2),
        "change_backup_cpu_s": round(cpu / steps, 3),
        **restore,
    }


def measure_restore(folder: Path, wanted) -> dict:
    """Restore `wanted` (a delta with the longest chain) on an empty disk from the remote folder."""
    target = folder / "empty-disk"
    target.mkdir()
    settings = load_settings({"BOT_TOKEN": TOKEN, "DB_PATH": str(target / "bot.db")})
    db = database.open_database(settings.db_path)
    db.migrate()
    fresh = BackupEngine(db, settings, offsite=[Remote(folder / "remote")])
    remote = next(i for i in fresh.listing("remote").backups if i.piece == wanted.piece)
    wall, cpu = time.perf_counter(), time.process_time()
    fresh.restore(remote, by_person=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    db.close()
    return {
        "restore_pieces": len(wanted.delta.chain) + 1,
        "restore_s_full_core": round(wall, 2),
        "restore_s_tenth_core_est": round(max(wall, cpu * 10), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,100,500")
    parser.add_argument("--steps", type=int, default=360)
    parser.add_argument("--keep", help="a folder to build in and keep (default: a temporary one)")
    args = parser.parse_args()
    for megabytes in (int(size) for size in args.sizes.split(",")):
        folder = Path(args.keep or tempfile.mkdtemp(prefix="delta-bench-")) / f"{megabytes}mb"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(json.dumps(simulate(folder, megabytes, args.steps)), flush=True)
        if not args.keep:
            shutil.rmtree(folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
