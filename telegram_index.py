"""The index a Telegram chat keeps of its backups: one JSON document, pinned, edited in place.

The Bot API cannot read a chat's history; what a bot starting on an empty disk can read is the
chat's pinned message (getChat). So that message is a document the bot keeps up to date:

    {"format": "telegram-bot-backup-index/1",
     "head": {...} | null,                who writes the backups (backup_format.Head)
     "rolling": [123, 124],               the messages the on-change backups replace in place
     "backups": [{"name": "...", "size": 1234, "encrypted": false,
                  "created_at": "...", "reason": "...", "generation": 7, "writer": "...",
                  "schema_version": 2, "row_counts": {...}, "sha256": "...", "db_size": 4096,
                  "parts": [{"message_id": 120, "file_id": "...", "size": 1234,
                             "sha256": "..."}, ...]}, ...]}      newest first

A backup larger than a bot may download travels as parts, each a document of its own with its
own checksum. A newer instance asking the writer to hand over leaves a line under the caption
(caption_with_knock), never in the document. Everything in the index came from a chat other people may write to: parse_index
checks every field and answers an Index or NotABackupError, whatever the bytes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace

from backup_format import SHA256, BackupInfo, NotABackupError, checked_info, shown_reason
from i18n import Code, Joined, Size, Text, lines
from lease import Head, Knock

log = logging.getLogger(__name__)

FORMAT = "telegram-bot-backup-index/1"
MAX_BYTES = 1 << 20  # an index of a thousand backups is far smaller
MAX_ENTRIES, MAX_PARTS = 1000, 10_000
FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
VISIBLE_NAME = re.compile(r"^[A-Za-z0-9_]{0,64}-?backup-\d{8}T\d{9}Z-[a-z-]+\.db\.zst(\.sealed)?$")


@dataclass(frozen=True)
class Part:
    """One document of a backup: where it is, and what it must hold."""

    message_id: int
    file_id: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Entry:
    """One backup in the chat: what it says about itself, and its parts, in order."""

    info: BackupInfo  # name: the visible name; location: the first part's file_id
    parts: tuple[Part, ...]

    @property
    def message_ids(self) -> list[int]:
        return [part.message_id for part in self.parts]


@dataclass
class Index:
    message_id: int | None = None  # the pinned index message; None: there is none yet
    head: Head | None = None
    entries: list[Entry] = field(default_factory=list)  # newest first
    rolling: list[int] = field(default_factory=list)  # the on-change backup's messages

    def find(self, name: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.info.name == name), None)


def serialize(index: Index) -> bytes:
    return json.dumps(
        {
            "format": FORMAT,
            "head": index.head.as_json() if index.head else None,
            "rolling": index.rolling,
            "backups": [_entry_json(entry) for entry in index.entries],
        },
        indent=1,
    ).encode()


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
        "schema_version": info.schema_version,
        "row_counts": info.row_counts,
        "sha256": info.sha256,
        "db_size": info.db_size,
        "parts": [
            {"message_id": p.message_id, "file_id": p.file_id, "size": p.size, "sha256": p.sha256}
            for p in entry.parts
        ],
    }


def parse_index(data: bytes, message_id: int) -> Index:
    """The index in `data`, the document of pinned message `message_id`. A damaged entry is
    left out (and logged); a document that is not an index at all raises NotABackupError."""
    if len(data) > MAX_BYTES:
        raise NotABackupError("the index is implausibly large")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise NotABackupError("the index is not readable JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise NotABackupError("the pinned document is not a backup index")
    head = Head.from_json(document["head"]) if document.get("head") is not None else None
    rolling = document.get("rolling") or []
    if not isinstance(rolling, list) or len(rolling) > MAX_PARTS or not all(map(_message_id, rolling)):
        raise NotABackupError("the index is damaged (rolling)")
    backups = document.get("backups")
    if not isinstance(backups, list) or len(backups) > MAX_ENTRIES:
        raise NotABackupError("the index is damaged (backups)")
    entries = []
    for raw in backups:
        try:
            entries.append(_entry(raw))
        except NotABackupError as error:
            log.warning("leaving a damaged entry out of the chat's backup index: %s", error)
    return Index(message_id, head, entries, rolling)


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
        problem=problem,
    )
    return Entry(
        replace(info, location=checked[0].file_id, name=name, size=size, encrypted=encrypted), checked
    )


def _part(raw, problem: str) -> Part:
    if not isinstance(raw, dict):
        raise NotABackupError(f"{problem} (part)")
    message_id, file_id, size, sha256 = (raw.get(k) for k in ("message_id", "file_id", "size", "sha256"))
    if (
        not _message_id(message_id)
        or not (isinstance(file_id, str) and FILE_ID.match(file_id))
        or not _count(size)
        or not (isinstance(sha256, str) and SHA256.match(sha256))
    ):
        raise NotABackupError(f"{problem} (part)")
    return Part(message_id, file_id, size, sha256)


def _message_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 53


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
        users = newest.row_counts.get("users")
        parts.append(
            Text(
                "Newest: {when}, {reason}, {size}, {users} users",
                when=newest.created_at,
                reason=shown_reason(newest.reason),
                size=Size(newest.size),
                users=users,
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


# A newer instance asking the writer to hand over (backup_format.Knock) writes this line under
# the caption: the one part of the pinned index it may change without touching the document,
# which only the writer rewrites. The writer's next index drops it.
KNOCK_LINE = re.compile(r"^🔔 Hand-over asked by ([A-Za-z0-9._:-]{1,80}) at (\S{1,40})$")


def caption_with_knock(text: str, knock: Knock) -> str:
    """`text` (a pinned index's caption) with `knock` as its last line, within Telegram's 1024
    characters: what the caption said before is cut, never the request."""
    line = f"🔔 Hand-over asked by {knock.instance} at {knock.at.isoformat(timespec='milliseconds')}"
    kept = "\n".join(kept for kept in text.splitlines() if not KNOCK_LINE.match(kept))
    while kept and telegram_length(kept) + 1 + telegram_length(line) > 1024:
        kept = kept[: -max(1, (telegram_length(kept) + telegram_length(line) - 1023) // 2)]
    return kept + "\n" + line if kept else line


def telegram_length(text: str) -> int:
    """Telegram counts a text's length in UTF-16 code units: an emoji is two."""
    return len(text.encode("utf-16-le")) // 2


def knock_in_caption(text: str) -> Knock | None:
    """The request in a pinned index's caption; None without one, or with a damaged one."""
    for line in reversed(text.splitlines()[-5:]):
        found = KNOCK_LINE.match(line)
        if found:
            try:
                return Knock.from_json({"instance": found.group(1), "at": found.group(2)})
            except NotABackupError:
                return None
    return None
