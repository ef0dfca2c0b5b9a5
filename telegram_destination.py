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

import hashlib
import io
import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import requests
import telebot
from requests_toolbelt import MultipartEncoder
from telebot import types

import human
from backup_format import NAME_PATTERN, BackupInfo, Head, Knock, NotABackupError, checked_info, shown_reason
from config import Settings
from destinations import DestinationError, TooLarge, fence
from files import CHUNK
from i18n import ENGLISH, Alert, Code, Joined, Reader, Size, Text, lines
from telegram_index import (
    VISIBLE_NAME,
    Entry,
    Index,
    Part,
    caption_with_knock,
    knock_in_caption,
    parse_index,
    serialize,
)
from telegram_index import caption as index_caption

log = logging.getLogger(__name__)

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what a bot may download from Telegram's own server
PART_SIZE = 19 * 1024 * 1024  # a backup larger than this travels in parts a bot can fetch again
INDEX_LIMIT = 1 << 20
MAX_COVERING = 5  # other messages pinned over the index that are looked beneath


def telegram_bot(settings: Settings, **options) -> telebot.TeleBot:
    """A TeleBot talking to TELEGRAM_API_URL (Telegram, a self-hosted Bot API server, a stand-in)."""
    telebot.apihelper.API_URL = settings.telegram_api_url + "/bot{0}/{1}"
    telebot.apihelper.FILE_URL = settings.telegram_api_url + "/file/bot{0}/{1}"
    return telebot.TeleBot(settings.bot_token, **options)


def official_api(settings: Settings) -> bool:
    """A server with Telegram's file limits (TELEGRAM_FILE_LIMITS): backups travel in parts."""
    return settings.telegram_file_limits


class TelegramChat:
    """Backups as documents in one chat, found again through the pinned index (telegram_index)."""

    name = "telegram"

    def __init__(
        self,
        bot: telebot.TeleBot,
        chat_id: int,
        official_api: bool = True,
        alert: Alert | None = None,
        reader: Reader = ENGLISH,
    ):
        """reader: how the captions people see in the chat are written."""
        self.bot, self.chat_id, self.reader = bot, chat_id, reader
        self.official_api = official_api  # Telegram's own server: parts under its download limit
        self.alert = alert or (lambda text: None)
        self._username: str | None = None
        self._covered_told = False  # the admins know another message was pinned over the index
        self._known: Index | None = None  # the index as last read or written by this process

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
        """Send the backup, as parts a bot may download again when it is larger than that. An
        on-change backup is edited into the messages of the one before it (so they add no
        message between two other backups), and any other backup retires those. Then the
        index is updated."""
        index = self._read_index()
        fence(index.head, info.generation, info.writer)
        visible_name, size = f"{self.bot_username}-{info.name}", path.stat().st_size
        reuse = list(index.rolling) if info.reason == "change" else []
        parts = self._send_parts(path, visible_name, self.reader(caption(info, size)), reuse)
        sent = {part.message_id for part in parts}
        retired = [m for m in index.rolling if m not in sent]  # superseded by this newer backup
        self._delete_messages(retired)
        gone = sent | set(index.rolling)
        placed = replace(info.at(self.name, parts[0].file_id, size), name=visible_name)
        index.entries = [
            Entry(placed, tuple(parts)),
            *(e for e in index.entries if not gone & set(e.message_ids)),
        ]
        index.rolling = sorted(sent) if info.reason == "change" else []
        self._write_index(index)
        return placed

    def list(self) -> list[BackupInfo]:
        return [entry.info for entry in self._read_index().entries]

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        """Download every part, checking each one's size and checksum, and join them; a part
        that is missing or damaged makes the whole backup unusable."""
        # The index this process just wrote, for a read-back; else the chat's.
        entry = (self._known.find(info.name) if self._known else None) or self._read_index().find(info.name)
        if entry is None:
            raise DestinationError(f"{info.name} is not in the chat's backup index any more")
        target = workdir / (info.name if VISIBLE_NAME.match(info.name) else "telegram-backup")
        count = len(entry.parts)
        with open(target, "wb") as out:
            for number, part in enumerate(entry.parts, start=1):
                which = f"part {number} of {count}" if count > 1 else "the backup"
                try:
                    size, digest = self._download_part(part, out)
                except DestinationError as error:
                    raise DestinationError(f"{which}: {error}" if count > 1 else str(error)) from None
                if size != part.size or (part.sha256 and digest != part.sha256):
                    raise DestinationError(f"{which} is damaged: it is not what was sent")
        return target

    def delete(self, backups: Sequence[BackupInfo]) -> None:
        index = self._read_index()
        names = {info.name for info in backups}
        going = [entry for entry in index.entries if entry.info.name in names]
        if not going:
            return
        messages = {m for entry in going for m in entry.message_ids}
        self._delete_messages(sorted(messages))
        index.entries = [entry for entry in index.entries if entry.info.name not in names]
        index.rolling = [m for m in index.rolling if m not in messages]
        self._write_index(index)

    def read_head(self) -> Head | None:
        return self._read_index().head

    def write_head(self, head: Head) -> None:
        index = self._read_index()
        fence(index.head, head.generation, head.writer)
        index.head = head
        self._write_index(index)

    def read_knock(self) -> Knock | None:
        pinned = self._pinned()
        return knock_in_caption(pinned.caption or "") if self._is_index(pinned) else None

    def knock(self, knock: Knock) -> None:
        """A line under the pinned index's caption (editMessageCaption): the document, which
        only the writer rewrites, stays as it is, so nothing the writer lists can be lost."""
        pinned = self._pinned()
        if not self._is_index(pinned):
            raise DestinationError("no backup index is pinned on top in the chat to leave the request on")
        with telegram_errors("edit the caption of the backup index in"):
            self.bot.edit_message_caption(
                caption_with_knock(pinned.caption or "", knock), self.chat_id, pinned.message_id
            )

    def _is_index(self, pinned) -> bool:
        document = getattr(pinned, "document", None)
        return document is not None and document.file_name == self.index_name

    # --- sending ---

    def _send_parts(self, path: Path, visible_name: str, text: str, reuse: list[int]) -> list[Part]:
        size = path.stat().st_size
        count = max(1, -(-size // PART_SIZE)) if self.official_api else 1
        length = PART_SIZE if count > 1 else size
        parts, new = [], []
        with open(path, "rb") as stream:
            try:
                for number in range(count):
                    name = visible_name if count == 1 else f"{visible_name}.part{number + 1}-of-{count}"
                    note = text if count == 1 else f"{text}\npart {number + 1} of {count}"
                    window = (stream, number * length, min(length, size - number * length))
                    replacing = reuse.pop(0) if reuse else None
                    parts.append(self._send_part(window, name, note, replacing))
                    if parts[-1].message_id != replacing:
                        new.append(parts[-1].message_id)
            except DestinationError:
                self._delete_messages(new)  # half a backup is no backup: not left in the chat
                raise
        return parts

    def _send_part(self, window: tuple, name: str, text: str, replace_message: int | None) -> Part:
        """Upload one part, streamed (never held in memory); in place of `replace_message`'s
        document when given, or as a new message when that one is gone."""
        if replace_message is not None:
            media = json.dumps({"type": "document", "media": "attach://part", "caption": text})
            try:
                return self._upload(
                    "editMessageMedia",
                    {"chat_id": self.chat_id, "message_id": replace_message, "media": media},
                    "part",
                    name,
                    window,
                )
            except DestinationError as error:
                if "not found" not in str(error):
                    raise
        return self._upload(
            "sendDocument",
            {"chat_id": self.chat_id, "caption": text, "disable_notification": "true"},
            "document",
            name,
            window,
        )

    def _upload(self, method: str, fields: dict, field: str, name: str, window: tuple) -> Part:
        """A multipart request whose file is read from disk as it is sent (requests-toolbelt's
        streaming encoder: pyTelegramBotAPI builds the whole body in memory first)."""
        body = _Window(*window)
        encoder = MultipartEncoder(
            {**{k: str(v) for k, v in fields.items()}, field: (name, body, "application/octet-stream")}
        )
        url = telebot.apihelper.API_URL.format(self.bot.token, method)
        with telegram_errors("send a backup to"):
            response = requests.post(
                url, data=encoder, headers={"Content-Type": encoder.content_type}, timeout=(10, 600)
            )
            # the same checks as every pyTelegramBotAPI call: ApiTelegramException and the rest
            message = types.Message.de_json(telebot.apihelper._check_result(method, response)["result"])
            return Part(message.message_id, message.document.file_id, body.length, body.hexdigest())

    def _send_bytes(self, data: bytes, name: str, text: str) -> types.Message:
        with telegram_errors("send a document to"):
            return self.bot.send_document(
                self.chat_id,
                types.InputFile(io.BytesIO(data), file_name=name),
                caption=text,
                disable_notification=True,
            )

    def _delete_messages(self, message_ids: Sequence[int]) -> None:
        """Delete what Telegram lets a bot delete (its own messages, younger than 48 hours); an
        older one stays in the chat as history, out of the index."""
        for message_id in message_ids:
            try:
                with telegram_errors("delete an old backup in"):
                    self.bot.delete_message(self.chat_id, message_id)
            except DestinationError as error:
                log.info("message %s stays in chat %s: %s", message_id, self.chat_id, error)

    # --- reading ---

    def _download_part(self, part: Part, out: BinaryIO) -> tuple[int, str]:
        with telegram_errors("download a backup from"):
            try:
                file = self.bot.get_file(part.file_id)
            except telebot.apihelper.ApiTelegramException as error:
                if "too big" in (error.description or ""):  # a backup pinned by an older version
                    raise TooLarge(
                        f"{human.size(part.size)} is over the 20 MB a bot may download "
                        "from Telegram: restore it through a self-hosted Bot API server"
                    ) from None
                raise
            return download(self.bot, file.file_path, out)

    # --- the index ---

    def _read_index(self) -> Index:
        """The chat's index, from its pinned message. When someone pinned another message over
        it, the messages pinned before are looked at too, and pinned again as they were. A
        backup pinned by an older version of this bot reads as an index of that one backup."""
        covering: list[int] = []  # other messages found pinned over the index, newest first
        try:
            for _ in range(MAX_COVERING + 1):
                pinned = self._pinned()
                index = self._as_index(pinned)
                if index is not None or pinned is None or not self._unpin(pinned.message_id):
                    break
                covering.append(pinned.message_id)
        finally:
            for message_id in reversed(covering):  # as they were, the oldest first
                self._pin(message_id)
        if covering:
            self._tell_covered(found=index is not None)
            if index is not None and index.message_id is not None:
                self._pin(index.message_id)  # on top again: how the next start finds it
        self._known = index or Index()
        return self._known

    def _pinned(self):
        with telegram_errors("read the pinned message of"):
            try:
                return self.bot.get_chat(self.chat_id).pinned_message
            except telebot.apihelper.ApiTelegramException as error:
                if "chat not found" in (error.description or ""):
                    # The bot has never been in this chat (an admin who has not written to it
                    # yet): certainly no backup there. Any other error may hide one.
                    return None
                raise

    def _as_index(self, pinned) -> Index | None:
        """The index in a pinned message: ours, or a backup an older version pinned; None when
        it is something else."""
        document = getattr(pinned, "document", None)
        if document is None:
            return None
        if document.file_name == self.index_name:
            return self._parse_pinned_index(document.file_id, pinned.message_id)
        legacy = info_from_caption(document.file_name or "", pinned.caption or "")
        if legacy is None:
            return None
        located = replace(
            legacy.at(self.name, document.file_id, document.file_size or 0), name=document.file_name
        )
        part = Part(pinned.message_id, document.file_id, document.file_size or 0, "")
        return Index(entries=[Entry(located, (part,))])

    def _parse_pinned_index(self, file_id: str, message_id: int) -> Index:
        with telegram_errors("read the backup index of"):
            file = self.bot.get_file(file_id)
            if (file.file_size or 0) > INDEX_LIMIT:
                raise DestinationError("the pinned backup index is implausibly large")
            data = io.BytesIO()
            download(self.bot, file.file_path, data, INDEX_LIMIT)
        try:
            index = parse_index(data.getvalue(), message_id)
        except NotABackupError as error:
            raise DestinationError(f"the pinned backup index cannot be read: {error}") from None
        index.entries = [Entry(replace(e.info, destination=self.name), e.parts) for e in index.entries]
        return index

    def _tell_covered(self, found: bool) -> None:
        if self._covered_told:
            return
        self._covered_told = True
        self.alert(
            Text(
                "📌 Someone pinned another message over the bot's backup index in the backup chat. "
                "The index was found beneath it and pinned again: keep it pinned."
            )
            if found
            else Text(
                "📌 Someone pinned another message over the bot's backup index in the backup chat. "
                "No index was found beneath it, so the backups there cannot be found: pin the "
                "bot's backup index again if you know it; the next backup pins a new one."
            )
        )

    def _write_index(self, index: Index) -> None:
        """Edit the pinned index in place; send and pin a new one when there is none (or it can
        no longer be edited)."""
        data, text = serialize(index), self.reader(index_caption(index, self.bot_username))
        if index.message_id is not None:
            media = json.dumps({"type": "document", "media": "attach://index", "caption": text})
            try:
                self._upload(
                    "editMessageMedia",
                    {"chat_id": self.chat_id, "message_id": index.message_id, "media": media},
                    "index",
                    self.index_name,
                    (io.BytesIO(data), 0, len(data)),
                )
                self._known = index
                return
            except DestinationError as error:
                log.warning("could not edit the backup index (%s); pinning a new one", error)
        message = self._send_bytes(data, self.index_name, text)
        if not self._pin(message.message_id):
            raise DestinationError(
                "cannot pin the backup index, so a start on an empty disk could "
                "not find the backups: let the bot pin messages in the chat"
            )
        index.message_id = message.message_id
        self._known = index

    def _pin(self, message_id: int) -> bool:
        try:
            with telegram_errors("pin a message in"):
                self.bot.pin_chat_message(self.chat_id, message_id, disable_notification=True)
            return True
        except DestinationError as error:
            log.warning("could not pin message %s in chat %s: %s", message_id, self.chat_id, error)
            return False

    def _unpin(self, message_id: int) -> bool:
        try:
            with telegram_errors("unpin a message in"):
                self.bot.unpin_chat_message(self.chat_id, message_id)
            return True
        except DestinationError as error:
            log.warning("cannot look beneath message %s in chat %s: %s", message_id, self.chat_id, error)
            return False


class _Window(io.RawIOBase):
    """`length` bytes of `stream` from `offset`, read once, hashed as they go by."""

    def __init__(self, stream: BinaryIO, offset: int, length: int):
        super().__init__()
        self.stream, self.length, self._read = stream, length, 0
        self._digest = hashlib.sha256()
        stream.seek(offset)

    def readable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self.length

    def tell(self) -> int:
        return self._read

    def read(self, size: int = -1) -> bytes:
        wanted = self.length - self._read if size is None or size < 0 else min(size, self.length - self._read)
        data = self.stream.read(wanted)
        self._read += len(data)
        self._digest.update(data)
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def download(
    bot: telebot.TeleBot, file_path: str, out: BinaryIO, limit: int | None = None
) -> tuple[int, str]:
    """Stream a file from Telegram into `out` (never whole in memory); returns its size and
    SHA-256. More than `limit` bytes is a DestinationError."""
    url = telebot.apihelper.FILE_URL.format(bot.token, file_path)
    size, digest = 0, hashlib.sha256()
    with requests.get(url, stream=True, timeout=(10, 600)) as response:
        response.raise_for_status()
        for chunk in response.iter_content(CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise DestinationError("the file is larger than it should be")
            digest.update(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


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
        raise DestinationError(
            f"Telegram answered HTTP {error.result.status_code} when asked to {action} the chat"
        ) from None
    except telebot.apihelper.ApiException:
        raise DestinationError(
            f"Telegram gave an answer that is not JSON when asked to {action} the chat"
        ) from None
    except requests.RequestException as error:
        raise DestinationError(
            f"cannot reach Telegram to {action} the chat ({type(error).__name__})"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # pyTelegramBotAPI reads answers without checking them: JSON without 'ok', a result of
        # the wrong shape. Whatever it was, this is what the server said, not our data.
        log.debug("unreadable answer from Telegram", exc_info=error)
        raise DestinationError(
            f"Telegram gave an answer this bot cannot read when asked to {action} the chat"
        ) from None


def caption(info: BackupInfo, size: int) -> Joined:
    """What people see under the document (the index, not the caption, is what the bot reads)."""
    rows = ", ".join(f"{table} {count}" for table, count in info.row_counts.items())
    first = (
        Text("💾 Backup {when}, {reason} (encrypted)", when=info.created_at, reason=shown_reason(info.reason))
        if info.encrypted
        else Text("💾 Backup {when}, {reason}", when=info.created_at, reason=shown_reason(info.reason))
    )
    # A short checksum is enough to tell backups apart by eye; the whole one is in the file's
    # header and the index, which is what anything checks against.
    return lines(
        first,
        Text("{size}; rows: {rows}", size=Size(size), rows=Code(rows)),
        f"schema {info.schema_version}; sha256 {info.sha256[:12]}…",
    )


def info_from_caption(file_name: str, text: str) -> BackupInfo | None:
    """Rebuild what a pinned backup of an earlier version (before the index, whose captions held
    the whole checksum) says about itself from its file name and caption; None when they are not
    a backup's (whatever they hold: both came from the chat)."""
    # "<bot username>-backup-...": usernames hold no "-", so the backup's own name follows the first
    match = NAME_PATTERN.match(file_name.split("-", 1)[-1])
    if not match:
        return None
    rows = re.search(r"rows: (.*)$", text, re.MULTILINE)
    counts = re.findall(r"(\w+) (\d{1,19})\b", rows.group(1)) if rows else []
    schema = re.search(r"schema (\d{1,9}); sha256 ([0-9a-f]{64})", text)
    try:
        created_at = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        return checked_info(
            created_at,
            match.group(2),
            int(schema.group(1)) if schema else 0,
            {table: int(count) for table, count in counts},
            schema.group(2) if schema else "",
            0,
            encrypted=bool(match.group(3)),
            problem="its caption is damaged",
        )
    except (ValueError, NotABackupError):  # an impossible date, a bad table name...
        return None
