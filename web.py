"""The bot's HTTP endpoint on PORT: the health check, and in webhook mode Telegram's updates.

    GET / and /healthz          200, the instance's status as JSON (see the README's Health)
    POST <WEBHOOK_URL's path>   an update from Telegram (webhook mode only)
    anything else               404, or 405 for a known path and another method

Everyone shares the port, so a connection is served in two stages. First it waits for its
request line and headers in the doorway: the server's own thread, a selector, so an idle
connection costs a file descriptor and never a thread. It has HEADER_TIMEOUT (2 s) from its
connection to send them, at most MAX_HEADER bytes; at most MAX_WAITING connections wait, and
when more come the oldest is closed. Then its request is served by a thread of its own
budget, by who asks: the health check's (a GET or HEAD of / or /healthz), Telegram's (a POST to
the webhook path carrying the right secret header) or everyone else's (401, 404, 405 at once).
So clients that never send a secret, idle or slow, cannot take what the host's health check and
Telegram need; a budget that is spent answers 503 at once (Telegram retries).

A webhook request is checked for Telegram's secret header before anything else is read: without
it, or with another one, 401 and nothing is processed. Then a body over 1 MB gets 413, one that
is not a JSON update 400; the update goes to `webhook.handle`, whose answer is the status (200:
done or done before; 503: not now, Telegram retries; 500: the handler failed, logged). Once its
headers are in, a request has CLIENT_TIMEOUT (10 s) for the whole of it, however it trickles. A
client that hangs up before its answer is one line at DEBUG, never a traceback. Standard
library only, served by daemon threads, so it never holds the process open.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Protocol

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # a Telegram update is a few kilobytes
HEADER_TIMEOUT = 2.0  # seconds from a connection to the end of its request line and headers
MAX_HEADER = 16 << 10  # bytes of request line and headers (Telegram's are well under 1 KB)
MAX_WAITING = 128  # connections waiting for their headers; the oldest goes when more come
CLIENT_TIMEOUT = 10  # seconds for the whole request, once its headers are in
# Threads serving requests whose headers are in, by who asks. Telegram uses one connection
# (max_connections=1); a host checks health every few seconds; the rest get a 4xx at once.
BUDGETS = {"health": 8, "telegram": 4, "other": 8}
HUNG_UP = (ConnectionError, TimeoutError)  # a client gone: BrokenPipe, ConnectionReset, ...
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATHS = ("/", "/healthz")


class Webhook(Protocol):
    path: str
    secret: str

    def handle(self, update: dict) -> int: ...


class _Handler(BaseHTTPRequestHandler):
    """One request. The server gives each handler what it answers from (bound in start_server)."""

    timeout = CLIENT_TIMEOUT  # on each read of the socket
    status: Callable[[], dict]  # the instance's status, asked at each health check
    webhook: Webhook | None = None
    started = 0.0  # monotonic, when the server started

    def setup(self) -> None:
        super().setup()
        # What the doorway read (the request line, the headers, maybe some body) comes first.
        self.rfile.close()
        self.rfile = io.BufferedReader(_Replay(self.server.read_ahead.pop(self.request, b""), self.request))
        # The whole request within CLIENT_TIMEOUT, not each read: a client that sends a
        # byte every few seconds is cut off too. Cancelled once the request is read.
        self._deadline = threading.Timer(CLIENT_TIMEOUT, self._cut)
        self._deadline.daemon = True
        self._deadline.start()

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def _cut(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:
        self._deadline.cancel()
        path = self.path.split("?")[0]
        if path in HEALTH_PATHS:
            self._answer(
                200, {"ok": True, "uptime_seconds": round(time.monotonic() - self.started), **self.status()}
            )
        elif self.webhook is not None and path == self.webhook.path:
            self._answer(405, {"ok": False, "error": "method not allowed"})
        else:
            self._answer(404, {"ok": False, "error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?")[0]
        if self.webhook is None or path != self.webhook.path:
            self._answer(405 if path in HEALTH_PATHS else 404, {"ok": False})
            return
        given = self.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(errors="replace"), self.webhook.secret.encode()):
            self._answer(401, {"ok": False, "error": "unauthorized"}, close=True)
            return
        update = self._update()
        if update is None:
            return
        self._deadline.cancel()  # read: the handler may take its time
        try:
            status = self.webhook.handle(update)
        except Exception:  # answered, so Telegram retries; never a raw traceback on stderr
            log.exception("handling update %s failed", update.get("update_id"))
            status = 500
        self._answer(status, {})

    def _update(self) -> dict | None:
        """The request's update, or None once it was answered with what is wrong."""
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit()):  # "²".isdigit() is True
            self._answer(411, {"ok": False, "error": "length required"}, close=True)
            return None
        if int(length) > MAX_BODY:
            self._answer(413, {"ok": False, "error": "too large"}, close=True)
            return None
        try:
            update = json.loads(self.rfile.read(int(length)))
        except (ValueError, RecursionError):
            update = None
        if not isinstance(update, dict) or not _update_id(update.get("update_id")):
            self._answer(400, {"ok": False, "error": "not an update"})
            return None
        return update

    def _refuse(self) -> None:
        self._answer(405, {"ok": False, "error": "method not allowed"}, close=True)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def do_HEAD(self) -> None:  # what some uptime checkers send: the status, no body
        path = self.path.split("?")[0]
        known = path in HEALTH_PATHS or (self.webhook is not None and path == self.webhook.path)
        self.send_response(200 if path in HEALTH_PATHS else 405 if known else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, code: int, body: dict, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # health checks every few seconds: quiet
        log.debug("http: " + format, *args)


def start_server(
    port: int, status: Callable[[], dict], webhook: Webhook | None = None, host: str = "0.0.0.0"
) -> HTTPServer:
    """Listen on `port` and serve on a daemon thread; raises OSError when the port cannot be had."""
    handler = type(
        "Handler",
        (_Handler,),
        {"status": staticmethod(status), "webhook": webhook, "started": time.monotonic()},
    )
    server = _Server((host, port), handler, webhook)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("listening on port %d%s", port, f" (webhook at {webhook.path})" if webhook else "")
    return server


@dataclass
class _Waiting:
    """A connection in the doorway: who, until when, what it sent so far."""

    address: tuple
    until: float
    head: bytes = b""


class _Server(HTTPServer):
    """The doorway (serve_forever: accepting, and reading every connection's headers, on one
    thread) and the budgets of the threads that serve the requests."""

    request_queue_size = 128  # the listen backlog: a burst of connections is accepted, not dropped

    def __init__(self, address, handler, webhook: Webhook | None) -> None:
        super().__init__(address, handler)
        self.socket.setblocking(False)
        self.webhook = webhook
        self.read_ahead: dict[socket.socket, bytes] = {}  # for each request's handler
        self._slots = {kind: threading.BoundedSemaphore(n) for kind, n in BUDGETS.items()}
        self._waiting: dict[socket.socket, _Waiting] = {}  # in arrival order: the oldest first
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                while not self._stop.is_set():
                    for key, _ in selector.select(min(poll_interval, HEADER_TIMEOUT / 4)):
                        if key.fileobj is self.socket:
                            self._accept(selector)
                        else:
                            self._read_head(selector, key.fileobj)
                    self._cut_late(selector)
                for connection in list(self._waiting):
                    self._drop(selector, connection)
        finally:
            self._stop.clear()
            self._stopped.set()

    def shutdown(self) -> None:
        self._stop.set()
        self._stopped.wait()

    def _accept(self, selector) -> None:
        while True:
            try:
                connection, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors, say: the next turn tries again
                log.warning("http: cannot accept a connection: %s", error)
                return
            connection.setblocking(False)
            while len(self._waiting) >= MAX_WAITING:  # the oldest idle one makes room
                self._drop(selector, next(iter(self._waiting)))
            self._waiting[connection] = _Waiting(address, time.monotonic() + HEADER_TIMEOUT)
            selector.register(connection, selectors.EVENT_READ)

    def _read_head(self, selector, connection: socket.socket) -> None:
        waiting = self._waiting[connection]
        try:
            data = connection.recv(MAX_HEADER + 1 - len(waiting.head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # gone before its request
            self._drop(selector, connection)
            return
        waiting.head += data
        if b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head:
            selector.unregister(connection)
            del self._waiting[connection]
            self._serve(connection, waiting)
        elif len(waiting.head) > MAX_HEADER:
            self._refuse(selector, connection, b"431 Request Header Fields Too Large")

    def _cut_late(self, selector) -> None:
        """Close the connections whose headers did not come within HEADER_TIMEOUT."""
        now = time.monotonic()
        for connection, waiting in list(self._waiting.items()):
            if waiting.until > now:
                return  # the others came later
            self._drop(selector, connection)

    def _serve(self, connection: socket.socket, waiting: _Waiting) -> None:
        """A thread of its budget for a request whose headers are in; 503 when it is spent."""
        slots = self._slots[_who_asks(waiting.head, self.webhook)]
        if not slots.acquire(blocking=False):
            _answer_now(connection, b"503 Service Unavailable")
            return
        connection.setblocking(True)
        self.read_ahead[connection] = waiting.head

        def serve() -> None:
            try:
                self.finish_request(connection, waiting.address)
            except Exception:
                self.handle_error(connection, waiting.address)
            finally:
                self.read_ahead.pop(connection, None)
                self.shutdown_request(connection)
                slots.release()

        threading.Thread(target=serve, name="http-request", daemon=True).start()

    def _refuse(self, selector, connection: socket.socket, status: bytes) -> None:
        selector.unregister(connection)
        del self._waiting[connection]
        _answer_now(connection, status)

    def _drop(self, selector, connection: socket.socket) -> None:
        selector.unregister(connection)
        del self._waiting[connection]
        connection.close()

    def handle_error(self, request, client_address) -> None:
        """Through the logger (its redaction too), not socketserver's print to stderr; a client
        that hung up is no error of ours: one line at DEBUG."""
        error = sys.exc_info()[1]
        if isinstance(error, HUNG_UP):
            log.debug("http: %s hung up before its answer (%s)", client_address[0], type(error).__name__)
            return
        log.warning("http: a request from %s failed", client_address[0], exc_info=True)


def _who_asks(head: bytes, webhook: Webhook | None) -> str:
    """Whose budget a request is served from, by its request line and headers: "health",
    "telegram" (the webhook's path, with the right secret) or "other"."""
    lines = head.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")
    request = lines[0].split()
    if len(request) != 3:
        return "other"
    method, path = request[0], request[1].split(b"?")[0].decode("latin-1")
    if method in (b"GET", b"HEAD") and path in HEALTH_PATHS:
        return "health"
    if webhook is not None and method == b"POST" and path == webhook.path:
        wanted = SECRET_HEADER.lower().encode()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == wanted and hmac.compare_digest(value.strip(), webhook.secret.encode()):
                return "telegram"
    return "other"


def _answer_now(connection: socket.socket, status: bytes) -> None:
    """A short answer from the doorway itself, and the connection closed: it never waits (a
    fresh connection's send buffer takes a few bytes), and a client gone is no matter."""
    try:
        connection.setblocking(False)
        connection.send(b"HTTP/1.0 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass
    connection.close()


class _Replay(io.RawIOBase):
    """A connection read from the start: what the doorway read of it first, then the socket."""

    def __init__(self, head: bytes, connection: socket.socket):
        self._head, self._connection = memoryview(head), connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count], self._head = self._head[:count], self._head[count:]
            return count
        return self._connection.recv_into(buffer)


def _update_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53
