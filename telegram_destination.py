"""Backups in a Telegram chat (BACKUP_CHAT_ID), through the Bot API; and the TeleBot itself.

Each backup is sent as a document without a notification sound and pinned. The Bot API cannot
list a chat's history, so the pinned message is how a bot starting on an empty disk finds the
newest backup (getChat(...).pinned_message, then getFile). Older messages stay in the chat as
history. A bot may upload up to 50 MB and download up to 20 MB from Telegram's own server; a
self-hosted Bot API server (TELEGRAM_API_URL) lifts both.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional, Sequence

import requests
import telebot

import human
from backup_format import NAME_PATTERN, BackupInfo, NotABackupError, checked_info
from config import DEFAULT_API_URL, Settings
from destinations import DestinationError, TooLarge
from files import CHUNK

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 50 * 1024 * 1024  # what a bot may send to Telegram's own server
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what a bot may download from it


def telegram_bot(settings: Settings, **options) -> telebot.TeleBot:
    """A TeleBot talking to TELEGRAM_API_URL (Telegram, a self-hosted Bot API server, a stand-in)."""
    telebot.apihelper.API_URL = settings.telegram_api_url + "/bot{0}/{1}"
    telebot.apihelper.FILE_URL = settings.telegram_api_url + "/file/bot{0}/{1}"
    return telebot.TeleBot(settings.bot_token, **options)


def official_api(settings: Settings) -> bool:
    """Telegram's own server, whose size limits are known up front."""
    return settings.telegram_api_url == DEFAULT_API_URL


class TelegramChat:
    """Backups sent as documents to one chat and pinned there; list() is the pinned backup."""

    name = "telegram"

    def __init__(self, bot: telebot.TeleBot, chat_id: int, official_api: bool = True):
        self.bot, self.chat_id = bot, chat_id
        self.official_api = official_api
        self._username: Optional[str] = None

    @property
    def bot_username(self) -> str:
        if self._username is None:
            with telegram_errors("ask Telegram about the bot for"):
                self._username = self.bot.get_me().username or "bot"
        return self._username

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        size = path.stat().st_size
        if self.official_api and size > UPLOAD_LIMIT:
            raise TooLarge(f"not sent to Telegram: the backup is {human.size(size)}, over the 50 MB "
                           "a bot may upload; use S3 for backups this large")
        visible_name = f"{self.bot_username}-{info.name}"
        with open(path, "rb") as document, telegram_errors("send the backup to"):
            message = self.bot.send_document(self.chat_id, document, caption=caption(info, size),
                                             visible_file_name=visible_name,
                                             disable_notification=True)
        with telegram_errors("pin the backup in"):
            self.bot.pin_chat_message(self.chat_id, message.message_id, disable_notification=True)
        return replace(info.at(self.name, message.document.file_id, size), name=visible_name)

    def list(self) -> list[BackupInfo]:
        with telegram_errors("read the pinned message of"):
            try:
                pinned = self.bot.get_chat(self.chat_id).pinned_message
            except telebot.apihelper.ApiTelegramException as error:
                if "chat not found" in (error.description or ""):
                    # The bot has never been in this chat (an admin who has not written to it
                    # yet): certainly no backup there. Any other error may hide one.
                    return []
                raise
        document = getattr(pinned, "document", None)
        if document is None:
            return []
        info = info_from_caption(document.file_name or "", pinned.caption or "")
        if info is None:
            log.warning("the pinned message in chat %s is not a backup of this bot", self.chat_id)
            return []
        return [replace(info.at(self.name, document.file_id, document.file_size or 0),
                        name=document.file_name)]

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        with telegram_errors("download the backup from"):
            try:
                file = self.bot.get_file(info.location)
            except telebot.apihelper.ApiTelegramException as error:
                if "too big" in (error.description or ""):
                    raise TooLarge(
                        f"{human.size(info.size)} is over the 20 MB a bot may download from "
                        "Telegram: restore it from S3 or through a self-hosted Bot API server") from None
                raise
            target = workdir / (info.name or "telegram-backup")
            url = telebot.apihelper.FILE_URL.format(self.bot.token, file.file_path)
            with requests.get(url, stream=True, timeout=(10, 120)) as response:
                response.raise_for_status()
                with open(target, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
        return target

    def delete(self, backups: Sequence[BackupInfo]) -> None:
        """Nothing: older backups stay in the chat as history, and only the pinned one is listed."""


@contextmanager
def telegram_errors(action: str) -> Iterator[None]:
    """Turn Bot API and network errors into one clear line. requests' messages spell out the
    URL, and the URL holds the bot token: only the kind of network error is kept."""
    try:
        yield
    except TooLarge:
        raise
    except telebot.apihelper.ApiTelegramException as error:
        raise DestinationError(f"Telegram would not {action} the chat: {error.description}") from None
    except telebot.apihelper.ApiHTTPException as error:
        raise DestinationError(f"Telegram answered HTTP {error.result.status_code} when asked to "
                               f"{action} the chat") from None
    except telebot.apihelper.ApiException:
        raise DestinationError(f"Telegram gave an answer that is not JSON when asked to {action} "
                               "the chat") from None
    except requests.RequestException as error:
        raise DestinationError(f"cannot reach Telegram to {action} the chat "
                               f"({type(error).__name__})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # pyTelegramBotAPI reads answers without checking them: JSON without 'ok', a result of
        # the wrong shape. Whatever it was, this is what the server said, not our data.
        log.debug("unreadable answer from Telegram", exc_info=error)
        raise DestinationError(f"Telegram gave an answer this bot cannot read when asked to "
                               f"{action} the chat") from None


def caption(info: BackupInfo, size: int) -> str:
    """What people see under the document; list() reads the rows and schema back from it."""
    rows = ", ".join(f"{table} {count}" for table, count in info.row_counts.items())
    lock = " (encrypted)" if info.encrypted else ""
    return (f"💾 Backup {info.created_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC, "
            f"{info.reason}{lock}\n{human.size(size)}; rows: {rows}\n"
            f"schema {info.schema_version}; sha256 {info.sha256}")


def info_from_caption(file_name: str, text: str) -> Optional[BackupInfo]:
    """Rebuild what a pinned backup says about itself from its file name and caption; None when
    they are not a backup's (whatever they hold: both came from the chat)."""
    # "<bot username>-backup-...": usernames hold no "-", so the backup's own name follows the first
    match = NAME_PATTERN.match(file_name.split("-", 1)[-1])
    if not match:
        return None
    rows = re.search(r"rows: (.*)$", text, re.MULTILINE)
    counts = re.findall(r"(\w+) (\d{1,19})\b", rows.group(1)) if rows else []
    schema = re.search(r"schema (\d{1,9}); sha256 ([0-9a-f]{64})", text)
    try:
        created_at = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
        return checked_info(created_at, match.group(2), int(schema.group(1)) if schema else 0,
                            {table: int(count) for table, count in counts},
                            schema.group(2) if schema else "", 0, encrypted=bool(match.group(3)),
                            problem="its caption is damaged")
    except (ValueError, NotABackupError):  # an impossible date, a bad table name...
        return None
