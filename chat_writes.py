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
        # Versions learned as someone else's edit: a thread may read this process's own edit
        # before the thread that made it records it (made() then takes it back).
        self._others: deque[tuple] = deque(maxlen=50)

    def learn(self, pinned, writes=()) -> None:
        """`pinned` is the bot's own index; `writes`, those it lists."""
        edited = _edited(pinned)
        if not isinstance(edited, int):
            return
        self.pacer.saw_server_time(edited)  # Telegram's clock was at least there
        seen = {}
        with self._lock:
            version = _version(pinned)
            if version not in self._own:  # whole seconds: counted at the second's end
                seen[version] = (float(edited) + 1.0, f"edit {pinned.message_id}")
                if version not in self._others:
                    self._others.append(version)
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
            self.pacer.made_edit(float(_edited(message)) + 1.0, f"edit {message.message_id}")
            if version in self._others:
                self._others.remove(version)
                self.pacer.forget(self.chat_id(), version)

    def unknown(self) -> None:
        """This process is about to write to the chat before it has read the index (unpinning
        what covers it): the writes of the last seconds are unknown to it, so as many as the
        guidance's few seconds allow count as made now, once."""
        with self._lock:
            now = self.pacer.server_now()
            unknown = {("unknown", n): (now, "unknown") for n in range(3)}
            self.pacer.learn(self.chat_id(), (), unknown)


def _edited(message) -> int:
    """When the message was last changed, in Telegram's whole seconds (an index edit is listed,
    by a process that did not make it, as this plus one: counted at the second's end)."""
    return getattr(message, "edit_date", None) or message.date


def _version(message) -> tuple:
    """What tells one edit of a message from another: its date is in whole seconds, so a knock
    and the writer's edit within one second differ by caption or file."""
    document = getattr(message, "document", None)
    return (
        message.message_id,
        _edited(message),
        message.caption,
        getattr(document, "file_unique_id", None),
    )
