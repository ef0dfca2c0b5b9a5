"""What the tests share: talking to the stand-in, pressing the panel's buttons, reading what
the bot wrote and what its database holds. Fixtures live in conftest.py; everything else shared
lives here, once."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sqlite3
import urllib.request
from contextlib import closing
from pathlib import Path

from bot_process import ADMIN_ID

import bot_api


def bot_for(fake, **options):
    """A TeleBot whose every call goes to the stand-in: the one place its URL is given."""
    return bot_api.build(fake.token, fake.url, **options)


# --- the panel and the people, through the stand-in -------------------------------------------


def reply_after(fake, chat, seen, expect, timeout=20, what=""):
    """The bot's first message in `chat` after the first `seen` containing `expect` (in its
    text or its caption)."""

    def find():
        return next(
            (m for m in fake.messages(chat)[seen:] if expect in (m.get("text") or m.get("caption") or "")),
            None,
        )

    return fake.wait_for(find, timeout, what or f"a reply in {chat} containing {expect!r}")


def press(fake, text, expect, chat=ADMIN_ID, timeout=20, **sender):
    """Send `text` (a command, a button's label, anything) and return the bot's first reply
    after it containing `expect`."""
    seen = len(fake.messages(chat))
    fake.send_text(chat, text, **sender)
    return reply_after(fake, chat, seen, expect, timeout, f"a reply to {text!r} containing {expect!r}")


def upload(fake, name, content, expect, chat=ADMIN_ID):
    """Send a document; the bot's first reply after it containing `expect`."""
    seen = len(fake.messages(chat))
    fake.send_document(chat, name, content)
    return reply_after(fake, chat, seen, expect, 20, f"a reply to the document {name!r}")


def buttons(message):
    """The labels of a message's reply keyboard, row after row."""
    keyboard = (message.get("reply_markup") or {}).get("keyboard", [])
    return [b["text"] if isinstance(b, dict) else b for row in keyboard for b in row]


def register_users(fake, *user_ids):
    for user_id in user_ids:
        press(fake, "/start", "registered", chat=user_id)


def backup_by_admin(fake):
    """/backup from the admin; the text of its ✅ answer."""
    return press(fake, "/backup", "✅ Backup backup-", timeout=30)["text"]


# --- what the bot wrote ------------------------------------------------------------------------


def chat_index(fake, chat_id) -> dict:
    """The backup index the bot keeps pinned in a chat (telegram_index.py), as JSON."""
    pinned = fake.pinned_message(chat_id)
    assert pinned is not None and pinned["document"]["file_name"].endswith("-backup-index.json"), pinned
    return json.loads(fake.file_bytes(pinned["document"]["file_id"]))


def backups_in_chat(fake, chat_id) -> list[dict]:
    """The backups the chat's pinned index lists; none while no index is pinned there."""
    pinned = fake.pinned_message(chat_id)
    if pinned is None or not (pinned.get("document") or {}).get("file_name", "").endswith(
        "-backup-index.json"
    ):
        return []
    return json.loads(fake.file_bytes(pinned["document"]["file_id"])).get("backups") or []


def newest_backup_message(fake, chat_id) -> dict:
    """The message of the newest backup the chat's index lists."""
    entry = chat_index(fake, chat_id)["backups"][0]
    return next(m for m in fake.messages(chat_id) if m["message_id"] == entry["parts"][0]["message_id"])


def users_in(db_path, *, admins=(ADMIN_ID,)) -> set[int]:
    """The user ids a database file holds, admins left out."""
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return {row[0] for row in db.execute("SELECT user_id FROM users") if row[0] not in admins}


def query(db_path, sql, *args):
    """Rows of a query on a database file, read-only (a running bot's too)."""
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        return db.execute(sql, args).fetchall()


def fingerprint(folder: Path) -> dict:
    """Every file under `folder` and its content (the lock file aside): what changed, if anything."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and p.name != "bot.db.lock"
    }


# --- the bot's HTTP endpoint -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health(port) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200
        return json.loads(response.read())


# What a log line of ours must never show: an object's insides instead of what it says.
INTERNAL_REPR = re.compile(r"\b(Code|Text|Size|Joined|BackupInfo|Head|Knock|Entry|Part)\(|object at 0x")


def last_word_of_main(log: str) -> str:
    """The last line main.py logged: how the process says it ended (another thread may still log
    a line after it)."""
    return [line for line in log.splitlines() if " main: " in line][-1]
