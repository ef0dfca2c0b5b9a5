"""Hostile probe of the backup chat: a member or a channel admin against the index, its head,
its knocks and Telegram's pace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import NOW
from helpers import bot_for, chat_index
from test_offsite import CHAT

from backup_format import BackupInfo, file_name
from destinations import Stale
from lease import Head, HeadState
from telegram_chat import ChatIndex
from telegram_destination import ChatLease, TelegramChat

MEMBER = 4242  # a member of the group allowed to pin (or an admin of it)


def process(fake, **kw):
    """One instance of the bot: its view of the chat (its own memory of the index)."""
    chat = ChatIndex(bot_for(fake), CHAT, **kw)
    return chat, TelegramChat(chat), ChatLease(chat)


def backup_file(tmp_path, name, content=b"x" * 64):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def info(generation, writer, seconds=0, reason="manual"):
    created = NOW + timedelta(seconds=seconds)
    return BackupInfo(
        created,
        reason,
        2,
        {"users": 1},
        "0" * 64,
        64,
        name=file_name(created, reason),
        generation=generation,
        writer=writer,
    )


quick = pytest.mark.usefixtures("quick_pace")  # who is trusted, not the pace (the pace test keeps it whole)


@quick
def test_a_note_pinned_over_the_index_lets_no_stale_writer_bury_a_newer_claim(tmp_path, fake):
    """A frozen writer wakes after a newer instance claimed, and a note now covers the index:
    its next backup looks beneath the note once (not at its own memory of the index), finds
    b's claim, and stops (Stale): nothing of b's is buried."""
    _, a_chat, a_lease = process(fake)
    a_lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    a_chat.put(backup_file(tmp_path, "one"), info(1, "a", 1))
    # Instance b takes over (a froze and did not answer the knock) and claims generation 2.
    _, _, b_lease = process(fake)
    b_lease.write_head(Head(2, "b", HeadState.WRITING, NOW + timedelta(seconds=60)))
    assert chat_index(fake, CHAT)["head"]["writer"] == "b"
    # Someone pins an ordinary note (no index), as groups do.
    fake.pin_by_someone(CHAT, "Rules of the group", user_id=MEMBER)
    # a wakes up and backs up: it must find that b writes now.
    with pytest.raises(Stale):
        a_chat.put(backup_file(tmp_path, "two"), info(1, "a", 120))


# --- a channel's administrator may edit any post: the index's caption, or its document ----------


def edit_as_channel_admin(fake, message_id, *, caption=None, content=None):
    """An administrator of the channel (the right to edit others' posts) edits a post of the
    bot's: its caption, or its document replaced (same file name) by `content`."""
    fake.edit_post_as_admin(CHAT, message_id, caption=caption, content=content)


def knock_line(fake):
    return fake.pinned_message(CHAT)["caption"].splitlines()[-1]


@quick
@pytest.mark.xfail(
    strict=True,
    reason="BUG: a knock line is sealed for the message only, not for "
    "when it was left: a channel admin replays an old one, and the writer hands over "
    "to an instance that is long gone (again and again, with two old knocks)",
)
def test_an_old_knock_put_back_under_the_caption_asks_no_writer_to_hand_over(tmp_path, fake):
    """A channel's admin may edit the bot's posts. Knock lines are public (the caption) and stay
    valid on that message forever; KnockWatch takes any it has not seen as a new request."""
    from lease import Knock, KnockWatch

    fake.make_channel(CHAT)
    _, chat, lease = process(fake)
    lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    chat.put(backup_file(tmp_path, "one"), info(1, "a", 1))
    # Two deploys ago, instances b and c knocked (every subscriber sees the caption).
    _, _, other = process(fake)
    other.knock(Knock("b", datetime.now(UTC) - timedelta(hours=2)))
    old_b = knock_line(fake)
    other.knock(Knock("c", datetime.now(UTC) - timedelta(hours=1)))
    # c took over and writes now; what is under the caption when it began serving is no request.
    _, _, c_lease = process(fake)
    c_lease.write_head(Head(2, "c", HeadState.WRITING, NOW + timedelta(hours=1)))
    watch = KnockWatch("c", c_lease.read_knock())
    assert not watch.asking(c_lease.read_knock(keep_on_top=True))
    # The channel's admin puts b's old line back under the caption.
    caption = fake.pinned_message(CHAT)["caption"]
    edit_as_channel_admin(fake, fake.pinned_message(CHAT)["message_id"], caption=caption + "\n" + old_b)
    assert not watch.asking(c_lease.read_knock(keep_on_top=True)), "c hands over to b, long gone"


@quick
@pytest.mark.xfail(
    strict=True,
    reason="BUG: an index's seal names its message, not its version: a "
    "channel admin puts an older version of the bot's own index back in its message, and "
    "a start on an empty disk restores that older state (newer users lost)",
)
def test_an_older_version_of_the_index_put_back_is_not_restored_from(tmp_path, fake):
    """A channel's admin may replace a post's document: an older version of the bot's index,
    sealed for this very message, is trusted whole (its backups, head, levels, scrub)."""
    from test_offsite import Setup, empty_disk_start

    fake.make_channel(CHAT)
    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    old = fake.file_bytes(fake.pinned_message(CHAT)["document"]["file_id"])
    s.add_users(2, 3)
    s.engine.create("manual")
    s.db.close()
    edit_as_channel_admin(fake, fake.pinned_message(CHAT)["message_id"], content=old)
    db, report, _ = empty_disk_start(tmp_path, fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    try:
        users = db.table_row_counts()["users"]
        assert report.restored is None or users == 3, f"restored the older state: {users} user(s)"
    finally:
        db.close()


@quick
def test_a_note_pinned_after_the_final_backup_does_not_hide_the_hand_over(tmp_path, fake):
    _, a_chat, a_lease = process(fake)
    a_lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    a_chat.put(backup_file(tmp_path, "one"), info(1, "a", 1))
    # b starts on an empty disk: it reads the index (and restores its newest backup), then waits.
    _, b_chat, b_lease = process(fake)
    assert len(b_chat.list()) == 1
    # a hands over: its final backup, then its FINAL head.
    final = a_chat.put(backup_file(tmp_path, "final"), info(1, "a", 2, reason="handover"))
    a_lease.write_head(Head(1, "a", HeadState.FINAL, NOW + timedelta(seconds=3), final.created_at))
    fake.pin_by_someone(CHAT, "Welcome!", user_id=MEMBER)  # a member pins a note
    head = b_lease.read_head()
    assert head is not None and head.state is HeadState.FINAL, head
    assert final.name in [i.name for i in b_chat.list()]


# --- what held ------------------------------------------------------------------------------------


def mid_backup(monkeypatch, act):
    """`act()` runs once, after a backup's data reached the chat and before its index is edited."""
    sent = TelegramChat._send_parts

    def then_act(self, *args, **kwargs):
        parts = sent(self, *args, **kwargs)
        act()
        return parts

    monkeypatch.setattr(TelegramChat, "_send_parts", then_act)


@quick
@pytest.mark.parametrize("what", ["forwarded index", "unsealed look-alike"])
def test_a_channel_post_pinned_above_mid_backup_is_no_rewrite_and_no_order(what, tmp_path, fake, monkeypatch):
    """In a channel no post has a sender. Between a backup's data and its index edit, an admin
    pins above the index the bot's index forwarded (sealed, for another message), or an index
    of the unsealed format naming the bot's backups as rotated out and a newer writer's head:
    no Rewritten (the backup stands), no fence, nothing of the bot's deleted."""
    import json

    from telegram_index import FORMAT_UNSEALED

    fake.make_channel(CHAT)
    _, chat, lease = process(fake)
    lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    chat.put(backup_file(tmp_path, "one"), info(1, "a", 1))
    real = fake.pinned_message(CHAT)
    mine = [p["message_id"] for b in chat_index(fake, CHAT)["backups"] for p in b["parts"]]

    def pin_above():
        if what == "forwarded index":
            posted = fake.forward(MEMBER, CHAT, real["message_id"], chat_id=CHAT)
        else:
            forged = {
                "format": FORMAT_UNSEALED,
                "chat_id": CHAT,
                "backups": [],
                "head": {
                    "generation": 9,
                    "writer": "evil",
                    "state": "writing",
                    "since": "2026-11-26T12:00:00.000+00:00",
                },
                "scrub": [[CHAT, m] for m in mine],
                "rolling": mine,
            }
            posted = fake.send_document(
                MEMBER, real["document"]["file_name"], json.dumps(forged).encode(), chat_id=CHAT
            )
        fake.pin(CHAT, posted["channel_post"]["message_id"], user_id=MEMBER)

    mid_backup(monkeypatch, pin_above)
    chat.put(backup_file(tmp_path, "two"), info(1, "a", 2))
    monkeypatch.undo()
    chat.put(backup_file(tmp_path, "three"), info(1, "a", 3))  # a fresh index on top
    index = chat_index(fake, CHAT)
    assert len(index["backups"]) == 3 and index["head"]["writer"] == "a"
    assert not [m for m in fake.messages(CHAT) if m["message_id"] in mine and m.get("deleted")]


@quick
def test_a_forged_knock_under_the_real_index_caption_is_no_request_and_is_not_carried(tmp_path, fake):
    """A channel admin appends a made-up hand-over line (any mark) to the bot's own index."""
    fake.make_channel(CHAT)
    _, chat, lease = process(fake)
    lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    top = fake.pinned_message(CHAT)
    forged = f"🔔 Hand-over asked by evil at 2026-11-26T12:00:00.000+00:00 {'ab' * 8}"
    edit_as_channel_admin(fake, top["message_id"], caption=top["caption"] + "\n" + forged)
    assert lease.read_knock(keep_on_top=True) is None
    chat.put(backup_file(tmp_path, "one"), info(1, "a", 1))
    assert "evil" not in fake.pinned_message(CHAT)["caption"]


def test_notes_pinned_over_the_index_while_no_instance_runs_are_looked_beneath_within_the_pace(
    tmp_path, fake
):
    """Telegram's pace at full length: a start on an empty disk unpins the notes a member pinned
    over the index and pins them again (a write each): never more than 3 writes to the chat in
    any 3 s, nor 20 in a minute; the index is found, their pins stay on top in their order."""
    from test_offsite import Setup, empty_disk_start

    s = Setup(tmp_path, fake)
    s.add_users(1)
    s.engine.create("manual")
    s.db.close()
    notes = [fake.pin_by_someone(CHAT, f"note {n}", user_id=MEMBER)["message_id"] for n in range(3)]
    before = len(fake.writes(CHAT))
    db, report, _ = empty_disk_start(tmp_path, fake, STARTUP_RESTORE_WAIT_SECONDS="0")
    try:
        assert report.restored is not None and db.table_row_counts()["users"] == 1
    finally:
        db.close()
    assert len(fake.writes(CHAT)) - before >= 6  # each note unpinned and pinned again
    assert fake.most_writes(3.0, CHAT) <= 3 and fake.most_writes(60.0, CHAT) <= 20
    assert fake.pinned_message(CHAT)["message_id"] == notes[-1]
