"""The index a Telegram chat keeps of its backups: one JSON document, pinned, edited in place.

The Bot API cannot read a chat's history; what a bot starting on an empty disk can read is the
chat's pinned message (getChat). So that message is a document the bot keeps up to date:

    {"format": "telegram-bot-backup-index/2",
     "chat_id": -100123, "message_id": 77,   the message that holds it: a copy elsewhere is no index
     "head": {...} | null,                    who writes the backups (lease.Head)
     "rolling": [123, 124],                   the messages the on-change backups replace in place
     "levels": [[123], [124], [], [], []],    the same, by the level of the piece each holds
                                              (0: a full on-change backup, 1-4: deltas a-d)
     "scrub": [[-100123, 98], ...],           rotated-out messages that still hold a backup's data
     "writes": [[1733390000.5, "9f3a0c1e"], ...]  the bot's writes to the chat in the minute before
                                              this edit (Telegram's time, the process that made
                                              each): the next process keeps Telegram's pace with them
     "backups": [{"name": "...", "size": 1234, "encrypted": false,
                  "created_at": "...", "reason": "...", "generation": 7, "writer": "...",
                  "sequence": 12, "schema_version": 2, "row_counts": {...}, "sha256": "...",
                  "db_size": 4096, "delta": {...} (a change backup's pages only),
                  "parts": [{"message_id": 120, "file_id": "...", "size": 1234, "sha256": "...",
                             "chat_id": -100123 (only where it is not the index's chat)}, ...]},
                 ...],                        newest first
     "seal": "..."}                           HMAC-SHA256 of the rest, keyed by the bot's token

Other people may write to the chat, post documents with any name and pin them. So the bot
trusts only an index it wrote itself: posted by the bot (the message's `from`, in every chat
that has one) and sealed with a key only the token's holder can make, for the very message
that holds it (a forwarded or reposted copy names another message). Everything else is data.
An index of the first format (/1, before the seal) is trusted only when the bot posted it.

A backup larger than a bot may download travels as parts, each a document of its own with its
own checksum. A newer instance asking the writer to hand over leaves a line under the caption
(caption_with_knock), never in the document; it is sealed too. parse_index checks every field
and answers an Index or NotABackupError, whatever the bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass, field, replace

from backup_format import SHA256, BackupInfo, NotABackupError, checked_info, shown_reason
from i18n import Code, Joined, Plural, Size, Text, lines
from lease import Head, Knock

log = logging.getLogger(__name__)

FORMAT = "telegram-bot-backup-index/2"
FORMAT_UNSEALED = "telegram-bot-backup-index/1"  # before the seal: trusted when the bot posted it
MAX_BYTES = 1 << 20  # an index of a thousand backups is far smaller
MAX_ENTRIES, MAX_PARTS = 1000, 10_000
MAX_WRITES = 100  # the recent writes an index lists (the guidance allows 20 a minute)
FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,256}\Z")
VISIBLE_NAME = re.compile(r"^[A-Za-z0-9_]{0,64}-?backup-\d{8}T\d{9}Z-[a-z-]+\.(?:db|delta)\.zst(\.sealed)?\Z")
LEVELS = 5  # the messages of on-change backups: a full one, and one per level of delta


@dataclass(frozen=True)
class Part:
    """One document of a backup: where it is, and what it must hold."""

    message_id: int
    file_id: str
    size: int
    sha256: str
    chat_id: int | None = None  # None: the index's own chat (another after a group's upgrade)


@dataclass(frozen=True)
class Ref:
    """A message of the bot's, in some chat."""

    chat_id: int
    message_id: int


@dataclass(frozen=True)
class Entry:
    """One backup in the chat: what it says about itself, and its parts, in order."""

    info: BackupInfo  # name: the visible name; location: the first part's file_id
    parts: tuple[Part, ...]

    @property
    def message_ids(self) -> list[int]:
        return [part.message_id for part in self.parts]

    def refs(self, chat_id: int) -> list[Ref]:
        """Its parts' messages, in `chat_id` unless a part says otherwise."""
        return [Ref(part.chat_id or chat_id, part.message_id) for part in self.parts]


@dataclass
class Index:
    message_id: int | None = None  # the pinned index message; None: there is none yet
    head: Head | None = None
    entries: list[Entry] = field(default_factory=list)  # newest first
    # The messages on-change backups are edited into, by level (0: a full one, 1-4: deltas a-d):
    # each holds the newest piece of its level, or one nothing needs until the next replaces it.
    levels: list[list[int]] = field(default_factory=lambda: [[] for _ in range(LEVELS)])
    scrub: list[Ref] = field(default_factory=list)  # rotated-out messages still holding data
    chat_id: int = 0  # the chat the index lives in
    # The writes to the chat in the minute before this index was written (bot_api.Pacer.writes_in).
    writes: list[tuple[float, str]] = field(default_factory=list)

    @property
    def rolling(self) -> list[int]:
        """Every message an on-change backup is edited into."""
        return [message for level in self.levels for message in level]

    def find(self, name: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.info.name == name), None)


class Seal:
    """What makes an index or a knock the bot's own: an HMAC keyed by a key derived from the
    bot's token, which only the token's holder (every instance of this bot, nobody else) has."""

    def __init__(self, token: str):
        self._key = hmac.new(token.encode(), b"telegram-bot-backup-index", hashlib.sha256).digest()

    def sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def verify(self, payload: bytes, seal) -> bool:
        return isinstance(seal, str) and hmac.compare_digest(self.sign(payload), seal)


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def serialize(index: Index, seal: Seal) -> bytes:
    body = {
        "format": FORMAT,
        "chat_id": index.chat_id,
        "message_id": index.message_id,
        "head": index.head.as_json() if index.head else None,
        "rolling": index.rolling,
        "levels": index.levels,
        "scrub": [[ref.chat_id, ref.message_id] for ref in index.scrub],
        "backups": [_entry_json(entry) for entry in index.entries],
        "writes": [[stamp, by] for stamp, by in index.writes],
    }
    return json.dumps({**body, "seal": seal.sign(_canonical(body))}, indent=1).encode()


def _entry_json(entry: Entry) -> dict:
    info = entry.info
    return {
        "name": info.name,
        "size": info.size,
        "encrypted": info.encrypted,
        "created_at": info.created_at.isoformat(timespec="milliseconds"),
        "reason": info.reason,
        "generation": info.generation,
        "writer": info.writer,
        "sequence": info.sequence,
        "schema_version": info.schema_version,
        "row_counts": info.row_counts,
        "sha256": info.sha256,
        "db_size": info.db_size,
        **({"delta": info.delta.as_json()} if info.delta else {}),
        "parts": [
            {"message_id": p.message_id, "file_id": p.file_id, "size": p.size, "sha256": p.sha256}
            | ({"chat_id": p.chat_id} if p.chat_id is not None else {})
            for p in entry.parts
        ],
    }


def parse_index(data: bytes, chat_id: int, message_id: int, seal: Seal, posted_by_bot: bool) -> Index:
    """The index in `data`, the document of message `message_id` of chat `chat_id`, when the
    bot wrote it (see the module's docstring); NotABackupError otherwise, whatever the bytes. A
    damaged entry is left out (and logged)."""
    if len(data) > MAX_BYTES:
        raise NotABackupError("the index is implausibly large")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise NotABackupError("the index is not readable JSON") from None
    if not isinstance(document, dict):
        raise NotABackupError("the pinned document is not a backup index")
    if document.get("format") == FORMAT:
        body = {key: value for key, value in document.items() if key != "seal"}
        if not seal.verify(_canonical(body), document.get("seal")):
            raise NotABackupError("the index is not sealed by this bot")
        if (document.get("chat_id"), document.get("message_id")) != (chat_id, message_id):
            raise NotABackupError("the index names another message: a copy, not the bot's own")
    elif document.get("format") != FORMAT_UNSEALED or not posted_by_bot:
        raise NotABackupError("the pinned document is not a backup index of this bot")
    return Index(
        message_id,
        _head(document),
        _entries(document),
        _levels(document),
        _refs(document.get("scrub")),
        chat_id,
        _writes(document.get("writes")),
    )


def _head(document: dict) -> Head | None:
    return Head.from_json(document["head"]) if document.get("head") is not None else None


def _message_ids(value, what: str) -> list[int]:
    value = value or []
    if not isinstance(value, list) or len(value) > MAX_PARTS or not all(map(_message_id, value)):
        raise NotABackupError(f"the index is damaged ({what})")
    return value


def _levels(document: dict) -> list[list[int]]:
    """The on-change messages by level; an index without levels held one full backup there."""
    levels = document.get("levels")
    if levels is None:
        return [_message_ids(document.get("rolling"), "rolling"), *([] for _ in range(LEVELS - 1))]
    if not isinstance(levels, list) or len(levels) != LEVELS:
        raise NotABackupError("the index is damaged (levels)")
    return [_message_ids(level, "levels") for level in levels]


def _refs(value) -> list[Ref]:
    value = value or []
    if not isinstance(value, list) or len(value) > MAX_PARTS:
        raise NotABackupError("the index is damaged (scrub)")
    refs = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and _chat_id(item[0]) and _message_id(item[1])):
            raise NotABackupError("the index is damaged (scrub)")
        refs.append(Ref(item[0], item[1]))
    return refs


def _writes(value) -> list[tuple[float, str]]:
    """The recent writes an index lists; whatever is not one is left out (only a count toward
    Telegram's pace depends on them)."""
    if not isinstance(value, list):
        return []
    return [
        (float(item[0]), item[1])
        for item in value[-MAX_WRITES:]
        if isinstance(item, list)
        and len(item) == 2
        and isinstance(item[0], int | float)
        and not isinstance(item[0], bool)
        and 0 < item[0] < 1e11
        and isinstance(item[1], str)
        and len(item[1]) <= 40
    ]


def _entries(document: dict) -> list[Entry]:
    backups = document.get("backups")
    if not isinstance(backups, list) or len(backups) > MAX_ENTRIES:
        raise NotABackupError("the index is damaged (backups)")
    entries = []
    for raw in backups:
        try:
            entries.append(_entry(raw))
        except NotABackupError as error:
            log.warning("leaving a damaged entry out of the chat's backup index: %s", error)
    return entries


def _entry(raw) -> Entry:
    problem = "an index entry is damaged"
    if not isinstance(raw, dict):
        raise NotABackupError(problem)
    name, size, encrypted, parts = raw.get("name"), raw.get("size"), raw.get("encrypted"), raw.get("parts")
    if not (isinstance(name, str) and VISIBLE_NAME.match(name)):
        raise NotABackupError(f"{problem} (name)")
    if not _count(size) or not isinstance(encrypted, bool):
        raise NotABackupError(f"{problem} (size)")
    if not isinstance(parts, list) or not 0 < len(parts) <= MAX_PARTS:
        raise NotABackupError(f"{problem} (parts)")
    checked = tuple(_part(part, problem) for part in parts)
    if sum(part.size for part in checked) != size:
        raise NotABackupError(f"{problem} (its parts do not add up)")
    info = checked_info(
        raw.get("created_at"),
        raw.get("reason"),
        raw.get("schema_version"),
        raw.get("row_counts"),
        raw.get("sha256"),
        raw.get("db_size"),
        generation=raw.get("generation", 0),
        writer=raw.get("writer", ""),
        sequence=raw.get("sequence", 0),
        delta=raw.get("delta"),
        problem=problem,
    )
    return Entry(
        replace(info, location=checked[0].file_id, name=name, size=size, encrypted=encrypted), checked
    )


def _part(raw, problem: str) -> Part:
    if not isinstance(raw, dict):
        raise NotABackupError(f"{problem} (part)")
    message_id, file_id, size, sha256 = (raw.get(k) for k in ("message_id", "file_id", "size", "sha256"))
    chat_id = raw.get("chat_id")
    if (
        not _message_id(message_id)
        or not (isinstance(file_id, str) and FILE_ID.match(file_id))
        or not _count(size)
        or not (isinstance(sha256, str) and SHA256.match(sha256))
        or not (chat_id is None or _chat_id(chat_id))
    ):
        raise NotABackupError(f"{problem} (part)")
    return Part(message_id, file_id, size, sha256, chat_id)


def _message_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 53


def _chat_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < abs(value) < 1 << 53


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 44


def caption(index: Index, bot_username: str) -> Joined:
    """What people see under the pinned index."""
    parts = [
        Text(
            "📌 Backup index of @{bot}: keep it pinned, it is how the bot finds its backups after a restart.",
            bot=Code(bot_username),
        )
    ]
    if index.entries:
        newest = index.entries[0].info
        users = newest.row_counts.get("users")  # an index of an older format may not say
        parts.append(
            Plural(
                "Newest: {when}, {reason}, {size}, {count} user",
                "Newest: {when}, {reason}, {size}, {count} users",
                users,
                when=newest.created_at,
                reason=shown_reason(newest.reason),
                size=Size(newest.size),
            )
            if users is not None
            else Text(
                "Newest: {when}, {reason}, {size}",
                when=newest.created_at,
                reason=shown_reason(newest.reason),
                size=Size(newest.size),
            )
        )
        parts.append(Text("Backups listed: {count}.", count=len(index.entries)))
    return lines(*parts)


# A newer instance asking the writer to hand over (lease.Knock) writes this line under the
# caption: the one part of the pinned index it may change without touching the document, which
# only the writer rewrites. It is sealed for that message, as the index is. The writer's next
# index drops it.
KNOCK_LINE = re.compile(r"^🔔 Hand-over asked by ([A-Za-z0-9._:-]{1,80}) at (\S{1,40}) ([0-9a-f]{16})$")


def _knock_seal(seal: Seal, chat_id: int, message_id: int, instance: str, at: str) -> str:
    return seal.sign(f"knock:{chat_id}:{message_id}:{instance}:{at}".encode())[:16]


def caption_with_knock(text: str, knock: Knock, seal: Seal, chat_id: int, message_id: int) -> str:
    """`text` (a pinned index's caption) with `knock` as its last line, within Telegram's 1024
    characters: what the caption said before is cut, never the request."""
    at = knock.at.isoformat(timespec="milliseconds")
    mark = _knock_seal(seal, chat_id, message_id, knock.instance, at)
    line = f"🔔 Hand-over asked by {knock.instance} at {at} {mark}"
    kept = "\n".join(kept for kept in text.splitlines() if not kept.startswith("🔔 "))
    while kept and telegram_length(kept) + 1 + telegram_length(line) > 1024:
        kept = kept[: -max(1, (telegram_length(kept) + telegram_length(line) - 1023) // 2)]
    return kept + "\n" + line if kept else line


def telegram_length(text: str) -> int:
    """Telegram counts a text's length in UTF-16 code units: an emoji is two."""
    return len(text.encode("utf-16-le")) // 2


def knock_in_caption(text: str, seal: Seal, chat_id: int, message_id: int) -> Knock | None:
    """The request in a pinned index's caption, when sealed by this bot for this message;
    None without one, or with a damaged or forged one."""
    for line in reversed(text.splitlines()[-5:]):
        found = KNOCK_LINE.match(line)
        if found:
            instance, at, mark = found.groups()
            if not hmac.compare_digest(mark, _knock_seal(seal, chat_id, message_id, instance, at)):
                return None
            try:
                return Knock.from_json({"instance": instance, "at": at})
            except NotABackupError:
                return None
    return None


# Where the index is, pinned in the first admin's private chat (where no member of a backup group
# reaches): the bot's own message, its last line sealed for the backup chat and the index's
# message. A start that finds the index neither on top nor beneath (someone unpinned or deleted
# it) pins that message again, or knows that it is gone.
POINTER_LINE = re.compile(r"^index (-?[0-9]{1,20}):([0-9]{1,20}) ([0-9a-f]{16})$")


def _pointer_seal(seal: Seal, chat_id: int, message_id: int) -> str:
    return seal.sign(f"pointer:{chat_id}:{message_id}".encode())[:16]


def pointer_text(text: str, seal: Seal, chat_id: int, message_id: int) -> str:
    return f"{text}\nindex {chat_id}:{message_id} {_pointer_seal(seal, chat_id, message_id)}"


def pointer_in(text: str, seal: Seal, chat_id: int) -> int | None:
    """The index's message in chat `chat_id` that a pointer names, when sealed by this bot."""
    found = POINTER_LINE.match(text.splitlines()[-1] if text else "")
    if not found:
        return None
    chat, message, mark = int(found.group(1)), int(found.group(2)), found.group(3)
    if chat != chat_id or not _message_id(message):
        return None
    return message if hmac.compare_digest(mark, _pointer_seal(seal, chat, message)) else None
