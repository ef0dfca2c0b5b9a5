"""Runs the real `python main.py` as a child process against the local Bot API stand-in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
ADMIN_ID = 1000


class BotProcess:
    def __init__(self, workdir: Path, api_url: str, token: str, **env: str):
        self.workdir = workdir
        self.log_path = workdir / "bot.log"
        self.db_path = workdir / "data" / "bot.db"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "BOT_TOKEN": token,
            "TELEGRAM_API_URL": api_url,
            "ADMIN_IDS": str(ADMIN_ID),
            "DB_PATH": str(self.db_path),
            "LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> BotProcess:
        # cwd is the test's own folder: a developer's .env in the project is never read.
        self._lines: list[str] = []
        self._new_line = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, str(PROJECT / "main.py")],
            cwd=self.workdir,
            env={k: v for k, v in self.env.items() if v is not None},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        return self

    def _read_output(self) -> None:
        with open(self.log_path, "a") as log_file:
            for line in self.process.stdout:
                log_file.write(line)
                with self._new_line:
                    self._lines.append(line)
                    self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    def wait_for_log(self, text: str, timeout: float = 15) -> str:
        """The first output line containing `text`; woken by each new line, no polling."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                found = next((line for line in self._lines if text in line), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line with {text!r}; log so far:\n{self.log()}")
                self._new_line.wait(remaining)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Send `sig`, wait for the exit; returns (exit status, seconds it took)."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.wait(timeout)
        return code, time.monotonic() - started

    def wait(self, timeout: float = 15) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        with self._new_line:
            return "".join(self._lines)
