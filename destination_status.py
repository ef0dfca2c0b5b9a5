"""How storing backups has gone in each destination, for the admin panel, the health endpoint
and the alerts: the admins hear of a failure once per streak of failures, and when it works
again. And the pause: copies kept from leaving the machine, so that a new, nearly empty backup
never buries a real one (startup.py decides when)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from clock import Clock
from database import Database
from i18n import Alert, Code, Text
from telegram_errors import shown

log = logging.getLogger("backup")

PAUSE_KEY = "offsite_paused"  # in bot_state: why copies are kept on this machine


@dataclass
class DestinationStatus:
    """How storing backups in one destination has gone."""

    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing: bool = False  # the last attempt failed
    failing_since: datetime | None = None  # when the current streak of failures began


class StatusBoard:
    """Every destination's status. Written by the thread taking a backup (one at a time: the
    engine's lock), read by any: a read copies."""

    def __init__(self, names: Sequence[str], local: str, alert: Alert, clock: Clock):
        self._status = {name: DestinationStatus() for name in names}
        self.local, self.alert, self.clock = local, alert, clock

    def succeeded(self, name: str) -> None:
        status = self._status[name]
        if status.failing:
            self.alert(Text("✅ Backups to {destination} work again.", destination=Code(name)))
        status.failing, status.failing_since, status.last_success = False, None, self.clock()

    def failed(self, name: str, error: str) -> None:
        status = self._status[name]
        log.error("backup not stored in %s: %s", name, error)
        if not status.failing:  # once per streak of failures
            where = Text("the local backup folder") if name == self.local else Code(name)
            self.alert(
                Text(
                    "⚠️ A backup could not be stored in {where}: {error}. It is retried at the next backup.",
                    where=where,
                    error=shown(error),
                )
            )
            status.failing_since = self.clock()
        status.failing, status.last_error, status.last_error_at = True, error, self.clock()

    def failing(self) -> list[str]:
        """The destinations whose last attempt to store a backup failed."""
        return sorted(name for name, status in self._status.items() if status.failing)

    def copy(self) -> dict[str, DestinationStatus]:
        return {name: replace(status) for name, status in self._status.items()}


class OffsitePause:
    """Why copies are kept from leaving the machine (kept in the database, so that it lasts
    across restarts and a restore of a backup taken before it lifts it), or None."""

    def __init__(self, db: Database | None):
        self.db = db
        self._seen: str | None = None  # as last read

    def why(self) -> str | None:
        self._seen = self.db.get_state(PAUSE_KEY) if self.db else None
        return self._seen

    def seen(self) -> bool:
        """Whether the pause was on when last read (every backup reads it): for the health
        endpoint, which must answer while a final backup holds the database for seconds."""
        return self._seen is not None

    def set(self, why: str) -> None:
        self.db.set_state(PAUSE_KEY, why)
        self._seen = why

    def lift(self) -> None:
        self.db.set_state(PAUSE_KEY, None)
        self._seen = None
