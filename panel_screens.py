"""The admin panel's screens and buttons, in one table: what each screen shows on its keyboard,
where 🔙 Back leads from it, and what each button does.

    📊 Statistics | ⚙️ System | 🌐 Language                         the main screen
    📊 Statistics   👥 Users | 📈 Chart | 🔙 Back
    👥 Users        the newest, the most active, the blocked (a button each); any other text
                    is a search; a person's button opens their card: 🚫 Block or ✅ Unblock
    ⚙️ System       💾 Backup | 🩺 Jobs | 🔙 Back
    💾 Backup       💾 Create backup, 🔄 Refresh, 🗂 Backups, 📥 Download latest, ♻️ Restore, 🔙 Back
                    (and 🆕 Start fresh while copies are kept from leaving the machine)
    ♻️ Restore      a backup's button, or a backup file sent as a document; it is verified and
                    shown beside the live data: ✅ Confirm restore | ❌ Cancel
    🌐 Language     🌐 English | 🌐 فارسی | 🔙 Back

Labels are English msgids, shown in each admin's language (i18n.py); a label in any language
does the same thing. Buttons of lists (a backup, a person) are not in the table: each admin's
list is kept with the labels it was shown with (admin_panel.Place), and a button is matched
whole against it, never parsed for a number.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from i18n import N_


class Screen(enum.Enum):
    MAIN = "main"
    STATISTICS = "statistics"
    USERS = "users"
    FOUND = "found"  # a search's result
    CARD = "card"  # one person
    BLOCK = "block"  # confirming a block
    UNBLOCK = "unblock"
    SYSTEM = "system"
    JOBS = "jobs"
    BACKUP = "backup"
    RESTORE = "restore"  # the list of backups to restore
    CHECKING = "checking"  # a chosen or sent backup is being checked
    CONFIRM = "confirm"  # a checked backup waits for ✅ Confirm restore
    FRESH = "fresh"  # confirming 🆕 Start fresh
    LANGUAGE = "language"


STATISTICS, SYSTEM, LANGUAGE = N_("📊 Statistics"), N_("⚙️ System"), N_("🌐 Language")
BACKUP, JOBS, BACK = N_("💾 Backup"), N_("🩺 Jobs"), N_("🔙 Back")
CREATE, REFRESH, LIST = N_("💾 Create backup"), N_("🔄 Refresh"), N_("🗂 Backups")
DOWNLOAD, RESTORE = N_("📥 Download latest"), N_("♻️ Restore")
CONFIRM, CANCEL = N_("✅ Confirm restore"), N_("❌ Cancel")
START_FRESH, CONFIRM_FRESH = N_("🆕 Start fresh"), N_("✅ Confirm start fresh")
USERS, CHART = N_("👥 Users"), N_("📈 Chart")
BLOCK, UNBLOCK = N_("🚫 Block"), N_("✅ Unblock")
CONFIRM_BLOCK, CONFIRM_UNBLOCK = N_("✅ Confirm block"), N_("✅ Confirm unblock")
BACKUP_MARK, PERSON_MARK = "♻️ ", "👤 "  # how a list's buttons begin: a backup's, a person's


@dataclass(frozen=True)
class ScreenSpec:
    parent: Screen  # where 🔙 Back leads
    opens: str  # the action that shows this screen (what 🔙 Back to it calls)
    rows: tuple[tuple[str, ...], ...] = ()  # its keyboard; () when built from a list when shown


SCREENS: dict[Screen, ScreenSpec] = {
    Screen.MAIN: ScreenSpec(Screen.MAIN, "open_panel", ((STATISTICS, SYSTEM), (LANGUAGE,))),
    Screen.STATISTICS: ScreenSpec(Screen.MAIN, "statistics", ((USERS, CHART), (BACK,))),
    Screen.USERS: ScreenSpec(Screen.STATISTICS, "people.users"),
    Screen.FOUND: ScreenSpec(Screen.USERS, "people.users"),
    Screen.CARD: ScreenSpec(Screen.USERS, "people.reopen_card"),
    Screen.BLOCK: ScreenSpec(Screen.CARD, "people.reopen_card", ((CONFIRM_BLOCK, CANCEL),)),
    Screen.UNBLOCK: ScreenSpec(Screen.CARD, "people.reopen_card", ((CONFIRM_UNBLOCK, CANCEL),)),
    Screen.SYSTEM: ScreenSpec(Screen.MAIN, "backups.system", ((BACKUP, JOBS), (BACK,))),
    Screen.JOBS: ScreenSpec(Screen.SYSTEM, "backups.jobs", ((BACKUP, JOBS), (BACK,))),
    Screen.BACKUP: ScreenSpec(
        Screen.SYSTEM, "backups.backup_screen", ((CREATE, REFRESH), (LIST, DOWNLOAD), (RESTORE, BACK))
    ),
    Screen.RESTORE: ScreenSpec(Screen.BACKUP, "restore.list"),
    Screen.CHECKING: ScreenSpec(Screen.RESTORE, "restore.list"),
    Screen.CONFIRM: ScreenSpec(Screen.RESTORE, "restore.list", ((CONFIRM, CANCEL),)),
    Screen.FRESH: ScreenSpec(Screen.BACKUP, "backups.start_fresh", ((CONFIRM_FRESH, CANCEL),)),
    Screen.LANGUAGE: ScreenSpec(Screen.MAIN, "language_screen"),
}

# What each button does: an action of the panel (admin_panel.AdminPanel), or of one of its parts
# (people: panel_users.People; backups: panel_backups.Backups; restore: panel_restore.Restore).
ACTIONS: dict[str, str] = {
    STATISTICS: "statistics",
    SYSTEM: "backups.system",
    LANGUAGE: "language_screen",
    BACKUP: "backups.backup_screen",
    REFRESH: "backups.backup_screen",
    JOBS: "backups.jobs",
    BACK: "back",
    CREATE: "backups.create",
    LIST: "backups.list_backups",
    DOWNLOAD: "backups.download",
    START_FRESH: "backups.start_fresh",
    CONFIRM_FRESH: "backups.confirm_fresh",
    RESTORE: "restore.list",
    CONFIRM: "restore.confirm",
    CANCEL: "cancel",
    USERS: "people.users",
    CHART: "people.chart",
    BLOCK: "people.ask_block",
    UNBLOCK: "people.ask_unblock",
    CONFIRM_BLOCK: "people.confirm_block",
    CONFIRM_UNBLOCK: "people.confirm_unblock",
}
LABELS = tuple(ACTIONS)


@dataclass
class Place:
    """Where one admin is in the menus, and the lists they were shown. Written by the handler
    threads and the panel's worker: a list is replaced whole, never changed in place, so a
    reader sees the old one or the new one."""

    screen: Screen = Screen.MAIN
    backups: dict[str, list] = field(default_factory=dict)  # a restore list's button -> its copies
    people: dict[str, int] = field(default_factory=dict)  # a person's button -> their user id
    user_id: int | None = None  # whose card is open
    pending: object | None = None  # a checked backup waiting for ✅ Confirm restore (panel_restore)
    restoring: bool = False  # a confirmed restore is running


class PanelPart:
    """A part of the admin panel (People, Backups, Restore): it talks to the admin through the
    panel (admin_panel.AdminPanel: say, show, keyboard, in_background, place) and works on what
    the panel was given."""

    def __init__(self, panel):
        self.panel = panel
        self.bot, self.db, self.engine, self.settings = panel.bot, panel.db, panel.engine, panel.settings
