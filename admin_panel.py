"""The admin panel: reply-keyboard menus for ADMIN_IDS, in each admin's language.

    /admin, or /start from an admin    📊 Statistics | ⚙️ System | 🌐 Language
    ⚙️ System                          💾 Backup | 🩺 Jobs | 🔙 Back
    💾 Backup   the database statistics and the backup status, then
                💾 Create backup, 🔄 Refresh, 🗂 Backups, 📥 Download latest, ♻️ Restore, 🔙 Back
                (and 🆕 Start fresh while off-site copies are paused)
    ♻️ Restore  a backup from the list, or a backup file sent as a document; it is verified and
                shown beside the live data: ✅ Confirm restore | ❌ Cancel
    🌐 Language 🌐 English | 🌐 فارسی | 🔙 Back

Only admins ever see these keyboards; the same texts from anyone else are ordinary messages.
Each admin's place in the menus is kept per admin; every label names its screen, in any of the
bot's languages, so after a restart or a change of language any label (or /admin) brings the
right menu back. The keyboards follow the admin's language now. No SQL here. Backups, restores
and downloads run on a worker thread of their own: the bot keeps answering everyone meanwhile.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests
import telebot
from telebot import types

import admin_users as people
import chart
import moderation
from admin_users import USER_BUTTON
from backup_format import BackupError, BackupInfo, shown_reason
from config import LANGUAGES, Settings
from database import Database
from destinations import DestinationError
from engine import BackupEngine
from files import scratch_directory
from i18n import LANGUAGE_LABELS, N_, Code, Reader, Size, Text, ascii_digits, lines
from logs import Redactor
from messaging import is_admin
from readers import Readers
from startup import destinations_off
from telegram_destination import DOWNLOAD_LIMIT, download, telegram_errors

log = logging.getLogger("admin_panel")

STATISTICS, SYSTEM, LANGUAGE = N_("📊 Statistics"), N_("⚙️ System"), N_("🌐 Language")
BACKUP, JOBS, BACK = N_("💾 Backup"), N_("🩺 Jobs"), N_("🔙 Back")
CREATE, REFRESH, LIST = N_("💾 Create backup"), N_("🔄 Refresh"), N_("🗂 Backups")
DOWNLOAD, RESTORE = N_("📥 Download latest"), N_("♻️ Restore")
CONFIRM, CANCEL = N_("✅ Confirm restore"), N_("❌ Cancel")
START_FRESH, CONFIRM_FRESH = N_("🆕 Start fresh"), N_("✅ Confirm start fresh")
USERS, CHART = N_("👥 Users"), N_("📈 Chart")
BLOCK, UNBLOCK = N_("🚫 Block"), N_("✅ Unblock")
CONFIRM_BLOCK, CONFIRM_UNBLOCK = N_("✅ Confirm block"), N_("✅ Confirm unblock")
CHOICE = re.compile(r"^♻️ ([0-9]+): ")  # "♻️ 2: 2026-11-26 12:00 UTC scheduled (telegram)"

KEYBOARDS = {
    "main": [[STATISTICS, SYSTEM], [LANGUAGE]],
    "statistics": [[USERS, CHART], [BACK]],
    "block": [[CONFIRM_BLOCK, CANCEL]],
    "unblock": [[CONFIRM_UNBLOCK, CANCEL]],
    "system": [[BACKUP, JOBS], [BACK]],
    "backup": [[CREATE, REFRESH], [LIST, DOWNLOAD], [RESTORE, BACK]],
    "confirm": [[CONFIRM, CANCEL]],
    "fresh": [[CONFIRM_FRESH, CANCEL]],
}
PARENT = {
    "main": "main",
    "statistics": "main",
    "system": "main",
    "jobs": "system",
    "language": "main",
    "backup": "system",
    "restore": "backup",
    "confirm": "restore",
    "fresh": "backup",
    "users": "statistics",
    "found": "users",
    "card": "users",
    "block": "card",
    "unblock": "card",
    "checking": "restore",
}
LABELS = (
    STATISTICS,
    SYSTEM,
    LANGUAGE,
    BACKUP,
    JOBS,
    BACK,
    CREATE,
    REFRESH,
    LIST,
    DOWNLOAD,
    RESTORE,
    CONFIRM,
    CANCEL,
    START_FRESH,
    CONFIRM_FRESH,
    USERS,
    CHART,
    BLOCK,
    UNBLOCK,
    CONFIRM_BLOCK,
    CONFIRM_UNBLOCK,
)


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


@dataclass
class Place:
    """Where one admin is in the menus."""

    screen: str = "main"
    choices: list[list[BackupInfo]] = field(
        default_factory=list
    )  # the restore list as shown: each backup's copies
    pending: Pending | None = None
    user_id: int | None = None  # whose card is open
    choice_labels: list[str] = field(default_factory=list)  # the restore list's buttons as shown
    restoring: bool = False  # a confirmed restore is running


class AdminPanel:
    def __init__(
        self,
        bot: telebot.TeleBot,
        db: Database,
        engine: BackupEngine,
        job_statuses: Callable[[], list],
        settings: Settings,
        readers: Readers,
        clock: Callable[[], datetime],
    ):
        """job_statuses: the background jobs' statuses (tasks.JobRunner.statuses)."""
        self.bot, self.db, self.engine, self.job_statuses = bot, db, engine, job_statuses
        self.settings, self.readers, self.clock = settings, readers, clock
        self.started = clock()
        self.lock = threading.Lock()
        self.places: dict[int, Place] = {}
        self.redact = Redactor(settings.secrets)
        self.work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-work")
        actions = {
            STATISTICS: self.statistics,
            SYSTEM: self.system,
            BACKUP: self.backup_screen,
            REFRESH: self.backup_screen,
            JOBS: self.jobs,
            BACK: self.back,
            CREATE: self.create,
            LIST: self.list_backups,
            DOWNLOAD: self.download,
            RESTORE: self.restore_screen,
            CONFIRM: self.confirm,
            CANCEL: self.cancel,
            START_FRESH: self.start_fresh,
            CONFIRM_FRESH: self.confirm_fresh,
            LANGUAGE: self.language_screen,
            USERS: self.users,
            CHART: self.chart,
            BLOCK: self.ask_block,
            UNBLOCK: self.ask_unblock,
            CONFIRM_BLOCK: self.confirm_block,
            CONFIRM_UNBLOCK: self.confirm_unblock,
        }
        # Every label in every language: one pressed in the language an admin just left, or
        # before a restart, still works.
        self.actions = {
            Reader(language).gettext(label): action
            for label, action in actions.items()
            for language in LANGUAGES
        }
        self.actions.update(dict.fromkeys(LANGUAGE_LABELS, self.choose_language))

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
        self.bot.register_message_handler(self.language_screen, commands=["language"], func=here)
        self.bot.register_message_handler(
            self.on_label, content_types=["text"], func=lambda m: here(m) and self.is_label(m.text)
        )
        self.bot.register_message_handler(self.on_document, content_types=["document"], func=here)
        self.bot.register_message_handler(
            self.search, content_types=["text"], func=lambda m: here(m) and self.searching(m)
        )
        elsewhere = self.elsewhere
        self.bot.register_message_handler(
            self.only_in_private, commands=["admin", "backup", "start_fresh"], func=elsewhere
        )
        self.bot.register_message_handler(
            self.only_in_private,
            content_types=["text"],
            func=lambda m: elsewhere(m) and self.is_label(m.text) and m.text not in LANGUAGE_LABELS,
        )

    def close(self) -> None:
        self.work.shutdown(wait=False, cancel_futures=True)

    def in_private_chat(self, message) -> bool:
        """An admin, in their private chat with the bot: the only place the panel answers."""
        return is_admin(self.settings, message) and message.chat.type == "private"

    def elsewhere(self, message) -> bool:
        """An admin in a group, a channel or a forum."""
        return is_admin(self.settings, message) and message.chat.type != "private"

    def is_label(self, text: str | None) -> bool:
        return text in self.actions or bool(CHOICE.match(text or "") or USER_BUTTON.match(text or ""))

    def searching(self, message) -> bool:
        """Any other text on the 👥 Users screens is a search (a command is still a command)."""
        return (
            self.place(message).screen in ("users", "found")
            and not self.is_label(message.text)
            and not (message.text or "/").startswith("/")
        )

    def place(self, message) -> Place:
        return self.places.setdefault(message.from_user.id, Place())

    def reader(self, message) -> Reader:
        return self.readers.of_message(message)

    def say(self, message, text, **options) -> None:
        """Every panel message goes through here, in the admin's language: error texts can
        quote anything (a requests error quotes the URL, and the URL holds the token), so
        secrets are taken out first."""
        self.bot.send_message(message.chat.id, self.redact(self.reader(message)(text)), **options)

    def show(self, message, screen: str, text) -> None:
        self.place(message).screen = screen
        self.say(message, text, reply_markup=self.keyboard(message, screen))

    def keyboard(
        self, message, screen: str, rows: list[list[str]] | None = None
    ) -> types.ReplyKeyboardMarkup:
        """The screen's labels in the admin's language; `rows` are shown as they are."""
        markup = types.ReplyKeyboardMarkup(resize_keyboard=True)
        for row in rows or self._labels(message, screen):
            markup.row(*row)
        return markup

    def _labels(self, message, screen: str) -> list[list[str]]:
        reader = self.reader(message)
        labels = [
            [reader.gettext(label) for label in row]
            for row in KEYBOARDS.get(screen) or KEYBOARDS[PARENT[screen]]
        ]
        if screen == "backup" and self.engine.offsite_paused():
            labels.append([reader.gettext(START_FRESH)])
        return labels

    def in_background(self, message, job: Callable[[], None], working: Text, **options) -> None:
        """Say we are on it, then run `job` on the panel's worker thread."""
        self.say(message, working, **options)
        self.bot.send_chat_action(message.chat.id, "typing")

        def run() -> None:
            try:
                job()
            except (BackupError, DestinationError, OSError, telebot.apihelper.ApiException) as error:
                self.say(message, Text("❌ {error}", error=Code(str(error))))
            except Exception:
                log.exception("an admin panel job failed")
                self.say(message, Text("❌ Something went wrong; the log has the details."))

        self.work.submit(run)

    # --- handlers ---

    def only_in_private(self, message) -> None:
        self.say(
            message,
            Text("🔒 The admin panel works only in a private chat with me."),
            reply_markup=types.ReplyKeyboardRemove(),
        )

    def open_panel(self, message) -> None:
        self.show(message, "main", Text("🛠 Admin panel"))

    def on_label(self, message) -> None:
        choice, person = CHOICE.match(message.text), USER_BUTTON.match(message.text)
        if choice:
            self.choose(message)
        elif person:
            self.open_card(message, int(person.group(1)))
        else:
            self.actions[message.text](message)

    def on_document(self, message) -> None:
        place = self.place(message)
        reader = self.reader(message)
        if place.screen not in ("restore", "checking"):  # checking: the last one failed, say
            self.say(
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
            self.say(
                message,
                Text(
                    "❌ Telegram does not let bots download files over 20 MB. Restore it "
                    "on the server instead: {command}",
                    command=Code("python backup.py restore FILE"),
                ),
            )
            return
        place.screen = "checking"
        self.in_background(
            message,
            lambda: self._check_upload(message),
            Text("⏳ Checking {file}…", file=Code(document.file_name or "?")),
        )

    # --- screens ---

    def statistics(self, message) -> None:
        self.show(message, "statistics", people.statistics(self.db, self.clock(), self.settings.admin_ids))

    # --- 👥 Users, and a user's card ---

    def users(self, message) -> None:
        text, listed = people.overview(self.db, self.clock(), self.settings.admin_ids)
        self._show_users(message, "users", text, listed)

    def search(self, message) -> None:
        found = self.db.find_users(ascii_digits(message.text))  # an id typed on a Persian keyboard too
        self._show_users(message, "found", people.found(found, message.text), found)

    def _show_users(self, message, screen: str, text, listed: list[dict]) -> None:
        self.place(message).screen = screen
        rows = [[people.button(u)] for u in listed] + [[self.reader(message).gettext(BACK)]]
        self.say(message, text, reply_markup=self.keyboard(message, screen, rows))

    def open_card(self, message, user_id: int) -> None:
        user = self.db.user(user_id) if moderation.is_user_id(str(user_id)) else None
        if user is None:  # a button from before a restore, or typed by hand
            self.users(message)
            return
        place = self.place(message)
        place.screen, place.user_id = "card", user_id
        reader = self.reader(message)
        action = UNBLOCK if people.is_blocked(user, self.clock()) else BLOCK
        rows = [[reader.gettext(action)], [reader.gettext(BACK)]]
        self.say(
            message,
            people.card(self.db, user, self.clock(), self.settings.default_language),
            reply_markup=self.keyboard(message, "card", rows),
        )

    def ask_block(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.show(
                message,
                "block",
                Text(
                    "Block {user} for {minutes} min? They are told until when. For another time or a reason: "
                    "/block {id} MINUTES REASON",
                    user=people.name(user),
                    minutes=self.settings.flood_block_minutes,
                    id=Code(str(user["user_id"])),
                ),
            )

    def ask_unblock(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.show(message, "unblock", Text("Unblock {user}? They are told.", user=people.name(user)))

    def confirm_block(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.say(
                message,
                moderation.block(
                    self.bot,
                    self.db,
                    self.settings,
                    self.readers,
                    user["user_id"],
                    self.settings.flood_block_minutes,
                    moderation.BY_ADMIN,
                    self.clock(),
                ),
            )
            self.open_card(message, user["user_id"])

    def confirm_unblock(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.say(message, moderation.unblock(self.bot, self.db, self.readers, user["user_id"]))
            self.open_card(message, user["user_id"])

    def _card_user(self, message) -> dict | None:
        """The user whose card is open; without one (a restart since), the 👥 Users screen."""
        user_id = self.place(message).user_id
        user = self.db.user(user_id) if user_id is not None else None
        if user is None:
            self.say(message, Text("Open a user's card first."))
            self.users(message)
        return user

    def chart(self, message) -> None:
        def job() -> None:
            counts = people.daily(self.db, self.clock().date(), self.settings.admin_ids)
            caption = Text(
                "📈 New users (blue bars) and active users (orange line) per day, the last {days} "
                "days (UTC days); admins left out.",
                days=len(counts.days),
            )
            self.bot.send_photo(message.chat.id, chart.render(counts), caption=self.reader(message)(caption))

        self.in_background(message, job, Text("⏳ Drawing the chart…"))

    # --- ⚙️ System ---

    def system(self, message) -> None:
        self.show(
            message,
            "system",
            lines(Text("⚙️ System"), *self._overview_lines(self.reader(message)), *self._updates_lines()),
        )

    def _overview_lines(self, reader: Reader) -> list:
        storage, overview, now = self.db.storage, self.engine.overview(), self.clock()
        found = [
            _storage_line(storage),
            Text(
                "Database: {size}, schema version {version}",
                size=Size(self.db.size_bytes()),
                version=self.db.schema_version(),
            ),
            Text("Up for {age}, since {when}", age=now - self.started, when=self.started),
        ]
        newest, encryption = (
            overview.newest,
            (
                Text("encrypted off the machine")
                if self.settings.backup_passphrase
                else Text("not encrypted (BACKUP_PASSPHRASE is not set)")
            ),
        )
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
            Text("{destination}: {state}", destination=Code(name), state=_destination_line(status))
            for name, status in overview.destinations.items()
        ]
        found += [
            Text("{destination}: {state}", destination=Code(name), state=why)
            for name, why in destinations_off(self.settings).items()
        ]
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
                    error=Code(str(info.last_error_message)[:200]),
                    when=datetime.fromtimestamp(info.last_error_date, UTC),
                )
            )
        return found

    def backup_screen(self, message) -> None:
        self.show(message, "backup", self.backup_status())

    def jobs(self, message) -> None:
        reader = self.reader(message)
        parts = [Text("🩺 Jobs")]
        for job in self.job_statuses():
            last = (
                Text("last run {when} ({seconds} s)", when=job.last_run, seconds=round(job.last_duration, 2))
                if job.last_run
                else Text("not run yet")
            )
            parts += [
                "",
                Text(
                    "{job}: every {interval}",
                    job=Code(job.name),
                    interval=Code(reader.interval(job.interval_seconds)),
                ),
                Text("{last}; next {when}", last=last, when=job.next_run),
                Text("last error: {error}", error=Code(job.last_error))
                if job.last_error
                else Text("last error: none"),
            ]
        self.show(message, "jobs", lines(*parts))

    def language_screen(self, message) -> None:
        self.place(message).screen = "language"
        labels = [list(LANGUAGE_LABELS), [self.reader(message).gettext(BACK)]]
        self.say(
            message, Text("Choose your language:"), reply_markup=self.keyboard(message, "language", labels)
        )

    def choose_language(self, message) -> None:
        self.readers.choose(message.from_user.id, LANGUAGE_LABELS[message.text])
        self.show(message, "main", Text("✅ Language: English"))  # the panel, in the new language

    def back(self, message) -> None:
        place = self.place(message)
        self._drop_pending(place)
        parent = PARENT.get(place.screen, "main")
        if parent == "card" and place.user_id is not None:
            self.open_card(message, place.user_id)
            return
        {
            "main": self.open_panel,
            "system": self.system,
            "backup": self.backup_screen,
            "restore": self.restore_screen,
            "statistics": self.statistics,
            "users": self.users,
            "card": self.users,
        }[parent](message)

    def _next_backup(self) -> datetime | None:
        """When the scheduled backup runs next (tasks.JobRunner); None without one."""
        return next((job.next_run for job in self.job_statuses() if job.name == "backup"), None)

    def backup_status(self):
        parts = [
            Text("💾 Backup"),
            _storage_line(self.db.storage),
            Text(
                "Database: {size}, schema version {version}",
                size=Size(self.db.size_bytes()),
                version=self.db.schema_version(),
            ),
        ]
        parts += [
            Text("{table}: {rows}", table=Code(table), rows=rows)
            for table, rows in self.db.table_row_counts().items()
        ]
        overview = self.engine.overview()
        newest = overview.newest
        if newest:
            parts.append(
                Text(
                    "Newest backup: {when} ({age} ago), {size}, {reason}",
                    when=newest.created_at,
                    age=self.clock() - newest.created_at,
                    size=Size(newest.size),
                    reason=shown_reason(newest.reason),
                )
            )
        else:
            parts.append(Text("Newest backup: none yet"))
        for name, status in overview.destinations.items():
            parts.append(
                Text("{destination}: {state}", destination=Code(name), state=_destination_line(status))
            )
        parts.append(Text("Local backups kept: {kept} of {keep}", kept=overview.kept, keep=overview.keep))
        if self._next_backup() is not None:
            parts.append(Text("Next scheduled backup: {when}", when=self._next_backup()))
        if overview.paused:
            parts.append(
                Text(
                    "⏸ Copies stay on this machine: the bot started on an empty database although "
                    "backups may exist off the machine ({why}).",
                    why=Code(overview.paused),
                )
            )
        return lines(*parts)

    # --- backup actions ---

    def create(self, message) -> None:
        def job() -> None:
            result = self.engine.create("manual")
            parts = [
                Text(
                    "✅ Backup {name}: {size} in {seconds} s; stored in {places}",
                    name=Code(result.info.name),
                    size=Size(result.info.size),
                    seconds=round(result.seconds, 1),
                    places=Code(", ".join(i.destination for i in result.stored)),
                )
            ]
            parts += [
                Text("⚠️ not in {destination}: {error}", destination=Code(name), error=Code(error))
                for name, error in result.failures.items()
            ]
            self.say(message, lines(*parts))

        self.place(message).screen = "backup"
        self.in_background(message, job, Text("⏳ Working on a backup…"))

    def list_backups(self, message) -> None:
        def job() -> None:
            listing = self.engine.listing()
            backups = _by_backup(listing.backups)[:20]
            parts = [Text("🗂 Backups, newest first:") if backups else Text("🗂 No backups yet.")]
            parts += [
                Text("{number}. {backup}", number=n, backup=_describe(copies))
                for n, copies in enumerate(backups, start=1)
            ]
            parts += [
                Text("⚠️ {destination}: {error}", destination=Code(u.destination), error=Code(u.error))
                for u in listing.unreachable
            ]
            self.say(message, lines(*parts))

        self.in_background(message, job, Text("⏳ Asking every destination…"))

    def download(self, message) -> None:
        def job() -> None:
            with self.engine.exported_newest() as exported:
                if exported is None:
                    self.say(
                        message,
                        Text(
                            "No backup yet: press {create}.",
                            create=Code(self.reader(message).gettext(CREATE)),
                        ),
                    )
                    return
                path, info = exported
                with open(path, "rb") as document:
                    self.bot.send_document(
                        message.chat.id,
                        document,
                        visible_file_name=info.name,
                        caption=self.reader(message)(Text("📥 {backup}", backup=_describe([info]))),
                    )

        self.in_background(message, job, Text("⏳ Preparing the newest backup…"))

    # --- restore ---

    def restore_screen(self, message) -> None:
        place = self.place(message)
        self._drop_pending(place)
        reader = self.reader(message)
        place.screen = "restore"  # now, not when the list comes: a file may be sent meanwhile

        def job() -> None:
            place.choices = _by_backup(self.engine.listing().backups)[:10]
            rows = [[f"♻️ {n}: " + reader(_short(copies))] for n, copies in enumerate(place.choices, start=1)]
            place.choice_labels = [row[0] for row in rows]
            text = (
                Text("♻️ Restore: choose a backup, or send a backup file here as a document.")
                if place.choices
                else Text("♻️ Restore: no backups found. Send a backup file here as a document.")
            )
            # An admin who went elsewhere while we listed keeps the keyboard they are at.
            keyboard = (
                self.keyboard(message, "restore", [*rows, [reader.gettext(BACK)]])
                if place.screen == "restore"
                else None
            )
            self.say(message, text, reply_markup=keyboard)

        self.in_background(message, job, Text("⏳ Looking for backups…"))

    def choose(self, message) -> None:
        """A ♻️ button of the list as last shown, matched whole: a button from an older list
        (or from before a restart) shows the list again rather than pick by its number."""
        place = self.place(message)
        if message.text not in place.choice_labels:
            self.restore_screen(message)
            return
        number = place.choice_labels.index(message.text) + 1
        copies = place.choices[number - 1]
        place.screen = "checking"

        def job() -> None:
            copy, info = _first_that_works(copies, lambda copy: (copy, self.engine.verify(copy)))
            self._offer(message, copy, info, others=[c for c in copies if c is not copy])

        self.in_background(message, job, Text("⏳ Fetching and checking backup {number}…", number=number))

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

    def _offer(self, message, source, info: BackupInfo, scratch=None, others=()) -> None:
        place = self.place(message)
        with self.lock:
            moved_on = place.screen != "checking"  # pressed something else while it was checked
            self._drop_pending(place)
            place.pending = None if moved_on else Pending(source, info, scratch, list(others))
        if moved_on:
            if scratch is not None:
                scratch.cleanup()
            self.say(
                message,
                Text(
                    "The backup you chose was checked, but you had moved on: choose it again to restore it."
                ),
            )
            return
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
                table=Code(table),
                backup=info.row_counts.get(table, 0),
                live=live.get(table, 0),
            )
            for table in sorted(set(info.row_counts) | set(live))
        ]
        parts.append(_what_is_lost(info, live, self.clock()))
        parts.append(Text("A safety backup of the live data is taken first. Restore it?"))
        place.screen = "confirm"
        self.say(message, lines(*parts), reply_markup=self.keyboard(message, "confirm"))

    def confirm(self, message) -> None:
        place = self.place(message)
        with self.lock:  # presses run on several threads: one confirm takes a pending restore
            pending, place.pending = place.pending, None
            place.restoring = pending is not None
        if pending is None:
            self.say(message, Text("Nothing to confirm: choose a backup first."))
            self.backup_screen(message)
            return

        def job() -> None:
            try:
                # the previewed copy; when it is gone by now (a local copy rotated away), the
                # backup's other copies, each verified again by the restore
                info = _first_that_works(pending.sources(), self.engine.restore)
            finally:
                pending.discard()
                place.restoring = False
            self.show(
                message,
                "backup",
                Text(
                    "✅ Restored {name} ({rows} rows). A pre-restore backup of the previous data was kept.",
                    name=Code(info.name),
                    rows=info.total_rows,
                ),
            )

        # The confirm keyboard goes: a ❌ Cancel now could not stop what has begun.
        self.in_background(
            message,
            job,
            Text("⏳ Taking a safety backup, then restoring…"),
            reply_markup=types.ReplyKeyboardRemove(),
        )

    def cancel(self, message) -> None:
        place = self.place(message)
        with self.lock:
            pending, place.pending, restoring = place.pending, None, place.restoring
        if pending is not None:
            pending.discard()
            self.say(message, Text("Cancelled; nothing changed."))
        elif restoring:
            self.say(message, Text("⏳ A restore is under way and cannot be stopped; its result follows."))
            return
        else:
            self.say(message, Text("Nothing to cancel."))
        if place.screen in ("block", "unblock"):
            self.back(message)
        else:
            self.backup_screen(message)

    def _drop_pending(self, place: Place) -> None:
        if place.pending is not None:
            place.pending.discard()
            place.pending = None

    # --- starting fresh after a failed startup restore ---

    def start_fresh(self, message) -> None:
        paused = self.engine.offsite_paused()
        if not paused:
            self.show(message, "backup", Text("Backups already leave the machine as usual."))
            return
        self.show(
            message,
            "fresh",
            Text(
                "The bot started on an empty database although backups may exist off the machine ({why}).\n"
                "Restore a backup instead if you can. Starting fresh keeps the current database, and the "
                "next backup replaces the pinned one off the machine.",
                why=Code(paused),
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
        self.show(message, "backup", Text("Done: the next backup leaves the machine again."))


def _first_that_works(copies: list, attempt: Callable):
    """attempt(copy) for each copy of one backup in turn (the local one first), until one
    works; the last copy's error when none does."""
    *others, last = copies
    for copy in others:
        try:
            return attempt(copy)
        except (BackupError, DestinationError, OSError) as error:
            log.warning("a copy of the backup failed (%s); trying the next", error)
    return attempt(last)


def _by_backup(copies: list[BackupInfo]) -> list[list[BackupInfo]]:
    """The copies of each backup together (the same database at the same moment, wherever it
    lies), newest first, the local copy first within each."""
    grouped: dict[tuple, list[BackupInfo]] = {}
    for info in copies:
        grouped.setdefault((info.created_at, info.sha256), []).append(info)
    for group in grouped.values():
        group.sort(key=lambda info: info.destination != "local")
    return sorted(grouped.values(), key=lambda group: group[0].created_at, reverse=True)


def _places(copies: list[BackupInfo]) -> Code:
    return Code(", ".join(info.destination for info in copies))


def _short(copies: list[BackupInfo]) -> Text:
    info = copies[0]
    return Text(
        "{when} {reason} ({destination})",
        when=info.created_at,
        reason=shown_reason(info.reason),
        destination=_places(copies),
    )


def _describe(copies: list[BackupInfo]) -> Text:
    info = copies[0]
    return Text(
        "{when}, {reason}, {size}, {users} users; in {places}",
        when=info.created_at,
        reason=shown_reason(info.reason),
        size=Size(info.size),
        users=info.row_counts.get("users", 0),
        places=_places(copies),
    )


def _what_is_lost(info: BackupInfo, live: dict[str, int], now: datetime) -> Text:
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
    return Text(
        "⚠️ Taken {age} ago. Restoring brings back the data as it was then: what was written "
        "since is lost, {rows} rows more now ({tables}), and changes to existing rows (blocks, "
        "language choices).",
        age=now - info.created_at,
        rows=sum(more.values()),
        tables=Code(", ".join(f"{table} +{n}" for table, n in sorted(more.items()))),
    )


def _storage_line(storage) -> Text:
    if storage.in_memory:
        return Text(
            "⚠️ Storage: IN-MEMORY ({reason}): data is lost when the bot stops", reason=Code(storage.reason)
        )
    return Text("Storage: {path}", path=Code(storage.path))


def _destination_line(status) -> Text:
    if status.failing:
        return Text(
            "❌ failing since {since}: {error} (last tried {when})",
            since=status.failing_since,
            error=Code(status.last_error),
            when=status.last_error_at,
        )
    if status.last_success:
        return Text("✅ last stored {when}", when=status.last_success)
    return Text("no backup stored yet since the bot started")
