"""Telegram as it really is, end to end: the real main.py against the stand-in that follows the
real Bot API server (tests/fake_bot_api/), in the situations a backup chat meets in use: a note
pinned over the index, messages past Telegram's 48 hours, a group upgraded to a supergroup, a
member posting look-alikes of the bot's own records, and two instances whose clocks disagree.

Every scenario also measures the bot's writes to the backup chat (send, edit, delete, pin) on
the stand-in's clock, against Telegram's guidance (core.telegram.org/bots/faq, "My bot is
hitting limits"): about one message a second in a chat (short bursts pass: at most 3 in any
3 s) and at most 20 a minute in a group."""

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bot_process import ADMIN_ID
from fake_bot_api import WRITE_METHODS
from helpers import backups_in_chat, chat_index, free_port, press, users_in
from test_handover import Users, serving
from test_webhook import webhook_env

pytestmark = pytest.mark.e2e
GROUP = -1005550023  # a supergroup the admins keep the backups in
INDEX = "backup_test_bot-backup-index.json"
MEMBER = 5555  # someone else in the backup group
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def pace(fake, chat=GROUP) -> dict:
    """The most writes to `chat` the bot made within any 1 s, 3 s and 60 s."""
    return {seconds: fake.most_writes(seconds, chat) for seconds in (1, 3, 60)}


def timeline(fake, chat=GROUP):
    """The bot's writes to `chat`, one line each: seconds since the first, method, status."""
    calls = [
        c for c in fake.requests() if c["method"] in WRITE_METHODS and c["params"].get("chat_id") == chat
    ]
    start = calls[0]["time"] if calls else 0
    return "\n".join(f"  {c['time'] - start:8.2f} {c['method']} {c['status']}" for c in calls)


class OverPace(AssertionError):
    """The bot wrote to a chat faster than Telegram's guidance."""


def assert_paced(fake, chat=GROUP):
    """Telegram's guidance for one group: about one a second (at most 3 in any 3 s), 20 a minute."""
    most = pace(fake, chat)
    if most[3] > 3 or most[60] > 20:
        raise OverPace(f"writes to chat {chat} within 1 s, 3 s, 60 s: {most}\n{timeline(fake, chat)}")
    return most


def indexes_pinned(fake, chat=GROUP):
    return [m for m in fake.pinned_messages(chat) if (m.get("document") or {}).get("file_name") == INDEX]


def backup(fake):
    """/backup from the admin; its ✅ answer, which may wait a minute for Telegram's pace (20
    writes a minute in a group) when the chat was busy."""
    return press(fake, "/backup", "✅ Backup backup-", timeout=90)["text"]


def alerts(fake, contains):
    return [m["text"] for m in fake.messages(ADMIN_ID) if contains in (m.get("text") or "")]


def holding_data(fake, chat):
    """The bot's documents still in `chat` whose bytes are a backup (plain or sealed)."""
    live = [m for m in fake.messages(chat) if m.get("document") and not m.get("deleted")]
    return [
        m
        for m in live
        if fake.file_bytes(m["document"]["file_id"]).startswith((b"\x50\x2a\x4d\x18", b"telegram-bot-backup"))
    ]


# --- a note pinned over the index -------------------------------------------------------------


def test_a_note_pinned_over_the_index_survives_backups_an_empty_disk_and_a_webhook_hand_over(fake, run_bot):
    settings = {**webhook_env(free_port()), "BACKUP_CHAT_ID": str(GROUP)}
    first = run_bot(folder="a", **settings)
    serving(first)
    users = Users(fake, first_id=2300)
    users.one()
    fake.wait_for(lambda: backups_in_chat(fake, GROUP), 30, "a backup in the chat")
    note = fake.pin_by_someone(GROUP, "House rules: be kind. The bot's index is pinned here too.")
    for _ in range(2):
        users.one()
        assert "local, telegram" in backup(fake)
        assert fake.pinned_message(GROUP)["document"]["file_name"] == INDEX  # a fresh index on top
        assert len(indexes_pinned(fake)) == 1
    # A rolling redeploy onto an empty disk, in webhook mode: the new instance finds the index
    # (on top again), knocks under it, and the writer hands its final backup over. (A user
    # first: a writer quiet for a while would leave nothing to wait for, and it would serve.)
    users.one()
    second = run_bot(folder="b", **{**webhook_env(free_port()), "BACKUP_CHAT_ID": str(GROUP)})
    second.wait_for_log("may still be writing", timeout=60)
    serving(second, timeout=90)
    users.one()
    assert second.stop()[0] == 0
    assert first.stop()[0] == 0
    assert len(users.answered) == 5 and set(users.answered) <= users_in(second.db_path)
    pinned = [m["message_id"] for m in fake.pinned_messages(GROUP)]
    assert note["message_id"] in pinned  # their note was never unpinned for good
    assert len(indexes_pinned(fake)) == 1
    listed = [
        (b["reason"], b["generation"], b["row_counts"]["users"]) for b in chat_index(fake, GROUP)["backups"]
    ]
    assert listed[0][2] == 5 + 1, listed  # the newest holds everyone answered, and the admin
    assert_paced(fake)


# --- rotation past 48 hours -------------------------------------------------------------------


def test_backups_older_than_48_hours_rotate_out_leaving_no_copy_of_the_data(fake, run_bot):
    settings = {"BACKUP_CHAT_ID": str(GROUP), "BACKUP_KEEP": "2", "BACKUP_AFTER_CHANGE_SECONDS": "2"}
    bot = run_bot(folder="a", **settings)
    serving(bot)
    users = Users(fake, first_id=2400)
    users.one()
    backup(fake)  # with the startup backup, the two kept
    fake.advance_time(49 * 3600)  # every backup so far is past what a bot may delete
    for _ in range(2):
        users.one()  # an on-change backup, edited into one message
        fake.wait_for(
            lambda: backups_in_chat(fake, GROUP)[0]["row_counts"]["users"] == len(users.answered) + 1,
            90,  # within a minute: the chat may have had its writes of the minute
            "an on-change backup of the newest user",
        )
    backup(fake)
    index = chat_index(fake, GROUP)
    assert index["scrub"] == []  # while serving, rotation leaves nothing to take out later
    assert holding(fake) == kept_messages(fake)  # no other copy
    assert bot.stop()[0] == 0
    # The final backup leaves rotation to the next writer's first backup (its seconds are for
    # its data): one backup more than kept, each listed in the index, and no other copy.
    listed = backups_in_chat(fake, GROUP)
    assert len(listed) == 3 and holding(fake) == kept_messages(fake)
    left = {p["message_id"] for p in listed[-1]["parts"]}  # the oldest, past what is kept
    again = run_bot(folder="a", **settings)  # the redeploy that came with the SIGTERM
    serving(again)
    fake.wait_for(
        lambda: not left & holding(fake), 90, "the backup past what is kept, taken out by the next writer"
    )
    assert again.stop()[0] == 0
    kept = backups_in_chat(fake, GROUP)
    assert len(kept) == 2 + 1 and kept[0]["row_counts"]["users"] == 3 + 1  # its own final one more
    assert holding(fake) == kept_messages(fake)
    blanked = [
        m for m in fake.messages(GROUP) if (m.get("document") or {}).get("file_name") == "rotated-out.txt"
    ]
    assert blanked  # the old ones could not be deleted: their data was replaced
    assert_paced(fake)


def holding(fake, chat=GROUP) -> set[int]:
    return {m["message_id"] for m in holding_data(fake, chat)}


def kept_messages(fake, chat=GROUP) -> set[int]:
    return {p["message_id"] for b in backups_in_chat(fake, chat) for p in b["parts"]}


# --- a group upgraded to a supergroup ---------------------------------------------------------


def test_a_group_upgraded_to_a_supergroup_is_followed_remembered_and_told(fake, run_bot):
    group = -4001230023
    bot = run_bot(folder="a", BACKUP_CHAT_ID=str(group))
    serving(bot)
    fake.wait_for(lambda: backups_in_chat(fake, group), 30, "the startup backup in the group")
    supergroup = fake.upgrade_to_supergroup(group)
    press(fake, "/start", "registered", chat=2501)
    assert "local, telegram" in backup(fake)
    assert backups_in_chat(fake, supergroup)[0]["row_counts"]["users"] == 2
    (told,) = alerts(fake, "supergroup")
    assert "BACKUP_CHAT_ID" in told and str(supergroup) in told and str(group) in told
    assert bot.stop()[0] == 0
    calls = len(fake.requests())
    again = run_bot(folder="a", BACKUP_CHAT_ID=str(group))  # the setting not changed yet
    serving(again)
    press(fake, "/start", "registered", chat=2502)
    assert "local, telegram" in backup(fake)
    assert backups_in_chat(fake, supergroup)[0]["row_counts"]["users"] == 3
    assert not [c for c in fake.requests()[calls:] if c["status"] == 400]  # it knew where to write
    assert again.stop()[0] == 0
    assert_paced(fake, supergroup)


# --- a member's look-alikes -------------------------------------------------------------------


def forged_index(fake, real, older_messages):
    """The bot's own index, as a member could copy it, claiming a newer writer and naming the
    bot's older backups as on-change messages to be replaced."""
    head = dict(real["head"], generation=real["head"]["generation"] + 5, writer="intruder", state="writing")
    return dict(real, head=head, rolling=older_messages, message_id=real["message_id"] + 100)


def test_a_members_forged_index_head_knock_and_on_change_list_change_nothing(fake, run_bot):
    bot = run_bot(folder="a", BACKUP_CHAT_ID=str(GROUP), BACKUP_AFTER_CHANGE_SECONDS="2")
    serving(bot)
    users = Users(fake, first_id=2600)
    for _ in range(2):
        users.one()
        backup(fake)
    real = chat_index(fake, GROUP)
    older = [p["message_id"] for b in real["backups"] for p in b["parts"]]
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    caption = f"Backup index\n🔔 Hand-over asked by intruder at {now} {'0' * 16}"
    posted = fake.send_document(
        MEMBER, INDEX, json.dumps(forged_index(fake, real, older)).encode(), caption=caption, chat_id=GROUP
    )
    fake.pin(GROUP, posted["message"]["message_id"], user_id=MEMBER)
    for _ in range(3):
        users.one()  # still serving, through the knock watch and an on-change backup
    fake.wait_for(lambda: alerts(fake, "named like the bot's backup index"), 30, "the admins told")
    assert "local, telegram" in backup(fake)
    assert fake.pinned_message(GROUP)["document"]["file_name"] == INDEX and (
        fake.pinned_message(GROUP)["from"]["id"] == fake.bot_user["id"]
    )
    assert bot.stop()[0] == 0
    again = run_bot(folder="a", BACKUP_CHAT_ID=str(GROUP))
    serving(again)  # not passive: the member's head is nobody's
    users.one()
    assert again.stop()[0] == 0
    assert len(users.answered) == 6 and "passive:" not in bot.log() + again.log()
    deleted = {m["message_id"] for m in fake.messages(GROUP) if m.get("deleted")}
    assert not deleted & set(older)  # the bot's older backups stay where they were
    assert posted["message"]["message_id"] in [m["message_id"] for m in fake.pinned_messages(GROUP)]
    assert len(alerts(fake, "named like the bot's backup index")) == 1  # told once, not at every read
    assert_paced(fake)


# --- two clocks -------------------------------------------------------------------------------


def skewed(hours):
    """Environment for a main.py whose wall clock is `hours` ahead (libfaketime), its monotonic
    clock left alone (faked too, libfaketime 0.9.10 makes a thread's timed wait hang; see
    skewed_clock/sitecustomize.py for what it does to time.sleep then)."""
    if not LIBFAKETIME.exists() or not shutil.which("faketime"):
        pytest.skip("libfaketime is not installed (apt package faketime): a skewed clock cannot be made")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": f"+{hours}h",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(Path(__file__).parent / "skewed_clock"),
    }


def test_an_instance_whose_clock_is_hours_ahead_never_wins_over_a_newer_state(fake, run_bot):
    settings = {"BACKUP_CHAT_ID": str(GROUP), "BACKUP_AFTER_CHANGE_SECONDS": "2"}
    laptop = run_bot(folder="laptop", **settings, **skewed(3))
    serving(laptop)
    users = Users(fake, first_id=2700)
    for _ in range(3):
        users.one()
    assert laptop.stop()[0] == 0
    ahead = datetime.now(UTC) + timedelta(hours=2)
    assert all(datetime.fromisoformat(b["created_at"]) > ahead for b in backups_in_chat(fake, GROUP))
    production = run_bot(folder="production", **settings)  # an empty disk: the laptop's state
    serving(production)
    for _ in range(5):
        users.one()
    assert production.stop()[0] == 0
    fresh = run_bot(folder="fresh", **settings)  # the next start on an empty disk
    serving(fresh)
    assert fresh.stop()[0] == 0
    assert users_in(fresh.db_path) == set(users.answered) and len(users.answered) == 8
    restored = alerts(fake, "Restored at startup")  # the first: the laptop's backup, 3 h "ahead"
    ages = [re.search(r"\((\S+) (?:min|h|days) old\)", text) for text in restored]
    assert len(ages) == 2 and all(age and age[1].isdigit() for age in ages), restored
    assert_paced(fake)
