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

# Telegram's ids. The Bot API promises that a user's or chat's id has at most 52 significant
# bits; TDLib (td/telegram/DialogId.cpp, ChatId.h, ChannelId.h) puts a basic group at -1 to
# -999999999999 and a supergroup or channel at -10^12 minus its channel id, which is below
# 10^12 - 2^31.
MAX_USER_ID = 2**52 - 1
MAX_GROUP_ID = 999_999_999_999  # a basic group's id is -1 .. -MAX_GROUP_ID
CHANNEL_IDS = (-(10**12 + 10**12 - 2**31 - 1), -(10**12 + 1))  # a supergroup's or channel's
HOUR, DAY, YEAR = 3600, 86400, 8760  # seconds, seconds, hours: the bounds of the settings
MAX_BLOCK_MINUTES = 366 * 24 * 60  # a block (FLOOD_BLOCK_MINUTES, /block's MINUTES): a leap year


# A passphrase guessed offline is tried at scrypt's cost (sealing.py: N = 2^15, about a tenth of
# a second a guess on one core), and a secret is redacted from every text it appears in: under
# 12 characters it is guessable, and matches inside ordinary words (docs/configuration.md).
MIN_PASSPHRASE = 12


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
    backup_upload_budget_gb: float = 20.0  # a month's uploads; past its pace on-change backups space out
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
    short_passphrase: bool = False,
) -> Settings:
    """Build Settings from `environ` (default: os.environ over ./.env; the environment wins).
    `short_passphrase`: take a BACKUP_PASSPHRASE under MIN_PASSPHRASE (the command line, so
    backups sealed with one can still be opened)."""
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
        backup_chat_id=reader.backup_chat_id(admin_ids),
        backup_passphrase=reader.passphrase(short_passphrase),
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
        default_language=reader.choice("DEFAULT_LANGUAGE", LANGUAGES),
        time_zone=reader.time_zone("BOT_TIMEZONE"),
        **_amounts(reader),
    )


def _amounts(reader: _Reader) -> dict:
    """The settings that are amounts, each within a range the code can honour: no date, timer,
    wait or SQLite integer that overflows, and no feature switched off by a value out of reach.
    The bounds are ones a person understands, and each error message says them."""
    return {
        "backup_keep": reader.integer("BACKUP_KEEP", 10, 1, 1000),
        "backup_interval_hours": reader.number("BACKUP_INTERVAL_HOURS", 6.0, 0.001, YEAR, "8760 (a year)"),
        "backup_after_change_seconds": reader.number(
            "BACKUP_AFTER_CHANGE_SECONDS", 60.0, 1, DAY, "86400 (a day)", off=True
        ),
        "backup_upload_budget_gb": reader.number(
            "BACKUP_UPLOAD_BUDGET_GB", 20.0, 0.01, 1_000_000, "1000000 (a petabyte)"
        ),
        "handover_wait_seconds": reader.number("HANDOVER_WAIT_SECONDS", 30.0, 0, HOUR, "3600 (an hour)"),
        "startup_restore_wait_seconds": reader.number(
            "STARTUP_RESTORE_WAIT_SECONDS", 120.0, 0, HOUR, "3600 (an hour)"
        ),
        "flood_max_messages": reader.integer("FLOOD_MAX_MESSAGES", 20, 1, 1000),
        "flood_window_seconds": reader.integer("FLOOD_WINDOW_SECONDS", 60, 1, HOUR, "3600 (an hour)"),
        "flood_block_minutes": reader.integer(
            "FLOOD_BLOCK_MINUTES", 10, 1, MAX_BLOCK_MINUTES, f"{MAX_BLOCK_MINUTES} (366 days)"
        ),
        # At least an hour: the cleanup runs hourly, and flood control counts the rows of its window.
        "tracking_retention_hours": reader.number("TRACKING_RETENTION_HOURS", 24.0, 1, YEAR, "8760 (a year)"),
    }


def _merged_environment(environ: Mapping[str, str] | None, dotenv_path: Path | None) -> dict[str, str]:
    if environ is not None:
        return dict(environ)
    path = dotenv_path or Path.cwd() / ".env"
    try:
        found = dotenv_values(path) if path.is_file() else {}
    except (OSError, UnicodeDecodeError) as error:  # unreadable, or not text
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ConfigError(f"{path} cannot be read ({reason}): fix or remove it") from None
    return {**{k: v for k, v in found.items() if v is not None}, **os.environ}


class _Reader:
    """Reads one variable at a time and raises ConfigError with the variable's name."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def passphrase(self, short_ok: bool) -> str | None:
        """BACKUP_PASSPHRASE: at least MIN_PASSPHRASE characters (docs/configuration.md says why)."""
        value = self.text("BACKUP_PASSPHRASE")
        if value is not None and len(value) < MIN_PASSPHRASE and not short_ok:
            raise ConfigError(
                f"BACKUP_PASSPHRASE is too short to be a secret: {len(value)} characters, at least "
                f"{MIN_PASSPHRASE} are needed (a few words: see docs/configuration.md)"
            )
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int, most: str = "") -> int:
        """A whole number from `minimum` to `maximum` (`most`: the maximum as a person reads it)."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise ConfigError(
                f"{name} must be a whole number from {minimum} to {most or maximum}, got {_shown(raw)}"
            )
        return value

    def number(
        self, name: str, default: float, minimum: float, maximum: float, most: str, off: bool = False
    ) -> float:
        """A number from `minimum` to `maximum`, decimals allowed; with `off`, 0 too (what turns
        the feature off)."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = None
        if value is None or not (minimum <= value <= maximum or (off and value == 0)):
            allowed = (
                f"0 (off) or a number from {minimum:g} to {most}"
                if off
                else f"a number from {minimum:g} to {most}"
            )
            raise ConfigError(f"{name} must be {allowed}, decimals allowed, got {_shown(raw)}")
        return value + 0.0  # -0.0 is 0

    def switch(self, name: str, default: bool) -> bool:
        raw = (self.text(name) or "").lower()
        if not raw:
            return default
        if raw in ("1", "on", "yes", "true"):
            return True
        if raw in ("0", "off", "no", "false"):
            return False
        raise ConfigError(f"{name} must be on or off, got {_shown(raw)}")

    def id_list(self, name: str) -> tuple[int, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        parts = [part for part in raw.replace(" ", "").split(",") if part]
        if not all(_whole(part) and 1 <= int(part) <= MAX_USER_ID for part in parts):
            raise ConfigError(
                f"{name} must be Telegram user ids (whole numbers from 1 to {MAX_USER_ID}) separated by "
                f"commas, like 12345,67890, got {_shown(raw)}"
            )
        return tuple(int(part) for part in parts)

    def backup_chat_id(self, admin_ids: tuple[int, ...]) -> int | None:
        raw = self.text("BACKUP_CHAT_ID")
        if raw is None:
            return admin_ids[0] if admin_ids else None
        if raw.lower() == "off":
            return None
        value = int(raw) if _whole(raw, signed=True) else None
        if value is None or not (
            1 <= value <= MAX_USER_ID
            or -MAX_GROUP_ID <= value <= -1
            or CHANNEL_IDS[0] <= value <= CHANNEL_IDS[1]
        ):
            raise ConfigError(
                "BACKUP_CHAT_ID must be 'off' or a Telegram chat id: a user's (1 to "
                f"{MAX_USER_ID}), a group's (-1 to -{MAX_GROUP_ID}), or a supergroup's or channel's "
                f"({CHANNEL_IDS[1]} to {CHANNEL_IDS[0]}, like -1001234567890), got {_shown(raw)}"
            )
        return value

    def url(self, name: str, default: str | None, check_port: bool = True) -> str | None:
        raw = self.text(name)
        if raw is None:
            return default
        if not re.match(r"^https?://[^/\s]+", raw):
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {_shown(raw)}")
        try:
            parts = urlsplit(raw)
        except ValueError:  # a broken [IPv6] address: the address is not echoed (it may hold a password)
            raise ConfigError(f"{name} must be an http:// or https:// URL with a valid host") from None
        try:
            port = parts.port
        except ValueError:  # not a number, or past 65535
            port = 0
        if check_port and port == 0:
            raise ConfigError(f"{name} must be an http:// or https:// URL whose port is from 1 to 65535")
        return raw.rstrip("/")

    def file_limits(self, api_url: str) -> bool:
        """TELEGRAM_FILE_LIMITS: 'telegram' (a bot uploads 50 MB, downloads 20 MB: backups travel
        in parts) or 'none' (a self-hosted Bot API server in local mode). Telegram's, whatever
        TELEGRAM_API_URL says, unless told otherwise: a proxy in front of Telegram, or a server
        of one's own without --local, keeps them."""
        raw = (self.text("TELEGRAM_FILE_LIMITS") or "").lower()
        if not raw:
            return True
        if raw not in ("telegram", "none"):
            raise ConfigError(f"TELEGRAM_FILE_LIMITS must be telegram or none, got {_shown(raw)}")
        return raw == "telegram"

    def webhook_url(self, api_url: str) -> str | None:
        """WEBHOOK_URL: where Telegram POSTs the updates. Telegram's own server sends them only to
        https on ports 443, 80, 88 or 8443; another server (a test's stand-in) is taken at its word."""
        url = self.url("WEBHOOK_URL", None, check_port=api_url != DEFAULT_API_URL)
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
        if not _whole(raw) or not 1 <= int(raw) <= 65535:  # "²".isdigit(), and int() refuses it
            raise ConfigError(f"{name} must be a TCP port from 1 to 65535, got {_shown(raw)}")
        return int(raw)

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        raw = (self.text(name) or allowed[0]).lower()
        if raw not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {_shown(raw)}")
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
        raise ConfigError(f"{name} must be a time zone name like Asia/Tehran or UTC, got {_shown(raw)}")

    def log_level(self, name: str) -> str:
        raw = (self.text(name) or "INFO").upper()
        if not isinstance(logging.getLevelName(raw), int):
            raise ConfigError(
                f"{name} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {_shown(raw)}"
            )
        return raw


def _whole(raw: str, signed: bool = False) -> bool:
    """ASCII digits (after a minus sign when `signed`), at most 20 of them: what int() takes
    without surprises (no "²", no "1_000", no 4300-digit limit)."""
    digits = raw[1:] if signed and raw.startswith("-") else raw
    return digits.isascii() and digits.isdigit() and len(digits) <= 20


def _shown(raw: str) -> str:
    """A value as an error quotes it: on one line, and not a screenful."""
    return repr(raw) if len(raw) <= 40 else f"{raw[:40]!r}… ({len(raw)} characters)"
