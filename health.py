"""A tiny health endpoint: GET / and /healthz answer 200 with a small JSON status.

Koyeb web services fail their health check without one; a worker needs none. Standard library
only, served by a daemon thread, so it never holds the process open.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

log = logging.getLogger(__name__)


def start_health_server(port: int, status: Callable[[], dict], host: str = "0.0.0.0") -> ThreadingHTTPServer:
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/", "/healthz"):
                self._answer(404, {"ok": False, "error": "not found"})
                return
            self._answer(200, {"ok": True, "uptime_seconds": round(time.monotonic() - started),
                               **status()})

        def _answer(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # health checks every few seconds: quiet
            log.debug("health: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("health endpoint listening on port %d", port)
    return server
