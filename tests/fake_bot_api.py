"""A local stand-in for the Telegram Bot API server, for end-to-end tests.

Run the real bot with TELEGRAM_API_URL=<FakeBotAPI.url>: it calls {url}/bot{token}/{method}
and downloads from {url}/file/bot{token}/{path}. Tests queue updates with send_text() and
send_document(), then inspect requests(), messages(), pinned_message() or block in the
wait_for*() helpers, which re-check on every recorded call (no sleep-polling).

As Telegram does: a getUpdates call ends the one still waiting before it with 409 (only the
newest long poll waits; wait_for_long_poll() blocks until one does); editMessageMedia swaps a
message's document and caption, editMessageCaption its caption alone; a deleted message can no longer be edited, deleted or pinned,
and stops being the pinned one (messages() keeps it, marked "deleted"); make_undeletable()
makes deleteMessage fail as for a message older than 48 hours. setWebhook/deleteWebhook/
getWebhookInfo: while a webhook is set, getUpdates answers 409 and a background thread POSTs
the pending updates to it one at a time, in order, with the secret token header; any 2xx answer
confirms one, anything else is recorded in getWebhookInfo and retried with a doubling delay
from webhook_retry_seconds. set_outage(True) simulates the network being down: every request
and a waiting long poll get their connection closed without an answer, and webhook deliveries
fail. A chat pins several messages: getChat shows the one pinned last, unpinning it shows the
one before; pin_by_someone() is an admin of the chat pinning a message of their own.

Limits: standard library only; a subset of the API (see self._handlers; anything else
answers 404 "Not Found"); only text and document updates (and only documents in
editMessageMedia); no media groups, inline messages or rate
limiting. Webhooks may be plain http on any port (Telegram wants https on 443, 80, 88 or 8443),
are not checked when set, get a single connection whatever max_connections says, keep one
queue for all chats (Telegram keeps one per chat) and ignore a method in the answer's body and
Retry-After. Faults are injected with fail_next() (a Bot API error, or any raw body such as a
proxy's HTML page), corrupt_next_download(), truncate_next_download(), make_undeletable() and
set_outage(). Calls are recorded when they complete (a long poll shows up when it returns)
with an extra "status" key (None when the connection was dropped); file downloads are
recorded as method "downloadFile", webhook delivery attempts as "webhookDelivery" (params:
update_id and url; an extra "error" key: None, or what getWebhookInfo shows for the failure).
"""

import copy
import http.client
import ipaddress
import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_LONG_POLL = 10.0
TEXT_KEYS = {
    "text",
    "caption",
    "description",
    "short_description",
    "title",
    "query",
    "url",
    "secret_token",
    "ip_address",
}
INT_KEYS = {
    "chat_id",
    "message_id",
    "offset",
    "limit",
    "user_id",
    "from_chat_id",
    "message_thread_id",
    "max_connections",
}
BOOL_WORDS = {"True": True, "true": True, "False": False, "false": False}
SIMPLE_TRUE = ("sendChatAction", "setMyCommands", "answerCallbackQuery")
CONTENT_KEYS = ("text", "entities", "document", "caption", "caption_entities")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
OTHER_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
WEBHOOK_SET = "Conflict: terminated by setWebhook request"
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
    "the webhook first"
)
MEDIA_NOT_FOUND = "Bad Request: Can't parse InputMedia: media not found"
MAX_BACKOFF_DOUBLINGS = 4  # a failing webhook is retried after 1, 2, 4, 8, then 16 x webhook_retry_seconds


class ApiError(Exception):
    def __init__(self, code, description):
        super().__init__(description)
        self.code, self.description = code, description


class _HangUp(Exception):
    """Close the client's connection without an answer: the network is down."""


def _decode_value(key, value):
    """Turn the strings pyTelegramBotAPI sends back into ints, bools and JSON objects."""
    if not isinstance(value, str) or key in TEXT_KEYS:
        return value
    if key in INT_KEYS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in BOOL_WORDS:
        return BOOL_WORDS[value]
    if value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _header_param(header, key):
    """A parameter of a Content-Disposition header; pyTelegramBotAPI sends filename unquoted."""
    quoted = re.search(rf';\s*{key}="((?:[^"\\]|\\.)*)"', header)
    if quoted:
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).replace("%22", '"')
    bare = re.search(r";\s*{}=({})".format(key, ".*" if key == "filename" else "[^;]*"), header)
    return bare.group(1).strip() if bare else None


def parse_multipart(content_type, body):
    """Split a multipart/form-data body into ({name: str}, {name: (filename, bytes)})."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ApiError(400, "Bad Request: multipart boundary is missing")
    fields, files = {}, {}
    for part in (b"\r\n" + body).split(b"\r\n--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        disposition = next(
            (
                line.split(":", 1)[1]
                for line in head.decode("utf-8", "replace").split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            None,
        )
        if not sep or disposition is None:
            continue
        name, filename = _header_param(disposition, "name"), _header_param(disposition, "filename")
        if filename is None:
            fields[name] = data.decode("utf-8")
        else:
            files[name] = (filename, data)
    return fields, files


class FakeBotAPI:
    def __init__(
        self,
        token="123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz",
        bot_username="backup_test_bot",
        upload_limit=50 * 1024 * 1024,
        download_limit=20 * 1024 * 1024,
        webhook_retry_seconds=0.2,
        webhook_timeout=10.0,
    ):
        self.token, self.bot_username = token, bot_username
        self.upload_limit, self.download_limit = upload_limit, download_limit
        # Telegram waits seconds to minutes before retrying a webhook; tests want it quick
        self.webhook_retry_seconds, self.webhook_timeout = webhook_retry_seconds, webhook_timeout
        self.bot_user = {
            "id": int(token.split(":")[0]),
            "is_bot": True,
            "first_name": "Test Bot",
            "username": bot_username,
        }
        self.url = None
        self._cond = threading.Condition()
        self._version = 0  # bumped on every change; wait_for() waits for it to move
        self._stopping = False
        self._calls, self._updates, self._next_update_id = [], [], 1
        self._sent = {}  # chat_id -> [messages the bot sent]
        self._by_id = {}  # (chat_id, message_id) -> message (sent or received)
        self._last_message_id = {}
        self._files, self._paths = {}, {}
        self._pins, self._failures = {}, {}
        self._corrupt_downloads = self._truncate_downloads = 0
        self._undeletable = set()  # (chat_id, message_id) that deleteMessage refuses
        self._outage = False
        self._poll_ticket = 0  # numbers getUpdates calls: only the newest may wait
        self._poll_waiting = None  # the ticket of the getUpdates call now waiting, if any
        self._webhook = None  # the setWebhook parameters while a webhook is set
        self._webhook_error = None  # (unix time, message) of the last failed delivery
        self._webhook_failures, self._webhook_retry_at = 0, 0.0  # failures in a row; monotonic time
        self._delivery_sock = None  # the socket of a delivery in flight, for stop() to cut
        self._server = self._thread = self._deliverer = None
        self._handlers = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "pinChatMessage": self._pin,
            "unpinChatMessage": self._unpin,
            "getChat": self._get_chat,
            "getFile": self._get_file,
            "editMessageText": self._edit_text,
            "editMessageMedia": self._edit_media,
            "editMessageCaption": self._edit_caption,
            "deleteMessage": self._delete,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        }
        self._handlers.update({name: lambda p, f: True for name in SIMPLE_TRUE})

    # ---- lifecycle ----
    def start(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeBotAPI", daemon=True
        )
        self._thread.start()
        self._deliverer = threading.Thread(
            target=self._deliver_webhooks, name="FakeBotAPI-webhook " + self.url, daemon=True
        )
        self._deliverer.start()
        return self

    def stop(self):
        with self._cond:
            self._stopping = True
            delivering, self._delivery_sock = self._delivery_sock, None
            self._changed()
        if delivering:
            _cut(delivering)  # a receiver that never answers must not hold up stop()
        if self._deliverer:
            self._deliverer.join(5)
            self._deliverer = None
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- driving the bot ----
    def send_text(self, user_id, text, *, username=None, first_name="User", chat_id=None, language_code=None):
        """`language_code`: the IETF tag Telegram reports for the user's app (User.language_code)."""
        content = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._incoming(
            user_id, chat_id, content, username=username, first_name=first_name, language_code=language_code
        )

    def send_document(self, user_id, filename, content, *, caption=None, chat_id=None):
        fields = {"document": self._store_file(filename, content)}
        if caption is not None:
            fields["caption"] = caption
        return self._incoming(user_id, chat_id, fields)

    def fail_next(
        self, method, error_code=500, description="Internal Server Error", times=1, body=None, when=None
    ):
        """The next `times` calls of `method` fail with `error_code`: a Bot API error object, or
        `body` as it is (an HTML error page from a proxy, say, as Telegram's front ends send).
        `when(params, files)`: only calls it says yes to (files: name -> (file name, bytes))."""
        with self._cond:
            self._failures.setdefault(method, []).extend([(error_code, description, body, when)] * times)

    def corrupt_next_download(self):
        """The next file download returns the stored bytes with one bit flipped."""
        with self._cond:
            self._corrupt_downloads += 1

    def truncate_next_download(self):
        """The next file download announces the whole file but sends half, then hangs up."""
        with self._cond:
            self._truncate_downloads += 1

    def make_undeletable(self, chat_id, message_id):
        """deleteMessage refuses this message (it need not exist yet) as Telegram refuses one older
        than 48 hours, so a caller's fallback (editing it instead, say) can be tested."""
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

    def delete_message_as_admin(self, chat_id, message_id):
        """An admin of the chat deletes a message, and its document is gone from Telegram's
        servers with it: getFile on its file_id fails from then on."""
        with self._cond:
            message = self._by_id[(chat_id, message_id)]
            message["deleted"] = True
            pins = self._pins.get(chat_id, [])
            pins[:] = [m for m in pins if m is not message]
            document = message.get("document")
            if document:
                self._files.pop(document["file_id"], None)
            self._changed()

    def set_outage(self, down=True):
        """While down, every request and file download has its connection closed without an
        answer (requests raises ConnectionError), a waiting long poll too, and webhook deliveries
        fail; each is recorded with status None."""
        with self._cond:
            self._outage = bool(down)
            if not down:
                self._webhook_retry_at = 0.0  # the network is back: retry a failed webhook at once
            self._changed()

    # ---- what the bot did ----
    def requests(self, method=None):
        with self._cond:
            return [dict(c) for c in self._calls if method is None or c["method"] == method]

    def messages(self, chat_id=None):
        with self._cond:
            chats = [self._sent.get(chat_id, [])] if chat_id is not None else self._sent.values()
            return copy.deepcopy([m for msgs in chats for m in msgs])

    def file_bytes(self, file_id):
        with self._cond:
            return self._files[file_id]["bytes"]

    def pinned_message(self, chat_id):
        with self._cond:
            pins = self._pins.get(chat_id)
            return copy.deepcopy(pins[-1]) if pins else None

    def pinned_messages(self, chat_id):
        """Every pinned message of the chat, the most recently pinned last."""
        with self._cond:
            return copy.deepcopy(self._pins.get(chat_id, []))

    def pin(self, chat_id, message_id):
        """An admin of the chat pins a message that is there: the newest pin from now on."""
        with self._cond:
            self._pin_message(chat_id, self._by_id[(chat_id, message_id)])

    def pin_by_someone(self, chat_id, text, user_id=999):
        """Someone (an admin of the chat) posts `text` and pins it: the newest pin from now on."""
        with self._cond:
            message = self._message(
                chat_id, {"id": user_id, "is_bot": False, "first_name": "Someone"}, {"text": text}
            )
            self._pin_message(chat_id, message)
            return copy.deepcopy(message)

    def wait_for(self, predicate, timeout=10.0, what=None):
        """Return the first truthy predicate() value, re-checked after every recorded call."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                version = self._version
            value = predicate()
            if value:
                return value
            with self._cond:
                while self._version == version:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise AssertionError(self._timeout_report(what or repr(predicate), timeout))
                    self._cond.wait(remaining)

    def wait_for_message(self, chat_id, contains=None, *, after=0, timeout=10.0):
        def find():
            for message in self.messages(chat_id)[after:]:
                body = message.get("text") or message.get("caption") or ""
                if contains is None or contains in body:
                    return message

        return self.wait_for(
            find, timeout, f"a message to chat {chat_id!r} (index >= {after}) containing {contains!r}"
        )

    def wait_for_request(self, method, *, after_count=0, timeout=10.0):
        def find():
            calls = self.requests(method)
            return calls[after_count] if len(calls) > after_count else None

        return self.wait_for(find, timeout, f"call #{after_count + 1} to {method}")

    def wait_for_long_poll(self, timeout=10.0):
        """Block until a getUpdates call is waiting for updates; returns its ticket (a number
        that grows with every getUpdates call)."""
        return self.wait_for(self._waiting_poll, timeout, "a getUpdates call waiting for updates")

    def _timeout_report(self, what, timeout):
        lines = [
            "  {} {} -> {}".format(c["method"], _short(c["params"]), c.get("status"))
            for c in self._calls[-10:]
        ]
        recorded = "\n".join(lines) or "  (none)"
        return f"Timed out after {timeout:.1f}s waiting for {what}. Last {len(lines)} recorded calls:\n{recorded}"

    def _waiting_poll(self):
        with self._cond:
            return self._poll_waiting

    def _is_down(self):
        with self._cond:
            return self._outage

    # ---- state helpers (call with self._cond held) ----
    def _changed(self):
        self._version += 1
        self._cond.notify_all()

    def _new_message_id(self, chat_id):
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _message(self, chat_id, sender, fields):
        message = {
            "message_id": self._new_message_id(chat_id),
            "from": sender,
            "chat": _chat(chat_id),
            "date": int(time.time()),
            **fields,
        }
        self._by_id[(chat_id, message["message_id"])] = message
        return message

    def _incoming(self, user_id, chat_id, fields, username=None, first_name="User", language_code=None):
        sender = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            sender["username"] = username
        if language_code:
            sender["language_code"] = language_code
        with self._cond:
            update = {
                "update_id": self._next_update_id,
                "message": self._message(user_id if chat_id is None else chat_id, sender, fields),
            }
            self._next_update_id += 1
            self._updates.append(update)
            self._changed()
            return copy.deepcopy(update)

    def _store_file(self, filename, content):
        with self._cond:
            n = len(self._files) + 1
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
        with self._cond:
            message = self._message(chat_id, self.bot_user, fields)
            message["reply_markup"] = params.get("reply_markup")
            self._sent.setdefault(chat_id, []).append(message)
            return _public(message)

    def _find(self, params, error):
        message = self._by_id.get((params["chat_id"], params.get("message_id")))
        if message is None or message.get("deleted"):
            raise ApiError(400, "Bad Request: " + error)
        return message

    def _editable(self, params):
        message = self._find(params, "message to edit not found")
        if message["from"]["id"] != self.bot_user["id"]:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    def _apply_edit(self, message, new, params):
        """Edit `message` to the fields in `new` (None takes one away), or refuse a no-op edit."""
        if "reply_markup" in params or "inline_keyboard" in (message.get("reply_markup") or {}):
            new["reply_markup"] = params.get("reply_markup")  # Telegram drops an inline keyboard not re-sent
        if all(message.get(k) == v for k, v in new.items()):
            raise ApiError(400, NOT_MODIFIED)
        message.update(new, edit_date=int(time.time()))
        for key in CONTENT_KEYS:  # a text turned into a document has no "text": None left over
            if key in message and message[key] is None:
                del message[key]
        self._changed()
        return _public(message)

    def _confirm_updates(self, offset):
        """getUpdates' offset confirms (forgets) the updates before it; a negative one keeps the last ones."""
        if offset < 0:
            self._updates = self._updates[offset:]
        else:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]

    # ---- API methods: (params, files) -> result, or raise ApiError ----
    def _get_me(self, p, files):
        return dict(
            self.bot_user,
            can_join_groups=True,
            can_read_all_group_messages=False,
            supports_inline_queries=False,
        )

    def _get_updates(self, p, files):
        offset, limit = p.get("offset") or 0, min(max(p.get("limit") or 100, 1), 100)
        allowed = p.get("allowed_updates") or None
        deadline = time.monotonic() + min(float(p.get("timeout") or 0), MAX_LONG_POLL)
        with self._cond:
            if self._webhook:
                raise ApiError(409, WEBHOOK_ACTIVE)
            self._poll_ticket += 1
            ticket = self._poll_ticket
            self._confirm_updates(offset)
            self._changed()  # wakes an earlier long poll, which gives way to this one
            try:
                return self._long_poll(ticket, allowed, limit, deadline)
            finally:
                if self._poll_waiting == ticket:
                    self._poll_waiting = None
                    self._changed()

    def _long_poll(self, ticket, allowed, limit, deadline):
        """Wait (lock held) for updates until the deadline, or until something ends this poll."""
        while True:
            if self._poll_ticket != ticket:
                raise ApiError(409, OTHER_POLL)
            if self._webhook:
                raise ApiError(409, WEBHOOK_SET)
            if self._outage:
                raise _HangUp()
            ready = [u for u in self._updates if _wanted(u, allowed)]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0 or self._stopping:
                return copy.deepcopy(ready[:limit])
            if self._poll_waiting != ticket:
                self._poll_waiting = ticket
                self._changed()
            self._cond.wait(remaining)

    def _send_message(self, p, files):
        text = p.get("text") or ""
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        return self._bot_message(p["chat_id"], {"text": text}, p)

    def _send_document(self, p, files):
        if "document" in files:
            filename, content = files["document"]
            if len(content) > self.upload_limit:
                raise ApiError(413, "Request Entity Too Large")
            document = self._store_file(filename, content)
        else:
            with self._cond:
                document = self._document(p.get("document"))
        fields = {"document": document}
        if p.get("caption"):
            if len(p["caption"]) > 1024:
                raise ApiError(400, "Bad Request: message caption is too long")
            fields["caption"] = p["caption"]
        return self._bot_message(p["chat_id"], fields, p)

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
            if len(p["caption"]) > 1024:
                raise ApiError(400, "Bad Request: message caption is too long")
            fields["caption"] = p["caption"]
        return self._bot_message(p["chat_id"], fields, p)

    # A chat may pin several messages; getChat shows the most recently pinned one (Telegram's
    # pinned_message), and unpinning it shows the one pinned before.
    def _pin(self, p, files):
        with self._cond:
            self._pin_message(p["chat_id"], self._find(p, "message to pin not found"))
        return True

    def _pin_message(self, chat_id, message):
        pins = self._pins.setdefault(chat_id, [])
        pins[:] = [m for m in pins if m is not message] + [message]
        self._changed()

    def _unpin(self, p, files):
        with self._cond:
            pins = self._pins.get(p["chat_id"], [])
            if p.get("message_id") is None:
                pins[-1:] = []
            else:
                pins[:] = [m for m in pins if m["message_id"] != p["message_id"]]
        return True

    def _get_chat(self, p, files):
        chat = dict(_chat(p["chat_id"]), accent_color_id=0, max_reaction_count=0)
        with self._cond:
            if self._pins.get(p["chat_id"]):
                chat["pinned_message"] = _public(self._pins[p["chat_id"]][-1])
        return chat

    def _get_file(self, p, files):
        with self._cond:
            stored = self._files.get(p.get("file_id"))
            if stored is None:
                raise ApiError(400, "Bad Request: invalid file_id")
            if len(stored["bytes"]) > self.download_limit:
                raise ApiError(400, "Bad Request: file is too big")
            document = self._document(p["file_id"])
        return dict(
            {k: document[k] for k in ("file_id", "file_unique_id", "file_size")}, file_path=stored["path"]
        )

    def _edit_text(self, p, files):
        with self._cond:
            return self._apply_edit(self._editable(p), {"text": p.get("text")}, p)

    def _edit_caption(self, p, files):
        with self._cond:
            message = self._editable(p)
            if "text" in message:
                raise ApiError(400, "Bad Request: there is no caption in the message to edit")
            if len((p.get("caption") or "").encode("utf-16-le")) // 2 > 1024:  # UTF-16 units, as Telegram
                raise ApiError(400, "Bad Request: message caption is too long")
            return self._apply_edit(message, {"caption": p.get("caption")}, p)

    def _edit_media(self, p, files):
        media = _input_media(p["media"])
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
            raise ApiError(413, "Request Entity Too Large")
        return part

    def _delete(self, p, files):
        with self._cond:
            message = self._find(p, "message to delete not found")
            if (p["chat_id"], message["message_id"]) in self._undeletable:
                raise ApiError(400, "Bad Request: message can't be deleted for everyone")
            message["deleted"] = True
            pins = self._pins.get(p["chat_id"], [])
            pins[:] = [m for m in pins if m is not message]  # a deleted message is no longer pinned
            self._changed()
        return True

    def _set_webhook(self, p, files):
        if not p.get("url"):
            return self._delete_webhook(p, files)  # as Telegram: setWebhook with no URL removes it
        hook = _webhook_params(p, files)
        with self._cond:
            if p.get("drop_pending_updates"):
                self._updates = []
            if hook != self._webhook:  # the same settings again change nothing, the error kept
                self._webhook = hook
                self._forget_webhook_errors()
            self._changed()  # ends a waiting long poll and wakes the delivery thread
        return True

    def _delete_webhook(self, p, files):
        with self._cond:
            if p.get("drop_pending_updates"):
                self._updates = []
            self._webhook = None
            self._forget_webhook_errors()
            self._changed()
        return True

    def _forget_webhook_errors(self):
        self._webhook_error, self._webhook_failures, self._webhook_retry_at = None, 0, 0.0

    def _get_webhook_info(self, p, files):
        with self._cond:
            hook = self._webhook or {}
            info = {
                "url": hook.get("url", ""),
                "has_custom_certificate": bool(hook.get("has_custom_certificate")),
                "pending_update_count": len(self._updates),
            }
            if self._webhook_error:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        for key in ("max_connections", "ip_address", "allowed_updates"):
            if hook.get(key):
                info[key] = hook[key]
        return info

    # ---- webhook delivery (a thread of its own) ----
    def _deliver_webhooks(self):
        """Post the oldest pending update to the webhook until it is confirmed, then the next one."""
        while True:
            with self._cond:
                job = self._next_delivery()
            if job is None:
                return
            hook, update, started = job
            status, error = self._post_update(hook, update)
            with self._cond:
                self._delivered(hook, update, started, status, error)

    def _next_delivery(self):
        """Wait (lock held) until an update is due at the webhook: (hook, update, time), or None on stop()."""
        while not self._stopping:
            self._drop_unwanted_updates()
            if self._webhook and self._updates:
                wait = self._webhook_retry_at - time.monotonic()
                if wait <= 0:
                    return self._webhook, copy.deepcopy(self._updates[0]), time.time()
                self._cond.wait(wait)
            else:
                self._cond.wait()
        return None

    def _drop_unwanted_updates(self):
        """Telegram never sends a webhook a kind of update it did not ask for."""
        while (
            self._webhook
            and self._updates
            and not _wanted(self._updates[0], self._webhook["allowed_updates"])
        ):
            self._updates.pop(0)
            self._changed()

    def _post_update(self, hook, update):
        """POST one update: (HTTP status or None, None on success or the error getWebhookInfo shows)."""
        if self._is_down():
            return None, "Connection timed out"
        url = urlsplit(hook["url"])
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.hostname, url.port, timeout=self.webhook_timeout)
        try:
            connection.connect()
        except OSError as e:
            return None, _connect_error(e)
        try:
            if not self._track_delivery(connection.sock):
                return None, "Webhook connection closed"
            response = _post_json(connection, url, update, hook["secret_token"])
        except (OSError, http.client.HTTPException) as e:
            return None, _answer_error(e)
        finally:
            self._track_delivery(None)
            connection.close()
        if 200 <= response.status <= 299:
            return response.status, None
        return response.status, f"Wrong response from the webhook: {response.status} {response.reason}"

    def _track_delivery(self, sock):
        """Note the socket of the delivery in flight for stop() to cut; False when already stopping."""
        with self._cond:
            self._delivery_sock = sock
            return not (sock and self._stopping)

    def _delivered(self, hook, update, started, status, error):
        """Record a delivery attempt (lock held): a success confirms the update, a failure delays a retry."""
        if self._stopping:
            return  # cut short by stop(): no attempt worth recording
        self._calls.append(
            {
                "method": "webhookDelivery",
                "params": {"update_id": update["update_id"], "url": hook["url"]},
                "time": started,
                "status": status,
                "error": error,
            }
        )
        if error is None:
            self._updates = [u for u in self._updates if u["update_id"] != update["update_id"]]
            self._webhook_failures, self._webhook_retry_at = 0, 0.0
        elif self._webhook is hook:  # a failure of a webhook since replaced or deleted counts for nothing
            self._webhook_error = (int(time.time()), error)
            self._webhook_failures += 1
            doublings = min(self._webhook_failures - 1, MAX_BACKOFF_DOUBLINGS)
            self._webhook_retry_at = time.monotonic() + self.webhook_retry_seconds * 2**doublings
        self._changed()

    # ---- HTTP plumbing ----
    def _serve(self, handler):
        url = urlsplit(handler.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        arrived = time.time()
        match = re.fullmatch(r"/(file/)?bot([^/]+)/(.+)", url.path)
        is_file, token, name = (
            (match.group(1), unquote(match.group(2)), unquote(match.group(3)))
            if match
            else (None, None, url.path)
        )
        if self._is_down():
            return self._hang_up(handler, "downloadFile" if is_file else name, arrived)
        if not match:
            return _reply(handler, 404, _error(404, "Not Found"))
        if is_file:
            return self._download(handler, token, name)
        try:
            params, files = self._parse_params(url.query, handler.headers.get("Content-Type", ""), body)
            status, payload = self._dispatch(token, name, params, files)
        except _HangUp:
            return self._hang_up(handler, name, arrived)
        except (ApiError, ValueError) as e:
            error = e if isinstance(e, ApiError) else ApiError(400, f"Bad Request: {e}")
            params, files, status, payload = {}, {}, error.code, _error(error.code, error.description)
        for key, (filename, content) in files.items():
            params[key] = {"file_name": filename, "file_size": len(content)}
        self._record(name, params, arrived, status)
        _reply(handler, status, payload, "text/html" if isinstance(payload, bytes) else "application/json")

    def _hang_up(self, handler, method, arrived):
        """Close the connection without a byte of answer, as a dead network would (no HTTP status)."""
        self._record(method, {}, arrived, None)
        handler.close_connection = True

    def _parse_params(self, query, content_type, body):
        params = dict(parse_qsl(query, keep_blank_values=True))
        files, mime = {}, content_type.split(";")[0].strip().lower()
        if mime == "multipart/form-data":
            fields, files = parse_multipart(content_type, body)
            params.update(fields)
        elif mime == "application/json" and body:
            params.update(json.loads(body))
        elif body:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return {k: _decode_value(k, v) for k, v in params.items()}, files

    def _dispatch(self, token, method, params, files):
        if token != self.token:
            return 401, _error(401, "Unauthorized")
        with self._cond:
            failures = self._failures.get(method) or []
            failure = next((f for f in failures if f[3] is None or f[3](params, files)), None)
            if failure:
                failures.remove(failure)
        if failure:
            code, description, body, _ = failure
            return code, (body.encode() if isinstance(body, str) else body) or _error(code, description)
        if method not in self._handlers:
            return 404, _error(404, "Not Found")
        try:
            return 200, {"ok": True, "result": self._handlers[method](params, files)}
        except _HangUp:
            raise
        except ApiError as e:
            return e.code, _error(e.code, e.description)
        except KeyError as e:
            return 400, _error(400, f"Bad Request: parameter {e} is required")
        except (TypeError, ValueError) as e:
            return 400, _error(400, f"Bad Request: {e}")
        except Exception as e:  # a bug in the stand-in: answer rather than drop the connection
            return 500, _error(500, f"Internal Server Error: {e!r}")

    def _download(self, handler, token, path):
        with self._cond:
            file_id = self._paths.get(path) if token == self.token else None
            content = self._files[file_id]["bytes"] if file_id else None
            if content and self._corrupt_downloads:
                self._corrupt_downloads -= 1
                content = (
                    content[: len(content) // 2]
                    + bytes([content[len(content) // 2] ^ 1])
                    + content[len(content) // 2 + 1 :]
                )
            truncate = bool(content) and self._truncate_downloads > 0
            self._truncate_downloads -= truncate
        self._record("downloadFile", {"file_path": path}, time.time(), 200 if content is not None else 404)
        if content is None:
            return _reply(handler, 404, _error(404, "Not Found"))
        if truncate:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content[: len(content) // 2])
            handler.close_connection = True
            return
        _reply(handler, 200, content, "application/octet-stream")

    def _record(self, method, params, arrived, status):
        with self._cond:
            self._calls.append({"method": method, "params": params, "time": arrived, "status": status})
            self._changed()


def _wanted(update, allowed_updates):
    """Whether an update is of a kind asked for (no list: every kind we make)."""
    return not allowed_updates or any(kind in allowed_updates for kind in update)


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
    if len(media.get("caption") or "") > 1024:
        raise ApiError(400, "Bad Request: message caption is too long")
    return media


def _webhook_params(p, files):
    """setWebhook's settings, checked as Telegram does (except that plain http on any port is fine)."""
    url = urlsplit(p["url"])
    try:
        valid = url.scheme in ("http", "https") and url.hostname and url.port != 0  # .port checks the number
    except ValueError:
        valid = False
    if not valid:
        raise ApiError(400, "Bad Request: invalid webhook URL specified")
    secret = p.get("secret_token") or ""
    if len(secret) > 256:
        raise ApiError(400, "Bad Request: secret token is too long")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", secret):
        raise ApiError(400, "Bad Request: secret token contains unallowed characters")
    return {
        "url": p["url"],
        "secret_token": secret,
        "has_custom_certificate": "certificate" in files,
        "max_connections": min(max(int(p.get("max_connections") or 40), 1), 100),
        "ip_address": p.get("ip_address") or _ip_literal(url.hostname),
        "allowed_updates": p.get("allowed_updates") or None,
    }


def _ip_literal(host):
    """The host when it is an IP address (Telegram shows the address it resolved; we resolve nothing)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _post_json(connection, url, update, secret):
    body = json.dumps(update, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if secret:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    connection.request("POST", (url.path or "/") + ("?" + url.query if url.query else ""), body, headers)
    response = connection.getresponse()
    response.read()  # the body is ignored (Telegram would run a method named there)
    return response


def _connect_error(error):
    """getWebhookInfo's words for a webhook that could not be reached."""
    if isinstance(error, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(error, socket.timeout):
        return "Connection timed out"
    if isinstance(error, socket.gaierror):
        return f"Failed to resolve host: {error.strerror}"
    return "Connection error: %s" % (error.strerror or error)


def _answer_error(error):
    """getWebhookInfo's words for a webhook that was reached but gave no proper answer."""
    if isinstance(error, socket.timeout):
        return "Read timeout expired"
    if isinstance(error, (ConnectionError, http.client.IncompleteRead)):
        return "Webhook connection closed"
    return f"Wrong response from the webhook: {error}"


def _cut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading from it
    except OSError:
        pass


def _chat(chat_id):
    kind = "private" if isinstance(chat_id, int) and chat_id > 0 else "supergroup"
    return {"id": chat_id, "type": kind}


def _public(message):
    """A copy fit for the bot: Telegram only echoes inline keyboards back."""
    result = {k: v for k, v in copy.deepcopy(message).items() if v is not None and k != "deleted"}
    if "inline_keyboard" not in (result.get("reply_markup") or {}):
        result.pop("reply_markup", None)
    return result


def _error(code, description):
    return {"ok": False, "error_code": code, "description": description}


def _short(value, limit=200):
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _reply(handler, status, payload, content_type="application/json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client went away (a bot killed mid-request): nothing to answer


def _make_handler(fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def do_GET(self):
            fake._serve(self)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    return Handler
