"""An edit of the chat's index follows a look at it, with nothing between (ChatIndex._edit_index):
another instance's claim made meanwhile is not written over, a knock left meanwhile is carried,
and Telegram's 429 on the edit is waited out. Two instances of the bot, each with its own view of
one chat, against the stand-in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import NOW
from helpers import chat_index
from test_hostile_probe import process
from test_offsite import CHAT

from backup_format import BackupInfo, file_name
from destinations import Stale
from lease import Head, HeadState, Knock

pytestmark = pytest.mark.usefixtures("quick_pace")  # what is written, not how fast


def backup(tmp_path, generation, writer, seconds):
    created = NOW + timedelta(seconds=seconds)
    path = tmp_path / f"{writer}-{seconds}"
    path.write_bytes(b"backup data " * 8)
    info = BackupInfo(
        created,
        "manual",
        2,
        {"users": 1},
        "0" * 64,
        96,
        name=file_name(created, "manual"),
        generation=generation,
        writer=writer,
    )
    return path, info


def live_documents(fake):
    return {m["message_id"] for m in fake.messages(CHAT) if m.get("document") and not m.get("deleted")}


def test_a_claim_made_while_a_backup_uploads_is_not_written_over_and_the_upload_goes(
    tmp_path, fake, monkeypatch
):
    _, a_chat, a_lease = process(fake)
    a_lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    a_chat.put(*backup(tmp_path, 1, "a", 1))
    _, _, b_lease = process(fake)
    before = live_documents(fake)
    send = a_chat._send_parts

    def claimed_meanwhile(*args):  # b claims while a's backup is on its way
        parts = send(*args)
        b_lease.write_head(Head(2, "b", HeadState.WRITING, NOW + timedelta(seconds=60)))
        return parts

    monkeypatch.setattr(a_chat, "_send_parts", claimed_meanwhile)
    with pytest.raises(Stale):
        a_chat.put(*backup(tmp_path, 1, "a", 120))
    index = chat_index(fake, CHAT)
    assert index["head"]["writer"] == "b" and index["head"]["generation"] == 2
    assert len(index["backups"]) == 1  # a's first backup only
    assert live_documents(fake) == before  # the stale upload's data did not stay in the chat


def test_a_knock_left_between_a_writers_read_and_its_edit_is_carried(tmp_path, fake, monkeypatch):
    _, a_chat, a_lease = process(fake)
    a_lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    a_chat.put(*backup(tmp_path, 1, "a", 1))
    _, _, b_lease = process(fake)
    send = a_chat._send_parts

    def knocked_meanwhile(*args):
        parts = send(*args)
        b_lease.knock(Knock("b", NOW + timedelta(seconds=60)))
        return parts

    monkeypatch.setattr(a_chat, "_send_parts", knocked_meanwhile)
    a_chat.put(*backup(tmp_path, 1, "a", 120))
    assert len(chat_index(fake, CHAT)["backups"]) == 2
    knock = a_lease.read_knock()
    assert knock is not None and knock.instance == "b"  # the edit did not wipe it


def test_a_429_on_the_index_edit_is_waited_out_and_nothing_is_sent_inside_it(tmp_path, fake):
    _, a_chat, a_lease = process(fake)
    a_lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    fake.flood(1.5, "editMessageMedia", CHAT)
    a_chat.put(*backup(tmp_path, 1, "a", 1))
    edits = fake.requests("editMessageMedia")
    refused = [e for e in edits if e["status"] == 429]
    assert refused and edits[-1]["status"] == 200
    later = [e for e in edits if e["time"] > refused[0]["time"]]
    retry_after = 2  # 1.5 s left, rounded up
    assert all(e["time"] >= refused[0]["time"] + retry_after - 0.05 for e in later)
    assert len(chat_index(fake, CHAT)["backups"]) == 1


def test_a_429_longer_than_the_time_left_leaves_the_index_as_it_was_and_no_copy_behind(tmp_path, fake):
    import bot_api
    from destinations import DestinationError

    _, a_chat, a_lease = process(fake)
    a_lease.write_head(Head(1, "a", HeadState.WRITING, NOW))
    before = live_documents(fake)
    fake.flood(30, "editMessageMedia", CHAT)
    with bot_api.deadline(2.0), pytest.raises(DestinationError):
        a_chat.put(*backup(tmp_path, 1, "a", 1))
    assert len([e for e in fake.requests("editMessageMedia") if e["status"] == 429]) == 1
    assert chat_index(fake, CHAT)["backups"] == []
    assert live_documents(fake) == before  # the data sent for it was taken out
