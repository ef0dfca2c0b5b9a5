"""The admin panel's ⚙️ System side: the overview, 🩺 Jobs, 💾 Backup and its actions (create,
list, download, 🆕 Start fresh). The restore flow is panel_restore.py's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import requests
import telebot

from backup_format import BackupInfo, shown_place, shown_reason, shown_table, users_in
from i18n import (
    CAPTION_LIMIT,
    DETAIL,
    Code,
    Every,
    Plural,
    Reader,
    Series,
    Size,
    Style,
    Text,
    When,
    lines,
)
from panel_screens import BACKUP, CREATE, RESTORE, START_FRESH, PanelPart, Screen
from startup import destinations_off
from telegram_errors import shown
from upload_meter import GB

log = logging.getLogger("admin_panel")


class Backups(PanelPart):
    """⚙️ System, 🩺 Jobs, 💾 Backup."""

    # --- screens ---

    def system(self, message) -> None:
        reader = self.panel.reader(message)
        self.panel.show(
            message,
            Screen.SYSTEM,
            lines(Text("⚙️ System"), *self._overview_lines(reader), *self._updates_lines()),
        )

    def backup_screen(self, message) -> None:
        self.panel.show(message, Screen.BACKUP, self.backup_status())

    def jobs(self, message) -> None:
        parts = [Text("🩺 Jobs")]
        for job in self.panel.job_statuses():
            last = (
                Text("last run {when} ({seconds} s)", when=job.last_run, seconds=round(job.last_duration, 2))
                if job.last_run
                else Text("not run yet")
            )
            parts += [
                "",
                Text("{job}: {interval}", job=Code(job.name), interval=Every(job.interval_seconds)),
                Text("{last}; next {when}", last=last, when=job.next_run),
                Text("last error: {error}", error=shown(job.last_error))
                if job.last_error
                else Text("last error: none"),
            ]
        self.panel.show(message, Screen.JOBS, lines(*parts))

    def backup_status(self):
        now = self.panel.clock()
        parts = [
            Text("💾 Backup"),
            storage_line(self.db.storage),
            Text(
                "Database: {size}, schema version {version}",
                size=Size(self.db.size_bytes()),
                version=self.db.schema_version(),
            ),
        ]
        parts += [
            Text("{table}: {rows}", table=shown_table(table), rows=rows)
            for table, rows in self.db.table_row_counts().items()
        ]
        overview = self.engine.overview()
        newest = overview.newest
        parts.append(
            Text(
                "Newest backup: {when} ({age} ago), {size}, {reason}",
                when=newest.created_at,
                age=now - newest.created_at,
                size=Size(newest.size),
                reason=shown_reason(newest.reason),
            )
            if newest
            else Text("Newest backup: none yet")
        )
        parts += [
            Text("{destination}: {state}", destination=shown_place(name), state=destination_line(status))
            for name, status in overview.destinations.items()
        ]
        parts.append(Text("Local backups kept: {kept} of {keep}", kept=overview.kept, keep=overview.keep))
        if self._next_backup() is not None:
            parts.append(Text("Next scheduled backup: {when}", when=self._next_backup()))
        if overview.paused:
            parts.append(
                Text(
                    "⏸ Copies stay on this machine: the bot started on an empty database although "
                    "backups may exist off the machine ({why}).",
                    why=Code(overview.paused, 4 * DETAIL),
                )
            )
        return lines(*parts)

    def _overview_lines(self, reader: Reader) -> list:
        storage, overview, now = self.db.storage, self.engine.overview(), self.panel.clock()
        started = self.panel.started
        found = [
            storage_line(storage),
            Text(
                "Database: {size}, schema version {version}",
                size=Size(self.db.size_bytes()),
                version=self.db.schema_version(),
            ),
            Text("Up for {age}, since {when}", age=now - started, when=started),
        ]
        encryption = (
            Text("encrypted off the machine")
            if self.settings.backup_passphrase
            else Text("not encrypted (BACKUP_PASSPHRASE is not set)")
        )
        newest = overview.newest
        found.append(
            Text(
                "Backups: newest {when} ({age} ago), {encryption}; next {next}",
                when=newest.created_at,
                age=now - newest.created_at,
                encryption=encryption,
                next=self._next_backup(),
            )
            if newest
            else Text("Backups: none yet, {encryption}", encryption=encryption)
        )
        found += [
            Text("{destination}: {state}", destination=shown_place(name), state=destination_line(status))
            for name, status in overview.destinations.items()
        ]
        found += [
            Text("{destination}: {state}", destination=Code(name), state=why)
            for name, why in destinations_off(self.settings).items()
        ]
        if self.engine.offsite_count:
            day, pace = self.engine.uploads()
            found.append(
                Text(
                    "📤 Uploaded {day} in the last 24 hours; {pace} a month at this pace (budget {budget})",
                    day=Size(day),
                    pace=Size(pace),
                    budget=Size(round(self.settings.backup_upload_budget_gb * GB)),
                )
            )
        if overview.paused:
            found.append(
                Text(
                    "⏸ Backups stay on this machine until you choose {restore} or {fresh} under {backup}",
                    restore=Code(reader.gettext(RESTORE)),
                    fresh=Code(reader.gettext(START_FRESH)),
                    backup=Code(reader.gettext(BACKUP)),
                )
            )
        return found

    def _updates_lines(self) -> list[Text]:
        """How updates reach the bot, and what Telegram says about it (getWebhookInfo): the
        way to see that webhook mode works, or why it does not."""
        url = self.settings.webhook_url
        mode = (
            Text("Updates: by webhook, to {url}", url=Code(url))
            if url
            else Text("Updates: by polling (getUpdates)")
        )
        try:
            info = self.bot.get_webhook_info(timeout=10)
        except (telebot.apihelper.ApiException, requests.RequestException, ValueError) as error:
            return [
                mode,
                Text(
                    "Telegram did not say how it delivers updates ({error}).",
                    error=Code(type(error).__name__),
                ),
            ]
        found = [mode, Text("Updates waiting at Telegram: {count}", count=info.pending_update_count or 0)]
        if url and (info.url or "") != url:
            found.append(
                Text(
                    "⚠️ Telegram sends updates to {url}, not to WEBHOOK_URL: not set yet, or refused",
                    url=Code(info.url or "-"),
                )
            )
        elif not url and info.url:
            found.append(
                Text(
                    "⚠️ A webhook is set ({url}): polling gets nothing until it is deleted", url=Code(info.url)
                )
            )
        if info.last_error_date:
            found.append(
                Text(
                    "Last delivery error: {error} ({when})",
                    error=Code(str(info.last_error_message), DETAIL),
                    when=datetime.fromtimestamp(info.last_error_date, UTC),
                )
            )
        return found

    def _next_backup(self) -> datetime | None:
        """When the scheduled backup runs next (tasks.JobRunner); None without one."""
        return next((job.next_run for job in self.panel.job_statuses() if job.name == "backup"), None)

    # --- actions ---

    def create(self, message) -> None:
        def job() -> None:
            result = self.engine.create("manual")
            parts = [
                Text(
                    "✅ Backup {name}: {size} in {seconds} s; stored in {places}",
                    name=Code(result.info.name),
                    size=Size(result.info.size),
                    seconds=round(result.seconds, 1),
                    places=places(result.stored),
                )
            ]
            parts += [
                Text("⚠️ not in {destination}: {error}", destination=Code(name), error=shown(error))
                for name, error in result.failures.items()
            ]
            self.panel.say(message, lines(*parts))

        self.panel.place(message).screen = Screen.BACKUP
        self.panel.in_background(message, job, Text("⏳ Working on a backup…"))

    def list_backups(self, message) -> None:
        def job() -> None:
            listing = self.engine.listing()
            backups = by_backup(listing.backups)[:20]
            parts = [Text("🗂 Backups, newest first:") if backups else Text("🗂 No backups yet.")]
            parts += [
                Text("{number}. {backup}", number=n, backup=describe(copies))
                for n, copies in enumerate(backups, start=1)
            ]
            parts += [
                Text("⚠️ {destination}: {error}", destination=Code(u.destination), error=shown(u.error))
                for u in listing.unreachable
            ]
            self.panel.say(message, lines(*parts))

        self.panel.in_background(message, job, Text("⏳ Asking every destination…"))

    def download(self, message) -> None:
        reader = self.panel.reader(message)

        def job() -> None:
            with self.engine.exported_newest() as exported:
                if exported is None:
                    self.panel.say(
                        message, Text("No backup yet: press {create}.", create=Code(reader.gettext(CREATE)))
                    )
                    return
                path, info = exported
                with open(path, "rb") as document:
                    self.bot.send_document(
                        message.chat.id,
                        document,
                        visible_file_name=info.name,
                        caption=reader.fit(
                            reader(Text("📥 {backup}", backup=describe([info]))), CAPTION_LIMIT
                        ),
                    )

        self.panel.in_background(message, job, Text("⏳ Preparing the newest backup…"))

    # --- starting fresh after a failed startup restore ---

    def start_fresh(self, message) -> None:
        paused = self.engine.offsite_paused()
        if not paused:
            self.panel.show(message, Screen.BACKUP, Text("Backups already leave the machine as usual."))
            return
        self.panel.show(
            message,
            Screen.FRESH,
            Text(
                "The bot started on an empty database although backups may exist off the machine ({why}).\n"
                "Restore a backup instead if you can. Starting fresh keeps the current database, and the "
                "next backup replaces the pinned one off the machine.",
                why=Code(paused, 4 * DETAIL),
            ),
        )

    def start_fresh_command(self, message) -> None:
        """/start_fresh, named in the startup alert; /start_fresh YES confirms without the menu."""
        if message.text.split()[1:] == ["YES"] and self.engine.offsite_paused():
            self.confirm_fresh(message)
        else:
            self.start_fresh(message)

    def confirm_fresh(self, message) -> None:
        self.engine.resume_offsite()
        log.warning("an admin chose to start fresh: off-site backups resume")
        self.panel.show(message, Screen.BACKUP, Text("Done: the next backup leaves the machine again."))


def by_backup(copies: list[BackupInfo]) -> list[list[BackupInfo]]:
    """The copies of each backup together (the same database at the same moment, wherever it
    lies), newest first, the local copy first within each."""
    grouped: dict[tuple, list[BackupInfo]] = {}
    for info in copies:
        grouped.setdefault((info.created_at, info.sha256), []).append(info)
    for group in grouped.values():
        group.sort(key=lambda info: info.destination != "local")
    return sorted(grouped.values(), key=lambda group: group[0].order, reverse=True)


def places(copies: list[BackupInfo]) -> Series:
    return Series(shown_place(info.destination) for info in copies)


def describe(copies: list[BackupInfo]) -> Text:
    info = copies[0]
    # Seconds: backups taken close together (a restore, its safety backup, a hand-over) would
    # otherwise read the same.
    if info.delta is not None:  # a restore point made of the pieces before it and this one
        return Plural(
            "{when}, {reason}, {size} of changed pages, pieces before it: {pieces}, {count} user; in {places}",
            "{when}, {reason}, {size} of changed pages, pieces before it: {pieces}, {count} users; in {places}",
            users_in(info),
            when=When(info.created_at, Style.SECONDS),
            reason=shown_reason(info.reason),
            size=Size(info.size),
            pieces=len(info.delta.chain),
            places=places(copies),
        )
    return Plural(
        "{when}, {reason}, {size}, {count} user; in {places}",
        "{when}, {reason}, {size}, {count} users; in {places}",
        users_in(info),
        when=When(info.created_at, Style.SECONDS),
        reason=shown_reason(info.reason),
        size=Size(info.size),
        places=places(copies),
    )


def storage_line(storage) -> Text:
    if storage.in_memory:
        return Text(
            "⚠️ Storage: IN-MEMORY ({reason}): data is lost when the bot stops",
            reason=Code(storage.reason, DETAIL),
        )
    return Text("Storage: {path}", path=Code(storage.path))


def destination_line(status) -> Text:
    if status.failing:
        return Text(
            "❌ failing since {since}: {error} (last tried {when})",
            since=status.failing_since,
            error=shown(status.last_error),
            when=status.last_error_at,
        )
    if status.last_success:
        return Text("✅ last stored {when}", when=status.last_success)
    return Text("no backup stored yet since the bot started")
