"""The bot's HTTP endpoint on PORT: the health check, and in webhook mode Telegram's updates.

    GET / and /healthz          200, the instance's status as JSON (see the README's Health)
    POST <WEBHOOK_URL's path>   an update from Telegram (webhook mode only)
    anything else               404, or 405 for a known path and another method

A webhook request is checked for Telegram's secret header before anything else is read: without
it, or with another one, 401 and nothing is processed. Then a body over 1 MB gets 413, one that
is not a JSON update 400; the update goes to `webhook.handle`, whose answer is the status (200:
done or done before; 503: not now, Telegram retries; 500: the handler failed, logged). A client
gets 10 s to send its whole request, however it trickles, and at most 32 connections are open
at once: more are closed at once. Standard library only, served by daemon threads, so it never
holds the process open.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # a Telegram update is a few kilobytes
CLIENT_TIMEOUT = 10  # seconds a client may take to send its whole request
MAX_CONNECTIONS = 32  # Telegram uses one (max_connections=1), health checks another
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
) -> ThreadingHTTPServer:
    handler = type(
        "Handler",
        (_Handler,),
        {"status": staticmethod(status), "webhook": webhook, "started": time.monotonic()},
    )
    server = _Server((host, port), handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("listening on port %d%s", port, f" (webhook at {webhook.path})" if webhook else "")
    return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):  # a flood of connections: no thread for it
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """Through the logger (its redaction too), not socketserver's print to stderr."""
        log.warning("http: a request from %s failed", client_address[0], exc_info=True)


def _update_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53
