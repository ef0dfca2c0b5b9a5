"""Backups in a Telegram chat (BACKUP_CHAT_ID), through the Bot API; and the TeleBot itself.

Each backup is sent as a document without a notification sound. The Bot API cannot list a
chat's history, so the chat keeps an index of its backups (telegram_index.py) in one pinned
document the bot edits as backups come and go: how a bot starting on an empty disk finds them
(getChat(...).pinned_message, then getFile). The index also holds the head: who writes. On-change
backups are edited into one message in place; other backups stay as history. A bot may upload
up to 50 MB and download up to 20 MB from Telegram's own server; a self-hosted Bot API server
(TELEGRAM_API_URL) lifts both.
"""

from __future__ import annotations

import io
import logging
import re
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional, Sequence

import requests
import telebot
from telebot import types

import human
from backup_format import NAME_PATTERN, BackupInfo, Head, NotABackupError, checked_info
from config import DEFAULT_API_URL, Settings
from destinations import DestinationError, TooLarge, fence
from files import CHUNK
from telegram_index import VISIBLE_NAME, Entry, Index, parse_index, serialize
from telegram_index import caption as index_caption

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 50 * 1024 * 1024  # what a bot may send to Telegram's own server
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what a bot may download from it
INDEX_LIMIT = 1 << 20


def telegram_bot(settings: Settings, **options) -> telebot.TeleBot:
    """A TeleBot talking to TELEGRAM_API_URL (Telegram, a self-hosted Bot API server, a stand-in)."""
    telebot.apihelper.API_URL = settings.telegram_api_url + "/bot{0}/{1}"
    telebot.apihelper.FILE_URL = settings.telegram_api_url + "/file/bot{0}/{1}"
    return telebot.TeleBot(settings.bot_token, **options)


def official_api(settings: Settings) -> bool:
    """Telegram's own server, whose size limits are known up front."""
    return settings.telegram_api_url == DEFAULT_API_URL


class TelegramChat:
    """Backups as documents in one chat, found again through the pinned index (telegram_index)."""

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

    @property
    def index_name(self) -> str:
        return f"{self.bot_username}-backup-index.json"

    # --- the destination interface ---

    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        """Send the backup; an on-change backup replaces the one before it in place (so they add
        at most one message between two other backups), and any other backup retires that
        message. Then the index is updated."""
        size = path.stat().st_size
        if self.official_api and size > UPLOAD_LIMIT:
            raise TooLarge(f"not sent to Telegram: the backup is {human.size(size)}, over the 50 MB "
                           "a bot may upload; use S3 for backups this large")
        index = self._read_index()
        fence(index.head, info.generation, info.writer)
        visible_name = f"{self.bot_username}-{info.name}"
        rolling = index.rolling if info.reason == "change" else None
        message = self._send_document(path, visible_name, caption(info, size), replace_message=rolling)
        placed = replace(info.at(self.name, message.document.file_id, size), name=visible_name)
        entries = index.without(message.message_id)
        if info.reason == "change":
            index.rolling = message.message_id
        elif index.rolling is not None:  # superseded by this newer backup
            self._delete_messages([index.rolling])
            entries, index.rolling = [e for e in entries if e.message_id != index.rolling], None
        index.entries = [Entry(placed, message.message_id), *entries]
        self._write_index(index)
        return placed

    def list(self) -> list[BackupInfo]:
        return [entry.info for entry in self._read_index().entries]

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        target = workdir / (info.name if VISIBLE_NAME.match(info.name) else "telegram-backup")
        with telegram_errors("download the backup from"):
            try:
                file = self.bot.get_file(info.location)
            except telebot.apihelper.ApiTelegramException as error:
                if "too big" in (error.description or ""):
                    raise TooLarge(
                        f"{human.size(info.size)} is over the 20 MB a bot may download from "
                        "Telegram: restore it from S3 or through a self-hosted Bot API server") from None
                raise
            self._download(file.file_path, target)
        return target

    def delete(self, backups: Sequence[BackupInfo]) -> None:
        index = self._read_index()
        going = {entry.message_id for entry in index.entries if entry.info in backups}
        if not going:
            return
        self._delete_messages(sorted(going))
        index.entries = [entry for entry in index.entries if entry.message_id not in going]
        if index.rolling in going:
            index.rolling = None
        self._write_index(index)

    def read_head(self) -> Optional[Head]:
        return self._read_index().head

    def write_head(self, head: Head) -> None:
        index = self._read_index()
        fence(index.head, head.generation, head.writer)
        index.head = head
        self._write_index(index)

    # --- the index, and the Bot API calls ---

    def _read_index(self) -> Index:
        """The chat's index, from its pinned message. A pinned backup document of an older
        version of this bot is read as an index of that one backup."""
        with telegram_errors("read the pinned message of"):
            try:
                pinned = self.bot.get_chat(self.chat_id).pinned_message
            except telebot.apihelper.ApiTelegramException as error:
                if "chat not found" in (error.description or ""):
                    # The bot has never been in this chat (an admin who has not written to it
                    # yet): certainly no backup there. Any other error may hide one.
                    return Index()
                raise
        document = getattr(pinned, "document", None)
        if document is None:
            return Index()
        if document.file_name == self.index_name:
            return self._parse_pinned_index(document.file_id, pinned.message_id)
        legacy = info_from_caption(document.file_name or "", pinned.caption or "")
        if legacy is None:
            log.warning("the pinned message in chat %s is not this bot's backup index", self.chat_id)
            return Index()
        located = replace(legacy.at(self.name, document.file_id, document.file_size or 0),
                          name=document.file_name)
        return Index(entries=[Entry(located, pinned.message_id)])

    def _parse_pinned_index(self, file_id: str, message_id: int) -> Index:
        with telegram_errors("read the backup index of"):
            file = self.bot.get_file(file_id)
            if (file.file_size or 0) > INDEX_LIMIT:
                raise DestinationError("the pinned backup index is implausibly large")
            data = self._download(file.file_path, None, INDEX_LIMIT)
        try:
            index = parse_index(data, message_id)
        except NotABackupError as error:
            raise DestinationError(f"the pinned backup index cannot be read: {error}") from None
        index.entries = [Entry(replace(e.info, destination=self.name), e.message_id) for e in index.entries]
        return index

    def _write_index(self, index: Index) -> None:
        """Edit the pinned index in place; send and pin a new one when there is none (or it can
        no longer be edited)."""
        data, text = serialize(index), index_caption(index, self.bot_username)
        if index.message_id is not None:
            try:
                self._send_document(data, self.index_name, text, replace_message=index.message_id)
                return
            except DestinationError as error:
                log.warning("could not edit the backup index (%s); pinning a new one", error)
        message = self._send_document(data, self.index_name, text)
        with telegram_errors("pin the backup index in"):
            self.bot.pin_chat_message(self.chat_id, message.message_id, disable_notification=True)
        index.message_id = message.message_id

    def _send_document(self, content: Path | bytes, name: str, text: str,
                       replace_message: Optional[int] = None):
        """Send a document (a file, or bytes) silently; or, with `replace_message`, put it in
        place of that message's document (a message that is gone is sent anew)."""
        stream = open(content, "rb") if isinstance(content, Path) else io.BytesIO(content)
        with stream:
            document = types.InputFile(stream, file_name=name)
            if replace_message is not None:
                try:
                    with telegram_errors("replace a document in"):
                        return self.bot.edit_message_media(
                            types.InputMediaDocument(document, caption=text), chat_id=self.chat_id,
                            message_id=replace_message)
                except DestinationError as error:
                    if "not found" not in str(error):
                        raise
                    stream.seek(0)
                    document = types.InputFile(stream, file_name=name)
            with telegram_errors("send a document to"):
                return self.bot.send_document(self.chat_id, document, caption=text,
                                              disable_notification=True)

    def _delete_messages(self, message_ids: Sequence[int]) -> None:
        """Delete what Telegram lets a bot delete (its own messages, younger than 48 hours); an
        older one stays in the chat as history, out of the index."""
        for message_id in message_ids:
            try:
                with telegram_errors("delete an old backup in"):
                    self.bot.delete_message(self.chat_id, message_id)
            except DestinationError as error:
                log.info("message %s stays in chat %s: %s", message_id, self.chat_id, error)

    def _download(self, file_path: str, target: Optional[Path], limit: Optional[int] = None) -> bytes:
        """Stream a file to `target`, or return its bytes (at most `limit`)."""
        url = telebot.apihelper.FILE_URL.format(self.bot.token, file_path)
        chunks, size = [], 0
        with requests.get(url, stream=True, timeout=(10, 120)) as response:
            response.raise_for_status()
            out = open(target, "wb") if target is not None else None
            try:
                for chunk in response.iter_content(CHUNK):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise DestinationError("the file is larger than it should be")
                    if out:
                        out.write(chunk)
                    else:
                        chunks.append(chunk)
            finally:
                if out:
                    out.close()
        return b"".join(chunks)


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
