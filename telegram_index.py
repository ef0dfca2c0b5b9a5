"""The index a Telegram chat keeps of its backups: one JSON document, pinned, edited in place.

The Bot API cannot read a chat's history; what a bot starting on an empty disk can read is the
chat's pinned message (getChat). So that message is a document the bot keeps up to date:

    {"format": "telegram-bot-backup-index/1",
     "head": {...} | null,            who writes the backups (backup_format.Head)
     "rolling": 123 | null,           the message the on-change backups replace in place
     "backups": [{"message_id": 120, "file_id": "...", "name": "...", "size": 1234,
                  "encrypted": false, "created_at": "...", "reason": "...", "generation": 7,
                  "writer": "...", "schema_version": 2, "row_counts": {...}, "sha256": "...",
                  "db_size": 4096}, ...]}      newest first

Everything in it came from a chat other people may write to: parse_index checks every field and
answers an Index or NotABackupError, whatever the bytes.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from typing import Optional

import human
from backup_format import BackupInfo, Head, NotABackupError, checked_info

log = logging.getLogger(__name__)

FORMAT = "telegram-bot-backup-index/1"
MAX_BYTES = 1 << 20  # an index of a thousand backups is far smaller
MAX_ENTRIES = 1000
FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
VISIBLE_NAME = re.compile(r"^[A-Za-z0-9_]{0,64}-?backup-\d{8}T\d{9}Z-[a-z-]+\.db\.zst(\.age)?$")


@dataclass(frozen=True)
class Entry:
    """One backup in the chat: what it says about itself, and its message."""
    info: BackupInfo  # location: the document's file_id; name: the document's file name
    message_id: int


@dataclass
class Index:
    message_id: Optional[int] = None  # the pinned index message; None: there is none yet
    head: Optional[Head] = None
    entries: list[Entry] = field(default_factory=list)  # newest first
    rolling: Optional[int] = None  # the message the on-change backups are edited into

    def without(self, message_id: int) -> list[Entry]:
        return [entry for entry in self.entries if entry.message_id != message_id]


def serialize(index: Index) -> bytes:
    return json.dumps({
        "format": FORMAT,
        "head": index.head.as_json() if index.head else None,
        "rolling": index.rolling,
        "backups": [_entry_json(entry) for entry in index.entries],
    }, indent=1).encode()


def _entry_json(entry: Entry) -> dict:
    info = entry.info
    return {"message_id": entry.message_id, "file_id": info.location, "name": info.name,
            "size": info.size, "encrypted": info.encrypted,
            "created_at": info.created_at.isoformat(timespec="milliseconds"), "reason": info.reason,
            "generation": info.generation, "writer": info.writer,
            "schema_version": info.schema_version, "row_counts": info.row_counts,
            "sha256": info.sha256, "db_size": info.db_size}


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
    rolling = document.get("rolling")
    if rolling is not None and not _message_id(rolling):
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
    message_id, file_id, name = raw.get("message_id"), raw.get("file_id"), raw.get("name")
    size, encrypted = raw.get("size"), raw.get("encrypted")
    if not _message_id(message_id) or not (isinstance(file_id, str) and FILE_ID.match(file_id)):
        raise NotABackupError(f"{problem} (message)")
    if not (isinstance(name, str) and VISIBLE_NAME.match(name)):
        raise NotABackupError(f"{problem} (name)")
    if not (isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 1 << 44) \
            or not isinstance(encrypted, bool):
        raise NotABackupError(f"{problem} (size)")
    info = checked_info(raw.get("created_at"), raw.get("reason"), raw.get("schema_version"),
                        raw.get("row_counts"), raw.get("sha256"), raw.get("db_size"),
                        generation=raw.get("generation", 0), writer=raw.get("writer", ""),
                        problem=problem)
    return Entry(replace(info, location=file_id, name=name, size=size, encrypted=encrypted),
                 message_id)


def _message_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1 << 53


def caption(index: Index, bot_username: str) -> str:
    """What people see under the pinned index."""
    lines = [f"📌 Backup index of @{bot_username}: keep it pinned, it is how the bot finds its "
             "backups after a restart."]
    if index.entries:
        newest = index.entries[0].info
        users = newest.row_counts.get("users")
        lines.append(f"Newest: {human.time(newest.created_at)}, {newest.reason}, "
                     f"{human.size(newest.size)}" + (f", {users} users" if users is not None else ""))
        lines.append(f"{len(index.entries)} backups listed.")
    return "\n".join(lines)
