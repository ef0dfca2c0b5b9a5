"""Settings, read once from the environment (and from a .env file when present).

Every value is checked here, so the rest of the bot can trust it. A missing or malformed
value raises ConfigError naming the variable and what it expects; main.py prints that one
line and exits with status 2. Secret values are never echoed, not even in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from dotenv import dotenv_values

DEFAULT_DB_PATH = "/tmp/bot_database.db"
DEFAULT_API_URL = "https://api.telegram.org"
TOKEN_PATTERN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}\Z")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what it expects."""


LANGUAGES = ("en", "fa")  # what people may read the bot in (i18n.py; locales/)


@dataclass(frozen=True)
class Settings:
    bot_token: str = field(repr=False)
    admin_ids: tuple[int, ...] = ()
    db_path: str = DEFAULT_DB_PATH
    backup_dir: str = ""
    backup_keep: int = 10
    backup_interval_hours: float = 6.0
    backup_after_change_seconds: float = 60.0  # 0: no on-change backups
    handover_wait_seconds: float = 30.0
    startup_restore_wait_seconds: float = 120.0
    backup_chat_id: int | None = None  # None: the Telegram destination is off
    backup_passphrase: str | None = field(default=None, repr=False)
    backup_read_back: bool = True  # fetch every off-site copy back and verify it
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    # boto3 reads the AWS credentials itself; the secret ones are kept here only to be redacted
    s3_secret_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    telegram_api_url: str = DEFAULT_API_URL
    telegram_file_limits: bool = True  # the server keeps Telegram's file limits: backups in parts
    port: int | None = None
    webhook_url: str | None = None  # set: webhook mode, updates POSTed by Telegram to it
    webhook_secret: str = field(default="", repr=False)  # the X-Telegram-Bot-Api-Secret-Token
    log_level: str = "INFO"
    flood_max_messages: int = 20
    flood_window_seconds: int = 60
    flood_block_minutes: int = 10
    tracking_retention_hours: float = 24.0
    default_language: str = "en"  # for whoever chose none and whose Telegram language is neither
    time_zone: tzinfo = UTC  # times people read are in it (logs stay UTC)

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_ids

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log line, a message or an error text: every
        credential the bot can be given, passwords written into a URL included."""
        in_urls = [
            urlsplit(url).password
            for url in (self.telegram_api_url, self.s3_endpoint_url, self.webhook_url)
            if url
        ]
        return tuple(
            s
            for s in (
                self.bot_token,
                self.backup_passphrase,
                self.s3_secret_key,
                self.aws_session_token,
                self.webhook_secret,
                *in_urls,
            )
            if s
        )


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    require_token: bool = True,
    dotenv_path: Path | None = None,
) -> Settings:
    """Build Settings from `environ` (default: os.environ over ./.env; the environment wins)."""
    env = _merged_environment(environ, dotenv_path)
    reader = _Reader(env)
    token = reader.text("BOT_TOKEN")
    if token is None and require_token:
        raise ConfigError("BOT_TOKEN is required: the token from @BotFather, like 123456:ABC-DEF...")
    if token is not None and not TOKEN_PATTERN.match(token):
        raise ConfigError(
            "BOT_TOKEN is malformed: expected the token from @BotFather, "
            "digits, a colon, then letters (value not shown)"
        )
    admin_ids = reader.id_list("ADMIN_IDS")
    db_path = reader.text("DB_PATH") or DEFAULT_DB_PATH
    api_url = reader.url("TELEGRAM_API_URL", DEFAULT_API_URL)
    webhook_url, port = reader.webhook_url(api_url), reader.port("PORT")
    if webhook_url and port is None:
        raise ConfigError(
            "WEBHOOK_URL needs PORT: the port this bot listens on for Telegram's "
            "requests (on Koyeb, the port of the service, 8000 by default)"
        )
    return Settings(
        bot_token=token or "",
        admin_ids=admin_ids,
        db_path=db_path,
        backup_dir=reader.text("BACKUP_DIR") or str(Path(db_path).parent / "backups"),
        backup_keep=reader.integer("BACKUP_KEEP", 10, minimum=1),
        backup_interval_hours=reader.number("BACKUP_INTERVAL_HOURS", 6.0, minimum=0.001),
        backup_after_change_seconds=reader.number("BACKUP_AFTER_CHANGE_SECONDS", 60.0, minimum=0),
        handover_wait_seconds=reader.number("HANDOVER_WAIT_SECONDS", 30.0, minimum=0),
        startup_restore_wait_seconds=reader.number("STARTUP_RESTORE_WAIT_SECONDS", 120.0, minimum=0),
        backup_chat_id=reader.backup_chat_id(admin_ids),
        backup_passphrase=reader.text("BACKUP_PASSPHRASE"),
        backup_read_back=reader.switch("BACKUP_READBACK", True),
        s3_bucket=reader.text("S3_BUCKET"),
        s3_prefix=reader.text("S3_PREFIX") or "",
        s3_endpoint_url=reader.url("S3_ENDPOINT_URL", None),
        s3_secret_key=reader.text("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=reader.text("AWS_SESSION_TOKEN"),
        telegram_api_url=api_url,
        telegram_file_limits=reader.file_limits(api_url),
        port=port,
        webhook_url=webhook_url,
        webhook_secret=reader.webhook_secret(token) if webhook_url else "",
        log_level=reader.log_level("LOG_LEVEL"),
        flood_max_messages=reader.integer("FLOOD_MAX_MESSAGES", 20, minimum=1),
        flood_window_seconds=reader.integer("FLOOD_WINDOW_SECONDS", 60, minimum=1),
        flood_block_minutes=reader.integer("FLOOD_BLOCK_MINUTES", 10, minimum=1),
        tracking_retention_hours=reader.number("TRACKING_RETENTION_HOURS", 24.0, minimum=0.01),
        default_language=reader.choice("DEFAULT_LANGUAGE", LANGUAGES),
        time_zone=reader.time_zone("BOT_TIMEZONE"),
    )


def _merged_environment(environ: Mapping[str, str] | None, dotenv_path: Path | None) -> dict[str, str]:
    if environ is not None:
        return dict(environ)
    path = dotenv_path or Path.cwd() / ".env"
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    return {**from_file, **os.environ}


class _Reader:
    """Reads one variable at a time and raises ConfigError with the variable's name."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number >= {minimum}, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be a whole number >= {minimum}, got {raw!r}")
        return value

    def number(self, name: str, default: float, *, minimum: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(
                f"{name} must be a number >= {minimum} (decimals allowed), got {raw!r}"
            ) from None
        if not value >= minimum or value == float("inf"):
            raise ConfigError(f"{name} must be a number >= {minimum} (decimals allowed), got {raw!r}")
        return value

    def switch(self, name: str, default: bool) -> bool:
        raw = (self.text(name) or "").lower()
        if not raw:
            return default
        if raw in ("1", "on", "yes", "true"):
            return True
        if raw in ("0", "off", "no", "false"):
            return False
        raise ConfigError(f"{name} must be on or off, got {raw!r}")

    def id_list(self, name: str) -> tuple[int, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        try:
            return tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
        except ValueError:
            raise ConfigError(
                f"{name} must be Telegram user ids separated by commas, like 12345,67890, got {raw!r}"
            ) from None

    def backup_chat_id(self, admin_ids: tuple[int, ...]) -> int | None:
        raw = self.text("BACKUP_CHAT_ID")
        if raw is None:
            return admin_ids[0] if admin_ids else None
        if raw.lower() == "off":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(
                f"BACKUP_CHAT_ID must be a chat id (like -1001234567890) or 'off', got {raw!r}"
            ) from None

    def url(self, name: str, default: str | None) -> str | None:
        raw = self.text(name)
        if raw is None:
            return default
        if not re.match(r"^https?://[^/\s]+", raw):
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {raw!r}")
        return raw.rstrip("/")

    def file_limits(self, api_url: str) -> bool:
        """TELEGRAM_FILE_LIMITS: 'telegram' (a bot uploads 50 MB, downloads 20 MB: backups travel
        in parts) or 'none' (a self-hosted Bot API server in local mode). The default follows
        TELEGRAM_API_URL: Telegram's own server has them, another one is taken not to."""
        raw = (self.text("TELEGRAM_FILE_LIMITS") or "").lower()
        if not raw:
            return api_url == DEFAULT_API_URL
        if raw not in ("telegram", "none"):
            raise ConfigError(f"TELEGRAM_FILE_LIMITS must be telegram or none, got {raw!r}")
        return raw == "telegram"

    def webhook_url(self, api_url: str) -> str | None:
        """WEBHOOK_URL: where Telegram POSTs the updates. Telegram's own server sends them only to
        https on ports 443, 80, 88 or 8443; another server (a test's stand-in) is taken at its word."""
        url = self.url("WEBHOOK_URL", None)
        if url is None or api_url != DEFAULT_API_URL:
            return url
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "https" or port not in (None, 443, 80, 88, 8443):
            given = (
                "no port" if port is None else "a port that is not a number" if port == -1 else f"port {port}"
            )
            raise ConfigError(
                "WEBHOOK_URL must be an https:// URL on port 443, 80, 88 or 8443 "
                f"(Telegram sends webhooks nowhere else), got {parts.scheme}:// with {given}"
            )
        return url

    def webhook_secret(self, token: str | None) -> str:
        """WEBHOOK_SECRET, or one derived from the token, so that every instance of a deployment
        knows it without storing it: what Telegram sends back in each request's header."""
        raw = self.text("WEBHOOK_SECRET")
        if raw is None:
            return hmac.new(
                (token or "").encode(), b"telegram-bot-webhook-secret", hashlib.sha256
            ).hexdigest()
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", raw):
            raise ConfigError("WEBHOOK_SECRET must be 1 to 256 letters, digits, _ or - (value not shown)")
        return raw

    def port(self, name: str) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise ConfigError(f"{name} must be a TCP port from 1 to 65535, got {raw!r}")
        return int(raw)

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        raw = (self.text(name) or allowed[0]).lower()
        if raw not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    def time_zone(self, name: str) -> tzinfo:
        raw = self.text(name)
        if raw is None or raw.upper() == "UTC":
            return UTC
        # Only a name from the tz database: ZoneInfo alone would open any file under its path.
        if raw in available_timezones():
            try:
                return ZoneInfo(raw)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                pass
        raise ConfigError(f"{name} must be a time zone name like Asia/Tehran or UTC, got {raw!r}")

    def log_level(self, name: str) -> str:
        raw = (self.text(name) or "INFO").upper()
        if not isinstance(logging.getLevelName(raw), int):
            raise ConfigError(f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {raw!r}")
        return raw
