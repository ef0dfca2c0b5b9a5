"""The admin panel: reply-keyboard menus for ADMIN_IDS.

    /admin, or /start from an admin    📊 Statistics | ⚙️ System
    ⚙️ System                          💾 Backup | 🩺 Jobs | 🔙 Back
    💾 Backup   the database statistics and the backup status, then
                💾 Create backup, 🔄 Refresh, 🗂 Backups, 📥 Download latest, ♻️ Restore, 🔙 Back
                (and 🆕 Start fresh while off-site copies are paused)
    ♻️ Restore  a backup from the list, or a backup file sent as a document; it is verified and
                shown beside the live data: ✅ Confirm restore | ❌ Cancel

Only admins ever see these keyboards; the same texts from anyone else are ordinary messages.
Each admin's place in the menus is kept per admin; every label names its screen, so after a
restart any label (or /admin) brings the right menu back. No SQL here. Backups, restores and
downloads run on a worker thread of their own: the bot keeps answering everyone meanwhile.
"""

from __future__ import annotations

import logging
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import requests
import telebot
from telebot import types

import human
from backup_format import BackupError, BackupInfo
from config import Settings
from database import Database
from destinations import DestinationError
from engine import BackupEngine
from logs import Redactor
from files import scratch_directory
from messaging import is_admin
from telegram_destination import DOWNLOAD_LIMIT, download, telegram_errors

log = logging.getLogger("admin_panel")

STATISTICS, SYSTEM = "📊 Statistics", "⚙️ System"
BACKUP, JOBS, BACK = "💾 Backup", "🩺 Jobs", "🔙 Back"
CREATE, REFRESH, LIST = "💾 Create backup", "🔄 Refresh", "🗂 Backups"
DOWNLOAD, RESTORE = "📥 Download latest", "♻️ Restore"
CONFIRM, CANCEL = "✅ Confirm restore", "❌ Cancel"
START_FRESH, CONFIRM_FRESH = "🆕 Start fresh", "✅ Confirm start fresh"
CHOICE = re.compile(r"^♻️ (\d+): ")  # "♻️ 2: 2026-11-26 12:00 scheduled (telegram)"

KEYBOARDS = {
    "main": [[STATISTICS, SYSTEM]],
    "system": [[BACKUP, JOBS], [BACK]],
    "backup": [[CREATE, REFRESH], [LIST, DOWNLOAD], [RESTORE, BACK]],
    "confirm": [[CONFIRM, CANCEL]],
    "fresh": [[CONFIRM_FRESH, CANCEL]],
}
PARENT = {"main": "main", "statistics": "main", "system": "main", "jobs": "system",
          "backup": "system", "restore": "backup", "confirm": "restore", "fresh": "backup"}


@dataclass
class Pending:
    """A verified backup waiting for ✅ Confirm restore."""
    source: Path | BackupInfo
    info: BackupInfo
    scratch: Optional[tempfile.TemporaryDirectory] = None  # an uploaded file lives here

    def discard(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()


@dataclass
class Place:
    """Where one admin is in the menus."""
    screen: str = "main"
    choices: list[BackupInfo] = field(default_factory=list)  # the restore list as shown
    pending: Optional[Pending] = None


class AdminPanel:
    def __init__(self, bot: telebot.TeleBot, db: Database, engine: BackupEngine,
                 job_statuses: Callable[[], list], settings: Settings, clock: Callable[[], datetime]):
        """job_statuses: the background jobs' statuses (tasks.JobRunner.statuses)."""
        self.bot, self.db, self.engine, self.job_statuses = bot, db, engine, job_statuses
        self.settings, self.clock = settings, clock
        self.places: dict[int, Place] = {}
        self.redact = Redactor(settings.secrets)
        self.work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-work")
        self.actions = {
            STATISTICS: self.statistics, SYSTEM: self.system, BACKUP: self.backup_screen,
            REFRESH: self.backup_screen, JOBS: self.jobs, BACK: self.back, CREATE: self.create,
            LIST: self.list_backups, DOWNLOAD: self.download, RESTORE: self.restore_screen,
            CONFIRM: self.confirm, CANCEL: self.cancel, START_FRESH: self.start_fresh,
            CONFIRM_FRESH: self.confirm_fresh,
        }

    # --- wiring ---

    def register(self) -> None:
        """Install the panel's handlers; call before the user handlers, so an admin's /start
        opens the panel.

        The panel lives only in an admin's private chat with the bot. In a group, channel or
        forum, its commands and labels get one line saying so, and nothing of the database
        (statistics, paths, files, status) and no admin keyboard is ever posted there."""
        here = self.in_private_chat
        self.bot.register_message_handler(self.open_panel, commands=["admin", "start"], func=here)
        self.bot.register_message_handler(self.create, commands=["backup"], func=here)
        self.bot.register_message_handler(self.start_fresh_command, commands=["start_fresh"], func=here)
        self.bot.register_message_handler(self.on_label, content_types=["text"],
                                          func=lambda m: here(m) and self.is_label(m.text))
        self.bot.register_message_handler(self.on_document, content_types=["document"], func=here)
        elsewhere = self.elsewhere
        self.bot.register_message_handler(self.only_in_private, commands=["admin", "backup", "start_fresh"],
                                          func=elsewhere)
        self.bot.register_message_handler(self.only_in_private, content_types=["text"],
                                          func=lambda m: elsewhere(m) and self.is_label(m.text))

    def close(self) -> None:
        self.work.shutdown(wait=False, cancel_futures=True)

    def in_private_chat(self, message) -> bool:
        """An admin, in their private chat with the bot: the only place the panel answers."""
        return is_admin(self.settings, message) and message.chat.type == "private"

    def elsewhere(self, message) -> bool:
        """An admin in a group, a channel or a forum."""
        return is_admin(self.settings, message) and message.chat.type != "private"

    def is_label(self, text: Optional[str]) -> bool:
        return text in self.actions or bool(CHOICE.match(text or ""))

    def place(self, message) -> Place:
        return self.places.setdefault(message.from_user.id, Place())

    def say(self, chat_id: int, text: str, **options) -> None:
        """Every panel message goes through here: error texts can quote anything (a requests
        error quotes the URL, and the URL holds the token), so secrets are taken out first."""
        self.bot.send_message(chat_id, self.redact(text), **options)

    def show(self, message, screen: str, text: str) -> None:
        self.place(message).screen = screen
        self.say(message.chat.id, text, reply_markup=self.keyboard(screen))

    def keyboard(self, screen: str, rows: Optional[list[list[str]]] = None) -> types.ReplyKeyboardMarkup:
        markup = types.ReplyKeyboardMarkup(resize_keyboard=True)
        rows = rows or KEYBOARDS.get(screen) or KEYBOARDS[PARENT[screen]]
        if screen == "backup" and self.engine.offsite_paused():
            rows = rows + [[START_FRESH]]
        for row in rows:
            markup.row(*row)
        return markup

    def in_background(self, message, job: Callable[[], None], working: str) -> None:
        """Say we are on it, then run `job` on the panel's worker thread."""
        self.say(message.chat.id, working)
        self.bot.send_chat_action(message.chat.id, "typing")

        def run() -> None:
            try:
                job()
            except (BackupError, DestinationError, OSError, telebot.apihelper.ApiException) as error:
                self.say(message.chat.id, f"❌ {error}")
            except Exception:
                log.exception("an admin panel job failed")
                self.say(message.chat.id, "❌ Something went wrong; the log has the details.")

        self.work.submit(run)

    # --- handlers ---

    def only_in_private(self, message) -> None:
        self.say(message.chat.id, "🔒 The admin panel works only in a private chat with me.",
                 reply_markup=types.ReplyKeyboardRemove())

    def open_panel(self, message) -> None:
        self.show(message, "main", "🛠 Admin panel")

    def on_label(self, message) -> None:
        choice = CHOICE.match(message.text)
        if choice:
            self.choose(message, int(choice.group(1)))
        else:
            self.actions[message.text](message)

    def on_document(self, message) -> None:
        place = self.place(message)
        if place.screen != "restore":
            self.say(message.chat.id, f"To restore from a file, open {BACKUP} → "
                                                   f"{RESTORE} first, then send it.")
            return
        document = message.document
        if (document.file_size or 0) > DOWNLOAD_LIMIT:
            self.say(message.chat.id, "❌ Telegram does not let bots download files over "
                                                   "20 MB. Restore it on the server instead: "
                                                   "python backup.py restore FILE")
            return
        self.in_background(message, lambda: self._check_upload(message),
                           f"⏳ Checking {document.file_name or 'the file'}…")

    # --- screens ---

    def statistics(self, message) -> None:
        stats = self.db.user_statistics(self.clock())
        self.show(message, "statistics", f"📊 Statistics\nUsers: {stats['users']}\n"
                                         f"Blocked now: {stats['blocked']}\n"
                                         f"Actions in the last 24 hours: {stats['actions']}")

    def system(self, message) -> None:
        self.show(message, "system", "\n".join(["⚙️ System", *self._updates_lines()]))

    def _updates_lines(self) -> list[str]:
        """How updates reach the bot, and what Telegram says about it (getWebhookInfo): the
        way to see that webhook mode works, or why it does not."""
        mode = (f"Updates: by webhook, to {self.settings.webhook_url}" if self.settings.webhook_url
                else "Updates: by polling (getUpdates)")
        try:
            info = self.bot.get_webhook_info(timeout=10)
        except (telebot.apihelper.ApiException, requests.RequestException, ValueError) as error:
            return [mode, f"Telegram did not say how it delivers them ({type(error).__name__})."]
        lines = [mode, f"Telegram: {info.pending_update_count or 0} update(s) waiting to be delivered"]
        if self.settings.webhook_url and (info.url or "") != self.settings.webhook_url:
            lines.append(f"⚠️ Telegram sends them to {info.url or 'no webhook'}: not set yet, or refused")
        elif not self.settings.webhook_url and info.url:
            lines.append(f"⚠️ A webhook is set ({info.url}): polling gets nothing until it is deleted")
        if info.last_error_date:
            when = human.time(datetime.fromtimestamp(info.last_error_date, timezone.utc))
            lines.append(f"Last delivery error: {str(info.last_error_message)[:200]} ({when})")
        return lines

    def backup_screen(self, message) -> None:
        self.show(message, "backup", self.backup_status())

    def jobs(self, message) -> None:
        lines = ["🩺 Jobs"]
        for job in self.job_statuses():
            last = (f"last run {human.time(job.last_run)} ({job.last_duration:.2f} s)" if job.last_run
                    else "not run yet")
            lines += [f"\n{job.name}: every {human.interval(job.interval_seconds)}",
                      f"{last}; next {human.time(job.next_run)}",
                      f"last error: {job.last_error or 'none'}"]
        self.show(message, "jobs", "\n".join(lines))

    def back(self, message) -> None:
        place = self.place(message)
        self._drop_pending(place)
        parent = PARENT.get(place.screen, "main")
        {"main": self.open_panel, "system": self.system, "backup": self.backup_screen,
         "restore": self.restore_screen}[parent](message)

    def backup_status(self) -> str:
        storage = self.db.storage
        lines = ["💾 Backup",
                 f"Storage: {storage.path}" if not storage.in_memory else
                 f"⚠️ Storage: IN-MEMORY ({storage.reason}): data is lost when the bot stops",
                 f"Database: {human.size(self.db.size_bytes())}, schema version {self.db.schema_version()}"]
        lines += [f"{table}: {rows}" for table, rows in self.db.table_row_counts().items()]
        overview = self.engine.overview()
        newest = overview.newest
        if newest:
            lines.append(f"Newest backup: {human.time(newest.created_at)} ({human.age(self.clock() - newest.created_at)}"
                         f" ago), {human.size(newest.size)}, {newest.reason}")
        else:
            lines.append("Newest backup: none yet")
        for name, status in overview.destinations.items():
            lines.append(f"{name}: " + _destination_line(status))
        lines.append(f"Local backups kept: {overview.kept} of {overview.keep}")
        backup_job = next((j for j in self.job_statuses() if j.name == "backup"), None)
        if backup_job is not None:
            lines.append(f"Next scheduled backup: {human.time(backup_job.next_run)}")
        if overview.paused:
            lines.append(f"⏸ Copies stay on this machine: the bot {overview.paused}.")
        return "\n".join(lines)

    # --- backup actions ---

    def create(self, message) -> None:
        def job() -> None:
            result = self.engine.create("manual")
            lines = [f"✅ Backup {result.info.name}: {human.size(result.info.size)} in "
                     f"{result.seconds:.1f} s; stored in " + ", ".join(i.destination for i in result.stored)]
            lines += [f"⚠️ not in {name}: {error}" for name, error in result.failures.items()]
            self.say(message.chat.id, "\n".join(lines))

        self.place(message).screen = "backup"
        self.in_background(message, job, "⏳ Working on a backup…")

    def list_backups(self, message) -> None:
        def job() -> None:
            listing = self.engine.listing()
            backups = listing.backups[:20]
            lines = ["🗂 Backups, newest first:"] if backups else ["🗂 No backups yet."]
            lines += [f"{n}. {_describe(info)}" for n, info in enumerate(backups, start=1)]
            lines += [f"⚠️ {u.destination}: {u.error}" for u in listing.unreachable]
            self.say(message.chat.id, "\n".join(lines))

        self.in_background(message, job, "⏳ Asking every destination…")

    def download(self, message) -> None:
        def job() -> None:
            with self.engine.exported_newest() as exported:
                if exported is None:
                    self.say(message.chat.id, f"No backup yet: press {CREATE}.")
                    return
                path, info = exported
                with open(path, "rb") as document:
                    self.bot.send_document(message.chat.id, document, visible_file_name=info.name,
                                           caption=f"📥 {_describe(info)}")

        self.in_background(message, job, "⏳ Preparing the newest backup…")

    # --- restore ---

    def restore_screen(self, message) -> None:
        place = self.place(message)
        self._drop_pending(place)

        def job() -> None:
            place.choices = self.engine.listing().backups[:10]
            rows = [[f"♻️ {n}: {_short(info)}"] for n, info in enumerate(place.choices, start=1)]
            text = ("♻️ Restore: choose a backup, or send a backup file here as a document."
                    if place.choices else "♻️ Restore: no backups found. Send a backup file here "
                                          "as a document.")
            place.screen = "restore"
            self.say(message.chat.id, text, reply_markup=self.keyboard("restore", rows + [[BACK]]))

        self.in_background(message, job, "⏳ Looking for backups…")

    def choose(self, message, number: int) -> None:
        place = self.place(message)
        if not 1 <= number <= len(place.choices):
            self.restore_screen(message)  # e.g. after a restart: show the list again
            return
        candidate = place.choices[number - 1]
        self.in_background(message, lambda: self._offer(message, candidate, self.engine.verify(candidate)),
                           f"⏳ Fetching and checking backup {number}…")

    def _check_upload(self, message) -> None:
        scratch = scratch_directory(Path(self.settings.backup_dir))
        try:
            path = Path(scratch.name) / "uploaded"
            with telegram_errors("download the file from"), open(path, "wb") as out:
                file = self.bot.get_file(message.document.file_id)
                download(self.bot, file.file_path, out, DOWNLOAD_LIMIT)  # streamed to disk
            info = self.engine.verify(path)
        except BaseException:
            scratch.cleanup()
            raise
        self._offer(message, path, info, scratch)

    def _offer(self, message, source, info: BackupInfo, scratch=None) -> None:
        place = self.place(message)
        self._drop_pending(place)
        place.pending = Pending(source, info, scratch)
        live = self.db.table_row_counts()
        lines = [f"This backup: {human.time(info.created_at)}, {info.reason}, schema version "
                 f"{info.schema_version} (live: {self.db.schema_version()})", "rows: backup / live now"]
        lines += [f"{table}: {info.row_counts.get(table, 0)} / {live.get(table, 0)}"
                  for table in sorted(set(info.row_counts) | set(live))]
        lines.append("A safety backup of the live data is taken first. Restore it?")
        place.screen = "confirm"
        self.say(message.chat.id, "\n".join(lines), reply_markup=self.keyboard("confirm"))

    def confirm(self, message) -> None:
        place = self.place(message)
        pending, place.pending = place.pending, None
        if pending is None:
            self.say(message.chat.id, "Nothing to confirm: choose a backup first.")
            self.backup_screen(message)
            return

        def job() -> None:
            try:
                info = self.engine.restore(pending.source)
            finally:
                pending.discard()
            self.show(message, "backup", f"✅ Restored {info.name} ({info.total_rows} rows). "
                                         "A pre-restore backup of the previous data was kept.")

        self.in_background(message, job, "⏳ Taking a safety backup, then restoring…")

    def cancel(self, message) -> None:
        self._drop_pending(self.place(message))
        self.show(message, "backup", "Cancelled; nothing changed.")

    def _drop_pending(self, place: Place) -> None:
        if place.pending is not None:
            place.pending.discard()
            place.pending = None

    # --- starting fresh after a failed startup restore ---

    def start_fresh(self, message) -> None:
        paused = self.engine.offsite_paused()
        if not paused:
            self.show(message, "backup", "Backups already leave the machine as usual.")
            return
        self.show(message, "fresh", f"The bot {paused}.\nRestore a backup instead if you can. "
                                    "Starting fresh keeps the current database, and the next backup "
                                    "replaces the pinned one off the machine.")

    def start_fresh_command(self, message) -> None:
        """/start_fresh, named in the startup alert; /start_fresh YES confirms without the menu."""
        if message.text.split()[1:] == ["YES"] and self.engine.offsite_paused():
            self.confirm_fresh(message)
        else:
            self.start_fresh(message)

    def confirm_fresh(self, message) -> None:
        self.engine.resume_offsite()
        log.warning("an admin chose to start fresh: off-site backups resume")
        self.show(message, "backup", "Done: the next backup leaves the machine again.")


def _short(info: BackupInfo) -> str:
    return f"{info.created_at:%Y-%m-%d %H:%M} {info.reason} ({info.destination})"


def _describe(info: BackupInfo) -> str:
    return (f"{human.time(info.created_at)}, {info.reason}, {human.size(info.size)}, "
            f"{info.total_rows} rows, {info.destination}")


def _destination_line(status) -> str:
    if status.failing:
        return f"❌ {status.last_error} ({human.time(status.last_error_at)})"
    if status.last_success:
        return f"✅ last stored {human.time(status.last_success)}"
    return "no backup stored yet since the bot started"
