"""A local stand-in for the Telegram Bot API server, for end-to-end tests.

Run the real bot with TELEGRAM_API_URL=<FakeBotAPI.url>: it calls {url}/bot{token}/{method}
and downloads from {url}/file/bot{token}/{path}. Tests queue updates with send_text() and
send_document(), then inspect requests(), messages(), history(), pinned_message() or block in the
wait_for*() helpers, which re-check on every recorded call (no sleep-polling).

It follows the real server's rules, each written down where it is applied with its source in
github:tdlib/telegram-bot-api (telegram-bot-api/Client.cpp, WebhookActor.cpp) or github:tdlib/td
(MessagesManager.cpp, DialogManager.cpp ...); rules.py holds the answers and limits. In short:
- getUpdates (polling.py): an offset confirms what is below it; a long poll that finds nothing
  ends the one waiting before it with 409, a call with timeout 0 or one that finds updates does
  not; the same offset within 3 s waits at least 3 s (within 0.5 s: one update); 409s at least
  3 s apart (one due sooner answers 3 s late); 409 while a webhook is set; updates live a day;
  allowed_updates is kept from call to call and filters updates as they are made.
- Webhooks (webhooks.py): setWebhook at most once a second (429); the secret token's characters;
  deliveries retried at once, then after 2, 4, 8 ... s up to a random 60..120 s, Retry-After
  honoured, only 2xx a success, each chat's updates in order and the chats independent.
- Chats (chats.py): positive ids are private chats, -100... supergroups (make_channel() makes one
  a channel, whose posts have no "from" but "sender_chat"), other negative ids basic groups. The
  bot edits its own messages with no time limit, never one sent with a reply keyboard, nor
  others'; it deletes nothing older than 48 hours (advance_time() ages every message); pins need
  rights (set_bot_rights()); getChat's pinned_message is the highest pinned message id; every pin
  makes a service message that reaches the bot as an update, its own pins too;
  upgrade_to_supergroup() moves a group (write calls on the old id: 400 with migrate_to_chat_id);
  forward() (members.py): a member forwards a message, the bot's own say: from is the member,
  forward_origin who wrote it.
- Commands (commands.py): setMyCommands, getMyCommands, deleteMyCommands per scope and
  language_code, each checked as Client.cpp and TDLib check them; commands() and menus() show them.
- Faults: fail_next() (a Bot API error, or any raw body such as a proxy's HTML page), flood()
  (429 "Too Many Requests: retry after N" for a while), corrupt_next_download(),
  truncate_next_download(), damage_file(), make_undeletable(), set_outage(). writes() and
  most_writes() tell whether the bot kept to Telegram's pace.

The one deliberate deviation: webhook_retry_seconds scales the real server's waits between
webhook deliveries (the shape follows WebhookActor.cpp, one of its seconds lasts
webhook_retry_seconds here) so that tests run quickly. Other differences, for convenience: a
webhook may be plain http on any port (Telegram wants https on 443, 80, 88 or 8443), is not
checked when set, gets a single connection whatever max_connections says, and a method named in
its answer is not run; a text from someone in a group reaches the bot whatever privacy mode would
say (send_text() is how a test makes a message the bot sees).

Limits: standard library only; a subset of the API (see self._handlers; anything else answers
404 "Not Found"); only text and document updates and service messages (pins, group upgrades);
documents only in editMessageMedia; no media groups, inline messages, replies or members. Calls
are recorded when they complete (a long poll shows up when it returns) with an extra "status" key
(None when the connection was dropped); file downloads are recorded as method "downloadFile",
webhook delivery attempts as "webhookDelivery" (params: update_id and url; an extra "error" key:
None, or what getWebhookInfo shows for the failure).
"""

import json
import math
import re
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from .chats import ChatsMixin
from .commands import CommandsMixin
from .members import MembersMixin
from .polling import UpdatesMixin
from .rules import (
    MAX_DOWNLOAD,
    MAX_UPLOAD,
    NOT_MODIFIED,
    OTHER_POLL,
    WEBHOOK_ACTIVE,
    WEBHOOK_SET,
    too_many_requests,
)
from .webhooks import WebhookMixin
from .wire import ApiError, HangUp, cut, decode_value, error_body, make_handler, parse_multipart, reply, short

__all__ = [
    "NOT_MODIFIED",
    "OTHER_POLL",
    "WEBHOOK_ACTIVE",
    "WEBHOOK_SET",
    "ApiError",
    "FakeBotAPI",
    "parse_multipart",
]

SIMPLE_TRUE = ("answerCallbackQuery",)
# the calls that change a chat, for writes()
WRITE_METHODS = frozenset(
    {
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "pinChatMessage",
        "unpinChatMessage",
        "unpinAllChatMessages",
        "deleteMessage",
    }
)


class FakeBotAPI(ChatsMixin, MembersMixin, UpdatesMixin, WebhookMixin, CommandsMixin):
    def __init__(
        self,
        token="123456:TEST-TOKEN-abcdefghijklmnopqrstuvwxyz",
        bot_username="backup_test_bot",
        upload_limit=MAX_UPLOAD,
        download_limit=MAX_DOWNLOAD,
        webhook_retry_seconds=0.2,
        webhook_timeout=10.0,
    ):
        """upload_limit, download_limit: 50 MB and 20 MB, as api.telegram.org; a server of one's
        own started with --local lifts both. webhook_retry_seconds: how long one second of the real
        server's waits between webhook deliveries lasts here (see the module's docstring)."""
        self.token, self.bot_username = token, bot_username
        self.upload_limit, self.download_limit = upload_limit, download_limit
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
        self._calls, self._failures, self._floods, self._slow = [], {}, [], []
        self._corrupt_downloads = self._truncate_downloads = 0
        self._outage = False
        self._server = self._thread = self._deliverer = None
        self._init_chats()
        self._init_updates()
        self._init_webhooks(webhook_retry_seconds, webhook_timeout)
        self._init_commands()
        self._handlers = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
            "pinChatMessage": self._pin,
            "unpinChatMessage": self._unpin,
            "unpinAllChatMessages": self._unpin_all,
            "getChat": self._get_chat,
            "getFile": self._get_file,
            "editMessageText": self._edit_text,
            "editMessageMedia": self._edit_media,
            "editMessageCaption": self._edit_caption,
            "deleteMessage": self._delete,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
        }
        self._handlers.update({name: lambda p, f: True for name in SIMPLE_TRUE})

    # ---- lifecycle ----
    def start(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
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
            delivering = self._stop_webhooks()
            self._changed()
        if delivering:
            cut(delivering)  # a receiver that never answers must not hold up stop()
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

    # ---- faults ----
    def fail_next(
        self, method, error_code=500, description="Internal Server Error", times=1, body=None, when=None
    ):
        """The next `times` calls of `method` fail with `error_code`: a Bot API error object, or
        `body` as it is (an HTML error page from a proxy, say, as Telegram's front ends send).
        `when(params, files)`: only calls it says yes to (files: name -> (file name, bytes))."""
        with self._cond:
            self._failures.setdefault(method, []).extend([(error_code, description, body, when)] * times)

    def slow(self, method, seconds, when=None):
        """Every call of `method` that `when(params)` says yes to (every one without it) is
        answered `seconds` later: a slow network, or a busy server."""
        with self._cond:
            self._slow.append((method, seconds, when))

    def flood(self, seconds, method=None, chat_id=None):
        """Telegram's flood control, on demand: for `seconds` (on the stand-in's clock) every call
        of `method` (None: any) about `chat_id` (None: any chat, or none) answers 429 "Too Many
        Requests: retry after N", parameters.retry_after N: the seconds left, rounded up (the
        wording: Query.cpp, Query::set_retry_after_error; when Telegram does it is up to its
        servers, not in the source). Each such call is recorded with status 429."""
        with self._cond:
            self._floods.append((self._mono() + seconds, method, chat_id))

    def corrupt_next_download(self):
        """The next file download returns the stored bytes with one bit flipped."""
        with self._cond:
            self._corrupt_downloads += 1

    def truncate_next_download(self):
        """The next file download announces the whole file but sends half, then hangs up."""
        with self._cond:
            self._truncate_downloads += 1

    def set_outage(self, down=True):
        """While down, every request and file download has its connection closed without an
        answer (requests raises ConnectionError), a waiting long poll too, and webhook deliveries
        fail; each is recorded with status None."""
        with self._cond:
            self._outage = bool(down)
            self._changed()

    # ---- what the bot did ----
    def requests(self, method=None):
        with self._cond:
            return [dict(c) for c in self._calls if method is None or c["method"] == method]

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

    def _timeout_report(self, what, timeout):
        lines = [
            "  {} {} -> {}".format(c["method"], short(c["params"]), c.get("status"))
            for c in self._calls[-10:]
        ]
        recorded = "\n".join(lines) or "  (none)"
        return f"Timed out after {timeout:.1f}s waiting for {what}. Last {len(lines)} recorded calls:\n{recorded}"

    def _is_down(self):
        with self._cond:
            return self._outage

    def _changed(self):
        """(lock held) Something changed: wake every waiter."""
        self._version += 1
        self._cond.notify_all()

    def _get_me(self, p, files):
        return dict(
            self.bot_user,
            can_join_groups=True,
            can_read_all_group_messages=False,
            supports_inline_queries=False,
        )

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
            return reply(handler, 404, error_body(404, "Not Found"))
        if is_file:
            return self._download(handler, token, name)
        try:
            params, files = self._parse_params(url.query, handler.headers.get("Content-Type", ""), body)
            status, payload = self._dispatch(token, name, params, files)
        except HangUp:
            return self._hang_up(handler, name, arrived)
        except (ApiError, ValueError) as e:
            error = e if isinstance(e, ApiError) else ApiError(400, f"Bad Request: {e}")
            params, files, status = {}, {}, error.code
            payload = error_body(error.code, error.description, error.parameters)
        for key, (filename, content) in files.items():
            params[key] = {"file_name": filename, "file_size": len(content)}
        self._record(name, params, arrived, status)
        reply(handler, status, payload, "text/html" if isinstance(payload, bytes) else "application/json")

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
        return {k: decode_value(k, v) for k, v in params.items()}, files

    def _flooded(self, method, params):
        """(lock held) The seconds left of a flood() this call falls under, or 0."""
        now = self._mono()
        self._floods = [f for f in self._floods if f[0] > now]
        left = [
            until - now
            for until, only_method, only_chat in self._floods
            if only_method in (None, method) and only_chat in (None, params.get("chat_id"))
        ]
        return max(left, default=0)

    def _dispatch(self, token, method, params, files):
        if token != self.token:
            return 401, error_body(401, "Unauthorized")
        with self._cond:
            late = [t for m, t, when in self._slow if m == method and (when is None or when(params))]
        if late:
            time.sleep(max(late))  # the answer is late; the stand-in serves others meanwhile
        with self._cond:
            failures = self._failures.get(method) or []
            failure = next((f for f in failures if f[3] is None or f[3](params, files)), None)
            if failure:
                failures.remove(failure)
            flood = 0 if failure else self._flooded(method, params)
        if failure:
            code, description, body, _ = failure
            return code, (body.encode() if isinstance(body, str) else body) or error_body(code, description)
        if flood:
            description, parameters = too_many_requests(math.ceil(flood))
            return 429, error_body(429, description, parameters)
        if method not in self._handlers:
            return 404, error_body(404, "Not Found")
        try:
            result = self._handlers[method](params, files)
        except HangUp:
            raise
        except ApiError as e:
            return e.code, error_body(e.code, e.description, e.parameters)
        except KeyError as e:
            return 400, error_body(400, f"Bad Request: parameter {e} is required")
        except (TypeError, ValueError) as e:
            return 400, error_body(400, f"Bad Request: {e}")
        except Exception as e:  # a bug in the stand-in: answer rather than drop the connection
            return 500, error_body(500, f"Internal Server Error: {e!r}")
        if method in WRITE_METHODS:
            with self._cond:
                self._note_write(method, params)
        return 200, {"ok": True, "result": result}

    def _download(self, handler, token, path):
        with self._cond:
            file_id = self._paths.get(path) if token == self.token else None
            content = self._files[file_id]["bytes"] if file_id in self._files else None
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
            return reply(handler, 404, error_body(404, "Not Found"))
        if truncate:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content[: len(content) // 2])
            handler.close_connection = True
            return
        reply(handler, 200, content, "application/octet-stream")

    def _record(self, method, params, arrived, status):
        with self._cond:
            self._calls.append({"method": method, "params": params, "time": arrived, "status": status})
            self._changed()
