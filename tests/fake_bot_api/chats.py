"""Chats and their messages: who may send, edit, delete and pin what, as Telegram decides it."""

import copy
import json
import os
import time

from .rules import (
    BOT_DELETE_AGE,
    CANT_DELETE,
    CANT_DELETE_FOR_EVERYONE,
    CANT_EDIT,
    CAPTION_TOO_LONG,
    CHANNEL_RIGHTS,
    EDITED_CAPTION_TOO_LONG,
    EDITED_TEXT_TOO_LONG,
    FILE_TOO_BIG,
    INVALID_FILE_ID,
    MAX_CAPTION,
    MAX_TEXT,
    NO_CAPTION_TO_EDIT,
    NO_TEXT_TO_EDIT,
    NOT_MODIFIED,
    PIN_RIGHTS,
    SERVICE_PIN,
    SUPERGROUP_ID_BASE,
    TEXT_TOO_LONG,
    TOO_LARGE,
    UNPIN_NOT_FOUND,
    UPGRADED,
    chat_kind,
    utf16_length,
)
from .wire import ApiError

CONTENT_KEYS = ("text", "entities", "document", "caption", "caption_entities")
MEDIA_NOT_FOUND = "Bad Request: Can't parse InputMedia: media not found"
# What the bot may do in a group, supergroup or channel (ChatAdministratorRights); the stand-in's
# bot starts as an administrator with all of them, as a bot that keeps backups in a chat must be.
BOT_RIGHTS = ("is_admin", "can_pin_messages", "can_delete_messages", "can_edit_messages", "can_post_messages")
SOMEONE = "Someone"


class ChatsMixin:
    """The chats part of FakeBotAPI (state guarded by self._cond)."""

    def _init_chats(self):
        self._chats = {}  # chat_id -> {"kind", "title", "rights", "upgraded_to"}
        self._users = {}  # user_id -> the user as the stand-in saw them
        self._sent = {}  # chat_id -> [messages the bot sent]
        self._by_id = {}  # (chat_id, message_id) -> message (sent, received or service)
        self._last_message_id = {}
        self._pins = {}  # chat_id -> [pinned messages, in the order they were pinned]
        self._undeletable = set()  # (chat_id, message_id) that deleteMessage treats as too old
        self._files, self._paths = {}, {}
        self._files_stored = 0  # every file ever stored: a file_id is never given twice
        self._writes = []  # (chat_id, stand-in clock) of every call that changed a chat

    # ---- driving: what people do ----
    def send_text(self, user_id, text, *, username=None, first_name="User", chat_id=None, language_code=None):
        """A user writes `text` to the bot (chat_id None) or into a chat the bot is in.
        `language_code`: the IETF tag Telegram reports for the user's app (User.language_code)."""
        content = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._incoming(
            user_id, chat_id, content, username=username, first_name=first_name, language_code=language_code
        )

    def send_document(
        self, user_id, filename, content, *, caption=None, chat_id=None, username=None, first_name="User"
    ):
        """A user posts a document with any file name and caption, to the bot or into a chat."""
        fields = {"document": self._store_file(filename, content)}
        if caption is not None:
            fields["caption"] = caption
        return self._incoming(user_id, chat_id, fields, username=username, first_name=first_name)

    def pin(self, chat_id, message_id, user_id=999):
        """Someone (an administrator of the chat) pins a message that is there. Pinning makes a
        service message, which reaches the bot as an update (see _pin_message)."""
        with self._cond:
            message = self._by_id[(chat_id, message_id)]
            self._pin_message(chat_id, message, self._person(user_id), outgoing=False)

    def pin_by_someone(self, chat_id, text, user_id=999):
        """Someone (an administrator of the chat) posts `text` and pins it. The text itself is not
        queued as an update (a bot in privacy mode does not see a plain text in a group; send_text()
        makes one it sees); the pin's service message is."""
        with self._cond:
            someone = self._person(user_id)
            message = self._new_message(chat_id, someone, {"text": text}, outgoing=False)
            self._pin_message(chat_id, message, someone, outgoing=False)
            return self._public(message)

    def set_bot_rights(self, chat_id, **rights):
        """The bot's rights in a group, supergroup or channel: is_admin, can_pin_messages,
        can_delete_messages, can_edit_messages, can_post_messages (all True at first)."""
        unknown = set(rights) - set(BOT_RIGHTS)
        if unknown:
            raise TypeError(f"unknown rights: {sorted(unknown)}")
        with self._cond:
            self._chat_info(chat_id)["rights"].update({k: bool(v) for k, v in rights.items()})

    def make_channel(self, chat_id, title=None):
        """A -100... chat is a channel rather than a supergroup (the id alone does not tell)."""
        if chat_kind(chat_id) != "supergroup":
            raise ValueError(f"a channel's id is below {SUPERGROUP_ID_BASE}: {chat_id}")
        with self._cond:
            chat = self._chat_info(chat_id)
            chat["kind"] = "channel"
            if title:
                chat["title"] = title

    def upgrade_to_supergroup(self, group_id, user_id=999):
        """The group's owner upgrades a basic group to a supergroup; returns the new chat id.

        TDLib (td_api.tl, upgradeBasicGroupChatToSupergroupChat) "creates a new supergroup ... and
        sends a corresponding messageChatUpgradeTo and messageChatUpgradeFrom", deactivating the
        group: the old group ends with a service message {"migrate_to_chat_id"}, the supergroup
        starts with one {"migrate_from_chat_id"} (Client.cpp, JsonMessage::store), and both reach the
        bot (Client::need_skip_update_message skips neither). The old messages and pins stay in the
        old group, readable (getChat on its id still works: Client::check_chat_access needs only
        read access there); the supergroup has none of them (TDLib keeps the old group's history
        apart: supergroupFullInfo.upgraded_from_max_message_id points back into it). Files keep
        their file_id. Calls that write to the old id answer 400 with migrate_to_chat_id."""
        with self._cond:
            group = self._chat_info(group_id)
            if group["kind"] != "group" or group["upgraded_to"]:
                raise ValueError(f"{group_id} is not a basic group")
            new_id = SUPERGROUP_ID_BASE - abs(group_id)
            supergroup = self._chat_info(new_id)
            supergroup.update(title=group["title"], rights=dict(group["rights"]))
            group["upgraded_to"] = new_id
            owner = self._person(user_id)
            self._service_message(group_id, owner, {"migrate_to_chat_id": new_id}, outgoing=False)
            arrival = self._service_message(new_id, owner, {"migrate_from_chat_id": group_id}, outgoing=False)
            arrival["_cannot_delete"] = True  # can_delete_channel_message: ChannelMigrateFrom never goes
            self._changed()
            return new_id

    def make_undeletable(self, chat_id, message_id):
        """deleteMessage refuses this message (it need not exist yet) as Telegram refuses one older
        than 48 hours, so a caller's fallback (editing it instead, say) can be tested without
        advance_time() ageing everything else."""
        with self._cond:
            self._undeletable.add((chat_id, message_id))

    def damage_file(self, file_id):
        """The stored bytes of a file get one bit flipped, for good (damage at rest)."""
        with self._cond:
            stored = self._files[file_id]
            data = bytearray(stored["bytes"])
            data[len(data) // 2] ^= 1
            stored["bytes"] = bytes(data)

    def replace_file(self, file_id, content):
        """The stored bytes of a file become `content`, for good: what a test needs to stand
        for a document whose content is other than the bot wrote (a crafted one)."""
        with self._cond:
            self._files[file_id]["bytes"] = bytes(content)

    def edit_post_as_admin(self, chat_id, message_id, caption=None, content=None):
        """An administrator of a channel edits a post of someone else's (the bot's): its caption,
        or its document replaced by `content` under the same file name. Only in a channel: the
        Bot API's ChatAdministratorRights.can_edit_messages, "True, if the administrator can
        edit messages of other users and can pin messages; for channels only"."""
        with self._cond:
            message = self._by_id[(chat_id, message_id)]
            new = {} if caption is None else {"caption": caption}
            if content is not None:
                new["document"] = self._store_file(message["document"]["file_name"], content)
            message.update(new, edit_date=int(time.time()))
            self._changed()

    def delete_message_as_admin(self, chat_id, message_id):
        """An admin of the chat deletes a message, and its document is gone from Telegram's
        servers with it: getFile on its file_id fails from then on."""
        with self._cond:
            message = self._by_id[(chat_id, message_id)]
            self._mark_deleted(chat_id, message)
            document = message.get("document")
            if document:
                self._files.pop(document["file_id"], None)
            self._changed()

    # ---- what the chats hold ----
    def messages(self, chat_id=None):
        """The messages the bot sent (to one chat, or to all), deleted ones marked "deleted"."""
        with self._cond:
            chats = [self._sent.get(chat_id, [])] if chat_id is not None else self._sent.values()
            return [_inspectable(m) for msgs in chats for m in msgs]

    def history(self, chat_id):
        """Every message of the chat in order: the bot's, other people's and service messages."""
        with self._cond:
            found = [m for (chat, _), m in self._by_id.items() if chat == chat_id]
            return [_inspectable(m) for m in sorted(found, key=lambda m: m["message_id"])]

    def file_bytes(self, file_id):
        with self._cond:
            return self._files[file_id]["bytes"]

    def pinned_message(self, chat_id):
        """The message getChat shows as pinned_message, or None."""
        with self._cond:
            top = self._top_pin(chat_id)
            return _inspectable(top) if top else None

    def pinned_messages(self, chat_id):
        """Every pinned message of the chat by message id: the last is getChat's pinned_message."""
        with self._cond:
            pins = sorted(self._pins.get(chat_id, []), key=lambda m: m["message_id"])
            return [_inspectable(m) for m in pins]

    def writes(self, chat_id=None):
        """The times (stand-in clock, seconds) of every successful call that changed a chat (send*,
        edit*, pin, unpin, delete): to one chat, or to any."""
        with self._cond:
            return [at for chat, at in self._writes if chat_id is None or chat == chat_id]

    def most_writes(self, seconds, chat_id=None):
        """The most writes() within any `seconds` long window: Telegram's guidance is about one
        message a second in a chat, 20 a minute in a group, 30 a second in all
        (core.telegram.org/bots/faq, "My bot is hitting limits"; the limits are not in the source)."""
        times, best, start = sorted(self.writes(chat_id)), 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    # ---- state helpers (lock held) ----
    def _chat_info(self, chat_id):
        if not isinstance(chat_id, int) or chat_id == 0:
            raise ApiError(400, "Bad Request: chat not found")
        chat = self._chats.get(chat_id)
        if chat is None:
            kind = chat_kind(chat_id)
            chat = self._chats[chat_id] = {
                "kind": kind,
                "title": None if kind == "private" else f"Chat {chat_id}",
                "rights": dict.fromkeys(BOT_RIGHTS, True),
                "upgraded_to": None,
            }
        return chat

    def _chat_object(self, chat_id):
        """A chat as Client.cpp's JsonChat shows it in a message."""
        chat = self._chat_info(chat_id)
        if chat["kind"] == "private":
            user = self._users.get(chat_id, {})
            found = {"id": chat_id, "first_name": user.get("first_name", "User")}
            if user.get("username"):
                found["username"] = user["username"]
            return dict(found, type="private")
        found = {"id": chat_id, "title": chat["title"], "type": chat["kind"]}
        if chat["kind"] == "group":
            found["all_members_are_administrators"] = False
        return found

    def _person(self, user_id):
        return self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": SOMEONE}

    def _new_message_id(self, chat_id):
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _new_message(self, chat_id, sender, fields, *, outgoing):
        """A message as Client.cpp's JsonMessage shows it. In a channel a post is the channel's:
        no "from", the channel as "sender_chat" (Client::create_message: a messageSenderChat gives
        no sender user in a channel); elsewhere "from" is who sent it, the bot's own included."""
        chat = self._chat_info(chat_id)
        message = {"message_id": self._new_message_id(chat_id)}
        if chat["kind"] == "channel":
            message["sender_chat"] = self._chat_object(chat_id)
        else:
            message["from"] = sender
        message.update(chat=self._chat_object(chat_id), date=int(time.time()), **fields)
        message["_outgoing"] = outgoing
        self._by_id[(chat_id, message["message_id"])] = message
        return message

    def _update_kind(self, chat_id):
        """Client::process_new_message_queue: a channel's messages are channel_post updates."""
        return "channel_post" if self._chat_info(chat_id)["kind"] == "channel" else "message"

    def _announce(self, chat_id, message):
        """Queue an update about a new message; returns it (None when its kind is not wanted)."""
        return self._queue_update(self._update_kind(chat_id), self._public(message), chat_id, message["date"])

    def _incoming(self, user_id, chat_id, fields, username=None, first_name="User", language_code=None):
        sender = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            sender["username"] = username
        if language_code:
            sender["language_code"] = language_code
        with self._cond:
            self._users[user_id] = sender
            chat_id = user_id if chat_id is None else chat_id
            if self._chat_info(chat_id)["upgraded_to"]:
                raise ValueError(f"{chat_id} was upgraded to a supergroup: nobody posts there any more")
            message = self._new_message(chat_id, sender, fields, outgoing=False)
            update = self._announce(chat_id, message)
            self._changed()
            return copy.deepcopy(update) or {
                "update_id": None,
                self._update_kind(chat_id): self._public(message),
            }

    def _service_message(self, chat_id, sender, fields, *, outgoing):
        message = self._new_message(chat_id, sender, fields, outgoing=outgoing)
        message["_service"] = True
        self._announce(chat_id, message)
        return message

    def _store_file(self, filename, content):
        with self._cond:
            n = self._files_stored = self._files_stored + 1
            file_id, path = (
                f"BQACAgIAAxkB-file-{n}",
                f"documents/file_{n}{os.path.splitext(filename)[1]}",
            )
            self._files[file_id] = {"bytes": bytes(content), "name": filename, "path": path, "n": n}
            self._paths[path] = file_id
            return self._document(file_id)

    def _document(self, file_id):
        stored = self._files.get(file_id)
        if stored is None:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        return {
            "file_id": file_id,
            "file_unique_id": f"AgAD-{stored['n']}",
            "file_name": stored["name"],
            "mime_type": "application/octet-stream",
            "file_size": len(stored["bytes"]),
        }

    def _bot_message(self, chat_id, fields, params):
        message = self._new_message(chat_id, self.bot_user, fields, outgoing=True)
        message["reply_markup"] = params.get("reply_markup")
        self._sent.setdefault(chat_id, []).append(message)
        return self._public(message)

    def _public(self, message):
        return _public(message)

    def _chat_id(self, p):
        chat_id = p.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")  # Client::check_chat
        self._chat_info(chat_id)
        return chat_id

    def _writable(self, p, post=False):
        """Client::check_chat_access with write access: a group upgraded to a supergroup refuses
        (400, parameters.migrate_to_chat_id). `post`: sending a message, which in a channel needs the
        right to post (DialogManager::can_send_message_to_dialog)."""
        chat_id = self._chat_id(p)
        chat = self._chat_info(chat_id)
        if chat["upgraded_to"]:
            raise ApiError(400, UPGRADED, {"migrate_to_chat_id": chat["upgraded_to"]})
        if post and chat["kind"] == "channel" and not chat["rights"]["can_post_messages"]:
            raise ApiError(400, CHANNEL_RIGHTS)
        return chat_id

    def _find(self, chat_id, message_id, error):
        """Client::check_message: "Bad Request: message to ... not found"."""
        message = self._by_id.get((chat_id, message_id))
        if message is None or message.get("deleted"):
            raise ApiError(400, "Bad Request: " + error)
        return message

    def _top_pin(self, chat_id):
        """MessagesManager::update_message_is_pinned keeps the highest pinned message id as the
        chat's last pinned message: the newest by sending date, whatever the order of pinning."""
        pins = self._pins.get(chat_id)
        return max(pins, key=lambda m: m["message_id"]) if pins else None

    def _check_pin_rights(self, chat_id):
        """DialogManager::can_pin_messages: in a basic group a bot must be an administrator with
        the right; in a supergroup it needs can_pin_messages; in a channel can_edit_messages."""
        chat = self._chat_info(chat_id)
        rights, kind = chat["rights"], chat["kind"]
        allowed = {
            "private": True,
            "group": rights["is_admin"] and rights["can_pin_messages"],
            "supergroup": rights["can_pin_messages"],
            "channel": rights["can_edit_messages"],
        }[kind]
        if not allowed:
            raise ApiError(400, PIN_RIGHTS)

    def _pin_message(self, chat_id, message, pinner, *, outgoing):
        """Pinning makes a service message {"pinned_message": the message} in the chat, from the
        one who pinned. Client::need_skip_update_message passes messagePinMessage on even when it is
        the bot's own (outgoing) message, so every pin reaches the bot as an update, its own
        included. That Telegram's server makes the service message is not in the source (TDLib
        receives it: MessagesManager::add_message_to_dialog, MessageContentType::PinMessage). A
        message pinned again is left as it is, no new service message (not in the source either)."""
        pins = self._pins.setdefault(chat_id, [])
        if any(m is message for m in pins):
            return
        pins.append(message)
        # JsonMessage: the pinned message as it is now, without reply_to_message
        self._service_message(chat_id, pinner, {"pinned_message": self._public(message)}, outgoing=outgoing)
        self._changed()

    def _mark_deleted(self, chat_id, message):
        message["deleted"] = True
        pins = self._pins.get(chat_id, [])
        pins[:] = [m for m in pins if m is not message]  # a deleted message is no longer pinned

    def _can_edit(self, chat_id, message):
        """MessagesManager::can_edit_message for a bot: a message that came with a reply keyboard
        (not an inline one) can never be edited; nor can a service message. In private chats,
        groups and supergroups only the bot's own messages, with no time limit (has_edit_time_limit
        is false for a bot's outgoing message); in a channel its own posts with can_post_messages,
        anyone's with can_edit_messages."""
        markup = message.get("reply_markup")
        if (markup and "inline_keyboard" not in markup) or message.get("_service"):
            return False
        chat = self._chat_info(chat_id)
        if chat["kind"] == "channel":
            rights = chat["rights"]
            return rights["can_edit_messages"] or (rights["can_post_messages"] and message["_outgoing"])
        return message["_outgoing"]

    def _editable(self, p):
        """Client.cpp check_message with edit access (an upgraded group's messages pass it: whether
        Telegram's server then edits them is not in the source; the stand-in does), then
        can_edit_message."""
        chat_id = self._chat_id(p)
        message = self._find(chat_id, p.get("message_id"), "message to edit not found")
        if not self._can_edit(chat_id, message):
            raise ApiError(400, CANT_EDIT)
        return message

    def _apply_edit(self, message, new, params):
        """Edit `message` to the fields in `new` (None takes one away), or refuse a no-op edit."""
        if "reply_markup" in params or "inline_keyboard" in (message.get("reply_markup") or {}):
            new["reply_markup"] = params.get("reply_markup")  # Telegram drops an inline keyboard not re-sent
        if all(message.get(k) == v for k, v in new.items()):
            raise ApiError(400, NOT_MODIFIED)  # Telegram's MESSAGE_NOT_MODIFIED, as Client.cpp words it
        message.update(new, edit_date=int(time.time()))
        for key in CONTENT_KEYS:  # a text turned into a document has no "text": None left over
            if key in message and message[key] is None:
                del message[key]
        self._changed()
        return self._public(message)

    def _deletion_refused(self, chat_id, message):
        """Why deleteMessage refuses a message (None: it may go).

        MessagesManager::delete_messages asks can_delete_message, then (for a bot) can_revoke_message.
        Supergroups and channels (can_delete_channel_message): nothing sent 2 days ago or earlier
        ("bots can't delete messages older than 2 days"), nor the supergroup's first service message;
        anything with can_delete_messages; else only the bot's own, and in a channel or a service
        message only with can_post_messages: "message can't be deleted". Private chats and basic
        groups (can_revoke_message): only what is at most 2 days old (the server's revoke time limit;
        TDLib's default for a bot is 2 days); in a private chat any message (revoke_pm_inbox), in a
        basic group the bot's own non-service ones or, as an administrator, anyone's: "message can't
        be deleted for everyone"."""
        chat = self._chat_info(chat_id)
        rights, kind = chat["rights"], chat["kind"]
        age = int(time.time()) - message["date"]
        too_old = (chat_id, message["message_id"]) in self._undeletable
        if kind in ("supergroup", "channel"):
            if too_old or age >= BOT_DELETE_AGE or message.get("_cannot_delete"):
                return CANT_DELETE
            if rights["can_delete_messages"]:
                return None
            if not message["_outgoing"]:
                return CANT_DELETE
            if kind == "channel" or message.get("_service"):
                return None if rights["can_post_messages"] else CANT_DELETE
            return None
        if kind == "private":
            allowed = True
        else:
            allowed = (message["_outgoing"] and not message.get("_service")) or rights["is_admin"]
        if not allowed or too_old or age > BOT_DELETE_AGE:
            return CANT_DELETE_FOR_EVERYONE
        return None

    def _note_write(self, method, params):
        chat_id = params.get("chat_id")
        if isinstance(chat_id, int):
            self._writes.append((chat_id, time.time() + self._skew))

    # ---- API methods: (params, files) -> result, or raise ApiError ----
    def _send_message(self, p, files):
        text = p.get("text") or ""
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")  # Client::get_input_message_text
        with self._cond:
            chat_id = self._writable(p, post=True)
            if len(text) > MAX_TEXT:  # MessageContent.cpp counts characters (utf8_length)
                raise ApiError(400, TEXT_TOO_LONG)
            return self._bot_message(chat_id, {"text": text}, p)

    def _check_caption(self, caption, error=CAPTION_TOO_LONG):
        """A caption of at most 1024 characters. TDLib's own check on sending counts Unicode
        characters (MessageContent.cpp, utf8_length); Telegram's server, which answers
        MEDIA_CAPTION_TOO_LONG, is not in the source: the stand-in counts UTF-16 code units (as
        entity offsets do), the stricter reading."""
        if utf16_length(caption or "") > MAX_CAPTION:
            raise ApiError(400, error)

    def _send_document(self, p, files):
        if "document" in files:
            filename, content = files["document"]
            if len(content) > self.upload_limit:
                raise ApiError(413, TOO_LARGE)  # api.telegram.org's front end (rules.TOO_LARGE)
        with self._cond:
            chat_id = self._writable(p, post=True)
            if "document" in files:
                document = self._store_file(filename, content)
            else:
                document = self._document(p.get("document"))
            fields = {"document": document}
            if p.get("caption"):
                self._check_caption(p["caption"])
                fields["caption"] = p["caption"]
            return self._bot_message(chat_id, fields, p)

    # Photos: at most 10 MB, width + height at most 10000, a ratio of at most 20 (Bot API,
    # sendPhoto). Telegram re-encodes them; here the PNG's own size is reported as the one size.
    def _send_photo(self, p, files):
        if "photo" not in files:
            raise ApiError(400, "Bad Request: there is no photo in the request")
        filename, content = files["photo"]
        if len(content) > 10 * 1024 * 1024:
            raise ApiError(400, "Bad Request: PHOTO_TOO_BIG")  # the limit is documented, the wording a guess
        if content[:8] != b"\x89PNG\r\n\x1a\n" or content[12:16] != b"IHDR":
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        width, height = int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        with self._cond:
            chat_id = self._writable(p, post=True)
            stored = self._store_file(filename or "photo.png", content)
            photo = {
                "file_id": stored["file_id"],
                "file_unique_id": stored["file_unique_id"],
                "width": width,
                "height": height,
                "file_size": len(content),
            }
            fields = {"photo": [photo]}
            if p.get("caption"):
                self._check_caption(p["caption"])
                fields["caption"] = p["caption"]
            return self._bot_message(chat_id, fields, p)

    def _send_chat_action(self, p, files):
        with self._cond:
            self._writable(p)  # Client::process_send_chat_action_query: check_chat with write access
        return True

    def _pin(self, p, files):
        """Client::process_pin_chat_message_query: check_message with write access, then TDLib's
        MessagesManager::can_pin_message (rights, then "service messages can't be pinned")."""
        with self._cond:
            chat_id = self._writable(p)
            message = self._find(chat_id, p.get("message_id"), "message to pin not found")
            self._check_pin_rights(chat_id)
            if message.get("_service"):
                raise ApiError(400, SERVICE_PIN)
            self._pin_message(chat_id, message, self.bot_user, outgoing=True)
        return True

    def _unpin(self, p, files):
        """Client::process_unpin_chat_message_query: without message_id the chat's pinned message
        (getChatPinnedMessage: the one getChat shows), "message to unpin not found" when there is
        none; unpinning needs the right to pin (MessagesManager::pin_dialog_message)."""
        with self._cond:
            chat_id = self._writable(p)
            if not p.get("message_id"):
                message = self._top_pin(chat_id)
                if message is None:
                    raise ApiError(400, UNPIN_NOT_FOUND)
            else:
                message = self._find(chat_id, p["message_id"], "message to unpin not found")
            self._check_pin_rights(chat_id)
            pins = self._pins.get(chat_id, [])
            pins[:] = [m for m in pins if m is not message]
            self._changed()
        return True

    def _unpin_all(self, p, files):
        """Client::process_unpin_all_chat_messages_query; MessagesManager::unpin_all_dialog_messages."""
        with self._cond:
            chat_id = self._writable(p)
            self._check_pin_rights(chat_id)
            self._pins[chat_id] = []
            self._changed()
        return True

    def _get_chat(self, p, files):
        """Client::process_get_chat_query: read access only (an upgraded group still answers)."""
        with self._cond:
            chat_id = self._chat_id(p)
            chat = dict(self._chat_object(chat_id), accent_color_id=0, max_reaction_count=0)
            top = self._top_pin(chat_id)
            if top is not None:
                chat["pinned_message"] = self._public(top)
        return chat

    def _get_file(self, p, files):
        with self._cond:
            stored = self._files.get(p.get("file_id"))
            if stored is None:
                raise ApiError(400, INVALID_FILE_ID)
            if len(stored["bytes"]) > self.download_limit:
                raise ApiError(400, FILE_TOO_BIG)  # Client::do_get_file
            document = self._document(p["file_id"])
        return dict(
            {k: document[k] for k in ("file_id", "file_unique_id", "file_size")}, file_path=stored["path"]
        )

    def _edit_text(self, p, files):
        text = p.get("text") or ""
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")  # Client::get_input_message_text
        with self._cond:
            message = self._editable(p)
            if "text" not in message:
                raise ApiError(400, NO_TEXT_TO_EDIT)  # MessagesManager::edit_message_text
            if len(text) > MAX_TEXT:
                raise ApiError(400, EDITED_TEXT_TOO_LONG)  # from Telegram's server, as it is
            return self._apply_edit(message, {"text": text}, p)

    def _edit_caption(self, p, files):
        with self._cond:
            message = self._editable(p)
            if "text" in message:
                raise ApiError(400, NO_CAPTION_TO_EDIT)  # MessagesManager::edit_message_caption
            self._check_caption(p.get("caption"), EDITED_CAPTION_TOO_LONG)
            return self._apply_edit(message, {"caption": p.get("caption")}, p)

    def _edit_media(self, p, files):
        media = _input_media(p["media"])
        self._check_caption(media.get("caption"))  # MessageContent.cpp, create_input_message_content
        upload = self._attached(media["media"], files)  # Telegram reads the media before finding the message
        with self._cond:
            message = self._editable(p)
            document = self._store_file(*upload) if upload else self._document(media["media"])
            # the new media's caption replaces the old one; none given means none left (as Telegram)
            new = {
                "text": None,
                "entities": None,
                "document": document,
                "caption": media.get("caption") or None,
                "caption_entities": media.get("caption_entities"),
            }
            return self._apply_edit(message, new, p)

    def _attached(self, reference, files):
        """The (file name, bytes) an "attach://<part>" reference names, or None for a file_id."""
        if not reference.startswith("attach://"):
            return None
        part = files.get(reference[len("attach://") :])
        if part is None:
            raise ApiError(400, MEDIA_NOT_FOUND)
        if len(part[1]) > self.upload_limit:
            raise ApiError(413, TOO_LARGE)
        return part

    def _delete(self, p, files):
        """Client::process_delete_message_query: check_message with write access, then TDLib."""
        with self._cond:
            chat_id = self._writable(p)
            message = self._find(chat_id, p.get("message_id"), "message to delete not found")
            refused = self._deletion_refused(chat_id, message)
            if refused:
                raise ApiError(400, refused)
            self._mark_deleted(chat_id, message)
            self._changed()
        return True


def _public(message):
    """A copy fit for the bot: no bookkeeping, and Telegram only echoes inline keyboards back."""
    result = {
        k: v
        for k, v in copy.deepcopy(message).items()
        if v is not None and k != "deleted" and not k.startswith("_")
    }
    if "inline_keyboard" not in (result.get("reply_markup") or {}):
        result.pop("reply_markup", None)
    return result


def _inspectable(message):
    """A copy for a test to look at: everything the bot would see, plus "deleted" and the reply
    markup it was sent with."""
    return {k: v for k, v in copy.deepcopy(message).items() if not k.startswith("_")}


def _input_media(media):
    """Check an InputMedia object as Telegram parses it; the stand-in edits documents only."""
    if not isinstance(media, dict):
        raise ApiError(400, "Bad Request: Can't parse input media JSON object")
    if media.get("type") != "document":
        raise ApiError(
            400,
            "Bad Request: Can't parse InputMedia: type {} is not supported by the stand-in".format(
                json.dumps(media.get("type"))
            ),
        )
    if not isinstance(media.get("media"), str) or not media["media"]:
        raise ApiError(400, MEDIA_NOT_FOUND)
    return media
