"""The Telegram chat with a 100 MB backup: sent as parts (Telegram's limits) against sent whole
(a self-hosted Bot API server), with and without BACKUP_PASSPHRASE.

    python bench/telegram_bench.py [--megabytes 100] [--runs 3]

Each line runs in a fresh process, against the Bot API stand-in running in another process (so
its memory is not counted): a backup sent and read back, then restored on an empty disk. It
prints the median time of --runs runs and the peak memory growth of the bot's process; it asserts
nothing.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CHAT = -1008880001
TOKEN = "123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz"


def build(path: Path, megabytes: int) -> None:
    import database

    path.parent.mkdir(parents=True, exist_ok=True)
    db = database.open_database(str(path))
    db.migrate()
    with db.transaction() as conn:  # data zstd cannot shrink: the backup is as large as this
        conn.executemany(
            "INSERT INTO users (user_id, username, first_seen, last_seen)"
            " VALUES (?, randomblob(1048576), '2026-11-26', '2026-11-26')",
            [(n,) for n in range(1, megabytes + 1)],
        )
    db.close()


def settings_for(work: str, folder: str, api_url: str, parts: bool, passphrase: str):
    from config import load_settings

    return load_settings(
        {
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": api_url,
            "BACKUP_CHAT_ID": str(CHAT),
            "TELEGRAM_FILE_LIMITS": "telegram" if parts else "none",
            "BACKUP_KEEP": "100",
            "DB_PATH": str(Path(work) / folder / "bot.db"),
            **({"BACKUP_PASSPHRASE": passphrase} if passphrase else {}),
        }
    )


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def send(work: str, database_file: str, api_url: str, parts: bool, passphrase: str) -> dict:
    """In a fresh process: a manual backup of `database_file`, sent and read back."""
    import database
    import startup

    settings = settings_for(work, "a", api_url, parts, passphrase)
    Path(settings.db_path).parent.mkdir(parents=True)
    shutil.copyfile(database_file, settings.db_path)
    db = database.open_database(settings.db_path)
    engine = startup.backup_engine(db, settings, startup.offsite(settings))
    engine.lease.become(1, "bench")
    baseline, started = peak_mb(), time.perf_counter()
    result = engine.create("manual")
    seconds = time.perf_counter() - started
    assert "telegram" in [i.destination for i in result.stored], result.failures
    db.close()
    return {"seconds": seconds, "peak_mb": peak_mb() - baseline, "size": result.info.size}


def restore(work: str, api_url: str, parts: bool, passphrase: str) -> dict:
    """In a fresh process: a start on an empty disk, restoring the newest backup of the chat."""
    import startup

    settings = settings_for(work, "b", api_url, parts, passphrase)
    baseline, started = peak_mb(), time.perf_counter()
    db, _engine, report = startup.prepare_database(settings, startup.offsite(settings))
    seconds = time.perf_counter() - started
    assert report.restored is not None and report.restored.destination == "telegram"
    db.close()
    return {"seconds": seconds, "peak_mb": peak_mb() - baseline}


def in_child(function: str, *args) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import telegram_bench as b; print(json.dumps(b.{function}(*{args!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="telegram-bench-"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                f"import sys, time; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
                "from fake_bot_api import FakeBotAPI; "
                "f = FakeBotAPI(upload_limit=1 << 31, download_limit=1 << 31).start(); "
                "print(f.url, flush=True); time.sleep(10 ** 6)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        api_url = server.stdout.readline().strip()
        build(work / "db" / "bot.db", args.megabytes)
        print(
            f"| {args.megabytes} MB backup | send + read back (s) | restore on an empty disk (s) "
            "| peak memory growth: send, restore |\n|---|---|---|---|"
        )
        rows = {}
        for parts in (True, False):
            for passphrase in ("", "correct horse battery staple"):
                runs = []
                for n in range(args.runs):
                    folder = str(work / f"run-{parts}-{bool(passphrase)}-{n}")
                    sent = in_child("send", folder, str(work / "db" / "bot.db"), api_url, parts, passphrase)
                    back = in_child("restore", folder, api_url, parts, passphrase)
                    runs.append(
                        {
                            "send": sent["seconds"],
                            "restore": back["seconds"],
                            "send_mb": sent["peak_mb"],
                            "restore_mb": back["peak_mb"],
                        }
                    )
                median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                rows[parts, bool(passphrase)] = median
                what = ("as parts of 19 MB (Telegram)" if parts else "whole (a self-hosted server)") + (
                    ", encrypted" if passphrase else ""
                )
                print(
                    f"| {what} | {median['send']:.2f} | {median['restore']:.2f} | "
                    f"{median['send_mb']:.0f} MB, {median['restore_mb']:.0f} MB |"
                )
        for encrypted in (False, True):
            parts, whole = rows[True, encrypted], rows[False, encrypted]
            print(
                f"\nparts / whole{' (encrypted)' if encrypted else ''}: send {parts['send'] / whole['send']:.2f}x, "
                f"restore {parts['restore'] / whole['restore']:.2f}x"
            )
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
