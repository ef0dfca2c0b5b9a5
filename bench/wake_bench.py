"""A quick wake in webhook mode: from the first request to the answer, after each kind of sleep
of Koyeb's, with a 10 MB backup. Real `python main.py` processes against the Bot API stand-in
(tests/fake_bot_api), behind a stand-in for the host's proxy (tests/edge_proxy.py) that holds a
request while the instance it wakes comes up, as Koyeb does for a sleeping service.

    python bench/wake_bench.py [--runs 5] [--tenth] [--sleep shutdown deep light] [--asleep 0]

The kinds of sleep, each run ending the way the next one begins:
  shutdown  the instance got SIGTERM (its final backup is in the chat); the request starts a
            new instance on an empty disk
  deep      the instance went quiet (everything it wrote is off the machine), was frozen and
            thrown away without SIGTERM; the request starts a new instance on an empty disk
  light     the instance was frozen (SIGSTOP) for --freeze seconds, and the request thaws it
            (SIGCONT): the same process, its disk kept
--asleep: seconds between falling asleep and the wake (Koyeb sleeps after minutes without
traffic: with 65 the chat's last write is over a minute old, as it would be, and Telegram's
pace has nothing left to wait for). Measured until the user has the answer; for a new instance split into the process's start
(imports, config, getMe), the restore, and the rest. --tenth also runs the woken instance with
a tenth of a core (a cgroup v1 cpu quota, as Koyeb's free instance; needs root). Koyeb's own
part (about 200 ms to thaw, 1 to 5 s to start from deep sleep, by its documentation) is not in
these numbers.

It prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
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


class Bench:
    """The stand-ins, the instances started, and one wake at a time."""

    def __init__(self, work: Path, database_file: Path, freeze: float, asleep: float = 0.0):
        self.work, self.database_file, self.freeze, self.asleep = work, database_file, freeze, asleep
        self.fake, self.proxy = FakeBotAPI().start(), EdgeProxy(hold_seconds=300).start()
        self.port = _free_port()
        self.env = {
            "BACKUP_CHAT_ID": str(CHAT),
            "PORT": str(self.port),
            "WEBHOOK_URL": self.proxy.url + PATH,
            "LOG_LEVEL": "INFO",
            "BACKUP_AFTER_CHANGE_SECONDS": "2",  # quiet 5 s after the last write
        }
        self.started: list[BotProcess] = []
        self.proxy.route_to(self.port)
        self.awake: BotProcess | None = None

    def instance(self, copy_from: Path | None = None) -> BotProcess:
        folder = self.work / f"instance-{len(self.started)}"
        (folder / "data").mkdir(parents=True)
        if copy_from:
            shutil.copyfile(copy_from, folder / "data" / "bot.db")
        bot = BotProcess(folder, self.fake.url, self.fake.token, **self.env).start()
        self.started.append(bot)
        return bot

    def first(self) -> str:
        self.awake = self.instance(self.database_file)
        self.awake.wait_for_log("bot started:", timeout=300)
        return f"database: {self.database_file.stat().st_size / 1e6:.1f} MB"

    def wait_quiet(self, bot: BotProcess, since: int) -> None:
        """Until `bot` logs that everything it wrote is off the machine (after `since` lines)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any("quiet: everything up to" in line for line in bot.log().splitlines()[since:]):
                return
            time.sleep(0.2)
        raise TimeoutError("the writer never went quiet")

    def fall_asleep(self, kind: str) -> None:
        bot = self.awake
        if kind == "shutdown":
            bot.stop(timeout=300)
        elif kind == "deep":
            self.wait_quiet(bot, 0)
            os.kill(bot.process.pid, signal.SIGSTOP)
            bot.kill()  # thrown away while frozen: no SIGTERM, and its disk is gone
        if kind != "light":
            time.sleep(self.asleep)  # asleep this long before the request that wakes it
        else:
            self.wait_quiet(bot, 0)
            os.kill(bot.process.pid, signal.SIGSTOP)
            time.sleep(self.freeze)  # the sleep itself

    def wake(self, kind: str, tenth: bool) -> dict:
        user = 50_000 + len(self.started) + int(time.time() * 10) % 10_000
        lines = len(self.awake.log().splitlines())
        began = time.time()
        self.fake.send_text(user, "/start")  # the request that wakes the service
        with Tenth(f"wake-{user}") if tenth else _Nothing() as cgroup:
            if kind == "light":
                bot = self.awake
                if cgroup:
                    cgroup.add(bot.process.pid)
                os.kill(bot.process.pid, signal.SIGCONT)  # thawed by the request
            else:
                bot = self.instance()
                if cgroup:
                    cgroup.add(bot.process.pid)
            self.fake.wait_for_message(user, "registered", timeout=300)
            answered = time.time()
            if kind == "light":
                self.wait_quiet(bot, lines)  # ready for the next run, within its quota still
        self.awake = bot
        if kind == "light":
            return {"total": answered - began}
        restore_began = logged_at(bot, "logged in as")
        restored = logged_at(bot, "Restored at startup")
        return {
            "total": answered - began,
            "process start": restore_began - began,
            "restore": restored - restore_began,
            "serve and answer": answered - restored,
        }

    def close(self) -> None:
        for bot in self.started:
            bot.kill()
        self.proxy.stop()
        self.fake.stop()


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def run(bench: Bench, kinds: list[str], runs: int, tenth: bool) -> None:
    print(bench.first())
    rows = []
    for kind in kinds:
        for label, quota in [("full core", False)] + ([("a tenth of a core", True)] if tenth else []):
            samples = []
            for _ in range(runs):
                bench.fall_asleep(kind)
                samples.append(bench.wake(kind, quota))
            rows.append((kind, label, samples))
    keys = ("total", "process start", "restore", "serve and answer")
    print("| sleep | instance | total | process start | restore | serve and answer |")
    print("|---|---|---|---|---|---|")
    for kind, label, samples in rows:
        cells = [
            f"{statistics.median(s[key] for s in samples):.2f} s" if key in samples[0] else "-"
            for key in keys
        ]
        print(f"| {kind} | {label}, median of {runs} | " + " | ".join(cells) + " |")
    for kind, label, samples in rows:
        totals = ", ".join(f"{sample['total']:.2f}" for sample in samples)
        print(f"{kind}, {label}: every run's total, s: {totals}")


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
    parser.add_argument("--sleep", nargs="+", default=["shutdown", "deep", "light"])
    parser.add_argument("--freeze", type=float, default=10.0, help="seconds a light sleep lasts")
    parser.add_argument("--asleep", type=float, default=0.0, help="seconds asleep before a wake")
    args = parser.parse_args()
    if args.tenth and os.geteuid() != 0:
        sys.exit("--tenth needs root (a cgroup of its own)")
    work = Path(tempfile.mkdtemp(prefix="wake-bench-"))
    print(f"work folder: {work}")
    build(work / "bot.db", args.megabytes)
    bench = Bench(work, work / "bot.db", args.freeze, args.asleep)
    try:
        run(bench, args.sleep, args.runs, args.tenth)
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
