"""The backup chat (BACKUP_CHAT_ID) and its pinned index, through the Bot API (bot_api.py):
what telegram_destination.py's TelegramChat (the backups) and ChatLease (the writer's head and
knock) share.

Telegram's rules, as its server keeps them (tests/fake_bot_api/ follows its source):
- getChat shows the pinned message with the highest id, whatever was pinned last: when someone
  pins a message over the index, the bot does not fight the order; it sends a fresh index and
  pins that, and leaves their pin as it was. On an empty disk, with something else on top, it
  looks beneath once (unpinning what covers the index, and pinning it again at once).
- Only what the bot wrote itself is trusted (telegram_index.py: the sender, and a seal only the
  token's holder can make). Anything else is data: it changes nothing, and is reported once.
- Nobody can search a chat's history: an index unpinned or deleted is found again through a
  sealed line the bot pins in the first admin's private chat (where no member of a backup group
  reaches), and one deleted is a refusal to read the chat (the pause), never an empty chat.
- A bot cannot delete a message older than 48 hours, but may edit its own forever: a backup
  rotated out is deleted, or its document replaced by a few bytes that hold no data.
- A basic group upgraded to a supergroup answers writes with `migrate_to_chat_id`: backups
  follow it there, and the admins are told what to set BACKUP_CHAT_ID to.
- Flood control and Telegram's pace are bot_api.py's; a write that Telegram refuses is never
  taken for a message that is gone (no second index because of a 429).
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import telebot
from telebot import types

import bot_api
from backup_format import NotABackupError
from bot_api import BotApiError
from chat_writes import ChatWrites
from destinations import DestinationError
from i18n import ENGLISH, Alert, Reader, Text
from lease import Knock
from telegram_index import (
    Entry,
    Index,
    Ref,
    Seal,
    caption_with_knock,
    knock_in_caption,
    parse_index,
    pointer_in,
    pointer_text,
    serialize,
)
from telegram_index import caption as index_caption

log = logging.getLogger(__name__)

INDEX_LIMIT = 1 << 20
MAX_COVERING = 10  # other messages pinned over the index that are looked beneath (a pin is paced)
DESTINATION = "telegram"  # the name its backups are listed under (TelegramChat.name)
ROTATED_OUT = b"This backup was rotated out; its data is gone from this chat.\n"
GONE = ("message to delete not found", "message to edit not found", "message not found")
UNDELETABLE = ("can't be deleted",)  # older than 48 hours: "for everyone" in some chats
FLOOD_TRIES = 3  # an edit of the index refused by flood control is tried again this many times


@contextmanager
def chat_errors(action: str) -> Iterator[None]:
    """A failed Bot API call about the chat as one DestinationError line: Telegram would not
    `action` the chat, and why."""
    try:
        with bot_api.calling(f"{action} the chat"):
            yield
    except BotApiError as error:
        raise DestinationError(str(error)) from None


class Rewritten(DestinationError):
    """The index changed under this process (another instance's head): not written over."""


class Refused(DestinationError):
    """Telegram answered no to an edit of the index: it was not changed."""


def paced(method):
    """Work on the chat (a method of an object with the chat's `index`, or of the ChatIndex
    itself): one at a time in this process (its threads read and rewrite one index: the backup
    jobs, the writer's watch, the panel), each write within Telegram's guidance (bot_api.paced)."""

    @functools.wraps(method)
    def paced(self, *args, **kwargs):
        chat = self if isinstance(self, ChatIndex) else self.index
        with chat.lock, bot_api.paced():
            return method(self, *args, **kwargs)

    return paced


def posted_by(message, bot_id: int) -> bool | None:
    """Whether the bot `bot_id` posted `message`; None where Telegram does not say (a channel's
    posts carry no sender: only the seal tells)."""
    sender = getattr(message, "from_user", None)
    if sender is None and getattr(message.chat, "type", "") == "channel":
        return None
    return sender is not None and sender.id == bot_id


class ChatIndex:
    """The backup chat and its pinned index document, as this process last read or wrote it.
    `lock` (re-entrant) makes each piece of work on it whole: a read, then a write based on it."""

    def __init__(
        self,
        bot: telebot.TeleBot,
        chat_id: int,
        alert: Alert | None = None,
        reader: Reader = ENGLISH,
        moved: Callable[[int, int], object] = lambda old, new: None,
        pointer_chat: int | None = None,
    ):
        """reader: how the captions people see in the chat are written. moved(old, new): the
        chat was upgraded to a supergroup (main.py remembers it and tells the admins).
        pointer_chat: the first admin's private chat, where the bot pins where its index is."""
        self.bot, self.chat_id, self.reader = bot, chat_id, reader
        self.api = bot_api.api_of(bot)
        self.seal = Seal(bot.token)
        self.alert = alert or (lambda text: None)
        self.moved = moved
        self.pointer = Pointer(self, pointer_chat)
        self._username: str | None = None
        self._probed = False  # whether a basic group was asked if it moved
        self.lock = threading.RLock()
        self._told: set[str] = set()  # what the admins were told once
        self._to_repin: list[int] = []  # others' pins this process took away and owes back
        self.on_top = False  # the index is what getChat shows, as last read
        self.covered = False  # another message is what getChat shows, as last read (else none)
        self.bottomless: int | None = None  # the top pin, when more than MAX_COVERING covered the index
        self.known: Index | None = None  # the index as last read or written by this process
        # The request to hand over under the index's caption as last read, and on which message:
        # an edit of the index carries it, or the writer would wipe the request it must heed.
        self._knock: tuple[int, Knock] | None = None
        self._document: str | None = None  # the index's document as last read or written here
        self._looked_under: int | None = None  # the covering message last looked beneath
        self.writes = ChatWrites(self.api.pacer, lambda: self.chat_id)
        self.messages = Messages(bot, self._tell_once)

    @property
    def bot_username(self) -> str:
        if self._username is None:
            with chat_errors("ask Telegram about the bot for"):
                self._username = self.bot.get_me().username or "bot"
        return self._username

    @property
    def index_name(self) -> str:
        return f"{self.bot_username}-backup-index.json"

    # --- reading ---

    @paced
    def read(self, writing: bool = False) -> Index:
        """The chat's index. With another message pinned over it, the index this process knows
        (it writes a fresh one on top at its next write); without one (an empty disk), the
        messages over it are looked beneath, once, and pinned again as they were. When more
        than MAX_COVERING cover it, nobody can tell what is beneath: a DestinationError, so a
        start on an empty disk never takes the chat for empty (the pause); `writing` (a write
        that was let go: a fresh index on top) reads it as empty."""
        pinned = self.pinned()
        index = self.trusted(pinned)
        self.on_top, self.covered = index is not None, index is None and pinned is not None
        knock = (
            knock_in_caption(pinned.caption or "", self.seal, self.chat_id, pinned.message_id)
            if index
            else None
        )
        self._knock = (pinned.message_id, knock) if knock is not None else None
        if index is not None:
            self.writes.learn(pinned, index.writes)
            self._document = pinned.document.file_unique_id  # as read: an edit expects it
        if pinned is None or self.bottomless != pinned.message_id:
            self.bottomless = None  # looked beneath again only when the pins changed
        if index is None and self.known is not None and self.known.message_id is not None:
            return self._beneath_once(pinned)
        if index is None and pinned is not None and self.bottomless is None:
            index = self._look_beneath()
        if index is None and self.bottomless is None:
            index = self._by_pointer(writing)
        if index is None and pinned is not None and self.bottomless is None:
            self._tell_once("covered", _COVERED_LOST)
        if index is None and self.bottomless is not None and not writing:
            raise DestinationError(
                f"more than {MAX_COVERING} other messages are pinned over the backup index, so the "
                "bot cannot see whether its backups are beneath: unpin them"
            )
        self.known = index or Index(chat_id=self.chat_id)
        return self.known

    def _beneath_once(self, pinned) -> Index:
        """The index as it is beneath what covers it, looked at once per cover (what this
        process knows may be older: another instance's claim, a final head, made before the
        cover came); after that, what this process knows (it writes a fresh index on top at
        its next write)."""
        if pinned is not None and self._looked_under != pinned.message_id and self.bottomless is None:
            self._looked_under = pinned.message_id
            beneath = self._look_beneath(found_told=False)
            if beneath is not None:
                self.known = beneath
        return self.known

    def pinned(self):
        """The chat's pinned message as getChat shows it; None when there is none, or when the
        bot was never in the chat (an admin who has not written to it yet: certainly no backup
        there; any other error may hide one, and is raised)."""
        self._check_moved()
        self._repin_what_is_owed()
        return self.peek()

    def peek(self):
        """The chat's pinned message as getChat shows it, None when there is none: a read
        only (no pin given back), which any thread may make while another holds the lock."""
        try:
            with chat_errors("read the pinned message of"):
                return self.bot.get_chat(self.chat_id).pinned_message
        except DestinationError as error:
            if "chat not found" in str(error):
                return None
            raise

    def trusted_sender(self, pinned) -> bool:
        """Whether `pinned` is a document named as the index that the bot sent (a channel's
        posts carry no sender: there, its name and size only; what it says is not read)."""
        document = getattr(pinned, "document", None)
        if document is None or document.file_name != self.index_name:
            return False
        posted = posted_by(pinned, self.api.bot_id)
        return bool(posted) or (posted is None and (document.file_size or 0) <= INDEX_LIMIT)

    def trusted(self, pinned) -> Index | None:
        """The index in `pinned` when the bot wrote it; None when `pinned` is anything else
        (told once when it only looks like one). An index of the bot's that cannot be read is
        a DestinationError: backups may be behind it."""
        document = getattr(pinned, "document", None)
        if document is None or document.file_name != self.index_name:
            return None
        posted = posted_by(pinned, self.api.bot_id)
        if posted is False:
            self._tell_once("forged", _FORGED)
            return None
        if posted is None and (document.file_size or 0) > INDEX_LIMIT:
            self._tell_once("forged", _FORGED)  # a post in a channel: not the bot's, by its size
            return None
        data = self._download_index(document)
        try:
            index = parse_index(data, self.chat_id, pinned.message_id, self.seal, bool(posted))
        except NotABackupError as error:
            if posted:  # the bot's own, damaged
                raise DestinationError(f"the pinned backup index cannot be read: {error}") from None
            self._tell_once("forged", _FORGED)
            return None
        index.entries = [Entry(replace(e.info, destination=DESTINATION), e.parts) for e in index.entries]
        return index

    def _download_index(self, document) -> bytes:
        with chat_errors("read the backup index of"):
            file = self.bot.get_file(document.file_id)
            if (file.file_size or 0) > INDEX_LIMIT:
                raise DestinationError("the pinned backup index is implausibly large")
            data = io.BytesIO()
            self.api.download(file.file_path, data, INDEX_LIMIT)
        return data.getvalue()

    @paced
    def _look_beneath(self, found_told: bool = True) -> Index | None:
        """Unpin what covers the index, to see beneath it, and pin others' messages again at
        once (pins are ordered by message id: theirs come back on top as they were; a pin the
        bot could not give back is owed, and given back at the next read). `found_told`: the
        admins hear that it was found there (not when the bot pins a fresh index on top next,
        which it tells)."""
        covering, index = [], None
        if self.known is None:
            self.writes.unknown()  # its first writes here come before it could learn any
        try:
            for _ in range(MAX_COVERING + 1):
                pinned = self.pinned()
                index = self.trusted(pinned)
                if index is not None or pinned is None or len(covering) == MAX_COVERING:
                    break
                if not self.messages.unpin(self.chat_id, pinned.message_id):
                    break
                if not posted_by(pinned, self.api.bot_id):  # a message of the bot's own stays unpinned
                    covering.append(pinned.message_id)
        finally:
            self._to_repin += reversed(covering)
            self._repin_what_is_owed()
        deep = index is None and pinned is not None  # the bottom not reached: the limit, or a refusal
        self.bottomless = (covering[0] if covering else pinned.message_id) if deep else None
        if deep or (index is not None and found_told):
            self._tell_once("covered", _COVERED_FOUND if index is not None else _COVERED_DEEP)
        return index

    def _by_pointer(self, writing: bool) -> Index | None:
        """The index neither on top nor beneath (unpinned, or deleted), where the pointer left
        with the first admin says it is: pinned again, and read. A pointer to an index that is
        gone is a DestinationError (nobody can tell which backups the chat holds: the pause),
        unless `writing`."""
        where = self.pointer.read()
        if where is None:
            return None
        if self.messages.pin(self.chat_id, where):
            index = self.trusted(self.pinned()) or self._look_beneath()
            if index is not None:
                self._tell_once("repinned", _UNPINNED)
                return index
        if writing:
            return None
        self._tell_once("gone", _GONE)
        raise DestinationError(
            f"the backup index (message {where}) cannot be pinned again: it was deleted from the "
            "chat, so the bot cannot tell which backups are there"
        )

    def _repin_what_is_owed(self) -> None:
        while self._to_repin and self.messages.pin(self.chat_id, self._to_repin[0]):
            self._to_repin.pop(0)

    # --- writing ---

    @paced
    def write(self, index: Index) -> None:
        """Edit the index in place when it is what getChat shows; else (none yet, something
        pinned over it, its message gone) send a fresh one and pin it on top. A refusal of an
        edit for any other reason (a 429, the network) is an error: never a second index."""
        index.chat_id = self.chat_id
        if index.message_id is not None and self.on_top:
            try:
                self._edit_index(index)
                self.known = index
                return
            except BotApiError as error:
                if not any(gone in error.description for gone in GONE):
                    refused = error.code is not None and 400 <= error.code < 500  # (else it may have)
                    raise (Refused if refused else DestinationError)(str(error)) from None
                log.warning("the backup index's message is gone; pinning a new one")
        self._publish(index)

    def _edit_index(self, index: Index) -> None:
        """Replace the index's document with `index`, carrying the knock under its caption.
        Room in Telegram's pace is made first; then the index is looked at and edited at once,
        nothing between the two: a knock left meanwhile is carried, not wiped, and an index
        another instance rewrote since this one read it (its claim) is not written over. A 429
        is waited out (while the thread's time allows), and the look taken again."""
        for attempt in range(FLOOD_TRIES):
            self._room_and_look(index)
            try:
                with bot_api.at_once():
                    edited = self._upload_index(index)
            except BotApiError as error:
                if error.retry_after is None or attempt == FLOOD_TRIES - 1:
                    raise
                continue
            if isinstance(edited, dict):
                self.writes.made(edited)
                self._document = (edited.get("document") or {}).get("file_unique_id")
            return

    def _room_and_look(self, index: Index) -> None:
        """Room for the edit, then the look (_look_before_editing); room again when the look
        learned writes that took it (a knock), a few times. Under a flood stop the thread's
        time cannot wait out, nothing is edited."""
        for _ in range(FLOOD_TRIES):
            room = self.api.wait_for_room(self.chat_id)
            if self.api.pacer.stopped_for(self.chat_id) > 0:
                raise BotApiError(
                    "Telegram's flood control asks for a longer wait than this work has: the "
                    "backup index was not edited",
                    code=429,
                )
            self._look_before_editing(index)
            if not room or self.api.has_room(self.chat_id):
                return

    def _look_before_editing(self, index: Index) -> None:
        """The index as it is now, before this process edits it: someone else's edit counts
        toward the pace (ChatWrites), a knock is carried, and a document this process did not
        read or write (another writer's), or a newer index of the bot's pinned above it, stops
        the edit."""
        pinned = self.peek()
        if not self.trusted_sender(pinned):
            return
        rewritten = pinned.message_id > index.message_id or (
            pinned.message_id == index.message_id
            and self._document not in (None, pinned.document.file_unique_id)
        )
        # Only an index the bot sealed counts (a channel's admin may post or edit a look-alike:
        # that is written over, or told once, never a reason to stop backing up).
        if rewritten and self.trusted(pinned) is not None:
            raise Rewritten(
                "another instance rewrote the backup index since this one read it: nothing was "
                "written over it (the next read tells which instance writes)"
            )
        if pinned.message_id != index.message_id:
            return
        self.writes.learn(pinned)
        knock = knock_in_caption(pinned.caption or "", self.seal, self.chat_id, pinned.message_id)
        if knock is not None:  # a knock left since the last read is carried, not wiped
            self._knock = (pinned.message_id, knock)

    def _upload_index(self, index: Index):
        # Its writes are those before it; the edit itself is learned by its version (ChatWrites).
        index.writes = self.api.pacer.writes_in(self.chat_id)
        data, text = serialize(index, self.seal), self.reader(index_caption(index, self.bot_username))
        if self._knock is not None and self._knock[0] == index.message_id:
            text = caption_with_knock(text, self._knock[1], self.seal, self.chat_id, index.message_id)
        media = bot_api.json_field({"type": "document", "media": "attach://index", "caption": text})
        fields = {"chat_id": self.chat_id, "message_id": index.message_id, "media": media}
        return self.api.upload(
            "edit the backup index in the chat",
            "editMessageMedia",
            fields,
            "index",
            self.index_name,
            lambda: io.BytesIO(data),
        )

    def _publish(self, index: Index) -> None:
        """A fresh index: sent, sealed for its own message, pinned; the one before retired."""
        message = self._send_index_document(index)
        old, covered = index.message_id, index.message_id is not None
        index.message_id = message.message_id
        try:
            with chat_errors("seal the backup index in"):
                self._edit_index(index)  # now it names its own message
            if not self.messages.pin(self.chat_id, message.message_id):
                raise DestinationError(
                    "cannot pin the backup index, so a start on an empty disk could not find the "
                    "backups: let the bot pin messages in the chat"
                )
        except DestinationError:
            index.message_id = old
            self.messages.delete(Ref(self.chat_id, message.message_id))
            raise
        self.on_top, self.known = True, index
        self.pointer.leave(message.message_id)
        if old is not None:
            self.messages.unpin(self.chat_id, old)
            self.messages.delete(Ref(self.chat_id, old))
        if covered and self.covered:
            self._tell_once("republished", _REPUBLISHED)
        elif covered:
            self._tell_once("repinned", _REPINNED)

    def _send_index_document(self, index: Index):
        """A new message to hold the index (sealed once its id is known); in the supergroup a
        group was upgraded to, when it was."""
        for _ in range(2):
            try:
                with bot_api.calling("send the backup index to the chat"):
                    return self.bot.send_document(
                        self.chat_id,
                        types.InputFile(io.BytesIO(b"{}"), file_name=self.index_name),
                        caption=self.reader(index_caption(index, self.bot_username)),
                        disable_notification=True,
                    )
            except BotApiError as error:
                if error.migrate_to_chat_id is None:
                    raise DestinationError(str(error)) from None
                self.follow(error.migrate_to_chat_id)
                index.message_id, index.chat_id = None, self.chat_id
        raise DestinationError("the backup chat moved twice while the bot wrote to it")

    # --- a group upgraded to a supergroup ---

    def _check_moved(self) -> None:
        """A basic group (a negative id not of a supergroup) that was upgraded still answers
        reads, with its old pins: only a write says where it went. So once per process, before
        anything is read there, a chat action asks."""
        if self._probed or not -(10**12) < self.chat_id < 0:
            return
        self._probed = True
        try:
            self.bot.send_chat_action(self.chat_id, "upload_document")
        except telebot.apihelper.ApiTelegramException as error:
            new = bot_api.failure_of("", error.result_json or {}).migrate_to_chat_id
            if new is not None:
                self.follow(new)
        except (telebot.apihelper.ApiException, OSError):
            self._probed = False  # ask again next time

    def follow(self, new: int) -> None:
        """From now on the chat is `new`: what the old group holds stays readable there."""
        if new == self.chat_id:
            return
        old, self.chat_id, self.on_top, self._document = self.chat_id, new, False, None
        if self.known is not None:  # its backups stay readable in the old group (their file ids)
            self.known.entries = [
                Entry(e.info, tuple(replace(p, chat_id=p.chat_id or old) for p in e.parts))
                for e in self.known.entries
            ]
            self.known.levels, self.known.message_id = Index().levels, None  # the old index stays there
        log.warning("the backup chat %s was upgraded to a supergroup: backups go to %s now", old, new)
        self.moved(old, new)

    def _tell_once(self, what: str, text: Text) -> None:
        if what not in self._told:
            self._told.add(what)
            self.alert(text)


class Messages:
    """The bot's own messages in the chat: pinned, unpinned, and taken out (rotated-out
    backups, an index retired): deleted, or, past the 48 hours in which a bot may delete, its
    document replaced."""

    def __init__(self, bot: telebot.TeleBot, tell_once: Callable[[str, Text], None]):
        self.bot, self.api, self.tell_once = bot, bot_api.api_of(bot), tell_once

    def pin(self, chat_id: int, message_id: int) -> bool:
        try:
            with chat_errors("pin a message in"):
                self.bot.pin_chat_message(chat_id, message_id, disable_notification=True)
            return True
        except DestinationError as error:
            log.warning("could not pin message %s in chat %s: %s", message_id, chat_id, error)
            return False

    def unpin(self, chat_id: int, message_id: int) -> bool:
        try:
            with chat_errors("unpin a message in"):
                self.bot.unpin_chat_message(chat_id, message_id)
            return True
        except DestinationError as error:
            log.warning("cannot unpin message %s in chat %s: %s", message_id, chat_id, error)
            return False

    def delete(self, ref: Ref) -> bool:
        """Take a message of the bot's out of the chat, or at least its data: deleted, or (older
        than 48 hours: a bot may not delete it, but may edit its own forever) its document
        replaced by a few bytes. True when nothing of the backup is left in it."""
        try:
            self.bot.delete_message(ref.chat_id, ref.message_id)
            return True
        except telebot.apihelper.ApiTelegramException as error:
            description = error.description or ""
            if any(gone in description for gone in GONE):
                return True
            if not any(words in description for words in UNDELETABLE):
                return self._beyond_reach(ref, description)
        except (telebot.apihelper.ApiException, OSError) as error:
            log.info(
                "message %s stays in chat %s for now: %s", ref.message_id, ref.chat_id, type(error).__name__
            )
            return False
        return self._blank(ref)

    def _blank(self, ref: Ref) -> bool:
        media = bot_api.json_field({"type": "document", "media": "attach://gone", "caption": "🗑"})
        try:
            self.api.upload(
                "blank a rotated backup in the chat",
                "editMessageMedia",
                {"chat_id": ref.chat_id, "message_id": ref.message_id, "media": media},
                "gone",
                "rotated-out.txt",
                lambda: io.BytesIO(ROTATED_OUT),
            )
            return True
        except BotApiError as error:
            if any(gone in error.description for gone in GONE) or "not modified" in error.description:
                return True
            return self._beyond_reach(ref, error.description)

    def _beyond_reach(self, ref: Ref, why: str) -> bool:
        """A message the bot can no longer change (the old group after an upgrade): told once,
        then let go (True); anything else is tried again later (False)."""
        if "upgraded to a supergroup" in why:
            self.tell_once("old group", _OLD_GROUP)
            return True
        log.info("message %s stays in chat %s for now: %s", ref.message_id, ref.chat_id, why)
        return False


class Pointer:
    """Where the index is, pinned in the first admin's private chat (telegram_index.pointer_text):
    one message of the bot's, edited in place as the index moves."""

    def __init__(self, chat: ChatIndex, pointer_chat: int | None):
        self.chat, self.pointer_chat = chat, pointer_chat
        self.message: int | None = None  # the pointer message, as last seen

    def _target(self) -> int | None:
        return None if self.pointer_chat in (None, self.chat.chat_id) else self.pointer_chat

    def read(self) -> int | None:
        """The index's message the pointer names; None without a pointer of the bot's."""
        chat, bot = self._target(), self.chat.bot
        if chat is None:
            return None
        try:
            with chat_errors("read the pinned message of"):
                pinned = bot.get_chat(chat).pinned_message
        except DestinationError as error:
            log.info("no pointer to the backup index with the admin: %s", error)
            return None
        if pinned is None or getattr(pinned.from_user, "id", None) != self.chat.api.bot_id:
            return None
        self.message = pinned.message_id
        return pointer_in(pinned.text or "", self.chat.seal, self.chat.chat_id)

    def leave(self, message_id: int) -> None:
        """Pin, in the first admin's private chat, where the index is now: the pointer edited in
        place (no new message, no new pin in their chat), or a new one (the one before goes)."""
        chat, bot = self._target(), self.chat.bot
        if chat is None:
            return
        text = pointer_text(self.chat.reader(_POINTER), self.chat.seal, self.chat.chat_id, message_id)
        if self.message is None:
            self.read()
        try:
            with chat_errors("leave where the backup index is in"):
                if self.message is not None and self._edit(chat, text):
                    return
                sent = bot.send_message(chat, text, disable_notification=True)
                bot.pin_chat_message(chat, sent.message_id, disable_notification=True)
        except DestinationError as error:
            log.warning("could not leave where the backup index is with the admin: %s", error)
            return
        old, self.message = self.message, sent.message_id
        if old is not None and old != sent.message_id:
            self.chat.messages.delete(Ref(chat, old))

    def _edit(self, chat: int, text: str) -> bool:
        try:
            self.chat.bot.edit_message_text(text, chat, self.message)
        except telebot.apihelper.ApiTelegramException as error:
            return "not modified" in (error.description or "")
        return True


_FORGED = Text(
    "📌 Someone else posted a document named like the bot's backup index in the backup chat. "
    "The bot trusts only what it wrote itself: it is ignored, and nothing changed."
)
_COVERED_FOUND = Text(
    "📌 Someone pinned another message over the bot's backup index in the backup chat. The index "
    "was found beneath it; the bot pins a fresh one on top and leaves their pin as it was."
)
_COVERED_LOST = Text(
    "📌 Someone pinned another message over the bot's backup index in the backup chat. No index "
    "was found beneath it, so the backups there cannot be found: pin the bot's backup index "
    "again if you know it; the next backup pins a new one."
)
_COVERED_DEEP = Text(
    "📌 Many messages are pinned over the bot's backup index in the backup chat: more than the bot "
    "looks beneath, so it cannot tell whether its backups are there. Nothing leaves the machine "
    "until you unpin them, or restore a backup or start fresh."
)
_REPUBLISHED = Text(
    "📌 Another message was pinned over the bot's backup index in the backup chat: the bot pinned a "
    "fresh index on top, and left the other pin as it was."
)
_REPINNED = Text(
    "📌 The bot's backup index was unpinned or deleted in the backup chat: the bot pinned a fresh "
    "one that lists every backup. Leave it pinned: it is how a restart finds the backups."
)
_POINTER = Text(
    "📌 Where the bot's backup index is in the backup chat, for the bot to find it again if "
    "someone there unpins it. Keep this message pinned."
)
_UNPINNED = Text(
    "📌 The bot's backup index was not pinned in the backup chat any more: it was found where the "
    "bot left its place with you, and pinned again."
)
_GONE = Text(
    "📌 The bot's backup index was deleted from the backup chat, so the bot cannot tell which "
    "backups are there. Nothing leaves the machine until you restore a backup or start fresh."
)
_OLD_GROUP = Text(
    "🗑 Some rotated-out backups stay in the backup group's history from before its upgrade to a "
    "supergroup: Telegram lets no bot change that history. Delete them there by hand if you must."
)
