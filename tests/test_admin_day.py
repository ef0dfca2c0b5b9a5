"""An admin's afternoon, end to end with the real main.py: the System overview, Statistics that
count people, 👥 Users with a search and a card to block and unblock from, the chart, backups
listed one line per backup, and a restore preview that says what it loses. Every number is
checked against the bot's own database file."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from bot_process import ADMIN_ID
from helpers import buttons, press, query
from PIL import Image

import chart
import panel_screens as panel
from i18n import Reader

pytestmark = pytest.mark.e2e
ANN, BOB, CY = 7001, 7002, 7003


def number_after(text, label):
    return int(re.search(re.escape(label) + r" (\d+)", text).group(1))


def meet(fake, *people):
    for user_id, name, username, messages in people:
        for _n in range(messages):
            seen = len(fake.messages(user_id))
            fake.send_text(user_id, "/start", first_name=name, username=username)
            fake.wait_for_message(user_id, "registered", after=seen)


def test_statistics_users_and_a_users_card_match_the_database(fake, run_bot):
    bot = run_bot()
    meet(fake, (ANN, "Ann", "ann", 4), (BOB, "Bob", "bobby", 1), (CY, "Cy", None, 2))
    press(fake, "/admin", "Admin panel")
    stats = press(fake, panel.STATISTICS, "Users:")
    ((people, admin),) = query(
        bot.db_path,
        "SELECT count(*) FILTER (WHERE user_id != ?), count(*) FILTER (WHERE user_id = ?) FROM tracking",
        ADMIN_ID,
        ADMIN_ID,
    )
    users = query(bot.db_path, "SELECT count(*) FROM users")[0][0]
    assert number_after(stats["text"], "Users:") == users == 4  # everyone, the admin too: as backups count
    assert number_after(stats["text"], "Actions in the last 24 hours:") == people == 7  # no panel press
    assert number_after(stats["text"], "Admins' own actions, not counted above:") == admin == 2
    assert buttons(stats) == [panel.USERS, panel.CHART, panel.BACK]

    users = press(fake, panel.USERS, "👥 Users")["text"]
    newest = users.split("Newest:")[1].split("Most active")[0]
    assert newest.index("· 7003") < newest.index("· 7002") < newest.index("· 7001")  # newest first
    most_active = users.split("Most active in the last 7 days:")[1].split("\n")[1]
    assert most_active == "• Ann (@ann) · 7001: 4 actions" and "Nobody is blocked now." in users
    assert str(ADMIN_ID) not in users.split("Most active")[1]  # the admin is not a user to rank

    found = press(fake, "bob", "Found 1")
    assert buttons(found) == ["👤 7002 Bob", panel.BACK]
    card = press(fake, "👤 7002 Bob", "Id: 7002")
    assert "Bob (@bobby) · 7002" in card["text"] and "Not blocked." in card["text"]
    assert "Actions in the last 30 days: 1 (active on 1 of them)" in card["text"]
    assert buttons(card) == [panel.BLOCK, panel.BACK]

    # block and unblock from the card, each confirmed; Bob is told both times
    assert "/block 7002" in press(fake, panel.BLOCK, "Block Bob")["text"]
    seen = len(fake.messages(ADMIN_ID))
    press(fake, panel.CONFIRM_BLOCK, "🚫 Blocked until")  # the card again, once the block is done
    fake.wait_for_message(ADMIN_ID, "User 7002 is blocked until", after=seen)
    fake.wait_for_message(BOB, "You are blocked until")
    ((until, reason),) = query(
        bot.db_path, "SELECT blocked_until, block_reason FROM users WHERE user_id = ?", BOB
    )
    assert until is not None and reason == "blocked by an admin"
    users = press(fake, panel.BACK, "👥 Users")  # the card's Back: the users
    assert "Bob (@bobby) · 7002, until" in users["text"].split("Blocked now:")[1]
    assert "👤 7002 Bob" in buttons(users)  # once, though Bob is among the newest and the blocked
    assert len(buttons(users)) == len(set(buttons(users)))
    card = press(fake, "👤 7002 Bob", "🚫 Blocked until")
    assert buttons(card) == [panel.UNBLOCK, panel.BACK]
    press(fake, panel.UNBLOCK, "Unblock Bob")
    press(fake, panel.CANCEL, "🚫 Blocked until")  # "Cancelled", then the card it came from
    assert query(bot.db_path, "SELECT blocked_until FROM users WHERE user_id = ?", BOB)[0][0] is not None
    press(fake, "👤 7002", "👥 Users")  # not a button of the list shown: the list again
    press(fake, "👤 7002 Bob", "🚫 Blocked until")
    press(fake, panel.UNBLOCK, "Unblock Bob")
    press(fake, panel.CONFIRM_UNBLOCK, "Not blocked.")
    fake.wait_for_message(BOB, "Your block was lifted")
    assert query(bot.db_path, "SELECT blocked_until FROM users WHERE user_id = ?", BOB)[0][0] is None

    press(fake, panel.BACK, "👥 Users")
    nobody = press(fake, "100%_", "Nobody matches")  # the search is plain text, no wildcards
    assert buttons(nobody) == [panel.BACK]
    assert bot.stop()[0] == 0


def test_the_chart_is_a_png_of_the_promised_size_sent_on_demand(fake, run_bot):
    bot = run_bot()
    meet(fake, (ANN, "Ann", "ann", 1))
    press(fake, "/admin", "Admin panel")
    press(fake, panel.STATISTICS, "Users:")
    sent = press(fake, panel.CHART, "📈")
    (photo,) = sent["photo"]
    image = Image.open(io.BytesIO(fake.file_bytes(photo["file_id"])))
    assert (image.format, image.size) == ("PNG", (chart.WIDTH, chart.HEIGHT))
    # the caption is the legend and names the days it spans: the last 30, today last
    today, first = datetime.now(UTC).date(), datetime.now(UTC).date() - timedelta(days=29)
    assert "🟦 New users (bars)" in sent["caption"] and "🟧 active users (line)" in sent["caption"]
    assert f"{first:%Y-%m-%d} to {today:%Y-%m-%d}" in sent["caption"]
    assert bot.stop()[0] == 0


def test_the_system_overview_and_backups_one_line_each_with_their_places(fake, run_bot):
    bot = run_bot()
    bot.wait_for_log("startup backup")  # taken while the bot already answers
    meet(fake, (ANN, "Ann", "ann", 1))
    press(fake, "/admin", "Admin panel")
    system = press(fake, panel.SYSTEM, "⚙️ System")["text"]
    size = query(bot.db_path, "PRAGMA page_count")[0][0] * query(bot.db_path, "PRAGMA page_size")[0][0]
    assert f"Database: {Reader('en').size(size)}, schema version 4" in system
    for line in (
        f"Storage: {bot.db_path}",
        "schema version 4",
        "Up for ",
        "Backups: newest ",
        "not encrypted (BACKUP_PASSPHRASE is not set)",
        "local: ✅ last stored",
        "telegram: ✅ last stored",
        "s3: off: set S3_BUCKET",
        "Updates: by polling",
    ):
        assert line in system, line

    press(fake, panel.BACKUP, "Storage:")
    press(fake, panel.CREATE, "✅ Backup")
    listed = press(fake, panel.LIST, "newest first")["text"].split("\n")[1:]
    assert listed[0].startswith("1. ") and listed[0].endswith("; in local, telegram")  # one line, two places
    assert all("; in local, telegram" in line for line in listed)
    # with seconds, so backups taken in one minute read apart; the users as 📊 counts them
    assert all(re.match(r"\d+\. \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, ", line) for line in listed), listed
    assert ", 2 users; in " in listed[0]  # Ann and the admin
    local_backups = list((bot.db_path.parent / "backups").glob("backup-*.db.zst"))
    assert len(listed) == len(local_backups) >= 2  # one line per backup, not one per copy

    # the preview says how old the backup is and what restoring it loses
    meet(fake, (BOB, "Bob", None, 1), (CY, "Cy", None, 1))
    listed = press(fake, panel.RESTORE, "♻️ Restore:")
    offer = press(fake, next(b for b in buttons(listed) if b.startswith("♻️ 1: ")), "Restore it?")["text"]
    written = (
        query(bot.db_path, "SELECT count(*) FROM users")[0][0] - 2
    )  # Ann and the admin were in the backup
    assert written == 2
    assert re.search(r"what was written since is lost, \d+ rows more now \(.*users \+2", offer), offer
    seen = len(fake.messages(ADMIN_ID))
    press(fake, panel.CANCEL, "Storage:")  # "Cancelled", then the 💾 Backup screen: its last answer
    fake.wait_for_message(ADMIN_ID, "Cancelled; nothing changed.", after=seen)
    assert query(bot.db_path, "SELECT count(*) FROM users")[0][0] == 4  # nothing restored

    # ❌ Cancel right after ✅ Confirm restore: "nothing changed" is said only when it is true
    listed = press(fake, panel.RESTORE, "♻️ Restore:")
    press(fake, next(b for b in buttons(listed) if b.startswith("♻️ 1: ")), "Restore it?")
    seen = len(fake.messages(ADMIN_ID))
    fake.send_text(ADMIN_ID, panel.CONFIRM)
    fake.send_text(ADMIN_ID, panel.CANCEL)  # at once, as a second thought; handled on another thread
    fake.wait_for(
        lambda: any(t.startswith(("✅ Restored", "Nothing to confirm")) for t in texts(fake, seen)), 30
    )
    said_unchanged = any("nothing changed" in t for t in texts(fake, seen))
    restored = query(bot.db_path, "SELECT count(*) FROM users")[0][0] == 2  # the backup's Ann and admin
    assert said_unchanged != restored, texts(fake, seen)
    if restored:  # the usual order: the restore began, and its keyboard went with it
        working = next(
            m for m in fake.messages(ADMIN_ID)[seen:] if (m.get("text") or "").startswith("⏳ Taking")
        )
        assert working["reply_markup"] == {"remove_keyboard": True}
    assert bot.stop()[0] == 0


def texts(fake, after):
    return [m.get("text") or "" for m in fake.messages(ADMIN_ID)[after:] if m["from"]["is_bot"]]
