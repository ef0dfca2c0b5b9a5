"""Locks: one thread at a time on the shared connection, one process at a time on a database.

FairLock serialises the threads that share database.py's one connection, in arrival order.
InstanceLock keeps a second bot (or a restore from the command line) off a database in use.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections import deque
from pathlib import Path


class FairLock:
    """A reentrant lock that hands over in arrival order.

    threading.RLock lets a thread that releases and at once re-acquires win again and again, so
    a long job that yields between steps (the backup) could starve a handler. Here a thread that
    asks again queues behind everyone already waiting: a waiter waits for at most one step.
    """

    def __init__(self) -> None:
        self._state = threading.Condition(threading.Lock())
        self._queue: deque = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            while self._owner is not None or self._queue[0] is not ticket:
                self._state.wait()
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._state:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a lock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._state.notify_all()

    def yield_to_waiters(self) -> None:
        """Let every thread already waiting take its turn, then carry on (keeping our depth)."""
        with self._state:
            if not self._queue:
                return
            depth = self._depth
            self._depth = 1
        self.release()
        self.acquire()
        self._depth = depth

    __enter__ = acquire

    def __exit__(self, *exc_info) -> None:
        self.release()


class AlreadyRunningError(Exception):
    """Another process (a bot, or the backup command line) holds the database."""


class InstanceLock:
    """One process per database: an exclusive flock on DB_PATH + '.lock', held until release().

    The kernel drops a flock when its process dies, SIGKILL included, so a crash never leaves
    a stale lock behind. The file holds the holder's pid, for the message.
    """

    def __init__(self, db_path: str, holder: str):
        self.path = Path(f"{db_path}.lock")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise AlreadyRunningError(f"{db_path} is already in use by {other}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{holder} (pid {os.getpid()})".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
