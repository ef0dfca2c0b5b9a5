from datetime import timedelta

import pytest

from config import ConfigError, load_settings

TOKEN = "123456:AAbbCCddEEffGGhhIIjjKKll"


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
        ("BACKUP_KEEP", "0", "BACKUP_KEEP must be a whole number >= 1"),
        ("BACKUP_INTERVAL_HOURS", "often", "BACKUP_INTERVAL_HOURS must be a number"),
        ("BACKUP_INTERVAL_HOURS", "nan", "BACKUP_INTERVAL_HOURS must be a number"),
        ("BACKUP_CHAT_ID", "@mychannel", "BACKUP_CHAT_ID must be a chat id"),
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
    for url, given in (
        ("http://bot-org.koyeb.app/telegram", "http:// with no port"),
        ("https://bot-org.koyeb.app:8000/telegram", "port 8000"),
        ("https://bot-org.koyeb.app:99999/telegram", "a port that is not a number"),
    ):
        with pytest.raises(ConfigError, match="https:// URL on port 443, 80, 88 or 8443") as error:
            settings(WEBHOOK_URL=url, PORT="8000")
        assert given in str(error.value) and "koyeb" not in str(error.value)  # the address is not echoed
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
