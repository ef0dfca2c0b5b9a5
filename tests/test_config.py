import math
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import tasks
from clock import utc_now
from config import MIN_PASSPHRASE, ConfigError, load_settings
from database import parse_timestamp
from i18n import Reader
from tasks import cleanup_tracking

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"
PROJECT = Path(__file__).resolve().parent.parent


def settings(**env):
    return load_settings({"BOT_TOKEN": TOKEN, **env})


def test_defaults_follow_the_design():
    s = settings(ADMIN_IDS="11, 22")
    assert s.admin_ids == (11, 22)
    assert s.db_path == "/tmp/bot_database.db"
    assert s.backup_dir == "/tmp/backups"
    assert (s.backup_keep, s.backup_interval_hours) == (10, 6.0)
    assert s.backup_chat_id == 11  # the first admin
    assert s.telegram_api_url == "https://api.telegram.org"
    assert (s.flood_max_messages, s.flood_window_seconds, s.flood_block_minutes) == (20, 60, 10)
    assert s.tracking_retention_hours == 24.0
    assert s.port is None and s.log_level == "INFO"
    assert s.default_language == "en" and s.time_zone.utcoffset(None) == timedelta(0)


def test_values_are_read_and_normalised():
    s = settings(
        DB_PATH="/data/bot.db",
        BACKUP_INTERVAL_HOURS="0.5",
        BACKUP_CHAT_ID="off",
        TELEGRAM_API_URL="http://127.0.0.1:8081/",
        PORT="8000",
        LOG_LEVEL="debug",
    )
    assert s.backup_dir == "/data/backups"
    assert s.backup_interval_hours == 0.5
    assert s.backup_chat_id is None
    assert s.telegram_api_url == "http://127.0.0.1:8081"
    assert (s.port, s.log_level) == (8000, "DEBUG")
    s = settings(DEFAULT_LANGUAGE="FA", BOT_TIMEZONE="Asia/Tehran")
    assert s.default_language == "fa" and s.time_zone.key == "Asia/Tehran"


def test_missing_token_names_the_variable():
    with pytest.raises(ConfigError, match="BOT_TOKEN is required"):
        load_settings({})


def test_the_backup_command_line_needs_no_token():
    assert load_settings({}, require_token=False).bot_token == ""


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("ADMIN_IDS", "12,abc", "ADMIN_IDS must be Telegram user ids"),
        ("BACKUP_KEEP", "0", "BACKUP_KEEP must be a whole number from 1 to 1000"),
        ("BACKUP_INTERVAL_HOURS", "often", "BACKUP_INTERVAL_HOURS must be a number"),
        ("BACKUP_INTERVAL_HOURS", "nan", "BACKUP_INTERVAL_HOURS must be a number"),
        ("BACKUP_CHAT_ID", "@mychannel", "BACKUP_CHAT_ID must be 'off' or a Telegram chat id"),
        ("TELEGRAM_API_URL", "api.telegram.org", "TELEGRAM_API_URL must be an http"),
        ("PORT", "80000", "PORT must be a TCP port"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("FLOOD_MAX_MESSAGES", "-1", "FLOOD_MAX_MESSAGES must be a whole number"),
        ("DEFAULT_LANGUAGE", "de", "DEFAULT_LANGUAGE must be one of en, fa"),
        ("BOT_TIMEZONE", "Tehran", "BOT_TIMEZONE must be a time zone name like Asia/Tehran"),
        ("BOT_TIMEZONE", "Asia", "BOT_TIMEZONE must be a time zone name"),  # a folder of zones
        ("BOT_TIMEZONE", "../../etc/passwd", "BOT_TIMEZONE must be a time zone name"),
        ("BOT_TIMEZONE", "zone.tab", "BOT_TIMEZONE must be a time zone name"),  # a file, not a zone
    ],
)
def test_malformed_values_name_the_variable(name, value, expected):
    with pytest.raises(ConfigError, match=expected):
        settings(**{name: value})


def test_a_malformed_token_is_refused_without_echoing_it():
    secret = "not-a-token-but-secret-anyway"
    with pytest.raises(ConfigError) as caught:
        load_settings({"BOT_TOKEN": secret})
    assert "BOT_TOKEN is malformed" in str(caught.value)
    assert secret not in str(caught.value)


def test_secrets_stay_out_of_repr():
    s = settings(BACKUP_PASSPHRASE="correct horse")
    assert TOKEN not in repr(s) and "correct horse" not in repr(s)


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text(f"BOT_TOKEN={TOKEN}\nADMIN_IDS=5\nBACKUP_KEEP=3\n")
    monkeypatch.setenv("BACKUP_KEEP", "7")
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.delenv("ADMIN_IDS", raising=False)
    s = load_settings(dotenv_path=env_file)
    assert (s.bot_token, s.admin_ids, s.backup_keep) == (TOKEN, (5,), 7)


def test_webhook_mode_needs_a_port_and_an_address_telegram_will_post_to():
    with pytest.raises(ConfigError, match="WEBHOOK_URL needs PORT"):
        settings(WEBHOOK_URL="https://bot-org.koyeb.app/telegram")
    for url, said in (
        ("http://bot-org.koyeb.app/telegram", "http:// with no port"),
        ("https://bot-org.koyeb.app:8000/telegram", "port 8000"),
        ("https://bot-org.koyeb.app:99999/telegram", "a port that is not a number"),
    ):
        with pytest.raises(ConfigError, match="https:// URL on port 443, 80, 88 or 8443") as error:
            settings(WEBHOOK_URL=url, PORT="8000")
        assert said in str(error.value) and "koyeb" not in str(error.value)  # the address is not echoed
    s = settings(WEBHOOK_URL="https://bot-org.koyeb.app:8443/telegram", PORT="8000")
    assert (s.webhook_url, s.port) == ("https://bot-org.koyeb.app:8443/telegram", 8000)
    # A server of one's own (a test's stand-in) is taken at its word: plain http, any port.
    local = settings(
        WEBHOOK_URL="http://127.0.0.1:9000/hook", PORT="9000", TELEGRAM_API_URL="http://127.0.0.1:8081"
    )
    assert local.webhook_url == "http://127.0.0.1:9000/hook"
    assert settings().webhook_url is None and settings().webhook_secret == ""


def test_the_webhook_secret_is_the_same_for_every_instance_and_never_shown():
    url = {"WEBHOOK_URL": "https://bot-org.koyeb.app/telegram", "PORT": "8000"}
    derived = settings(**url).webhook_secret
    assert derived == settings(**url).webhook_secret  # another instance knows it without being told
    assert derived != load_settings({"BOT_TOKEN": "654321:ZZbbCCddEEffGGhhIIjjKKll", **url}).webhook_secret
    assert TOKEN.split(":")[1] not in derived and len(derived) <= 256
    assert derived in settings(**url).secrets and derived not in repr(settings(**url))
    assert settings(WEBHOOK_SECRET="mine_1-2", **url).webhook_secret == "mine_1-2"
    for bad in ("has space", "x" * 257, "ümlaut", "semi;colon"):
        with pytest.raises(ConfigError, match="WEBHOOK_SECRET must be") as error:
            settings(WEBHOOK_SECRET=bad, **url)
        assert bad not in str(error.value)


# --- every setting has a range the code can honour ---------------------------------------------

# (setting, the lowest and the highest value accepted, a value past each end). The bounds a
# person understands: waits of at most an hour, an interval of at most a year, 1000 backups.
RANGES = [
    ("BACKUP_KEEP", "1", "1000", "0", "1001"),
    ("BACKUP_INTERVAL_HOURS", "0.001", "8760", "0.0009", "8760.5"),
    ("BACKUP_AFTER_CHANGE_SECONDS", "1", "86400", "0.5", "86401"),
    ("HANDOVER_WAIT_SECONDS", "0", "3600", "-1", "3601"),
    ("STARTUP_RESTORE_WAIT_SECONDS", "0", "3600", "-0.1", "1e9"),
    ("FLOOD_MAX_MESSAGES", "1", "1000", "0", "1001"),
    ("FLOOD_WINDOW_SECONDS", "1", "3600", "0", "3601"),
    ("FLOOD_BLOCK_MINUTES", "1", "527040", "0", "527041"),
    ("TRACKING_RETENTION_HOURS", "1", "8760", "0.5", "1e12"),
    ("PORT", "1", "65535", "0", "65536"),
    ("ADMIN_IDS", "1", str(2**52 - 1), "-5", str(2**52)),
    ("BACKUP_CHAT_ID", "-1997852516351", str(2**52 - 1), "-1997852516352", str(2**52)),
]


@pytest.mark.parametrize("name, lowest, highest, below, above", RANGES)
def test_each_setting_takes_its_range_and_refuses_past_it_saying_the_range(
    name, lowest, highest, below, above
):
    for accepted in (lowest, highest):
        settings(**{name: accepted})
    for refused in (below, above):
        with pytest.raises(ConfigError) as error:
            settings(**{name: refused})
        message = str(error.value)
        assert message.startswith(f"{name} must be") and "\n" not in message
        assert highest.lstrip("-")[:4] in message or "a year" in message or "an hour" in message, message


def test_chat_ids_are_telegrams_a_users_a_groups_or_a_supergroups():
    for chat in ("1000", "-100777", "-999999999999", "-1001234567890", "-1000000000001"):
        assert settings(BACKUP_CHAT_ID=chat).backup_chat_id == int(chat)
    for chat in ("0", "-1000000000000", "-2000000000000", "-9223372036854775809", "1e5", "+5", "- 5"):
        with pytest.raises(ConfigError, match="BACKUP_CHAT_ID must be 'off' or a Telegram chat id"):
            settings(BACKUP_CHAT_ID=chat)
    for ids in ("0", "12,-5", "9223372036854775808", "1_000", "²", "12,,x"):
        with pytest.raises(ConfigError, match="ADMIN_IDS must be Telegram user ids"):
            settings(ADMIN_IDS=ids)
    assert settings(BACKUP_AFTER_CHANGE_SECONDS="0").backup_after_change_seconds == 0  # off
    assert settings(BACKUP_AFTER_CHANGE_SECONDS="-0").backup_after_change_seconds == 0


def test_a_value_is_quoted_on_one_line_and_not_a_screenful():
    with pytest.raises(ConfigError) as error:
        settings(BACKUP_KEEP="9" * 5000 + "\nnext line")
    assert "\n" not in str(error.value) and len(str(error.value)) < 200
    for port in ("²", "٣", "80x"):
        with pytest.raises(ConfigError, match="PORT must be a TCP port"):
            settings(PORT=port)
    for url in ("http://127.0.0.1:99999", "http://127.0.0.1:0/", "http://[::1"):
        with pytest.raises(ConfigError, match="TELEGRAM_API_URL must be an http"):
            settings(TELEGRAM_API_URL=url)
    with pytest.raises(ConfigError, match="WEBHOOK_URL must be an http"):  # a ValueError before
        settings(WEBHOOK_URL="https://[::1/telegram", PORT="8000")


NAMES = [name for name, *_ in RANGES]
# The settings that are words: anything is refused in one line naming them, or accepted.
WORDS = [
    "BOT_TOKEN",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "TELEGRAM_API_URL",
    "S3_ENDPOINT_URL",
    "TELEGRAM_FILE_LIMITS",
    "BACKUP_READBACK",
    "LOG_LEVEL",
    "DEFAULT_LANGUAGE",
    "BOT_TIMEZONE",
]
URLISH = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "ftp://", ""]),
    st.sampled_from(["127.0.0.1", "[::1]", "[::1", "a.koyeb.app", "user:pw@h", ""]) | st.text(max_size=8),
    st.sampled_from(["", ":8443", ":0", ":99999", ":x", ":-1", ":8443:1"]),
    st.sampled_from(["", "/", "/telegram", "/a b"]) | st.text(max_size=8),
)
VALUES = st.one_of(
    st.integers().map(str),
    st.floats().map(str),
    st.floats().map(repr),
    st.sampled_from(
        ["inf", "-inf", "nan", "1e308", "1e-320", "-0", "+5", "1_000", "²", "٣", "0x10", " 7 ", "1e5", "-1e9"]
    ),
    st.lists(st.integers(min_value=-(2**64), max_value=2**64), min_size=1, max_size=4).map(
        lambda ids: ",".join(map(str, ids))
    ),
    st.text(max_size=30),
)
WORKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@hypothesis_settings(max_examples=400, deadline=None)
@given(env=st.dictionaries(st.sampled_from(WORDS + NAMES), URLISH | VALUES, max_size=4))
def test_any_value_of_any_setting_is_accepted_or_refused_in_one_line_naming_it(env):
    try:
        settings(**{"PORT": "8000", **env})
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and len(message) < 400
        assert any(message.startswith(f"{name} ") for name in [*env, "WEBHOOK_URL"]), message


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=WORKS)
@given(env=st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=4))
def test_any_value_is_refused_in_one_line_or_works_where_the_code_uses_it(db, env):
    try:
        s = settings(**env)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and len(message) < 400
        assert any(message.startswith(f"{name} ") for name in env), message
        return
    now = utc_now()
    # The dates the bot computes from them, in Python and in SQLite.
    window_start = now - timedelta(seconds=s.flood_window_seconds)
    until = now + timedelta(minutes=s.flood_block_minutes)
    for user_id in (*s.admin_ids, 4242):
        db.track_message(user_id, "u", "U", s.backup_chat_id or user_id, "message", now, window_start)
    db.block_user(4242, until, "flood", notified=False, now=now)
    assert parse_timestamp(db.user(4242)["blocked_until"]) == until.replace(microsecond=0)
    cleanup_tracking(db, s.tracking_retention_hours, lambda: now)
    # The jobs and their timers, as the 🩺 Jobs screen shows them.
    runner = tasks.build_runner(db, s, notify=lambda *a: None, clock=lambda: now, backup=lambda reason: None)
    for job in runner.statuses():
        assert job.next_run > now - timedelta(minutes=1)
        assert Reader("fa").interval(job.interval_seconds)
    assert ("backup_after_change" in {j.name for j in runner.statuses()}) == (
        s.backup_after_change_seconds > 0
    )
    # The waits: within what threading and the monotonic clock take.
    for wait in (s.handover_wait_seconds, s.startup_restore_wait_seconds, s.backup_after_change_seconds):
        assert 0 <= wait <= threading.TIMEOUT_MAX and math.isfinite(time.monotonic() + wait)
    assert 1 <= s.backup_keep <= 1000 and (s.port is None or 1 <= s.port <= 65535)


@pytest.mark.parametrize(
    "name, value",
    [
        ("BACKUP_KEEP", "100000"),
        ("FLOOD_BLOCK_MINUTES", str(10**12)),  # accepted before: the first flooder's block overflowed
        ("BACKUP_INTERVAL_HOURS", "1e300"),  # accepted before: schedule's timer overflowed at start
        ("PORT", "²"),  # a digit to isdigit(), not to int(): a traceback before
        ("ADMIN_IDS", str(2**63)),  # past SQLite's integers
        (".env", b"BOT_TOKEN=\xff\xfe\n"),  # a .env that is not text: a traceback before
        ("BACKUP_PASSPHRASE", "hunter2"),  # too short to be a secret
    ],
)
def test_main_says_what_is_wrong_in_one_line_and_exits_2(tmp_path, name, value):
    env = {"PATH": "/usr/bin:/bin", "BOT_TOKEN": TOKEN}
    if name == ".env":
        (tmp_path / ".env").write_bytes(value)
    else:
        env[name] = value
    result = subprocess.run(
        [sys.executable, str(PROJECT / "main.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    said = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(said) == 1, result.stderr
    assert said[0].startswith(f"configuration error: {name}" if name != ".env" else "configuration error: ")
    assert ".env" in said[0] or name in said[0]


@hypothesis_settings(max_examples=50, deadline=None)
@given(passphrase=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Z", "Cc")), max_size=40))
def test_a_passphrase_is_taken_from_twelve_characters_and_never_echoed(passphrase):
    env = {"BOT_TOKEN": TOKEN, "BACKUP_PASSPHRASE": passphrase}
    if len(passphrase) >= MIN_PASSPHRASE or not passphrase:
        assert load_settings(env).backup_passphrase == (passphrase or None)
    else:
        with pytest.raises(ConfigError) as refused:
            load_settings(env)
        assert str(refused.value) == (  # one line, its length told, never the passphrase
            f"BACKUP_PASSPHRASE is too short to be a secret: {len(passphrase)} characters, at least "
            "12 are needed (a few words: see docs/configuration.md)"
        )
        # the command line still opens backups sealed with it
        assert load_settings(env, short_passphrase=True).backup_passphrase == passphrase
