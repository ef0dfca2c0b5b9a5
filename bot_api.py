"""The Bot API, in one place: where the server is, Telegram's flood control, errors in one
line, and files streamed both ways.

pyTelegramBotAPI builds every request itself and sends it through one function the library
lets an application supply (`apihelper.CUSTOM_REQUEST_SENDER`, public and documented). This
module installs one such sender for the process, and it routes each request by the token in
its URL to that bot's `BotApi`:

- **Where**: TELEGRAM_API_URL (Telegram, a self-hosted Bot API server, a proxy, the tests'
  stand-in). The library's global API_URL is never touched, so two bots with two servers can
  live in one process (the tests do).
- **Flood control**: a 429 "Too Many Requests: retry after N" (with `parameters.retry_after`)
  stops every call to that chat (or, for a call to no chat, every call) for N seconds, then
  the call is made again, as long as the thread's deadline allows (`deadline()`: a final
  backup at SIGTERM has seconds, not minutes); past it, the 429 is the caller's.
- **Pacing**: work that writes into a chat in bulk (the backups in the backup chat: inside
  `paced()`) keeps to Telegram's published guidance (about one message a second in a chat, 20 a
  minute in a group), and all writes to 30 a second overall: a write waits for its turn. Bulk
  work leaves 5 of a group's 20 a minute to writes that cannot wait a minute (`urgent()`, a
  deadline: a claim, a knock, a final backup). Other processes' writes to the chat count too:
  the chat's index lists the writes of its last minute (`Pacer.writes_in`, `Pacer.learn`).
  Replies to people are not held back: they come one per message a person sends, and a 429
  still stops them.
- **Errors**: `calling(what)` turns whatever the library or the network raised into one
  `BotApiError` line without the URL (which holds the token), keeping the error code,
  `retry_after` and `migrate_to_chat_id` (a basic group upgraded to a supergroup).
- **Files**: `upload()` streams a file from disk as the request goes out (requests-toolbelt's
  encoder: the library would build the whole body in memory first), `download()` streams one
  to disk.

Threads: any thread may call. The pacing windows and the flood stops are pacer.py's, under
its one lock; nobody holds it while waiting or sending.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import BinaryIO

import requests
import telebot
from requests_toolbelt import MultipartEncoder
from telebot import apihelper, types

from files import CHUNK
from pacer import Pacer

log = logging.getLogger(__name__)

OFFICIAL = "https://api.telegram.org"  # what the library addresses; routed to TELEGRAM_API_URL
URL = re.compile(r"^https?://[^/]+/bot([^/]+)/([A-Za-z]+)$")
MAX_FLOOD_WAIT = 60.0  # at most this long in one call for flood control, without a deadline
# Calls that change a chat: all of them count toward the overall pace, and inside paced()
# toward the chat's pace too. Telegram's guidance speaks of messages, but its flood control
# counts every change to a chat (an edit, a deletion, a pin and the service message it makes),
# so the backup chat's work keeps all of them within the guidance.
WRITES = frozenset(
    {
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
        "editMessageReplyMarkup",
        "deleteMessage",
        "pinChatMessage",
        "unpinChatMessage",
    }
)
HURRIED_PACE_WAIT = 3.5  # the most a final backup's write waits for the guidance's pace


class BotApiError(Exception):
    """A Bot API call failed. The message is one line, without the token; the details are kept
    for callers that act on them."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        description: str = "",
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ):
        super().__init__(message)
        self.code, self.description = code, description
        self.retry_after, self.migrate_to_chat_id = retry_after, migrate_to_chat_id


# --- deadlines: how long this thread may wait for Telegram's flood control -------------------

_local = threading.local()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within this block, this thread waits for flood control or pacing at most until
    `seconds` from now (nested blocks keep the earlier end)."""
    previous = getattr(_local, "deadline", None)
    end = time.monotonic() + seconds
    _local.deadline = min(end, previous) if previous is not None else end
    try:
        yield
    finally:
        _local.deadline = previous


@contextmanager
def paced() -> Iterator[None]:
    """Within this block, this thread's writes to any chat keep to the guidance for one chat
    (the backup chat's work: a backup, its index, rotation)."""
    previous = getattr(_local, "paced", False)
    _local.paced = True
    try:
        yield
    finally:
        _local.paced = previous


@contextmanager
def urgent(unseen: int = 0, wait: float | None = None) -> Iterator[None]:
    """Within this block, this thread's writes may use the minute's room bulk work leaves
    (BULK_GROUP_PACE): a claim, a knock (an instance waits on them), a quiet head. Each waits
    for the guidance's pace at most `wait` seconds (None: HURRIED_PACE_WAIT, as for what
    cannot wait a minute; else as long as that, then it goes). `unseen`: writes to
    the chat this process cannot know of, counted as made just now."""
    previous = getattr(_local, "urgent", None), getattr(_local, "unseen", 0), getattr(_local, "short", False)
    _local.urgent, _local.unseen = (HURRIED_PACE_WAIT if wait is None else wait), unseen
    _local.short = wait is None  # cannot wait the minute (a claim, a knock): hurried()
    try:
        with paced():
            yield
    finally:
        _local.urgent, _local.unseen, _local.short = previous


@contextmanager
def at_once() -> Iterator[None]:
    """Within this block, this thread's writes do not wait at all: an edit of the index right
    after the read it is based on (room was made before the read: Pacer.wait_for_room), which a
    wait would let another instance's claim or knock slip between. A 429 is the caller's at
    once (after Telegram's stop, it reads again before it writes)."""
    previous = getattr(_local, "at_once", False)
    _local.at_once = True
    try:
        yield
    finally:
        _local.at_once = previous


def hurried() -> bool:
    """Whether this thread's work cannot wait for the minute's pace: inside urgent() (as it is
    by default), within a deadline (a final backup), or while the writer finishes (hurry())."""
    return _hurry.is_set() or getattr(_local, "short", False) or getattr(_local, "deadline", None) is not None


def _urgent_wait() -> float | None:
    return getattr(_local, "urgent", None)


_hurry = threading.Event()  # the writer is finishing: every thread's pace waits are short


def hurry(finishing: bool = True) -> None:
    """The writer stops (SIGTERM, a hand-over): from now on every thread waits for the
    guidance's pace at most HURRIED_PACE_WAIT a write, as a final backup does (an on-change
    backup still running must not hold the final one up for a minute's window); False when it
    serves again."""
    if finishing:
        _hurry.set()
    else:
        _hurry.clear()


def time_waited() -> float:
    """The seconds this thread has waited so far for its turn or for flood control: time spent
    on Telegram's pace, not on work (the on-change backups' spacing leaves it out)."""
    return getattr(_local, "waited", 0.0)


def _pace_budget() -> float | None:
    """Within a deadline (a final backup: the next instance waits for it) the guidance's pace
    is waited for at most HURRIED_PACE_WAIT, enough for its few seconds' window, not for its
    minute's: a hand-over that came too late would cost more than a minute over the guidance.
    Telegram's own stops (a 429) are still waited out, within the deadline. Inside at_once()
    nothing is waited for (the room was made before the read); inside urgent(), its wait;
    else (None) as long as the thread's time allows."""
    if getattr(_local, "at_once", False):
        return 0.0
    if _hurry.is_set() or getattr(_local, "deadline", None) is not None:
        return HURRIED_PACE_WAIT
    return _urgent_wait()


def _urgent_writes() -> int | None:
    """Writes that may use the whole of a group's minute (a claim, a knock, a final backup):
    how many writes this process cannot know of; None for bulk work."""
    if _urgent_wait() is not None or getattr(_local, "deadline", None) is not None:
        return getattr(_local, "unseen", 0)
    return None


def _time_left() -> float:
    end = getattr(_local, "deadline", None)
    return MAX_FLOOD_WAIT if end is None else max(0.0, end - time.monotonic())


# --- one bot's server --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A request as the library built it: sent again as it is after a flood stop."""

    method: str  # HTTP
    api_method: str
    params: dict | None
    files: dict | None
    timeout: object


class BotApi:
    """One bot's Bot API server: TELEGRAM_API_URL, its pacing, its files."""

    def __init__(self, token: str, base_url: str = OFFICIAL, pacer: Pacer | None = None):
        self.token, self.base_url = token, base_url.rstrip("/")
        self.pacer = pacer or Pacer()
        self.session = requests.Session()
        self.bot_id = int(token.split(":", 1)[0])  # a token starts with its bot's user id

    def url(self, api_method: str) -> str:
        return f"{self.base_url}/bot{self.token}/{api_method}"

    def file_url(self, file_path: str) -> str:
        return f"{self.base_url}/file/bot{self.token}/{file_path}"

    def send(self, request: Request) -> requests.Response:
        """The library's request, sent to this bot's server within flood control."""

        def attempt() -> requests.Response:
            for stream in _streams(request.files):
                stream.seek(0)  # sent again after a flood stop: from the start
            return self.session.request(
                request.method,
                self.url(request.api_method),
                params=request.params,
                files=request.files,
                timeout=request.timeout,
            )

        return self.paced(request.api_method, _chat_of(request.params), attempt)

    def paced(self, api_method: str, chat: object | None, attempt: Callable[[], requests.Response]):
        """attempt() in its turn; after a 429, again once Telegram's stop is over, while the
        thread's time allows. Returns the last response."""
        write, at_once = api_method in WRITES, getattr(_local, "at_once", False)
        while True:
            waited = self.pacer.wait_for_turn(
                chat,
                write,
                0.0 if at_once else _time_left(),
                write and getattr(_local, "paced", False),
                _pace_budget,
                _urgent_writes(),
            )
            _local.waited = time_waited() + waited
            try:
                response = attempt()
            finally:
                if write:
                    self.pacer.landed()
            server_time = _server_time(response)
            if server_time is not None:
                self.pacer.saw_server_time(server_time, "header")
            retry_after = _retry_after(response)
            if retry_after is None:
                return response
            self.pacer.stop(chat, retry_after)
            log.warning("Telegram's flood control: %s asked to wait %d s", api_method, retry_after)
            if retry_after > _time_left() or at_once:
                return response  # at_once: what it was based on is read again after the stop

    def wait_for_room(self, chat: object) -> bool:
        """Before a read whose write must follow it closely (a head, fenced by what it read):
        the pace's wait comes first, not between the two. False when the thread's budgets ran
        out first (its write then goes over the pace, or not at all under a flood stop)."""
        waited, room = self.pacer.wait_for_room(chat, _time_left(), _urgent_writes(), _pace_budget)
        _local.waited = time_waited() + waited
        return room

    def has_room(self, chat: object) -> bool:
        """Whether this thread's next write to `chat` keeps the pace now (after a read that
        learned writes, the room made before it may be gone)."""
        return self.pacer.has_room(chat, _urgent_writes())

    def upload(
        self, what: str, api_method: str, fields: dict, field: str, name: str, body: Callable[[], object]
    ):
        """A multipart request whose file part is `body()` (a fresh stream for every attempt),
        read from disk as it is sent. Returns the result, or raises BotApiError saying Telegram
        would not `what`."""
        chat = _chat_of(fields)

        def attempt() -> requests.Response:
            encoder = MultipartEncoder(
                {
                    **{key: str(value) for key, value in fields.items()},
                    field: (name, body(), "application/octet-stream"),
                }
            )
            return self.session.post(
                self.url(api_method),
                data=encoder,
                headers={"Content-Type": encoder.content_type},
                timeout=(10, 600),
            )

        with calling(what):
            return _result(what, self.paced(api_method, chat, attempt))

    def download(
        self, file_path: str, out: BinaryIO, limit: int | None = None, what: str = "download a file"
    ) -> tuple[int, str]:
        """Stream a file from the server into `out` (never whole in memory); returns its size and
        SHA-256. More than `limit` bytes is a BotApiError."""
        size, digest = 0, hashlib.sha256()
        with (
            calling(what),
            self.session.get(self.file_url(file_path), stream=True, timeout=(10, 600)) as response,
        ):
            response.raise_for_status()
            for chunk in response.iter_content(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise BotApiError("the file is larger than it should be")
                digest.update(chunk)
                out.write(chunk)
        return size, digest.hexdigest()


def _streams(files: dict | None) -> list:
    """The seekable file objects among a request's files."""
    found = []
    for value in (files or {}).values():
        stream = value[1] if isinstance(value, tuple) and len(value) > 1 else value
        if hasattr(stream, "seek") and hasattr(stream, "read"):
            found.append(stream)
    return found


def _chat_of(params: dict | None) -> object | None:
    chat = (params or {}).get("chat_id")
    if isinstance(chat, str) and re.fullmatch(r"-?\d{1,20}", chat):
        return int(chat)
    return chat


def _server_time(response: requests.Response) -> float | None:
    """Telegram's clock when it answered (the Date header every HTTP server sends, RFC 9110
    6.6.1); None when it is missing or not a date."""
    try:
        return parsedate_to_datetime(response.headers.get("Date", "")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _retry_after(response: requests.Response) -> int | None:
    """The seconds a 429 asks to wait; None for any other answer."""
    if response.status_code != 429:
        return None
    try:
        seconds = response.json().get("parameters", {}).get("retry_after")
    except (ValueError, AttributeError):
        seconds = None
    return seconds if isinstance(seconds, int) and 0 < seconds <= 86_400 else 5


def _result(what: str, response: requests.Response):
    """The `result` of a Bot API answer, or BotApiError (as the library would decide)."""
    try:
        answer = response.json()
    except ValueError:
        status = response.status_code
        raise BotApiError(f"Telegram answered HTTP {status} when asked to {what}", code=status) from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        raise failure_of(what, answer if isinstance(answer, dict) else {}, response.status_code)
    return answer.get("result")


def failure_of(what: str, answer: dict, status: int | None = None) -> BotApiError:
    """A BotApiError from a Bot API error answer ({"ok": false, "error_code", "description",
    "parameters"}) to a request to `what`, every field checked: the answer came from outside."""
    code = answer.get("error_code") if isinstance(answer.get("error_code"), int) else status
    description = answer.get("description") if isinstance(answer.get("description"), str) else ""
    parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
    retry_after, migrate = parameters.get("retry_after"), parameters.get("migrate_to_chat_id")
    return BotApiError(
        f"Telegram would not {what}: {one_line(description) or f'error {code}'}",
        code=code,
        description=one_line(description),
        retry_after=retry_after if isinstance(retry_after, int) else None,
        migrate_to_chat_id=migrate if isinstance(migrate, int) and not isinstance(migrate, bool) else None,
    )


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


# --- the process's one request sender ----------------------------------------------------------

_bots: dict[str, BotApi] = {}
_bots_lock = threading.Lock()


def _route(method: str, url: str, params=None, files=None, timeout=None, proxies=None):
    """pyTelegramBotAPI's request sender (apihelper.CUSTOM_REQUEST_SENDER): to the server of
    the bot whose token the URL holds."""
    match = URL.match(url)
    with _bots_lock:
        api = _bots.get(match.group(1)) if match else None
    if api is None:  # a bot this module did not build: straight through, as the library would
        return requests.request(method, url, params=params, files=files, timeout=timeout, proxies=proxies)
    return api.send(Request(method, match.group(2), params, files, timeout))


def build(token: str, api_url: str = OFFICIAL, **options) -> telebot.TeleBot:
    """A TeleBot whose every call goes to `api_url`, within flood control."""
    with _bots_lock:
        _bots[token] = BotApi(token, api_url)
    apihelper.CUSTOM_REQUEST_SENDER = _route
    return telebot.TeleBot(token, **options)


def forget_connections() -> None:
    """Close every kept-alive connection to the Bot API: after the process was frozen (a host's
    sleep), a connection it kept may be dead without a word from the other end, and a request
    sent on it waits for its whole timeout. The next request opens a fresh one."""
    with _bots_lock:
        apis = list(_bots.values())
    for api in apis:
        api.session.close()  # the session stays usable: its pools are emptied, not its adapters


def api_of(bot: telebot.TeleBot) -> BotApi:
    """The BotApi behind a bot that build() made."""
    with _bots_lock:
        return _bots[bot.token]


# --- errors --------------------------------------------------------------------------------------


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Whatever the library or the network raises inside becomes one BotApiError line saying
    that Telegram would not `what` ("send a backup to the chat") and why. requests' messages
    spell out the URL, and the URL holds the token: only the kind of a network error is kept."""
    try:
        yield
    except BotApiError:
        raise
    except apihelper.ApiTelegramException as error:
        raise failure_of(what, error.result_json or {}, error.error_code) from None
    except apihelper.ApiHTTPException as error:
        status = error.result.status_code
        raise BotApiError(f"Telegram answered HTTP {status} when asked to {what}", code=status) from None
    except apihelper.ApiException:
        raise BotApiError(f"Telegram gave an answer that is not JSON when asked to {what}") from None
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        raise BotApiError(f"Telegram answered HTTP {status} when asked to {what}", code=status) from None
    except requests.RequestException as error:
        raise BotApiError(f"cannot reach Telegram to {what} ({type(error).__name__})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # pyTelegramBotAPI reads answers without checking them: JSON without 'ok', a result of
        # the wrong shape. Whatever it was, this is what the server said, not our data.
        log.debug("unreadable answer from Telegram", exc_info=error)
        raise BotApiError(f"Telegram gave an answer this bot cannot read when asked to {what}") from None


def json_field(value) -> str:
    """A structured parameter as the Bot API takes it in a form."""
    return json.dumps(value, ensure_ascii=False)


# --- the command menu ----------------------------------------------------------------------------


def set_commands(
    bot: telebot.TeleBot, commands: list[tuple[str, str]], chat_id: int | None = None, language_code: str = ""
) -> None:
    """setMyCommands: the "/" menu of `commands` ((name, description) pairs) for everyone
    (chat_id None: BotCommandScopeDefault) or for one chat (BotCommandScopeChat), for readers
    whose app is in `language_code` ("": everyone else). Raises BotApiError."""
    scope = types.BotCommandScopeDefault() if chat_id is None else types.BotCommandScopeChat(chat_id)
    where = "everyone" if chat_id is None else f"chat {chat_id}"
    with calling(f"set the command menu for {where} ({language_code or 'any language'})"):
        bot.set_my_commands(
            [types.BotCommand(name, description) for name, description in commands],
            scope=scope,
            language_code=language_code or None,
        )
