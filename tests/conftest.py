import subprocess
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from bot_process import BotProcess
from fake_bot_api import FakeBotAPI
from helpers import INTERNAL_REPR

import database

pytest_plugins = ["seaweed"]  # s3_server and s3_env: a real S3 server (SeaweedFS) on loopback

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def sql(db, query, params=()):
    """Rows of a query on a Database, for tests that look at data the bot has no verb for."""
    with db.transaction() as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture
def db(tmp_path):
    """A migrated database in a real file."""
    opened = database.open_database(str(tmp_path / "bot.db"))
    opened.migrate()
    yield opened
    opened.close()


@contextmanager
def tmpfs(folder, options):
    """A real tmpfs mounted on `folder` (skips the test where mounting is not allowed)."""
    folder.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder on a read-only mount: root ignores file permissions, so chmod is no test."""
    with tmpfs(tmp_path / "read-only", "ro,size=1m") as folder:
        yield folder


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KB file system: a real full disk, not a simulated one."""
    with tmpfs(tmp_path / "small", "size=512k") as folder:
        yield folder


@pytest.fixture
def quick_pace(monkeypatch):
    """Telegram's guidance for one chat at a hundredth of its time, in this process, for tests
    of what the bot does in the chat rather than how fast (tests/test_flood.py and
    test_telegram_rules.py hold the pace at full length): at full length a few rounds of
    backups in a group wait minutes."""
    import pacer

    def faster(windows):
        return tuple((count, seconds / 100) for count, seconds in windows)

    monkeypatch.setattr(pacer, "PRIVATE_PACE", faster(pacer.PRIVATE_PACE))
    monkeypatch.setattr(pacer, "GROUP_PACE", faster(pacer.GROUP_PACE))
    monkeypatch.setattr(pacer, "BULK_GROUP_PACE", faster(pacer.BULK_GROUP_PACE))


@pytest.fixture
def fake():
    """The local Bot API stand-in."""
    with FakeBotAPI() as api:
        yield api


@pytest.fixture
def run_bot(request, tmp_path, fake):
    """Starts the real `python main.py` against the stand-in; every one is killed at the end,
    and when the test failed, the end of each one's log goes into the report."""
    started = request.node.bots = []

    def run(api_url=None, folder=None, **env):
        """folder: a disk of its own for this instance (tmp_path/folder), as on a host where
        each instance starts on an empty disk."""
        workdir = tmp_path / folder if folder else tmp_path
        workdir.mkdir(exist_ok=True)
        bot = BotProcess(workdir, api_url or fake.url, fake.token, **env).start()
        started.append(bot)
        return bot

    yield run
    for bot in started:
        bot.kill()
    for bot in started:  # whatever the test: no line of ours shows an object's insides
        shown = [line for line in own_log_lines(bot.log()) if INTERNAL_REPR.search(line)]
        assert not shown, "log lines with internal objects:\n" + "\n".join(shown)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines of each bot's log: what it did."""
    report = yield
    if report.when == "call" and report.failed:
        for bot in getattr(item, "bots", ()):
            lines = [line for line in bot.log().splitlines() if " DEBUG " not in line]
            tail = "\n".join(lines[-60:])
            report.sections.append((f"log of the bot in {bot.workdir.name}", tail))
    return report


LIBRARY_LOGGERS = ("TeleBot", "schedule", "urllib3", "botocore", "boto3", "s3transfer", "PIL")


def own_log_lines(log):
    """The bot's own log lines ("date time LEVEL logger: message"), not its libraries'."""
    for line in log.splitlines():
        parts = line.split(" ", 4)
        if len(parts) == 5 and parts[3].endswith(":") and not parts[3].startswith(LIBRARY_LOGGERS):
            yield line
