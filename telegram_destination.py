"""Backups in a Telegram chat (BACKUP_CHAT_ID), through the Bot API (bot_api.py).

Each backup is sent as a document without a notification sound. The Bot API cannot list a
chat's history, so the chat keeps an index of its backups (telegram_index.py) in one pinned
document the bot edits as backups come and go: how a bot starting on an empty disk finds them
(getChat(...).pinned_message, then getFile). On-change backups are edited into one message in
place; other backups stay as history. A bot may upload up to 50 MB and download up to 20 MB
from Telegram's own server; a self-hosted Bot API server in local mode lifts both.

Three objects share the chat:
    ChatIndex     the chat and its pinned index: reading, writing, pinning
    TelegramChat  the backups there (destinations.Destination)
    ChatLease     the writer's head, kept in the index, and the knock, a line under its caption
                  (lease.LeaseStore)
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import telebot
from telebot import types

import bot_api
import human
from backup_format import BackupInfo, NotABackupError, shown_reason
from bot_api import BotApiError
from destinations import DestinationError, TooLarge
from i18n import ENGLISH, Alert, Code, Joined, Reader, Size, Text, lines
from lease import Head, Knock, fence
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


@contextmanager
def chat_errors(action: str) -> Iterator[None]:
    """A failed Bot API call about the chat as one DestinationError line: Telegram would not
    `action` the chat, and why."""
    try:
        with bot_api.calling(f"{action} the chat"):
            yield
    except BotApiError as error:
        raise DestinationError(str(error)) from None


def _paced(method):
    """Every write of this work to the chat keeps to Telegram's guidance (bot_api.paced)."""

    @functools.wraps(method)
    def paced(*args, **kwargs):
        with bot_api.paced():
            return method(*args, **kwargs)

    return paced


class ChatIndex:
    """The backup chat and its pinned index document, as this process last read or wrote it."""

    def __init__(
        self, bot: telebot.TeleBot, chat_id: int, alert: Alert | None = None, reader: Reader = ENGLISH
    ):
        """reader: how the captions people see in the chat are written."""
        self.bot, self.chat_id, self.reader = bot, chat_id, reader
        self.api = bot_api.api_of(bot)
        self.alert = alert or (lambda text: None)
        self._username: str | None = None
        self._covered_told = False  # the admins know another message was pinned over the index
        self.known: Index | None = None  # the index as last read or written by this process

    @property
    def bot_username(self) -> str:
        if self._username is None:
            with chat_errors("ask Telegram about the bot for"):
                self._username = self.bot.get_me().username or "bot"
        return self._username

    @property
    def index_name(self) -> str:
        return f"{self.bot_username}-backup-index.json"

    def read(self) -> Index:
        """The chat's index, from its pinned message. When someone pinned another message over
        it, the messages pinned before are looked at too, and pinned again as they were."""
        covering: list[int] = []  # other messages found pinned over the index, newest first
        index = None
        try:
            for _ in range(MAX_COVERING + 1):
                pinned = self.pinned()
                index = self._as_index(pinned)
                if index is not None or pinned is None or not self.unpin(pinned.message_id):
                    break
                covering.append(pinned.message_id)
        finally:
            for message_id in reversed(covering):  # as they were, the oldest first
                self.pin(message_id)
        if covering:
            self._tell_covered(found=index is not None)
            if index is not None and index.message_id is not None:
                self.pin(index.message_id)  # on top again: how the next start finds it
        self.known = index or Index()
        return self.known

    def write(self, index: Index) -> None:
        """Edit the pinned index in place; send and pin a new one when there is none (or it can
        no longer be edited)."""
        data, text = serialize(index), self.reader(index_caption(index, self.bot_username))
        if index.message_id is not None:
            media = bot_api.json_field({"type": "document", "media": "attach://index", "caption": text})
            try:
                with chat_errors("edit the backup index in"):
                    self.api.upload(
                        "edit the backup index in the chat",
                        "editMessageMedia",
                        {"chat_id": self.chat_id, "message_id": index.message_id, "media": media},
                        "index",
                        self.index_name,
                        lambda: io.BytesIO(data),
                    )
                self.known = index
                return
            except DestinationError as error:
                log.warning("could not edit the backup index (%s); pinning a new one", error)
        with chat_errors("send a document to"):
            message = self.bot.send_document(
                self.chat_id,
                types.InputFile(io.BytesIO(data), file_name=self.index_name),
                caption=text,
                disable_notification=True,
            )
        if not self.pin(message.message_id):
            raise DestinationError(
                "cannot pin the backup index, so a start on an empty disk could "
                "not find the backups: let the bot pin messages in the chat"
            )
        index.message_id = message.message_id
        self.known = index

    def pinned(self):
        """The chat's pinned message as getChat shows it; None when there is none, or when the
        bot was never in the chat (an admin who has not written to it yet: certainly no backup
        there; any other error may hide one, and is raised)."""
        try:
            with chat_errors("read the pinned message of"):
                return self.bot.get_chat(self.chat_id).pinned_message
        except DestinationError as error:
            if "chat not found" in str(error):
                return None
            raise

    def is_index(self, pinned) -> bool:
        document = getattr(pinned, "document", None)
        return document is not None and document.file_name == self.index_name

    def pin(self, message_id: int) -> bool:
        try:
            with chat_errors("pin a message in"):
                self.bot.pin_chat_message(self.chat_id, message_id, disable_notification=True)
            return True
        except DestinationError as error:
            log.warning("could not pin message %s in chat %s: %s", message_id, self.chat_id, error)
            return False

    def unpin(self, message_id: int) -> bool:
        try:
            with chat_errors("unpin a message in"):
                self.bot.unpin_chat_message(self.chat_id, message_id)
            return True
        except DestinationError as error:
            log.warning("cannot look beneath message %s in chat %s: %s", message_id, self.chat_id, error)
            return False

    def _as_index(self, pinned) -> Index | None:
        """The index in a pinned message; None when it is something else."""
        if not self.is_index(pinned):
            return None
        document = pinned.document
        with chat_errors("read the backup index of"):
            file = self.bot.get_file(document.file_id)
            if (file.file_size or 0) > INDEX_LIMIT:
                raise DestinationError("the pinned backup index is implausibly large")
            data = io.BytesIO()
            self.api.download(file.file_path, data, INDEX_LIMIT)
        try:
            index = parse_index(data.getvalue(), pinned.message_id)
        except NotABackupError as error:
            raise DestinationError(f"the pinned backup index cannot be read: {error}") from None
        index.entries = [
            Entry(replace(e.info, destination=TelegramChat.name), e.parts) for e in index.entries
        ]
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


class TelegramChat:
    """Backups as documents in one chat, found again through the pinned index."""

    name = "telegram"

    def __init__(self, index: ChatIndex, official_api: bool = True):
        """official_api: Telegram's own file limits (TELEGRAM_FILE_LIMITS): parts under 20 MB."""
        self.index, self.official_api = index, official_api
        self.bot, self.chat_id, self.api = index.bot, index.chat_id, index.api

    @_paced
    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        """Send the backup, as parts a bot may download again when it is larger than that. An
        on-change backup is edited into the messages of the one before it (so they add no
        message between two other backups), and any other backup retires those. Then the
        index is updated. Fenced by the head the index holds."""
        index = self.index.read()
        fence(index.head, info.generation, info.writer)
        visible_name, size = f"{self.index.bot_username}-{info.name}", path.stat().st_size
        reuse = list(index.rolling) if info.reason == "change" else []
        parts = self._send_parts(path, visible_name, self.index.reader(caption(info, size)), reuse)
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
        self.index.write(index)
        return placed

    def list(self) -> list[BackupInfo]:
        return [entry.info for entry in self.index.read().entries]

    def fetch(self, info: BackupInfo, workdir: Path) -> Path:
        """Download every part, checking each one's size and checksum, and join them; a part
        that is missing or damaged makes the whole backup unusable."""
        # The index this process just wrote, for a read-back; else the chat's.
        known = self.index.known
        entry = (known.find(info.name) if known else None) or self.index.read().find(info.name)
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

    @_paced
    def delete(self, backups: Sequence[BackupInfo]) -> None:
        index = self.index.read()
        names = {info.name for info in backups}
        going = [entry for entry in index.entries if entry.info.name in names]
        if not going:
            return
        messages = {m for entry in going for m in entry.message_ids}
        self._delete_messages(sorted(messages))
        index.entries = [entry for entry in index.entries if entry.info.name not in names]
        index.rolling = [m for m in index.rolling if m not in messages]
        self.index.write(index)

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
            media = bot_api.json_field({"type": "document", "media": "attach://part", "caption": text})
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
        fields = {"chat_id": self.chat_id, "caption": text, "disable_notification": "true"}
        return self._upload("sendDocument", fields, "document", name, window)

    def _upload(self, method: str, fields: dict, field: str, name: str, window: tuple) -> Part:
        """One part, read from disk as it is sent, hashed as it goes by."""
        bodies: list[_Window] = []

        def body() -> _Window:
            bodies.append(_Window(*window))
            return bodies[-1]

        try:
            result = self.api.upload("send a backup to the chat", method, fields, field, name, body)
            message = types.Message.de_json(result)
            return Part(
                message.message_id, message.document.file_id, bodies[-1].length, bodies[-1].hexdigest()
            )
        except BotApiError as error:
            raise DestinationError(str(error)) from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DestinationError(
                "Telegram gave an answer this bot cannot read when asked to send a backup to the chat"
            ) from None

    def _delete_messages(self, message_ids: Sequence[int]) -> None:
        """Delete what Telegram lets a bot delete (its own messages, younger than 48 hours); an
        older one stays in the chat as history, out of the index."""
        for message_id in message_ids:
            try:
                with chat_errors("delete an old backup in"):
                    self.bot.delete_message(self.chat_id, message_id)
            except DestinationError as error:
                log.info("message %s stays in chat %s: %s", message_id, self.chat_id, error)

    # --- reading ---

    def _download_part(self, part: Part, out: BinaryIO) -> tuple[int, str]:
        with chat_errors("download a backup from"):
            try:
                file = self.bot.get_file(part.file_id)
            except telebot.apihelper.ApiTelegramException as error:
                if "too big" in (error.description or ""):
                    raise TooLarge(
                        f"{human.size(part.size)} is over the 20 MB a bot may download "
                        "from Telegram: restore it through a self-hosted Bot API server"
                    ) from None
                raise
            return self.api.download(file.file_path, out, what="download a backup from the chat")


class ChatLease:
    """The writer's head, in the chat's index; the knock, a line under the index's caption."""

    name = "telegram"

    def __init__(self, index: ChatIndex):
        self.index = index

    def read_head(self) -> Head | None:
        return self.index.read().head

    @_paced
    def write_head(self, head: Head) -> None:
        index = self.index.read()
        fence(index.head, head.generation, head.writer)
        index.head = head
        self.index.write(index)

    def read_knock(self) -> Knock | None:
        pinned = self.index.pinned()
        return knock_in_caption(pinned.caption or "") if self.index.is_index(pinned) else None

    @_paced
    def knock(self, knock: Knock) -> None:
        """A line under the pinned index's caption (editMessageCaption): the document, which
        only the writer rewrites, stays as it is, so nothing the writer lists can be lost."""
        pinned = self.index.pinned()
        if not self.index.is_index(pinned):
            raise DestinationError("no backup index is pinned on top in the chat to leave the request on")
        with chat_errors("edit the caption of the backup index in"):
            self.index.bot.edit_message_caption(
                caption_with_knock(pinned.caption or "", knock), self.index.chat_id, pinned.message_id
            )


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


def caption(info: BackupInfo, size: int) -> Joined:
    """What people see under the document (the index, not the caption, is what the bot reads)."""
    rows = ", ".join(f"{table} {count}" for table, count in info.row_counts.items())
    reason = shown_reason(info.reason)
    first = (
        Text("💾 Backup {when}, {reason} (encrypted)", when=info.created_at, reason=reason)
        if info.encrypted
        else Text("💾 Backup {when}, {reason}", when=info.created_at, reason=reason)
    )
    # A short checksum is enough to tell backups apart by eye; the whole one is in the file's
    # header and the index, which is what anything checks against.
    return lines(
        first,
        Text("{size}; rows: {rows}", size=Size(size), rows=Code(rows)),
        f"schema {info.schema_version}; sha256 {info.sha256[:12]}…",
    )
