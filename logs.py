"""Logging set-up that keeps secrets out of every line.

The bot token travels inside every Bot API URL, so pyTelegramBotAPI's worker threads, urllib3's
debug lines and the messages of requests' exceptions all carry it. Rather than trusting each
library to hide it, the one handler we install redacts every secret from the finished line,
traceback included, and the libraries' own handlers are removed so nothing bypasses it.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable

REDACTED = "[REDACTED]"


class Redactor:
    """Replaces every secret in a text. The secret part of a token ("123:SECRET") is replaced on
    its own too, for URL-quoted forms.

    A secret of ANYWHERE characters or more is replaced wherever it appears, inside a URL or
    glued to other characters (no ordinary word holds one); a shorter one (a webhook secret
    can be a few letters) only where it stands whole, not inside a longer word, so that "xis"
    never turns "exists" into "e[REDACTED]ts". BACKUP_PASSPHRASE is at least that long
    (config.MIN_PASSPHRASE)."""

    ANYWHERE = 12

    def __init__(self, secrets: Iterable[str]):
        parts = set()
        for secret in secrets:
            if secret:
                parts.add(secret)
                if ":" in secret:
                    parts.add(secret.split(":", 1)[1])
        patterns = [
            re.escape(secret) if len(secret) >= self.ANYWHERE else rf"(?<!\w){re.escape(secret)}(?!\w)"
            for secret in sorted(parts - {""}, key=len, reverse=True)  # the longest first
        ]
        self._pattern = re.compile("|".join(patterns)) if patterns else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text


class RedactingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str):
        super().__init__(fmt)
        self._redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pyTelegramBotAPI installs its own stderr handler at import; route it through ours instead.
    telebot_logger = logging.getLogger("TeleBot")
    telebot_logger.handlers[:] = []
    telebot_logger.propagate = True
    telebot_logger.setLevel(level if level == "DEBUG" else "WARNING")
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer"):
        logging.getLogger(noisy).setLevel(level if level == "DEBUG" else "WARNING")
    _route_uncaught_exceptions()


def _route_uncaught_exceptions() -> None:
    """Uncaught exceptions would be printed to stderr raw (URLs and all); log them instead."""
    log = logging.getLogger("uncaught")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        log.error(
            "uncaught exception in thread %s",
            getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    def main_hook(exc_type, exc_value, exc_traceback) -> None:
        log.critical("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook
