"""Persian and English end to end: the real main.py against the local Bot API stand-in. A user
reads the language Telegram reports for them until they choose; an admin's panel follows their
choice, and a label in either language brings its screen, before and after a restart."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bot_process import ADMIN_ID
from helpers import buttons, press

import panel_screens as panel
from i18n import LANGUAGE_LABELS, Reader

pytestmark = pytest.mark.e2e
TEHRAN = ZoneInfo("Asia/Tehran")
FA, EN = Reader("fa", TEHRAN), Reader("en", TEHRAN)
PERSIAN = next(label for label, language in LANGUAGE_LABELS.items() if language == "fa")
ENGLISH = next(label for label, language in LANGUAGE_LABELS.items() if language == "en")
USER, SWITCHER = 5151, 5252
HELLO = "Hello, {name}! You are registered; your Telegram user id is {id}. Send /help to see what I can do."


def words(reader: Reader, msgid: str, plural: str | None = None) -> str:
    """The words a text starts with in `reader`'s language, up to its first value (of a text
    with plural forms, its form for many)."""
    shown = reader.ngettext(msgid, plural, 2) if plural else reader.gettext(msgid)
    start = shown.split("{")[0].strip()
    assert len(start) >= 3, msgid
    return start


def say(fake, chat, text, expect, language_code=None):
    """Send `text` as the user in `chat`, in Telegram's `language_code`; the bot's first reply
    after it containing `expect`."""
    return press(fake, text, expect, chat=chat, language_code=language_code)


def test_a_persian_user_reads_persian_with_solar_hijri_times_and_a_choice_survives_a_restart(fake, run_bot):
    bot = run_bot(BOT_TIMEZONE="Asia/Tehran")
    hello = say(fake, USER, "/start", words(FA, HELLO), language_code="fa")
    assert "registered" not in hello["text"]
    assert words(FA, "/help: this list") in say(fake, USER, "/help", "/help", language_code="fa-IR")["text"]

    # the admin writes in English; the user is told in Persian, the time in Tehran's zone and calendar
    say(fake, ADMIN_ID, f"/block {USER} 60 spam", "is blocked until")
    notice = fake.wait_for_message(
        USER, words(FA, "You are blocked until {until} ({reason}); messages until then are ignored.")
    )["text"]
    until_date = FA.time(datetime.now(UTC) + timedelta(minutes=60)).split("،")[0]
    assert until_date in notice and "به وقت تهران" in notice and "spam" in notice
    say(fake, ADMIN_ID, f"/unblock {USER}", "is unblocked")

    # someone whose Telegram is Persian chooses English; the choice outlives a restart
    menu = say(fake, SWITCHER, "/language", words(FA, "Choose your language:"), language_code="fa")
    assert set(buttons(menu)) == set(LANGUAGE_LABELS)
    assert say(fake, SWITCHER, ENGLISH, "✅", language_code="fa")["text"] == "✅ Language: English"
    assert bot.stop()[0] == 0
    bot.start()
    say(fake, SWITCHER, "/start", "You are registered", language_code="fa")
    say(fake, USER, "/start", words(FA, HELLO), language_code="fa")


# Each label of the panel, pressed in Persian, and the words its answer starts with.
ANSWERS = [
    (panel.STATISTICS, "📊 Statistics"),
    (panel.USERS, "👥 Users"),
    (panel.BACK, "📊 Statistics"),
    (panel.CHART, "⏳ Drawing the chart…"),
    (panel.BACK, "🛠 Admin panel"),
    (panel.SYSTEM, "⚙️ System"),
    (panel.JOBS, "🩺 Jobs"),
    (panel.BACKUP, "💾 Backup"),
    (panel.REFRESH, "💾 Backup"),
    (panel.CREATE, "⏳ Working on a backup…"),
    (panel.LIST, "🗂 Backups, newest first:"),
    (panel.DOWNLOAD, "⏳ Preparing the newest backup…"),
    (panel.RESTORE, "♻️ Restore: choose a backup, or send a backup file here as a document."),
    (panel.BACK, "💾 Backup"),
    (panel.BACK, "⚙️ System"),
    (panel.BACK, "🛠 Admin panel"),
    (panel.LANGUAGE, "Choose your language:"),
    (panel.BACK, "🛠 Admin panel"),
]


def test_an_admin_switches_the_panel_to_persian_and_labels_in_either_language_keep_working(fake, run_bot):
    bot = run_bot()
    opened = say(fake, ADMIN_ID, "/admin", "🛠 Admin panel")
    assert buttons(opened) == [
        EN.gettext(label) for label in (panel.STATISTICS, panel.SYSTEM, panel.LANGUAGE)
    ]
    say(fake, ADMIN_ID, EN.gettext(panel.LANGUAGE), "Choose your language:")
    switched = say(fake, ADMIN_ID, PERSIAN, words(FA, "✅ Language: English"))
    keyboard = buttons(switched)
    assert keyboard == [FA.gettext(label) for label in (panel.STATISTICS, panel.SYSTEM, panel.LANGUAGE)]

    offered = set(keyboard)
    for label, answer in ANSWERS:  # every label of every Persian keyboard on the way
        assert FA.gettext(label) in offered, f"{label} was not on the keyboard shown"
        reply = say(fake, ADMIN_ID, FA.gettext(label), words(FA, answer))
        offered = set(buttons(reply)) or offered  # a screen without a keyboard keeps the last
        assert not offered & {EN.gettext(label) for label in panel.LABELS}, "an English label shown"

    # a label from before the switch still brings its screen, now in Persian
    say(fake, ADMIN_ID, EN.gettext(panel.STATISTICS), words(FA, "📊 Statistics"))
    assert bot.stop()[0] == 0
    for lost in bot.db_path.parent.glob("bot.db*"):  # the disk lost the database: restored at startup
        lost.unlink()
    seen = len(fake.messages(ADMIN_ID))
    bot.start()
    # told in Persian: the choice came back with the restore, before the admins were told
    fake.wait_for_message(
        ADMIN_ID,
        words(
            FA,
            "♻️ Restored at startup ({why}): {name} from {destination}, taken {when} ({age} old), {count} row.",
            "♻️ Restored at startup ({why}): {name} from {destination}, taken {when} ({age} old), {count} rows.",
        ),
        after=seen,
        timeout=20,
    )
    for label in (panel.SYSTEM, panel.STATISTICS):  # and after a restart, in both languages
        for reader in (EN, FA):
            say(fake, ADMIN_ID, reader.gettext(label), words(FA, dict(ANSWERS)[label]))
