"""A hostile (or careless) member of the backup group: what they post, pin, forward, delete or
send there. What must hold: nothing the bot did not send is trusted, deleted or edited; a start
on an empty disk gets the newest state of the bot's own that verifies; the bot keeps serving; the
admins are told once; no data is lost."""

from __future__ import annotations

import json

import pytest
from bot_process import ADMIN_ID
from conftest import sql
from helpers import backup_by_admin, bot_for, chat_index
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_handlers import ADMIN, GROUP, ME, USER, Harness
from test_offsite import CHAT, Setup, empty_disk_start, settings_for

import database
import startup
from telegram_chat import MAX_COVERING, ChatIndex
from telegram_destination import ChatLease, TelegramChat
from telegram_index import Seal, pointer_in, pointer_text

ADMIN_OF_GROUP = 777  # a member the group's owner made an administrator


pytestmark = pytest.mark.usefixtures("quick_pace")  # who is trusted, not the pace


class Told(Setup):
    """Setup, with what the chat tells the admins (its pins, forgeries) among the alerts too."""

    def __init__(self, tmp_path, fake, **env):
        self.settings = settings_for(tmp_path, fake, **env)
        self.db = database.open_database(self.settings.db_path)
        self.db.migrate()
        self.alerts = []

        def alert(text):
            self.alerts.append(str(text))

        self.engine = startup.backup_engine(
            self.db, self.settings, startup.offsite(self.settings, alert=alert), alert=alert
        )


def live_backups(fake):
    return {
        m["message_id"]: m
        for m in fake.messages(CHAT)
        if "-backup-2" in (m.get("document") or {}).get("file_name", "") and not m.get("deleted")
    }


def test_a_deleted_piece_of_the_chain_ends_it_and_the_next_backup_is_full(tmp_path, fake):
    """An administrator of the group deletes the full backup the on-change deltas build on: a
    delta sent after it would be unusable from the chat. The chat refuses it, the chain ends, the
    next backup is a full one, and a start on an empty disk gets every user back."""
    s = Setup(tmp_path, fake)
    s.pad(1)
    full = s.engine.create("manual").stored[-1]
    s.add_users(1)
    assert s.engine.create("change").stored[-1].delta is not None
    entry = next(e for e in chat_index(fake, CHAT)["backups"] if e["name"].endswith(full.name))
    fake.delete_message_as_admin(CHAT, entry["parts"][0]["message_id"])
    s.add_users(2)
    s.engine.create("change")  # the chat lacks its full backup: refused there, kept here
    (told,) = [a for a in s.alerts if "telegram" in a]
    assert "deleted" in told
    s.add_users(3)
    again = s.engine.create("change").stored[-1]
    assert again.delta is None  # a new chain: a full backup
    s.db.close()
    db, report, _alerts = empty_disk_start(tmp_path, fake)
    assert (
        report.restored is not None and db.table_row_counts()["users"] == 4
    )  # the padding's user and the three added
    db.close()


def post_and_pin(fake, name, content, chat=CHAT, user=ADMIN_OF_GROUP, caption=None):
    """A member posts a document and pins it over everything."""
    posted = fake.send_document(user, name, content, chat_id=chat, caption=caption)
    message = posted.get("channel_post") or posted.get("message")
    fake.pin(chat, message["message_id"], user_id=user)
    return message


@pytest.mark.parametrize("kind", ["supergroup", "channel"])
@pytest.mark.parametrize("content", ["oversized", "garbage", "a copy of the index"])
def test_a_document_named_like_the_index_pinned_over_it_changes_nothing(kind, content, tmp_path, fake):
    """Someone posts a document named like the bot's index and pins it on top: too large to be
    one, not JSON, or a byte-for-byte copy of the bot's own (sealed for another message). In a
    channel no post says who sent it. Backups still reach the chat, a start on an empty disk finds
    the bot's own index beneath, and the admins are told once."""
    if kind == "channel":
        fake.make_channel(CHAT)
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    real = fake.pinned_message(CHAT)
    data = {
        "oversized": b"{" + b" " * (1 << 20) + b"}",
        "garbage": b"\x00\xff" * 50,
        "a copy of the index": fake.file_bytes(real["document"]["file_id"]),
    }[content]
    post_and_pin(fake, real["document"]["file_name"], data)
    s.add_users(2)
    result = s.engine.create("manual")
    assert not result.failures, result.failures
    s.db.close()
    db, report, alerts = empty_disk_start(tmp_path, fake)
    assert report.restored is not None and db.table_row_counts()["users"] == 2
    told = [a for a in s.alerts + alerts if "named like the bot's backup index" in a]
    assert len(told) <= 2  # once per process that saw it
    db.close()


@pytest.mark.parametrize(
    "text", ["/start", "/id", f"/help@{ME}", f"/foo@{ME}", "/block 5", "/start_fresh YES"]
)
def test_commands_sent_in_the_backup_group_get_no_answer_there_and_register_nobody(text, db, fake):
    """The backup group is the bot's storage: whoever writes there (a member, an admin of the
    bot) gets no answer in it, so nobody can fill it with the bot's replies, spend the pace its
    backups need, or be registered as a user through it. The admins' private chats (the backup
    chat by default) are answered as ever."""
    harness = Harness(fake, db, BACKUP_CHAT_ID=str(GROUP))
    for user in (USER, ADMIN):
        assert harness.say(user, text, chat_id=GROUP, seconds_later=61) == []
    assert USER not in {row[0] for row in sql(db, "SELECT user_id FROM users")}
    assert harness.say(ADMIN, "/id", seconds_later=61)  # in private: answered


def test_the_admins_private_chat_as_the_backup_chat_is_answered(db, fake):
    harness = Harness(fake, db, BACKUP_CHAT_ID=str(ADMIN))
    assert harness.say(ADMIN, "/id")


@pytest.mark.parametrize("covering", [6, MAX_COVERING + 1])
def test_many_pins_over_the_index_never_make_an_empty_disk_start_fresh(covering, tmp_path, fake):
    """While no instance runs (a redeploy), someone pins message after message over the index.
    A start on an empty disk looks beneath as far as it may: it finds the index and restores, or,
    when it cannot see the bottom, it cannot tell that nothing is there and pauses (nothing leaves
    the machine to bury the backups), telling the admins; it never starts fresh as if the chat
    held nothing."""
    s = Setup(tmp_path, fake)
    s.add_users(1, 2)
    s.engine.create("manual")
    s.db.close()
    theirs = [fake.pin_by_someone(CHAT, f"rule {n}")["message_id"] for n in range(covering)]
    db, report, alerts = empty_disk_start(tmp_path, fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    if report.restored is None:
        assert report.paused_unreachable and db.table_row_counts()["users"] == 0  # asked again later
        assert any("pinned" in a for a in alerts), alerts
    else:
        assert db.table_row_counts()["users"] == 2
    assert set(theirs) <= {m["message_id"] for m in fake.pinned_messages(CHAT)}  # theirs stay pinned
    assert fake.pinned_message(CHAT)["message_id"] == theirs[-1]  # in their order
    db.close()


def others_untouched(fake, chat=CHAT):
    """Nothing of anyone else's in the chat was deleted or edited by the bot."""
    mine = {m["message_id"] for m in fake.messages(chat)}
    theirs = [m for m in fake.history(chat) if m["message_id"] not in mine]
    assert theirs and not [m for m in theirs if m.get("deleted") or m.get("edit_date")]


@pytest.mark.parametrize("kind", ["supergroup", "channel"])
def test_the_bots_own_index_and_backup_forwarded_and_pinned_over_it_are_not_trusted(kind, tmp_path, fake):
    """A forwarded message of the bot's is the forwarder's (its from; in a channel no sender at
    all), whatever its forward_origin says: the bot's index forwarded and pinned on top, and its
    newest backup forwarded and pinned over that, are data. Backups go on, a start on an empty
    disk finds the bot's own index beneath and gets the newest state, and nothing of theirs is
    deleted or edited."""
    if kind == "channel":
        fake.make_channel(CHAT)
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    index = fake.pinned_message(CHAT)["message_id"]
    backup = chat_index(fake, CHAT)["backups"][0]["parts"][0]["message_id"]
    for original in (index, backup):
        forwarded = fake.forward(ADMIN_OF_GROUP, CHAT, original, chat_id=CHAT)
        message = forwarded.get("channel_post") or forwarded.get("message")
        assert message["forward_origin"]["type"] == ("channel" if kind == "channel" else "user")
        fake.pin(CHAT, message["message_id"], user_id=ADMIN_OF_GROUP)
    s.add_users(2)
    assert not s.engine.create("manual").failures
    s.db.close()
    db, report, _alerts = empty_disk_start(tmp_path, fake)
    assert report.restored is not None and db.table_row_counts()["users"] == 2
    others_untouched(fake)
    db.close()


BOT = "backup_test_bot"
NAMES = st.sampled_from(
    [
        f"{BOT}-backup-index.json",
        f"{BOT}-backup-20261126T120000000Z-manual.db.zst",
        f"{BOT}-backup-20261126T120000000Z-change.delta.zst",
        f"{BOT}-backup-20261126T120000000Z-change.delta.zst.sealed",
        f"{BOT}-backup-20261126T120000000Z-manual.db.zst.part1-of-2",
        "backup-index.json",
    ]
)
CAPTIONS = st.one_of(
    st.none(),
    st.text(max_size=1024),
    st.builds(
        lambda who, mark: (
            f"📌 Backup index of @{BOT}\n🔔 Hand-over asked by {who} at 2026-11-26T12:00:00.000+00:00 {mark}"
        ),
        st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True),
        st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    ),
)
CONTENTS = st.one_of(
    st.binary(max_size=2000),
    st.builds(
        lambda d: json.dumps(d).encode(), st.dictionaries(st.text(max_size=10), st.integers() | st.text())
    ),
)


@pytest.mark.parametrize("kind", ["supergroup", "channel"])
def test_whatever_a_member_posts_and_pins_the_bot_reads_only_its_own(kind, tmp_path, fake):
    """Documents named like the bot's (its index, full backups, delta pieces, parts), any
    content, any caption (a forged hand-over request among them), pinned over the index: a
    process on an empty disk lists exactly the bot's backups and reads no knock; nothing of
    theirs is deleted or edited."""
    if kind == "channel":
        fake.make_channel(CHAT)
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    own = [b["name"] for b in chat_index(fake, CHAT)["backups"]]

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=NAMES, content=CONTENTS, caption=CAPTIONS)
    def posted(name, content, caption):
        message = post_and_pin(fake, name, content, caption=caption)
        try:
            chat = ChatIndex(bot_for(fake), CHAT)
            assert [i.name for i in TelegramChat(chat).list()] == own
            assert ChatLease(chat).read_knock() is None
        finally:
            fake.unpin_by_someone(CHAT, message["message_id"])

    posted()
    others_untouched(fake)


@pytest.mark.parametrize("how", ["deleted", "unpinned"])
def test_an_index_deleted_or_unpinned_under_a_running_writer_comes_back_whole_and_the_admins_told_so(
    how, tmp_path, fake
):
    """An administrator of the group deletes or unpins the bot's index while it runs: its next
    write pins a fresh one listing every backup, and the admins are told, once, what happened
    (not that something was pinned over it)."""
    s = Told(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    for round in range(2):
        index = fake.pinned_message(CHAT)["message_id"]
        if how == "deleted":
            fake.delete_message_as_admin(CHAT, index)
        else:
            fake.unpin_by_someone(CHAT, index)
        s.add_users(2 + round)
        assert not s.engine.create("manual").failures
        assert len(chat_index(fake, CHAT)["backups"]) == 2 + round
    (told,) = [a for a in s.alerts if "📌" in a]
    assert "unpinned or deleted" in told and "pinned over" not in told


@pytest.mark.e2e
def test_the_running_bot_answers_nobody_in_the_backup_group_and_keeps_serving(fake, run_bot):
    """The real bot: members and an admin send commands (the panel's too) in the backup group;
    the bot writes nothing there but its backups and index, and serves the admin in private."""
    bot = run_bot(BACKUP_CHAT_ID=str(CHAT))
    for user, text in [
        (ADMIN_OF_GROUP, "/start"),
        (ADMIN_OF_GROUP, f"/help@{ME}"),
        (ADMIN_OF_GROUP, "/admin"),
        (ADMIN_ID, "/backup"),
        (ADMIN_ID, "/start_fresh YES"),
        (ADMIN_ID, f"/id@{ME}"),
    ]:
        fake.send_text(user, text, chat_id=CHAT)
    reply = backup_by_admin(fake)  # after all of those, in private
    assert "local, telegram" in reply
    assert bot.stop()[0] == 0  # every handler done: the group's answers, had there been any
    written = [m for m in fake.messages(CHAT) if not m.get("deleted")]
    assert written and all(m.get("document") for m in written), [m.get("text") for m in written]


def test_pins_over_the_index_again_and_again_cost_one_fresh_index_each_and_one_alert(tmp_path, fake):
    """Someone pins over the index before every backup, and posts documents named like the bot's
    oldest backups: each backup pins one fresh index on top (the one before leaves the chat),
    theirs stay pinned, rotation takes only the bot's own messages, and the admins hear of it
    once."""
    s = Told(tmp_path, fake, BACKUP_KEEP="2")
    s.add_users(1)
    s.engine.create("manual")
    theirs = []
    for round in range(3):
        oldest = chat_index(fake, CHAT)["backups"][-1]
        fake.send_document(ADMIN_OF_GROUP, oldest["name"], b"not a backup", chat_id=CHAT)
        theirs.append(fake.pin_by_someone(CHAT, f"notice {round}", user_id=ADMIN_OF_GROUP)["message_id"])
        s.add_users(2 + round)
        assert not s.engine.create("manual").failures
        top = fake.pinned_message(CHAT)
        assert top["document"]["file_name"].endswith("-backup-index.json") and top["message_id"] > theirs[-1]
    pinned = [m["message_id"] for m in fake.pinned_messages(CHAT)]
    assert set(theirs) <= set(pinned) and len(pinned) == len(theirs) + 1  # one index of the bot's
    assert len(chat_index(fake, CHAT)["backups"]) == 2
    assert len(live_backups(fake)) == 2  # the rotated ones left the chat; theirs did not
    others_untouched(fake)
    assert len([a for a in s.alerts if "📌" in a]) == 1


@pytest.mark.parametrize("how", ["unpinned", "unpinned and covered", "deleted"])
def test_an_index_unpinned_or_deleted_while_no_instance_runs_never_makes_a_start_fresh(how, tmp_path, fake):
    """The writer sleeps (frozen, then thrown away) and an administrator of the group unpins the
    index, or deletes it. getChat no longer shows it, and the Bot API cannot search a chat: the
    bot finds it again through the pointer it keeps pinned in the first admin's private chat
    (where no member of the group reaches), pins it again and restores; an index deleted is
    told, and the bot pauses rather than start fresh and bury the backups."""
    s = Setup(tmp_path, fake)
    fake.send_text(ADMIN, "/start")  # the admin has written to the bot: it may write to them
    s.add_users(1, 2)
    s.engine.create("manual")
    s.db.close()
    index = fake.pinned_message(CHAT)["message_id"]
    if how == "deleted":
        fake.delete_message_as_admin(CHAT, index)
    else:
        fake.unpin_by_someone(CHAT, index)
    if how == "unpinned and covered":
        fake.pin_by_someone(CHAT, "rules", user_id=ADMIN_OF_GROUP)
    db, report, alerts = empty_disk_start(tmp_path, fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    if how == "deleted":
        assert report.restored is None and report.paused_unreachable
        assert any("deleted" in a for a in alerts), alerts
    else:
        assert report.restored is not None and db.table_row_counts()["users"] == 2
        assert index in {m["message_id"] for m in fake.pinned_messages(CHAT)}  # pinned again
    db.close()


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=300)
    | st.builds(
        lambda chat, message, mark: f"index {chat}:{message} {mark}",
        st.integers(-(10**14), 10**14),
        st.integers(-5, 10**16),
        st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    )
)
def test_only_a_pointer_the_bot_sealed_for_its_chat_names_a_message(text):
    seal = Seal("123456:TEST-TOKEN")
    assert pointer_in(text, seal, CHAT) is None
    sealed = pointer_text("📌", seal, CHAT, 42)
    assert pointer_in(sealed, seal, CHAT) == 42
    assert pointer_in(sealed, seal, CHAT - 1) is None and pointer_in(sealed, Seal("other"), CHAT) is None
    assert pointer_in(sealed + "\n" + text, seal, CHAT) in (None, 42)


def test_the_pointer_with_the_admin_is_one_message_edited_in_place(tmp_path, fake):
    """However often someone pins over the index (a fresh index each time), the first admin's
    private chat holds one pointer, pinned once: edited in place, no new message or pin."""
    fake.send_text(ADMIN, "/start")
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    for round in range(3):
        fake.pin_by_someone(CHAT, f"notice {round}", user_id=ADMIN_OF_GROUP)
        s.add_users(2 + round)
        s.engine.create("manual")
    (pointer,) = [m for m in fake.messages(ADMIN) if not m.get("deleted")]
    assert pointer_in(pointer["text"], Seal(fake.token), CHAT) == fake.pinned_message(CHAT)["message_id"]
    assert fake.pinned_message(ADMIN)["message_id"] == pointer["message_id"]
    assert len([m for m in fake.history(ADMIN) if "pinned_message" in m]) == 1


def test_a_pointer_the_admin_deleted_is_left_again_when_the_index_moves(tmp_path, fake):
    """The admin deleted the bot's pointer in their private chat; then someone pinned over the
    index: the next backup publishes a fresh index, and a new pointer names it."""
    fake.send_text(ADMIN, "/start")
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    (pointer,) = [m for m in fake.messages(ADMIN) if not m.get("deleted")]
    fake.delete_message_as_admin(ADMIN, pointer["message_id"])
    fake.pin_by_someone(CHAT, "notice", user_id=ADMIN_OF_GROUP)
    s.add_users(2)
    result = s.engine.create("manual")
    assert [i.destination for i in result.stored] == ["local", "telegram"]
    (again,) = [m for m in fake.messages(ADMIN) if not m.get("deleted")]
    assert pointer_in(again["text"], Seal(fake.token), CHAT) == fake.pinned_message(CHAT)["message_id"]
