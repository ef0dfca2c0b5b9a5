"""Backups in a Telegram chat (BACKUP_CHAT_ID), through its pinned index (telegram_chat.py).

Each backup is sent as a document without a notification sound. The Bot API cannot list a
chat's history, so the chat keeps an index of its backups (telegram_index.py) in one pinned
document the bot edits as backups come and go: how a bot starting on an empty disk finds them
(getChat(...).pinned_message, then getFile). On-change backups are edited into one message in
place; other backups stay as history until they are rotated out (deleted, or blanked when
older than the 48 hours a bot may delete in). A bot uploads up to 50 MB and downloads up to
20 MB from Telegram's own server: a larger backup travels as parts.

    TelegramChat  the backups there (destinations.Destination)
    ChatLease     the writer's head, kept in the index, and the knock, a sealed line under its
                  caption (lease.LeaseStore)
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import telebot
from telebot import types

import bot_api
import human
from backup_format import BackupInfo, shown_reason, shown_table
from bot_api import BotApiError
from destinations import DestinationError, TooLarge
from i18n import Joined, Series, Size, Text, lines
from lease import Head, HeadState, Knock, fence
from telegram_chat import (
    DESTINATION,
    FLOOD_TRIES,
    GONE,
    ChatIndex,
    Refused,
    Rewritten,
    chat_errors,
    paced,
    posted_by,
)
from telegram_index import VISIBLE_NAME, Entry, Index, Part, Ref, caption_with_knock, knock_in_caption

log = logging.getLogger("backup")

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what a bot may download from Telegram's own server
PART_SIZE = 19 * 1024 * 1024  # a backup larger than this travels in parts a bot can fetch again
SCRUB_AT_ONCE = 5  # rotated-out messages cleaned per write: within Telegram's pace
FILE_GONE = ("wrong file identifier", "invalid file_id", "file reference")  # its message deleted


class TelegramChat:
    """Backups as documents in one chat, found again through the pinned index."""

    name = DESTINATION

    def __init__(self, index: ChatIndex, official_api: bool = True):
        """official_api: Telegram's own file limits (TELEGRAM_FILE_LIMITS): parts under 20 MB."""
        self.index, self.official_api = index, official_api
        self.bot, self.api = index.bot, index.api

    @paced
    def put(self, path: Path, info: BackupInfo) -> BackupInfo:
        """Send the backup, as parts a bot may download again when it is larger than that. An
        on-change backup is edited into the messages of the one before it at its level (a full
        one, or a delta a to d: deltas.py), so the chat holds at most five of them and they add
        no message between two other backups; any other full backup retires them. Then the
        index is updated. Fenced by the head the index holds."""
        index = self.index.read(writing=True)
        fence(index.head, info.generation, info.writer)
        if info.delta:
            self._check_chain(index, info)
        visible_name, size = f"{self.index.bot_username}-{info.name}", path.stat().st_size
        change, level = info.reason == "change", info.delta.level if info.delta else 0
        # A side piece (a scheduled delta: deltas.py) is history beside the chain: it retires nothing.
        replaced = _replaced(index.levels, level) if change else [] if info.delta else index.rolling
        reuse = list(replaced) if change else []
        parts = self._send_parts(path, visible_name, self.index.reader(caption(info, size)), reuse)
        chat = self.index.chat_id
        sent = {part.message_id for part in parts}
        retired = [Ref(chat, m) for m in replaced if m not in sent]  # superseded by this one
        gone = {Ref(chat, m) for m in sent | set(replaced)}
        placed = replace(info.at(self.name, parts[0].file_id, size), name=visible_name)
        index.entries = [
            Entry(placed, tuple(parts)),
            *(e for e in index.entries if not gone & set(e.refs(chat))),
        ]
        if change:
            index.levels = [[m for m in ids if m not in replaced] for ids in index.levels]
            index.levels[level] = sorted(sent)
        elif info.delta is None:
            index.levels = [[] for _ in index.levels]
        index.scrub = self._scrub([*index.scrub, *retired])
        try:
            self.index.write(index)
        except (Refused, Rewritten) as error:  # no index lists the new messages: their data goes
            for message_id in sent - set(replaced):
                self.index.messages.delete(Ref(chat, message_id))
            if isinstance(error, Rewritten):  # a newer instance's claim: this one is stale
                fence(self.index.read(writing=True).head, info.generation, info.writer)
            raise
        return placed

    def _check_chain(self, index: Index, info: BackupInfo) -> None:
        """A change backup is worth sending only while every piece it builds on is still in the
        chat: an administrator of a group may delete any message, the bot's backups too, and
        Telegram tells a bot nothing of it. A piece gone refuses the delta (the engine then ends
        the chain, and the next backup is a full one), so no restore point in the chat is left
        needing what is not there."""
        pieces = {entry.info.piece: entry for entry in index.entries}
        for name in info.delta.chain:
            entry = pieces.get(name)
            if entry is None or not all(map(self._still_there, entry.parts)):
                raise DestinationError(
                    f"{name}, which this change backup builds on, is gone from the chat (someone "
                    "deleted its message?): the next backup is a full one"
                )

    def _still_there(self, part: Part) -> bool:
        """Whether Telegram still has a part's file (getFile: a read, no message)."""
        try:
            with bot_api.calling("ask Telegram about a backup in the chat"):
                self.bot.get_file(part.file_id)
        except BotApiError as error:
            if any(words in error.description for words in FILE_GONE):
                return False
            if "too big" in error.description:  # there, over what a bot may download
                return True
            raise DestinationError(str(error)) from None
        return True

    @paced
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

    @paced
    def delete(self, backups: Sequence[BackupInfo]) -> None:
        """Rotate these out: out of the index, and their data out of the chat (what cannot go
        now is tried again at the next write, listed in the index meanwhile)."""
        index = self.index.read(writing=True)
        names = {info.name for info in backups}
        going = [entry for entry in index.entries if entry.info.name in names]
        if not going:
            return
        chat = self.index.chat_id
        refs = [ref for entry in going for ref in entry.refs(chat)]
        index.entries = [entry for entry in index.entries if entry.info.name not in names]
        # A delta's message at its level stays for the next piece of that level to be edited
        # into (it holds nothing any restore point needs); any other message's data (a side
        # piece's too) leaves the chat.
        rolling = set(index.rolling)
        keep = {
            Ref(chat, m) for entry in going if entry.info.delta for m in entry.message_ids if m in rolling
        }
        index.levels = [
            [m for m in level if Ref(chat, m) not in refs or Ref(chat, m) in keep] for level in index.levels
        ]
        index.scrub = self._scrub([*index.scrub, *(ref for ref in refs if ref not in keep)])
        self.index.write(index)

    def _scrub(self, refs: list[Ref]) -> list[Ref]:
        """Take the data of rotated-out messages out of the chat, a few at a time; returns those
        still to do. A final backup leaves them all to the next writer's first backup: its
        seconds are for its data, within Telegram's pace."""
        if bot_api.hurried():
            return list(dict.fromkeys(refs))
        left, done = [], 0
        for ref in dict.fromkeys(refs):  # each once, in order
            if done < SCRUB_AT_ONCE and self.index.messages.delete(ref):
                done += 1
                continue
            left.append(ref)
        return left

    # --- sending ---

    def _send_parts(self, path: Path, visible_name: str, text: str, reuse: list[int]) -> list[Part]:
        """The backup as one document, or as parts under Telegram's limits: when they are
        assumed, or when the server refuses the whole file as too large (it keeps them after
        all: a proxy in front of Telegram, say)."""
        if not self.official_api:
            try:
                return self._send_in(path, 1, visible_name, text, list(reuse))
            except TooLarge as error:
                log.warning("%s: sending it in parts", error)
        count = max(1, -(-path.stat().st_size // PART_SIZE))
        return self._send_in(path, count, visible_name, text, reuse)

    def _send_in(self, path: Path, count: int, visible_name: str, text: str, reuse: list[int]) -> list[Part]:
        size = path.stat().st_size
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
                for message_id in new:  # half a backup is no backup: not left in the chat
                    self.index.messages.delete(Ref(self.index.chat_id, message_id))
                raise
        return parts

    def _send_part(self, window: tuple, name: str, text: str, replace_message: int | None) -> Part:
        """Upload one part, streamed (never held in memory); in place of `replace_message`'s
        document when given, or as a new message when that one is gone."""
        chat = self.index.chat_id
        if replace_message is not None:
            media = bot_api.json_field({"type": "document", "media": "attach://part", "caption": text})
            try:
                return self._upload(
                    "editMessageMedia",
                    {"chat_id": chat, "message_id": replace_message, "media": media},
                    "part",
                    name,
                    window,
                )
            except DestinationError as error:
                if not any(gone in str(error) for gone in GONE):
                    raise
        fields = {"chat_id": chat, "caption": text, "disable_notification": "true"}
        return self._upload("sendDocument", fields, "document", name, window)

    def _upload(self, method: str, fields: dict, field: str, name: str, window: tuple) -> Part:
        """One part, read from disk as it is sent, hashed as it goes by; a chat that moved (a
        group upgraded to a supergroup) is followed, and the part sent there."""
        bodies: list[_Window] = []

        def body() -> _Window:
            bodies.append(_Window(*window))
            return bodies[-1]

        try:
            result = self.api.upload("send a backup to the chat", method, fields, field, name, body)
        except BotApiError as error:
            if error.code == 413:  # "Request Entity Too Large": over the server's upload limit
                raise TooLarge(f"{human.size(window[2])} is over what this Bot API server takes") from None
            if error.migrate_to_chat_id is None or method != "sendDocument":
                raise DestinationError(str(error)) from None
            self.index.follow(error.migrate_to_chat_id)
            return self._upload(method, {**fields, "chat_id": self.index.chat_id}, field, name, window)
        try:
            message = types.Message.de_json(result)
            return Part(
                message.message_id, message.document.file_id, bodies[-1].length, bodies[-1].hexdigest()
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DestinationError(
                "Telegram gave an answer this bot cannot read when asked to send a backup to the chat"
            ) from None

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


def _replaced(levels: list[list[int]], level: int) -> list[int]:
    """The messages an on-change backup at `level` is edited into: those of its level; for a
    full one (a new chain, after a restart) with none yet, those of the highest level that has
    some (every piece of the old chain is superseded), so a restart adds no message."""
    if levels[level] or level:
        return list(levels[level])
    return next((list(ids) for ids in reversed(levels) if ids), [])


class ChatLease:
    """The writer's head, in the chat's index; the knock, a sealed line under its caption."""

    name = "telegram"
    compare_and_set = False  # a chat has no conditional edit: claims settle and are read back

    def __init__(self, index: ChatIndex):
        self.index = index

    @paced
    def read_head(self) -> Head | None:
        return self.index.read().head

    @paced
    def write_head(self, head: Head) -> None:
        """A claim or a final head cannot wait the minute's pace (a newer instance waits on it;
        the writer that handed over takes back after a while): it may use the room bulk work
        leaves. A quiet head may use that room too (a deep sleep may come at any moment after
        it is due), but waits for it rather than going over the guidance. The edit itself
        follows a look at the index with no wait between (ChatIndex._edit_index): a rival's
        claim since the fence's read is not written over."""
        quiet = head.state is HeadState.QUIET
        with bot_api.urgent(wait=bot_api.MAX_FLOOD_WAIT if quiet else None):
            for _ in range(2):
                index = self.index.read(writing=True)
                fence(index.head, head.generation, head.writer)
                index.head = head
                try:
                    self.index.write(index)
                    return
                except Rewritten:
                    continue  # a rival's head since the read: read again, and the fence decides
        raise DestinationError("the backup index kept changing while the bot wrote its head there")

    def read_knock(self, keep_on_top: bool = False) -> Knock | None:
        """The latest knock. `keep_on_top`: the writer looks (this process's index is the chat's
        newest): with something pinned over the index, a fresh index goes on top first, so that
        a newer instance can find it and knock there. Read without the chat's lock: a backup
        that holds it while it waits for Telegram's pace must not hide a knock."""
        pinned = self.index.peek()
        if self._is_index(pinned):
            self.index.writes.learn(pinned)  # a knock is a write to the chat, by someone else
            return knock_in_caption(
                pinned.caption or "", self.index.seal, self.index.chat_id, pinned.message_id
            )
        if keep_on_top:
            self._keep_on_top()
        return None

    @paced
    def _keep_on_top(self) -> None:
        pinned = self.index.pinned()
        known = self.index.known
        if not self._is_index(pinned) and known is not None and known.message_id is not None:
            self.index.on_top, self.index.covered = False, pinned is not None
            self.index.write(known)

    @paced
    def knock(self, knock: Knock) -> None:
        """A sealed line under the index's caption (editMessageCaption): the document, which
        only the writer rewrites, stays as it is, so nothing the writer lists can be lost. On
        the index on top; when something covers it, on the index this process found beneath."""
        # The writer's latest write (a backup's data, before the index lists it) is unseen here.
        # Room first, then the read and the edit at once: a caption read before a wait could
        # be an older one than the writer's latest.
        with bot_api.urgent(unseen=1):
            pinned = self._room_and_look()
            if self._is_index(pinned):
                target, text = pinned.message_id, pinned.caption or ""
            elif self.index.known is not None and self.index.known.message_id is not None:
                target, text = self.index.known.message_id, ""
            else:
                raise DestinationError("no backup index of this bot in the chat to leave the request on")
            with chat_errors("edit the caption of the backup index in"), bot_api.at_once():
                edited = self.index.bot.edit_message_caption(
                    caption_with_knock(text, knock, self.index.seal, self.index.chat_id, target),
                    self.index.chat_id,
                    target,
                )
        if isinstance(edited, types.Message):
            self.index.writes.made(edited)

    def _room_and_look(self):
        """Room for the knock, then what is on top; room again when what it read (another
        edit of the index: its pace counts it) took the room, a few times."""
        api, chat = self.index.api, self.index.chat_id
        for _ in range(FLOOD_TRIES):
            room = api.wait_for_room(chat)
            pinned = self.index.pinned()
            if self._is_index(pinned):
                self.index.writes.learn(pinned)
            if not room or api.has_room(chat):
                break
        return pinned

    def _is_index(self, pinned) -> bool:
        """The bot's index, by its name and sender (and, where the chat gives no sender, by
        its seal): what a knock may be read from or left on."""
        document = getattr(pinned, "document", None)
        if document is None or document.file_name != self.index.index_name:
            return False
        posted = posted_by(pinned, self.index.api.bot_id)
        if posted is False:
            self.index.trusted(pinned)  # a look-alike of someone else's: the admins are told once
        return posted or (posted is None and self.index.trusted(pinned) is not None)


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
    rows = Series(
        Text("{table} {count}", table=shown_table(table), count=count)
        for table, count in info.row_counts.items()
    )
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
        Text("{size}; rows: {rows}", size=Size(size), rows=rows),
        f"schema {info.schema_version}; sha256 {info.sha256[:12]}…",
    )
