"""Hand-over, recovery point and a tenth of a core: real `python main.py` processes against the
Bot API stand-in (tests/fake_bot_api.py), each instance on a disk of its own.

    python bench/handover_bench.py [--only handover,rpo,tenth] [--rpo-seconds 240]

- handover: a 10 MB database; from the old instance's 409 (a rolling redeploy), or from its
  SIGTERM (an immediate one), to the new instance answering with the old one's last write.
- rpo: the recovery point under a steady write load with the default settings
  (BACKUP_AFTER_CHANGE_SECONDS=60), for a 1 MB and a 100 MB database: the worst moment of the
  run, what a SIGKILL there would lose; the CPU share the on-change backups took; then a real
  SIGKILL and what the next instance has.
- tenth: the bot's process in a cgroup with a CPU quota of 10 ms per 100 ms (Koyeb's free
  instance has a tenth of a core), a 77 MB database: SIGTERM to exit, an on-demand backup, a
  start on an empty disk restoring it, and a hand-over between two such instances. Needs root.

It prints numbers and asserts nothing. Logs of every instance stay in the work folder printed
at the start (removed at the end unless --keep).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bot_process import ADMIN_ID, BotProcess  # noqa: E402
from fake_bot_api import FakeBotAPI  # noqa: E402

import database  # noqa: E402

CHAT = -1007770001
NOW = "2026-11-26 12:00:00"
CGROUP = Path("/sys/fs/cgroup/cpu")


def build(path: Path, megabytes: float) -> None:
    """A database of this bot of about `megabytes`: users, and their tracking rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = database.open_database(str(path))
    db.migrate()
    rows = int(megabytes * 1e6 / 122)  # about 122 bytes a tracking row with its indexes
    with db.transaction() as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)"
            " INSERT INTO users (user_id, username, first_name, first_seen, last_seen)"
            " SELECT 100000 + i, 'user' || i, 'Name ' || i, '2026-11-01 00:00:00', ? FROM n",
            (NOW,),
        )
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO tracking (user_id, chat_id, kind, created_at)"
            " SELECT 100001 + abs(random()) % 20000, 100001 + abs(random()) % 20000, 'message',"
            " datetime(1795000000 + i * 86400 / ?, 'unixepoch') FROM n",
            (rows, rows),
        )
    db.close()


class Tenth:
    """A cgroup (v1 cpu controller) that gives its processes a tenth of a core."""

    def __init__(self, name: str):
        self.path = CGROUP / f"bot-bench-{name}-{os.getpid()}"

    def __enter__(self) -> Tenth:
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text("100000")
        (self.path / "cpu.cfs_quota_us").write_text("10000")
        return self

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def __exit__(self, *exc) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            (CGROUP / "cgroup.procs").write_text(pid)
        self.path.rmdir()


class Bench:
    def __init__(self, work: Path):
        self.work, self.fake = work, FakeBotAPI().start()
        self.started: list[BotProcess] = []
        self.chat = CHAT
        self.next_user = 10_000  # the users the bench writes: 10 000 to 99 999

    def bot(
        self, folder: str, database_file: Path | None = None, cgroup: Tenth | None = None, **env
    ) -> BotProcess:
        workdir = self.work / folder
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        if database_file is not None:
            shutil.copyfile(database_file, workdir / "data" / "bot.db")
        bot = BotProcess(
            workdir, self.fake.url, self.fake.token, LOG_LEVEL="INFO", BACKUP_CHAT_ID=str(self.chat), **env
        ).start()
        if cgroup is not None:
            cgroup.add(bot.process.pid)
        self.started.append(bot)
        return bot

    def new_deployment(self) -> None:
        """A chat of its own for the next scenario: nothing of the last one's backups in it."""
        self.chat -= 1

    def user_writes(self, timeout: float = 60) -> float:
        """A new user sends /start; returns when the answer came (monotonic)."""
        user, self.next_user = self.next_user, self.next_user + 1
        self.fake.send_text(user, "/start")
        self.fake.wait_for_message(user, "registered", timeout=timeout)
        return time.monotonic()

    def users_seen(self, timeout: float = 120) -> int:
        """What the serving instance says in 📊 Statistics: its number of users."""
        seen = len(self.fake.messages(ADMIN_ID))
        self.fake.send_text(ADMIN_ID, "📊 Statistics")
        text = self.fake.wait_for_message(ADMIN_ID, "Users:", after=seen, timeout=timeout)["text"]
        return int(re.search(r"Users: ([\d,]+)", text).group(1).replace(",", ""))

    def conflicts(self) -> int:
        return sum(call["status"] == 409 for call in self.fake.requests("getUpdates"))

    def close(self) -> None:
        for bot in self.started:
            bot.kill()
        self.fake.stop()


def serving(bot: BotProcess, timeout: float = 300) -> None:
    """Until it serves, and its startup backup (when it takes one) is done."""
    bot.wait_for_log("bot started:", timeout=timeout)


# --- hand-over ---------------------------------------------------------------------------------


def handover(bench: Bench, database_file: Path, cgroups=(None, None), label: str = "") -> dict:
    """Rolling: B starts while A serves; from A's 409 to B answering with A's last write."""
    bench.new_deployment()
    a = bench.bot(f"handover-a{label}", database_file, cgroups[0])
    serving(a)
    users = bench.users_seen()  # the admin is a user too, from now on
    bench.user_writes()  # A's last write
    conflicts = bench.conflicts()
    b = bench.bot(f"handover-b{label}", None, cgroups[1])
    bench.fake.wait_for(lambda: bench.conflicts() > conflicts, 300, "A's 409")
    started = time.monotonic()
    answered = bench.users_seen(timeout=300)
    seconds = time.monotonic() - started
    assert answered == users + 1, (answered, users)  # B has A's last write
    b.stop(timeout=120)
    a.stop(timeout=120)
    return {"seconds": seconds}


def immediate(bench: Bench, database_file: Path) -> dict:
    """Immediate: A gets SIGTERM as B starts; from then to B answering with A's last write."""
    bench.new_deployment()
    a = bench.bot("immediate-a", database_file)
    serving(a)
    users = bench.users_seen()
    bench.user_writes()
    started = time.monotonic()
    a.process.send_signal(signal.SIGTERM)
    b = bench.bot("immediate-b")
    answered = bench.users_seen(timeout=300)
    seconds = time.monotonic() - started
    assert answered == users + 1
    a.wait(60)
    b.stop(timeout=120)
    return {"seconds": seconds}


# --- recovery point ----------------------------------------------------------------------------

CHANGE_LINE = re.compile(
    r"^(\S+ \S+) INFO backup: change backup backup-(\d{8}T\d{9}Z)-change\.(?:db|delta)\.zst: "
    r"\d+ bytes, \d+ rows, ([\d.]+) s, stored in (.*)$",
    re.M,
)


def recovery_point(bench: Bench, database_file: Path, seconds: float, label: str) -> dict:
    """A steady write load (a message every half second) for `seconds`; then a SIGKILL."""
    bench.new_deployment()
    a = bench.bot(f"rpo-a-{label}", database_file)
    serving(a)
    cpu_before, first_user = _cpu_seconds(a.process.pid), bench.next_user
    started, first_write, answers = time.monotonic(), time.time(), []
    while time.monotonic() - started < seconds:
        answers.append(bench.user_writes())
        time.sleep(max(0.0, 0.5 - (time.monotonic() - answers[-1])))
    elapsed = time.monotonic() - started
    cpu = _cpu_seconds(a.process.pid) - cpu_before
    killed_at, killed_wall = time.monotonic(), time.time()
    a.kill()
    backups = [
        (
            datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(),
            datetime.strptime(m.group(2), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp(),
            float(m.group(3)),
            m.group(4),
        )
        for m in CHANGE_LINE.finditer(a.log())
    ]
    offsite = [b for b in backups if "telegram" in b[3]]
    # What a SIGKILL would lose at a moment: the writes since the newest copy off the machine
    # began its snapshot. It is largest just before each backup lands, and at the end.
    worst, newest_snapshot = 0.0, first_write
    for landed, snapshot, _, _ in offsite:
        worst = max(worst, landed - newest_snapshot)
        newest_snapshot = max(newest_snapshot, snapshot)
    worst = max(worst, killed_wall - newest_snapshot)
    b = bench.bot(f"rpo-b-{label}", None, HANDOVER_WAIT_SECONDS="1")
    serving(b)
    b.stop(timeout=300)
    with closing(sqlite3.connect(b.db_path)) as conn:
        present = conn.execute(
            "SELECT count(*) FROM users WHERE user_id BETWEEN ? AND 99999", (first_user,)
        ).fetchone()[0]
    lost = answers[present:]
    return {
        "worst_rpo": worst,
        "backups": len(offsite),
        "backup_seconds": statistics.median([b[2] for b in offsite]) if offsite else 0.0,
        "backup_share": sum(b[2] for b in backups) / elapsed,
        "cpu_share": cpu / elapsed,
        "lost_at_kill": len(lost),
        "kill_loss_window": killed_at - lost[0] if lost else 0.0,
    }


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- a tenth of a core -------------------------------------------------------------------------


def tenth(bench: Bench, database_file: Path) -> dict:
    results = {}
    bench.new_deployment()
    with Tenth("a") as cgroup_a, Tenth("b") as cgroup_b:
        a = bench.bot("tenth-a", database_file, cgroup_a)
        serving(a)
        bench.user_writes(timeout=120)
        seen = len(bench.fake.messages(ADMIN_ID))
        started = time.monotonic()
        bench.fake.send_text(ADMIN_ID, "/backup")
        reply = bench.fake.wait_for_message(ADMIN_ID, "✅ Backup backup-", after=seen, timeout=300)
        results["on-demand backup"] = time.monotonic() - started
        results["backup size"] = reply["text"].split(": ", 1)[1].split(" in ", 1)[0]
        _code, results["SIGTERM to exit"] = a.stop(timeout=300)

        started = time.monotonic()
        b = bench.bot("tenth-b", None, cgroup_b)
        serving(b)
        results["empty disk to serving (restore)"] = time.monotonic() - started
        b.stop(timeout=300)
        results["handover (both at a tenth)"] = handover(
            bench, database_file, (cgroup_a, cgroup_b), label="-tenth"
        )["seconds"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="handover,rpo,tenth")
    parser.add_argument("--rpo-seconds", type=float, default=240)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    parts = args.only.split(",")
    work = Path(tempfile.mkdtemp(prefix="handover-bench-"))
    print(f"work folder: {work}\n")
    bench = Bench(work)
    try:
        if "handover" in parts:
            build(work / "10mb.db", 10)
            runs = [handover(bench, work / "10mb.db", label=f"-{n}")["seconds"] for n in range(3)]
            imm = [immediate(bench, work / "10mb.db")["seconds"]]
            print("| hand-over, 10 MB database | seconds (median of 3) | runs |\n|---|---|---|")
            print(
                f"| rolling: from the old one's 409 to the new one answering with its last write | "
                f"{statistics.median(runs):.2f} | {', '.join(f'{r:.2f}' for r in runs)} |"
            )
            print(f"| immediate: from the old one's SIGTERM, the new one starting then | {imm[0]:.2f} | |\n")
        if "rpo" in parts:
            print(
                "| recovery point, defaults | worst RPO | on-change backups | one takes | "
                "their share of time | bot's CPU share | a SIGKILL at the end lost |\n"
                "|---|---|---|---|---|---|---|"
            )
            for megabytes in (1, 100):
                build(work / f"{megabytes}mb.db", megabytes)
                r = recovery_point(bench, work / f"{megabytes}mb.db", args.rpo_seconds, f"{megabytes}mb")
                print(
                    f"| {megabytes} MB database, a write every 0.5 s for {args.rpo_seconds:.0f} s | "
                    f"{r['worst_rpo']:.1f} s | {r['backups']} | {r['backup_seconds']:.2f} s | "
                    f"{100 * r['backup_share']:.1f} % | {100 * r['cpu_share']:.1f} % | "
                    f"{r['lost_at_kill']} writes, the last {r['kill_loss_window']:.1f} s |"
                )
            print()
        if "tenth" in parts:
            build(work / "77mb.db", 77)
            r = tenth(bench, work / "77mb.db")
            print(
                f"| a tenth of a core, 77 MB database ({r.pop('backup size')} backup) | seconds |\n|---|---|"
            )
            for what, seconds in r.items():
                print(f"| {what} | {seconds:.1f} |")
    finally:
        bench.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
