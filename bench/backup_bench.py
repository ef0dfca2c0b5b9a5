"""Backup benchmark: this project's create() and restore against the sqlite3 shell, cp and gzip.

    python bench/backup_bench.py [--rows 1000000] [--runs 3] [--keep DIR]

Builds a database of about 100 MB (users plus about a million tracking rows) in a temporary
folder and prints one table: the median of --runs runs for each line. Needs the sqlite3 shell and
gzip on PATH. Not part of the test suite: it prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import database
import engine
from config import load_settings
from engine import BackupEngine

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"


def build_database(path: Path, rows: int) -> None:
    db = database.open_database(str(path))
    db.migrate()
    with db.transaction() as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)"
            " INSERT INTO users (user_id, username, first_name, first_seen, last_seen)"
            " SELECT 100000 + i, 'user' || i, 'Name ' || i, '2026-11-01 00:00:00',"
            " '2026-11-26 12:00:00' FROM n"
        )
        # Plausible activity: user, chat, kind and a time spread over a day, plus some entropy.
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO tracking (user_id, chat_id, kind, created_at)"
            " SELECT 100001 + abs(random()) % 20000, -1000000000000 - abs(random()) % 5000,"
            " 'message',"
            " datetime(1795000000 + i * 86400 / ?, 'unixepoch') FROM n",
            (rows, rows),
        )
    db.close()  # the last connection to close checkpoints the WAL into the file


def clear(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def timed(command: list[str] | str, shell=False) -> float:
    os.sync()  # every line starts with no earlier write-back pending, ours included
    started = time.perf_counter()
    subprocess.run(command, check=True, shell=shell, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def in_child(function: str, settings_env: dict, *args) -> dict:
    """Run one measurement in a fresh process, so peak memory (ru_maxrss) is its own."""
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import backup_bench as b; print(json.dumps(b.{function}(*{args!r})))"
    )
    os.sync()
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **settings_env}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{function} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_create(db_path: str, backup_dir: str) -> dict:
    settings = load_settings(
        {"BOT_TOKEN": TOKEN, "DB_PATH": db_path, "BACKUP_DIR": backup_dir, "BACKUP_KEEP": "100"}
    )
    db = database.open_database(db_path)
    engine = BackupEngine(db, settings)
    baseline = _max_rss_mb()
    Path(backup_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=backup_dir) as scratch:
        started = time.perf_counter()
        db.snapshot_to(Path(scratch) / "snap.db", engine.step_pages)
        snapshot_seconds = time.perf_counter() - started
    waits = []
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            asked = time.perf_counter()
            with db.transaction() as conn:
                waits.append(time.perf_counter() - asked)
                conn.execute(
                    "INSERT INTO tracking (user_id, chat_id, kind, created_at)"
                    " VALUES (100001, 1, 'bench', '2026-11-26 12:00:00')"
                )
            stop.wait(0.002)  # a busy bot: a write every couple of milliseconds

    thread = threading.Thread(target=writer)
    thread.start()
    started = time.perf_counter()
    result = engine.create("manual")
    create_seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    waits.sort()
    return {
        "snapshot": snapshot_seconds,
        "create": create_seconds,
        "size": result.info.size,
        "file": result.info.location,
        "peak_mb": _max_rss_mb() - baseline,
        "p50_ms": waits[len(waits) // 2] * 1000,
        "p99_ms": waits[int(len(waits) * 0.99)] * 1000,
        "max_ms": waits[-1] * 1000,
        "writes": len(waits),
    }


def measure_restore(db_path: str, backup_dir: str, source: str) -> dict:
    settings = load_settings({"BOT_TOKEN": TOKEN, "DB_PATH": db_path, "BACKUP_DIR": backup_dir})
    db = database.open_database(db_path)
    db.migrate()
    engine = BackupEngine(db, settings)
    baseline = _max_rss_mb()
    started = time.perf_counter()
    engine.restore(Path(source), by_person=False)
    seconds = time.perf_counter() - started
    return {"restore": seconds, "peak_mb": _max_rss_mb() - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    try:
        run(work, args.rows, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, rows: int, runs: int) -> None:
    db_path = work / "bot.db"
    build_database(db_path, rows)
    db_mb = db_path.stat().st_size / 1e6
    shell_backup = work / "shell.db"
    rows_out = {"shell .backup": [], "cp": [], ".backup && gzip": [], "gunzip + .restore": []}
    ours: list[dict] = []
    restores: list[dict] = []
    env = {"LOG_LEVEL": "WARNING"}
    for _n in range(runs):
        # Every line first removes what it wrote last time, then starts from a synced disk.
        clear(work / "backups")
        ours.append(in_child("measure_create", env, str(db_path), str(work / "backups")))
        clear(work / "restored.db", work / "restore-scratch")
        restores.append(
            in_child(
                "measure_restore",
                env,
                str(work / "restored.db"),
                str(work / "restore-scratch"),
                ours[-1]["file"],
            )
        )
        clear(shell_backup)
        rows_out["shell .backup"].append(timed(["sqlite3", str(db_path), f".backup {shell_backup}"]))
        clear(work / "copy.db")
        rows_out["cp"].append(timed(["cp", str(db_path), str(work / "copy.db")]))
        clear(shell_backup, Path(f"{shell_backup}.gz"))
        rows_out[".backup && gzip"].append(
            timed(f"sqlite3 {db_path} '.backup {shell_backup}' && gzip -f {shell_backup}", shell=True)
        )
        gz_size = Path(f"{shell_backup}.gz").stat().st_size
        clear(shell_backup, work / "target.db")
        rows_out["gunzip + .restore"].append(
            timed(
                f"gunzip -kf {shell_backup}.gz && sqlite3 {work / 'target.db'} '.restore {shell_backup}'",
                shell=True,
            )
        )
    median = lambda values: statistics.median(values)  # noqa: E731
    ours_median = {key: median([o[key] for o in ours]) for key in ours[0] if key != "file"}
    restore_median = {key: median([r[key] for r in restores]) for key in restores[0]}
    print(f"database: {db_mb:.0f} MB, {rows} tracking rows; median of {runs} runs\n")
    print("| what | seconds | notes |\n|---|---|---|")
    print(f"| shell `.backup` | {median(rows_out['shell .backup']):.2f} | |")
    print(f"| `cp` | {median(rows_out['cp']):.2f} | not a consistent copy of a live database |")
    print(
        f"| snapshot (online backup API, {engine.STEP_PAGES} pages a step) | "
        f"{ours_median['snapshot']:.2f} | {ours_median['snapshot'] / median(rows_out['shell .backup']):.2f}x the shell |"
    )
    print(f"| `.backup && gzip` | {median(rows_out['.backup && gzip']):.2f} | {gz_size / 1e6:.1f} MB |")
    print(
        f"| create() (snapshot, check, hash, zstd, store, rotate) | {ours_median['create']:.2f} | "
        f"{ours_median['size'] / 1e6:.1f} MB, with a writer running |"
    )
    print(f"| `gunzip` + shell `.restore` | {median(rows_out['gunzip + .restore']):.2f} | |")
    print(f"| restore (decompress, verify, load, migrate) | {restore_median['restore']:.2f} | |")
    snapshot_runs = ", ".join(f"{o['snapshot']:.2f}" for o in ours)
    shell_runs = ", ".join(f"{t:.2f}" for t in rows_out["shell .backup"])
    print(f"\nsnapshot runs: {snapshot_runs}; shell .backup runs: {shell_runs}")
    print(
        f"peak memory growth: create {ours_median['peak_mb']:.0f} MB, "
        f"restore {restore_median['peak_mb']:.0f} MB"
    )
    print(
        f"writer waiting for the lock during create(): p50 {ours_median['p50_ms']:.2f} ms, "
        f"p99 {ours_median['p99_ms']:.2f} ms, max {ours_median['max_ms']:.2f} ms "
        f"({int(ours_median['writes'])} writes)"
    )


if __name__ == "__main__":
    main()
