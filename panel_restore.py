"""The admin panel's ♻️ Restore: choose a backup from the list, or send a backup file; it is
fetched and verified on the panel's worker, shown beside the live data, and restored only on
✅ Confirm restore (the engine frames it with a safety backup before and a backup after).

Presses come on several handler threads and answers on the worker: what one admin has pending
is taken under the panel's lock, so one ✅ Confirm restores it once, and an answer that comes
after the admin moved on offers nothing."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from telebot import types

import bot_api
from backup_format import BackupError, BackupInfo, shown_reason, shown_table
from destinations import DestinationError
from files import scratch_directory
from i18n import DETAIL, Code, Plural, Series, Style, Text, When, lines
from panel_backups import by_backup, places
from panel_screens import BACK, BACKUP, BACKUP_MARK, RESTORE, PanelPart, Screen
from telegram_destination import DOWNLOAD_LIMIT

log = logging.getLogger("admin_panel")
LISTED = 10  # the backups offered to restore


@dataclass
class Pending:
    """A verified backup waiting for ✅ Confirm restore."""

    source: Path | BackupInfo
    info: BackupInfo
    scratch: tempfile.TemporaryDirectory | None = None  # an uploaded file lives here
    others: list[BackupInfo] = field(default_factory=list)  # the backup's other copies

    def sources(self) -> list[Path | BackupInfo]:
        return [self.source, *self.others]

    def discard(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()


class Restore(PanelPart):
    """♻️ Restore."""

    def list(self, message) -> None:
        place = self.panel.place(message)
        self.drop_pending(place)
        reader = self.panel.reader(message)
        place.screen = Screen.RESTORE  # now, not when the list comes: a file may be sent meanwhile

        def job() -> None:
            listed = by_backup(self.engine.listing().backups)[:LISTED]
            place.backups = {
                f"{BACKUP_MARK}{n}: " + reader(_short(copies)): copies for n, copies in enumerate(listed, 1)
            }  # replaced whole: a press on another thread sees the old list or this one
            text = (
                Text("♻️ Restore: choose a backup, or send a backup file here as a document.")
                if listed
                else Text("♻️ Restore: no backups found. Send a backup file here as a document.")
            )
            # An admin who went elsewhere while we listed keeps the keyboard they are at.
            keyboard = (
                self.panel.keyboard(
                    message, Screen.RESTORE, [*([label] for label in place.backups), [reader.gettext(BACK)]]
                )
                if place.screen is Screen.RESTORE
                else None
            )
            self.panel.say(message, text, reply_markup=keyboard)

        self.panel.in_background(message, job, Text("⏳ Looking for backups…"))

    def choose(self, message) -> None:
        """A ♻️ button of the list as last shown, matched whole: a button from an older list
        (or from before a restart) shows the list again."""
        place = self.panel.place(message)
        listed = place.backups
        copies = listed.get(message.text)
        if copies is None:
            self.list(message)
            return
        number = list(listed).index(message.text) + 1
        place.screen = Screen.CHECKING

        def job() -> None:
            copy, info = first_that_works(copies, lambda copy: (copy, self.engine.verify(copy)))
            self._offer(message, copy, info, others=[c for c in copies if c is not copy])

        self.panel.in_background(
            message, job, Text("⏳ Fetching and checking backup {number}…", number=number)
        )

    def upload(self, message) -> None:
        """A document an admin sent: checked when they are on ♻️ Restore."""
        place, reader = self.panel.place(message), self.panel.reader(message)
        if place.screen not in (Screen.RESTORE, Screen.CHECKING):  # checking: the last one failed, say
            self.panel.say(
                message,
                Text(
                    "To restore from a file, open {backup} → {restore} first, then send it.",
                    backup=Code(reader.gettext(BACKUP)),
                    restore=Code(reader.gettext(RESTORE)),
                ),
            )
            return
        document = message.document
        if (document.file_size or 0) > DOWNLOAD_LIMIT:
            self.panel.say(
                message,
                Text(
                    "❌ Telegram does not let bots download files over 20 MB. Restore it "
                    "on the server instead: {command}",
                    command=Code("python backup.py restore FILE"),
                ),
            )
            return
        place.screen = Screen.CHECKING
        self.panel.in_background(
            message,
            lambda: self._check_upload(message),
            Text("⏳ Checking {file}…", file=Code(document.file_name or "?", DETAIL)),
        )

    def _check_upload(self, message) -> None:
        scratch = scratch_directory(Path(self.settings.backup_dir))
        try:
            path = Path(scratch.name) / "uploaded"
            with bot_api.calling("give me the file you sent"), open(path, "wb") as out:
                file = self.bot.get_file(message.document.file_id)
                bot_api.api_of(self.bot).download(file.file_path, out, DOWNLOAD_LIMIT)  # streamed to disk
            info = self.engine.verify(path)
        except BaseException:
            scratch.cleanup()
            raise
        self._offer(message, path, info, scratch)

    def _offer(self, message, source, info: BackupInfo, scratch=None, others=()) -> None:
        place = self.panel.place(message)
        with self.panel.lock:
            moved_on = place.screen is not Screen.CHECKING  # pressed something else meanwhile
            dropped, place.pending = (
                place.pending,
                None if moved_on else Pending(source, info, scratch, list(others)),
            )
        if dropped is not None:
            dropped.discard()
        if moved_on:
            if scratch is not None:
                scratch.cleanup()
            self.panel.say(
                message,
                Text(
                    "The backup you chose was checked, but you had moved on: choose it again to restore it."
                ),
            )
            return
        self.panel.show(message, Screen.CONFIRM, self._preview(info))

    def _preview(self, info: BackupInfo):
        live = self.db.table_row_counts()
        parts = [
            Text(
                "This backup: {when}, {reason}, schema version {version} (live: {live})",
                when=info.created_at,
                reason=shown_reason(info.reason),
                version=info.schema_version,
                live=self.db.schema_version(),
            ),
            Text("rows: backup / live now"),
        ]
        parts += [
            Text(
                "{table}: {backup} / {live}",
                table=shown_table(table),
                backup=info.row_counts.get(table, 0),
                live=live.get(table, 0),
            )
            for table in sorted(set(info.row_counts) | set(live))
        ]
        parts.append(what_is_lost(info, live, self.panel.clock()))
        parts.append(Text("A safety backup of the live data is taken first. Restore it?"))
        return lines(*parts)

    def confirm(self, message) -> None:
        place = self.panel.place(message)
        with self.panel.lock:  # presses run on several threads: one confirm takes a pending restore
            pending, place.pending = place.pending, None
            place.restoring = pending is not None
        if pending is None:
            self.panel.say(message, Text("Nothing to confirm: choose a backup first."))
            self.panel.backups.backup_screen(message)
            return

        def job() -> None:
            try:
                # the previewed copy; when it is gone by now (a local copy rotated away), the
                # backup's other copies, each verified again by the restore
                info = first_that_works(pending.sources(), self.engine.restore)
            finally:
                pending.discard()
                place.restoring = False
            self.panel.show(
                message,
                Screen.BACKUP,
                Plural(
                    "✅ Restored {name} ({count} row). A pre-restore backup of the previous data was kept.",
                    "✅ Restored {name} ({count} rows). A pre-restore backup of the previous data was kept.",
                    info.total_rows,
                    name=Code(info.name),
                ),
            )

        # The confirm keyboard goes: a ❌ Cancel now could not stop what has begun.
        self.panel.in_background(
            message,
            job,
            Text("⏳ Taking a safety backup, then restoring…"),
            reply_markup=types.ReplyKeyboardRemove(),
        )

    def cancel(self, message) -> str | None:
        """❌ Cancel of a restore: "cancelled", "running" (too late: it cannot be stopped), or
        None when nothing was waiting."""
        place = self.panel.place(message)
        with self.panel.lock:
            pending, place.pending, restoring = place.pending, None, place.restoring
        if pending is not None:
            pending.discard()
            self.panel.say(message, Text("Cancelled; nothing changed."))
            return "cancelled"
        if restoring:
            self.panel.say(
                message, Text("⏳ A restore is under way and cannot be stopped; its result follows.")
            )
            return "running"
        return None

    def drop_pending(self, place) -> None:
        with self.panel.lock:
            pending, place.pending = place.pending, None
        if pending is not None:
            pending.discard()


def first_that_works(copies: list, attempt: Callable):
    """attempt(copy) for each copy of one backup in turn (the local one first), until one
    works; the last copy's error when none does."""
    *others, last = copies
    for copy in others:
        try:
            return attempt(copy)
        except (BackupError, DestinationError, OSError) as error:
            log.warning("a copy of the backup failed (%s); trying the next", error)
    return attempt(last)


def _short(copies: list[BackupInfo]) -> Text:
    """A backup's button: short enough for a phone (no year, no zone)."""
    info = copies[0]
    return Text(
        "{when} {reason} ({destination})",
        when=When(info.created_at, Style.SHORT),
        reason=shown_reason(info.reason),
        destination=places(copies),
    )


def what_is_lost(info: BackupInfo, live: dict[str, int], now: datetime) -> Text:
    """What restoring `info` undoes: everything since it was taken. Rows counts show what was
    added; changes to existing rows (a block, a language) cannot be counted, so they are named."""
    more = {
        table: rows - info.row_counts.get(table, 0)
        for table, rows in live.items()
        if rows > info.row_counts.get(table, 0)
    }
    if not more:
        return Text(
            "⚠️ Taken {age} ago. Restoring brings back the data as it was then: changes since "
            "(blocks, language choices, activity) are lost.",
            age=now - info.created_at,
        )
    # (built apart: pybabel reads a Text nested in a Plural's arguments as the Plural's own)
    tables = Series(
        [Text("{table} +{count}", table=shown_table(t), count=n) for t, n in sorted(more.items())]
    )
    return Plural(
        "⚠️ Taken {age} ago. Restoring brings back the data as it was then: what was written "
        "since is lost, {count} row more now ({tables}), and changes to existing rows (blocks, "
        "language choices).",
        "⚠️ Taken {age} ago. Restoring brings back the data as it was then: what was written "
        "since is lost, {count} rows more now ({tables}), and changes to existing rows (blocks, "
        "language choices).",
        sum(more.values()),
        age=now - info.created_at,
        tables=tables,
    )
