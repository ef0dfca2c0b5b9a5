"""The admin panel end to end: the real main.py against the local Bot API stand-in."""

import re
import sqlite3
from pathlib import Path

import pytest
from bot_process import ADMIN_ID
from helpers import backups_in_chat, buttons, chat_index, newest_backup_message, press, register_users, upload

import database
import panel_screens as panel
from i18n import LANGUAGE_LABELS, Reader, Text

pytestmark = pytest.mark.e2e
OTHER_ADMIN = ADMIN_ID + 1
USER = 5151
LABELS = [
    panel.STATISTICS,
    panel.SYSTEM,
    panel.BACKUP,
    panel.JOBS,
    panel.BACK,
    panel.CREATE,
    panel.REFRESH,
    panel.LIST,
    panel.DOWNLOAD,
    panel.RESTORE,
    panel.CONFIRM,
    panel.CANCEL,
    panel.START_FRESH,
    panel.CONFIRM_FRESH,
    "♻️ 1: Nov 26 12:00 manual (local)",
    panel.USERS,
    panel.CHART,
    panel.BLOCK,
    panel.UNBLOCK,
    panel.CONFIRM_BLOCK,
    panel.CONFIRM_UNBLOCK,
    f"👤 {ADMIN_ID} Admin",
    panel.LANGUAGE,
]


@pytest.fixture
def start_bot(run_bot):
    return lambda **env: run_bot(**{"ADMIN_IDS": f"{ADMIN_ID},{OTHER_ADMIN}", **env})


def users_now(fake):
    text = press(fake, panel.STATISTICS, "Users:")["text"]
    return int(text.split("Users: ")[1].split(" ")[0])


def test_every_screen_and_button(fake, start_bot):
    bot = start_bot()
    register_users(fake, USER)
    assert buttons(press(fake, "/admin", "Admin panel")) == [panel.STATISTICS, panel.SYSTEM, panel.LANGUAGE]
    stats = press(fake, panel.STATISTICS, "Users:")["text"]  # the user and the admin: what a backup counts
    assert "Users: 2" in stats and "Blocked now: 0" in stats and "Actions in the last 24 hours:" in stats
    system = press(fake, panel.SYSTEM, "System")
    assert buttons(system) == [panel.BACKUP, panel.JOBS, panel.BACK]
    # (how many wait depends on whether the poller confirmed this very press yet)
    assert "Updates: by polling (getUpdates)" in system["text"]
    assert re.search(r"Updates waiting at Telegram: \d+", system["text"])
    # what backups uploaded off the machine, and a month at this pace, against the budget
    assert re.search(
        r"📤 Uploaded [0-9.,]+ [KMG]?B in the last 24 hours; [0-9.,]+ [KMG]?B a month at this pace "
        r"\(budget 20 GB\)",
        system["text"],
    )
    jobs = press(fake, panel.JOBS, "Jobs")["text"]
    for line in (
        "auto_unblock: every minute",
        "cleanup_tracking: every hour",
        "backup: every 6 hours",
        "last error: none",
        "next 20",
    ):
        assert line in jobs
    assert "System" in press(fake, panel.BACK, "System")["text"]

    # The startup backup goes to the chat within Telegram's pace (a few writes a few seconds)
    fake.wait_for(lambda: backups_in_chat(fake, ADMIN_ID), 20, "the startup backup in the chat")
    status = press(fake, panel.BACKUP, "Storage:")
    for line in (
        "Storage: ",
        "schema version 4",
        "users: 2",
        "recent actions: ",
        "daily activity: ",
        "Newest backup: ",
        "startup",
        "local: ✅",
        "telegram: ✅",
        "Local backups kept: 1 of 10",
        "Next scheduled backup: 20",
    ):
        assert line in status["text"], line
    assert buttons(status) == [
        panel.CREATE,
        panel.REFRESH,
        panel.LIST,
        panel.DOWNLOAD,
        panel.RESTORE,
        panel.BACK,
    ]
    assert "Storage:" in press(fake, panel.REFRESH, "Storage:")["text"]

    newest_before = chat_index(fake, ADMIN_ID)["backups"][0]
    created = press(fake, panel.CREATE, "✅ Backup")["text"]
    assert "stored in local, telegram" in created
    assert chat_index(fake, ADMIN_ID)["backups"][0]["created_at"] > newest_before["created_at"]
    listing = press(fake, panel.LIST, "Backups, newest first")["text"]
    assert "1. 20" in listing and "manual" in listing and "telegram" in listing and "local" in listing

    document = press(fake, panel.DOWNLOAD, "📥")
    assert document["document"]["file_name"].endswith("-manual.db.zst")
    assert fake.file_bytes(document["document"]["file_id"])[:4] == b"\x50\x2a\x4d\x18"  # header frame

    assert "System" in press(fake, panel.BACK, "System")["text"]
    assert buttons(press(fake, panel.BACK, "Admin panel")) == [panel.STATISTICS, panel.SYSTEM, panel.LANGUAGE]
    assert bot.stop()[0] == 0


def test_restore_from_the_list_and_from_an_upload_each_confirmed(fake, start_bot, tmp_path):
    bot = start_bot()
    register_users(fake, 1, 2)
    press(fake, panel.CREATE, "✅ Backup")  # admin, 1, 2
    backup_file = fake.file_bytes(newest_backup_message(fake, ADMIN_ID)["document"]["file_id"])
    register_users(fake, 3)
    assert users_now(fake) == 4  # everyone, the admin too: what the backups count ("users: 3 / 4")

    choose = press(fake, panel.RESTORE, "choose a backup")
    newest = next(label for label in buttons(choose) if label.startswith("♻️ 1: "))
    offer = press(fake, newest, "Restore it?")
    assert "users: 3 / 4" in offer["text"] and buttons(offer) == [panel.CONFIRM, panel.CANCEL]
    assert "nothing changed" in press(fake, panel.CANCEL, "Cancelled")["text"]
    assert users_now(fake) == 4

    press(fake, panel.RESTORE, "choose a backup")
    press(fake, newest, "Restore it?")
    assert "✅ Restored" in press(fake, panel.CONFIRM, "Restored")["text"]
    assert users_now(fake) == 3

    register_users(fake, 4, 5)
    press(fake, panel.RESTORE, "choose a backup")
    offer = upload(fake, "my-backup.db.zst", backup_file, "Restore it?")
    assert "users: 3 / 5" in offer["text"]
    press(fake, panel.CONFIRM, "Restored")
    assert users_now(fake) == 3
    status = press(fake, panel.BACKUP, "Storage:")["text"]
    # the restored data is what comes back after a crash: its backup is the newest, not the safety copy
    assert re.search(r"^Newest backup: .*, after a restore$", status, re.M), status
    assert "before a restore" in press(fake, panel.LIST, "Backups, newest first")["text"]
    assert bot.stop()[0] == 0


def test_bad_uploads_are_refused_with_a_reason_and_change_nothing(fake, start_bot, tmp_path):
    bot = start_bot()
    register_users(fake, 1)
    press(fake, panel.CREATE, "✅ Backup")
    good = fake.file_bytes(newest_backup_message(fake, ADMIN_ID)["document"]["file_id"])
    future = tmp_path / "future.db"
    with sqlite3.connect(future) as conn:
        conn.executescript(Path(database.MIGRATIONS_DIR, "0001_initial.sql").read_text())
        conn.execute("PRAGMA user_version = 99")
    users_before = users_now(fake)
    press(fake, panel.RESTORE, "choose a backup")
    for name, content, reason in [
        ("notes.txt", b"remember the milk\n", "not a backup"),
        ("cut.db.zst", good[: len(good) // 2], "damaged backup"),
        ("future.db", future.read_bytes(), "schema version 99, newer than this code knows"),
    ]:
        refusal = upload(fake, name, content, "❌")
        assert reason in refusal["text"], refusal["text"]
        assert panel.CONFIRM not in buttons(refusal)
    assert "Nothing to confirm" in press(fake, panel.CONFIRM, "Nothing to confirm")["text"]
    assert users_now(fake) == users_before
    assert bot.stop()[0] == 0


def test_a_non_admin_never_reaches_the_panel(fake, start_bot):
    bot = start_bot(FLOOD_MAX_MESSAGES="100")  # what is tested here is the panel, not flood control
    register_users(fake, USER)
    for text in ["/admin", "/backup", "/start_fresh YES", *LABELS]:
        fake.send_text(USER, text)
    fake.send_document(USER, "backup.db.zst", b"anything")
    press(fake, "/admin", "Admin panel")  # the admin's update comes after the user's: all are fetched
    assert bot.stop()[0] == 0  # the shutdown lets every handler in progress finish: nothing comes later
    from_bot = [m for m in fake.messages(USER) if m["from"]["is_bot"]]
    assert "registered" in from_bot[0]["text"]  # the /start answer; the rest: "send /help"
    sent = ["/admin", "/backup", "/start_fresh", *LABELS, "backup.db.zst"]
    assert len(from_bot) == 1 + len(sent)
    assert all(m["text"].endswith("Send /help to see what I can do.") for m in from_bot[1:])
    assert all(not buttons(m) for m in from_bot)
    assert not any(m.get("document") or m.get("photo") for m in from_bot)


def test_two_admins_each_keep_their_place(fake, start_bot):
    bot = start_bot()
    press(fake, "/admin", "Admin panel")
    press(fake, "/admin", "Admin panel", chat=OTHER_ADMIN)
    press(fake, panel.SYSTEM, "System")
    press(fake, panel.JOBS, "Jobs")
    press(fake, panel.SYSTEM, "System", chat=OTHER_ADMIN)
    press(fake, panel.BACKUP, "Storage:", chat=OTHER_ADMIN)
    assert "System" in press(fake, panel.BACK, "System")["text"]  # jobs -> system
    assert "System" in press(fake, panel.BACK, "System", chat=OTHER_ADMIN)["text"]  # backup -> system
    assert "Admin panel" in press(fake, panel.BACK, "Admin panel")["text"]
    assert bot.stop()[0] == 0


def test_after_a_restart_any_label_brings_its_menu_back(fake, start_bot):
    bot = start_bot()
    press(fake, "/admin", "Admin panel")
    press(fake, panel.SYSTEM, "System")
    assert bot.stop()[0] == 0
    again = start_bot()
    assert buttons(press(fake, panel.BACKUP, "Storage:"))[0] == panel.CREATE
    assert "Nothing to confirm" in press(fake, panel.CONFIRM, "Nothing to confirm")["text"]
    assert again.stop()[0] == 0


def test_alerts_reach_every_admin_once(fake, start_bot, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    bot = start_bot(DB_PATH=str(tmp_path / "not-a-folder" / "bot.db"), BACKUP_DIR=str(tmp_path / "backups"))
    for admin in (ADMIN_ID, OTHER_ADMIN):
        alert = fake.wait_for_message(admin, "IN MEMORY")["text"]
        assert "Not a directory" in alert and "lost when the bot stops" in alert
    press(fake, "/admin", "Admin panel")  # it serves: its startup backup is done
    fake.fail_next("sendDocument", 500, "Internal Server Error", times=2)
    press(fake, "/backup", "✅ Backup")
    press(fake, "/backup", "✅ Backup")
    press(fake, "/backup", "✅ Backup")  # telegram works again
    for admin in (ADMIN_ID, OTHER_ADMIN):
        texts = [m.get("text") or "" for m in fake.messages(admin)]
        assert sum("IN MEMORY" in t for t in texts) == 1
        assert sum("could not be stored in telegram" in t for t in texts) == 1
        assert sum("Backups to telegram work again" in t for t in texts) == 1
    assert bot.stop()[0] == 0


def test_in_a_group_an_admin_gets_nothing_of_the_database(fake, start_bot):
    bot = start_bot()
    group = -1005555
    commands = ["/admin", "/backup", "/start_fresh YES", *LABELS]
    for text in commands:
        fake.send_text(ADMIN_ID, text, chat_id=group)
    fake.send_document(ADMIN_ID, "backup.db.zst", b"anything", chat_id=group)
    fake.send_text(USER, panel.STATISTICS, chat_id=group)  # a member pressing an admin's label
    press(fake, "/admin", "Admin panel")  # in the admin's private chat, after all of those
    # The group's answers come from the other handler threads, maybe after the private one: the
    # shutdown lets every handler finish, then they are counted.
    assert bot.stop()[0] == 0
    in_group = [m for m in fake.messages(group) if m["from"]["is_bot"]]
    assert len(in_group) == len(commands)  # one line for each of the admin's, none for the member
    for message in in_group:
        assert message["text"] == "🔒 The admin panel works only in a private chat with me."
        assert not buttons(message) and not message.get("document")
    assert not any(m.get("document") for m in fake.messages(group))


def test_in_a_group_the_persian_labels_and_the_language_buttons_get_nothing_of_the_panel(fake, start_bot):
    bot = start_bot()
    group = -1005556
    persian = [Reader("fa").gettext(label) for label in LABELS if not label.startswith(("♻️ 1", "👤"))]
    assert all(label not in LABELS for label in persian)  # really the Persian ones
    for text in [*persian, *LANGUAGE_LABELS]:
        fake.send_text(ADMIN_ID, text, chat_id=group, language_code="fa")
    press(fake, "/admin", "🛠")  # in the admin's private chat (in Persian now), after all of those
    assert bot.stop()[0] == 0  # every handler finished: nothing more comes to the group
    refusal = Text("🔒 The admin panel works only in a private chat with me.")
    lines = {Reader("fa")(refusal), Reader("en")(refusal)}
    in_group = [m for m in fake.messages(group) if m["from"]["is_bot"]]
    assert len(in_group) == len(persian)  # one line for each label; the language buttons: nothing
    for message in in_group:
        assert message["text"] in lines
        assert not buttons(message) and not message.get("document")
