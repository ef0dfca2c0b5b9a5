"""A quick wake in webhook mode: from the first request to the answer, on an empty disk, with a
10 MB backup to restore. Real `python main.py` processes against the Bot API stand-in
(tests/fake_bot_api.py), behind a stand-in for the host's proxy (tests/edge_proxy.py) that
holds a request while the instance it wakes comes up, as Koyeb does for a sleeping service.

    python bench/wake_bench.py [--runs 5] [--tenth]

Each run: the last instance went to sleep (SIGTERM: its final backup is in the chat); a user
writes, the proxy holds the webhook request and the host starts a new instance on an empty
disk; measured until the user has the answer, split into the process's start (imports, config,
getMe), the restore, and the rest. --tenth also runs the new instance with a tenth of a core
(a cgroup v1 cpu quota, as Koyeb's free instance; needs root).

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from bot_process import BotProcess  # noqa: E402
from edge_proxy import EdgeProxy  # noqa: E402
from fake_bot_api import FakeBotAPI  # noqa: E402
from handover_bench import Tenth  # noqa: E402

import database  # noqa: E402

CHAT = -1008880001
PATH = "/telegram"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def build(path: Path, megabytes: float) -> None:
    """A database whose backup is about `megabytes`: users with names that do not compress."""
    db = database.open_database(str(path))
    db.migrate()
    rows = int(megabytes * 1e6 / 131)  # about 131 bytes of backup a row
    with db.transaction() as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO users (user_id, username, first_name, first_seen, last_seen)"
            " SELECT 100000 + i, 'user' || i, hex(randomblob(120)), '2026-11-01 00:00:00',"
            " '2026-11-26 12:00:00' FROM n",
            (rows,),
        )
    db.close()


def logged_at(bot: BotProcess, text: str) -> float:
    """The wall-clock time of the bot's first log line containing `text`."""
    line = bot.wait_for_log(text, timeout=300)
    return datetime.strptime(LOG_TIME.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def run(work: Path, database_file: Path, runs: int, tenth: bool) -> None:
    fake, proxy = FakeBotAPI().start(), EdgeProxy(hold_seconds=300).start()
    port = _free_port()
    env = {
        "BACKUP_CHAT_ID": str(CHAT),
        "PORT": str(port),
        "WEBHOOK_URL": proxy.url + PATH,
        "LOG_LEVEL": "INFO",
    }
    started: list[BotProcess] = []

    def instance(folder: str, copy_from: Path | None = None) -> BotProcess:
        (work / folder / "data").mkdir(parents=True)
        if copy_from:
            shutil.copyfile(copy_from, work / folder / "data" / "bot.db")
        bot = BotProcess(work / folder, fake.url, fake.token, **env).start()
        started.append(bot)
        return bot

    try:
        proxy.route_to(port)
        first = instance("first", database_file)
        first.wait_for_log("bot started:", timeout=300)
        first.stop(timeout=300)  # asleep: its final backup is in the chat
        size = re.search(r"shutdown backup \S+: (\d+) bytes", first.log())
        print(f"backup to restore: {int(size.group(1)) / 1e6:.1f} MB\n" if size else "")
        results = {"full core": [], "a tenth of a core": []} if tenth else {"full core": []}
        for label, samples in results.items():
            for n in range(runs):
                user = 50_000 + len(started)
                folder = f"wake-{len(started)}"
                began = time.time()
                fake.send_text(user, "/start")  # the request that wakes the service
                if label == "full core":
                    bot = instance(folder)
                else:
                    with Tenth(f"wake-{n}") as cgroup:
                        bot = instance(folder)
                        cgroup.add(bot.process.pid)
                        fake.wait_for_message(user, "registered", timeout=300)
                fake.wait_for_message(user, "registered", timeout=300)
                answered = time.time()
                restore_began = logged_at(bot, "logged in as")
                restored = logged_at(bot, "Restored at startup")
                samples.append(
                    {
                        "total": answered - began,
                        "process start": restore_began - began,
                        "restore": restored - restore_began,
                        "serve and answer": answered - restored,
                    }
                )
                bot.stop(timeout=300)  # asleep again: the next run restores its final backup
        print("| wake on a request, empty disk | total | process start | restore | serve and answer |")
        print("|---|---|---|---|---|")
        for label, samples in results.items():
            cells = [
                f"{statistics.median(s[key] for s in samples):.2f} s"
                for key in ("total", "process start", "restore", "serve and answer")
            ]
            print(f"| {label}, median of {runs} | " + " | ".join(cells) + " |")
        totals = [f"{s['total']:.2f}" for samples in results.values() for s in samples]
        print(f"\nevery run's total, s: {', '.join(totals)}")
    finally:
        for bot in started:
            bot.kill()
        proxy.stop()
        fake.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--megabytes", type=float, default=10)
    parser.add_argument("--tenth", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.tenth and os.geteuid() != 0:
        sys.exit("--tenth needs root (a cgroup of its own)")
    work = Path(tempfile.mkdtemp(prefix="wake-bench-"))
    print(f"work folder: {work}")
    try:
        build(work / "bot.db", args.megabytes)
        run(work, work / "bot.db", args.runs, args.tenth)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
