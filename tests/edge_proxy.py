"""A stand-in for what a host like Koyeb puts in front of a service's instances, for tests and
benchmarks of webhook mode: one public address, and each request forwarded to the instance the
traffic goes to now (`route_to(port)`; a redeploy moves it to the new instance once its health
check answers). While nothing listens there (a sleeping service waking up), a request is held
and the connection tried again until it succeeds or `hold_seconds` pass (then 502, as a proxy
answers when no instance came up).

Plain HTTP/1.1, one request per connection, standard library only; `forwarded` records each
request's (path, status, instance port).
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FORWARDED_HEADERS = ("Content-Type", "Content-Length", "X-Telegram-Bot-Api-Secret-Token")


class EdgeProxy:
    def __init__(self, hold_seconds: float = 60.0):
        self.hold_seconds = hold_seconds
        self.forwarded: list[tuple[str, int, int]] = []
        self._target: int | None = None
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route_to(self, port: int | None) -> None:
        self._target = port

    def start(self) -> EdgeProxy:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def forward(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        deadline = time.monotonic() + self.hold_seconds
        while True:
            port = self._target
            connection = http.client.HTTPConnection("127.0.0.1", port or 1, timeout=120)
            try:
                if port is None:
                    raise ConnectionRefusedError
                connection.request(method, path, body, headers)
                response = connection.getresponse()
                answer = response.status, response.read()
                self.forwarded.append((path, answer[0], port))
                return answer
            except ConnectionRefusedError:  # nobody listens yet: hold the request, as on a wake-up
                if time.monotonic() > deadline:
                    return 502, b"no instance came up"
                time.sleep(0.02)  # the next connection attempt, as a proxy retries
            finally:
                connection.close()


def _handler(proxy: EdgeProxy):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self._pass("POST")

        def do_GET(self):
            self._pass("GET")

        def _pass(self, method):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: self.headers[k] for k in FORWARDED_HEADERS if k in self.headers}
            status, answer = proxy.forward(method, self.path, body, headers)
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer)
            self.close_connection = True

        def log_message(self, *args):
            pass

    return Handler
