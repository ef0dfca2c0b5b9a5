"""End to end: what a stop leaves behind when the disk or the timing is against it. The final
backup holds everything the bot confirmed and wrote, or the exit says that it does not."""

import shutil
import signal
import subprocess

import pytest
from helpers import last_word_of_main, query, users_in

pytestmark = pytest.mark.e2e
BACKUP_CHAT = -1009876543210


@pytest.mark.parametrize("how", ["deleted", "replaced", "moved"])
def test_the_final_backup_comes_from_the_live_database_when_its_file_is_gone(how, tmp_path, fake, run_bot):
    chat = {"BACKUP_CHAT_ID": str(BACKUP_CHAT), "BACKUP_AFTER_CHANGE_SECONDS": "0"}
    bot = run_bot(**chat)
    fake.send_text(701, "/start", first_name="Before")
    fake.wait_for_message(701, "registered")
    data = bot.db_path.parent
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            data.joinpath(bot.db_path.name + suffix).unlink(missing_ok=True)
    elif how == "replaced":
        bot.db_path.with_name("other.db").write_bytes(b"")
        bot.db_path.with_name("other.db").replace(bot.db_path)
    else:
        bot.db_path.rename(tmp_path / "moved.db")
    fake.send_text(702, "/start", first_name="After")  # written after the file went
    fake.wait_for_message(702, "registered")

    code, _ = bot.stop()
    assert code == 0, bot.log()
    assert "the final backup is taken from the open connection" in bot.log()
    assert last_word_of_main(bot.log()).endswith("stopped cleanly")
    shutil.rmtree(data)  # a redeploy: an empty disk; the chat alone brings it back
    again = run_bot(HANDOVER_WAIT_SECONDS="1", **chat)
    again.wait_for_log("bot started: serving")
    assert again.stop()[0] == 0
    assert users_in(again.db_path) == {701, 702}


def test_no_final_backup_is_exit_3_and_says_so(tmp_path, fake, run_bot):
    # No place off the machine: the backup folder is the only one.
    bot = run_bot(BACKUP_DIR=str(tmp_path / "backups"), BACKUP_AFTER_CHANGE_SECONDS="0", BACKUP_CHAT_ID="off")
    bot.wait_for_log("bot started:")  # its startup backup is done
    fake.send_text(703, "/start")
    fake.wait_for_message(703, "registered")
    shutil.rmtree(tmp_path / "backups")
    (tmp_path / "backups").write_text("a file where the backup folder was")  # nowhere to write it

    code, _ = bot.stop()
    assert code == 3, bot.log()
    assert "stopped WITHOUT a final backup" in last_word_of_main(bot.log())
    assert "stopped cleanly" not in bot.log()


def shutdown_backup(bot, folder):
    """The shutdown backup of `bot`, unpacked by the zstd command-line tool."""
    packed = next(p for p in (bot.db_path.parent / "backups").iterdir() if "shutdown" in p.name)
    subprocess.run(["zstd", "-q", "-d", str(packed), "-o", str(folder / "shutdown.db")], check=True)
    return folder / "shutdown.db"


def test_a_sigterm_racing_a_batch_and_slow_handlers_loses_nothing_confirmed(tmp_path, fake, run_bot):
    bot = run_bot(BACKUP_AFTER_CHANGE_SECONDS="0")
    bot.wait_for_log("bot started:")
    # Each reply takes 0.8 s to leave: 24 people keep the 4 handler threads busy for 6 rounds,
    # longer than the 3 s a shutdown used to give them, within the 5 s it gives now.
    fake.slow("sendMessage", 0.8, when=lambda params: int(params.get("chat_id", 0)) >= 800)
    sent = {fake.send_text(800 + n, "/start")["update_id"]: 800 + n for n in range(24)}
    fake.wait_for(
        lambda: any(int(c["params"].get("chat_id", 0)) >= 800 for c in fake.requests("sendMessage")),
        10,
        "a first slow reply",
    )
    code, _ = bot.stop(signal.SIGTERM)
    assert code == 0, bot.log()

    backup = shutdown_backup(bot, tmp_path)
    ((recorded,),) = query(backup, "SELECT value FROM bot_state WHERE key = 'last_update_id'")
    still_with_telegram = {u["update_id"] for u in fake.pending_updates()}
    # Confirmed: what Telegram forgot, and what the next writer confirms (up to the recorded id).
    confirmed = {u for u in sent if u not in still_with_telegram or u <= int(recorded)}
    assert confirmed, "the race was not run: no update was handled before the stop"
    missing = {sent[u] for u in confirmed} - users_in(backup)
    assert not missing, f"confirmed to Telegram, missing from the final backup: {sorted(missing)}"
    unconfirmed = set(sent) - confirmed
    assert unconfirmed <= still_with_telegram  # the rest comes again to the next writer
