"""What one process learns of the other processes' writes to the backup chat, from the bot's
index as it reads it: the writes the index lists (Pacer.writes_in of the process that wrote
it), and each edit of the index this process did not make itself (a knock, another writer),
told apart by the index's version. Telegram's pace counts them all (pacer.py)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from telebot import types

from pacer import Pacer


class ChatWrites:
    """Telegram's pace counts every process's writes to the chat; this one learns the others'
    from the bot's index as it reads it: the writes the index lists, and an edit of the index
    it did not make itself (a knock, another writer), told apart by the index's version.
    Any thread (a backup, the knock watch) may call; `_lock` makes each call whole."""

    def __init__(self, pacer: Pacer, chat_id: Callable[[], int]):
        self.pacer, self.chat_id = pacer, chat_id
        self._lock = threading.Lock()
        # The index as this process last wrote it (Telegram's answers): read back any other
        # way, someone else edited it.
        self._own: deque[tuple] = deque(maxlen=50)
        # Versions learned as someone else's edit, and how: a thread may read this process's
        # own edit before the thread that made it records it (made() then takes it back).
        self._others: dict[tuple, tuple[float, str]] = {}

    def learn(self, pinned, writes=()) -> None:
        """`pinned` is the bot's own index; `writes`, those it lists."""
        edited = getattr(pinned, "edit_date", None) or pinned.date
        if not isinstance(edited, int):
            return
        self.pacer.saw_server_time(edited)  # Telegram's clock was at least there
        seen = []
        with self._lock:
            version = _version(pinned)
            if version not in self._own:  # whole seconds: counted at the second's end
                self._others[version] = _as_listed(pinned)
                seen.append(self._others[version])
                while len(self._others) > 50:
                    del self._others[next(iter(self._others))]
            self.pacer.learn(self.chat_id(), writes, seen)

    def made(self, message) -> None:
        """This process sent or edited `message` (a Message, or its JSON) in the chat: when the
        index is read back as it is, or listed by another process, that is not someone else's
        write."""
        if isinstance(message, dict):
            message = types.Message.de_json(message)
        with self._lock:
            version = _version(message)
            self._own.append(version)
            self.pacer.made_edit(*_as_listed(message))
            if version in self._others:
                self.pacer.forget(self.chat_id(), *self._others.pop(version))


def _as_listed(message) -> tuple[float, str]:
    """An edit of the index as a process that did not make it counts and lists it: by its
    date (whole seconds: counted at the second's end), and which message."""
    edited = getattr(message, "edit_date", None) or message.date
    return (float(edited) + 1.0, f"edit {message.message_id}")


def _version(message) -> tuple:
    """What tells one edit of a message from another: its date is in whole seconds, so a knock
    and the writer's edit within one second differ by caption or file."""
    document = getattr(message, "document", None)
    return (
        message.message_id,
        getattr(message, "edit_date", None) or message.date,
        message.caption,
        getattr(document, "file_unique_id", None),
    )
