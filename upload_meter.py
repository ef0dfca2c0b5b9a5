"""What backups upload: bytes per destination off the machine, by the hour, for the last 24
hours and the month's pace; and the budget (BACKUP_UPLOAD_BUDGET_GB a month) that spaces
on-change backups out when the pace would pass it.

The counts live in memory and in a small file beside the backups (BACKUP_DIR/uploads.json,
rewritten atomically), not in the database: every write to the database is a change to back up,
so counting an upload there would itself call for the next one. A restart on the same disk keeps
them; a new disk starts counting again (the pace then rests on what it has seen, at least an
hour's worth).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path

from clock import Clock, utc_now
from files import write_atomically
from i18n import Alert, Size, Text

log = logging.getLogger("backup")

HOUR = 3600
KEPT_HOURS = 7 * 24  # the pace looks at the last week
MONTH = timedelta(days=30)
MIN_WINDOW = timedelta(hours=1)  # a pace from a few minutes of counts would be noise
MAX_STRETCH = 60.0  # on-change backups spaced out at most this many times their window
GB = 1 << 30  # as sizes are shown (20 GB reads "20 GB")


class UploadMeter:
    """Bytes uploaded per destination, in hour buckets, and how far over the budget the pace is."""

    def __init__(
        self,
        path: Path | None,
        budget_gb: float,
        clock: Clock = utc_now,
        alert: Alert = lambda text: None,
    ):
        self.path, self.budget, self.clock, self.alert = path, round(budget_gb * GB), clock, alert
        self._over_budget = False  # the admins were told the pace passes the budget
        self._lock = threading.Lock()  # a leaf: guards the buckets only
        self._hours: dict[int, dict[str, int]] = {}  # hour (UTC, seconds // 3600) -> name -> bytes
        self._since: datetime | None = None  # when the counts began (the clock is asked only
        # when something happens: an engine's clock may be a test's, each reading a moment later)
        self._load()

    def record(self, destination: str, size: int) -> None:
        """`size` bytes were uploaded to `destination` now."""
        now = self.clock()
        with self._lock:
            self._since = self._since or now
            hour = int(now.timestamp()) // HOUR
            bucket = self._hours.setdefault(hour, {})
            bucket[destination] = bucket.get(destination, 0) + size
            for old in [h for h in self._hours if h <= hour - KEPT_HOURS]:
                del self._hours[old]
            data = {"since": self._since.isoformat(), "hours": {str(h): b for h, b in self._hours.items()}}
        self._save(data)

    def last_24h(self) -> dict[str, int]:
        """Bytes per destination in the last 24 hours (whole hours, the current one included)."""
        now_hour = int(self.clock().timestamp()) // HOUR
        found: dict[str, int] = {}
        with self._lock:
            for hour, bucket in self._hours.items():
                if hour > now_hour - 24:
                    for name, size in bucket.items():
                        found[name] = found.get(name, 0) + size
        return found

    def month_pace(self) -> int:
        """What a month at the pace of the last week (or of what was counted, at least an hour)
        would upload, every destination together."""
        now = self.clock()
        window = min(timedelta(hours=KEPT_HOURS), max(MIN_WINDOW, now - (self._since or now)))
        first = int((now - window).timestamp()) // HOUR
        with self._lock:
            total = sum(sum(b.values()) for h, b in self._hours.items() if h >= first)
        return round(total * (MONTH / window))

    def totals(self) -> tuple[int, int]:
        """Bytes uploaded in the last 24 hours, and a month at this pace, every place together."""
        return sum(self.last_24h().values()), self.month_pace()

    def health(self) -> dict[str, int]:
        """The counts as the health endpoint reports them."""
        day, pace = self.totals()
        return {"uploaded_last_24h_bytes": day, "upload_month_pace_bytes": pace}

    def spacing(self) -> float:
        """How many times BACKUP_AFTER_CHANGE_SECONDS on-change backups are spaced (stretch);
        the admins are told once, when it passes 1."""
        stretch = self.stretch()
        if stretch > 1 and not self._over_budget:
            self.alert(
                Text(
                    "📤 Backups upload {pace} a month at this pace, over the budget of {budget} "
                    "(BACKUP_UPLOAD_BUDGET_GB): on-change backups are spaced {times} times "
                    "further apart until the pace is back under it.",
                    pace=Size(self.month_pace()),
                    budget=Size(self.budget),
                    times=round(stretch, 1),
                )
            )
        self._over_budget = stretch > 1
        return stretch

    def stretch(self) -> float:
        """How many times their window on-change backups are spaced: 1 within the budget, the
        pace over the budget beyond it (so the pace comes back to it), at most MAX_STRETCH."""
        pace = self.month_pace()
        return 1.0 if pace <= self.budget else min(MAX_STRETCH, pace / self.budget)

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            data = json.loads(self.path.read_text())
            since = datetime.fromisoformat(data["since"])
            hours = {
                int(hour): {str(name): int(size) for name, size in bucket.items()}
                for hour, bucket in data["hours"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("starting the upload counts afresh: %s is unreadable (%s)", self.path, error)
            return
        if since.tzinfo is not None:
            self._since, self._hours = since, hours

    def _save(self, data: dict) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomically(self.path, lambda out: out.write(json.dumps(data).encode()))
        except OSError as error:
            log.debug("could not keep the upload counts in %s: %s", self.path, error)
