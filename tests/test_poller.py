"""The poller (updates.Poller) against the Bot API stand-in, with pyTelegramBotAPI's real handler
workers: what it confirms to Telegram, and what it records for the next writer, when it is
stopped at the awkward moments."""

import threading

import pytest
from helpers import bot_for

import database
import updates


class Seen(list):
    """The texts the handlers saw, and a way to wait for them."""

    def __init__(self):
        super().__init__()
        self._more = threading.Condition()

    def append(self, item):
        with self._more:
            super().append(item)
            self._more.notify_all()

    def wait(self, count, timeout=10):
        with self._more:
            assert self._more.wait_for(lambda: len(self) >= count, timeout), list(self)


@pytest.fixture
def polling(tmp_path, fake):
    bot = bot_for(fake, threaded=True, num_threads=4)
    seen = Seen()
    bot.message_handler(func=lambda m: True)(lambda m: seen.append(m.text))
    db = database.open_database(str(tmp_path / "bot.db"))
    db.migrate()
    yield bot, db, seen
    db.close()
    bot.worker_pool.close()


def recorded(db):
    return int(db.get_state(updates.LAST_UPDATE_KEY))


def test_stopped_with_a_get_updates_in_flight_it_records_the_last_update_handled(polling, fake):
    bot, db, seen = polling
    sent = [fake.send_text(4242, f"before {n}")["update_id"] for n in range(3)]
    poller = updates.Poller(bot, db, on_conflict=lambda: True)
    poller.start()
    seen.wait(3)
    fake.wait_for_long_poll()  # the next getUpdates waits at Telegram: in flight
    answered = len(fake.requests("getUpdates"))
    poller.stop()
    late = fake.send_text(4242, "after the stop")["update_id"]  # the request in flight brings it back
    fake.wait_for(lambda: len(fake.requests("getUpdates")) > answered, 10, "the poll in flight answered")
    assert updates.drain(bot, 5)
    poller.remember(db)
    assert recorded(db) == sent[-1]  # the last update handled: not the one brought back after
    assert sorted(seen) == ["before 0", "before 1", "before 2"]  # (four workers: in any order)
    assert [u["update_id"] for u in fake.pending_updates()] == [late]  # with Telegram, for the next


def test_a_batch_is_confirmed_to_telegram_only_once_its_handlers_are_done(polling, fake):
    bot, db, seen = polling
    release = threading.Event()
    slow = Seen()

    @bot.message_handler(func=lambda m: m.text == "slow")
    def _slow(message):
        slow.append(message.text)
        release.wait(10)

    bot.message_handlers.insert(0, bot.message_handlers.pop())  # before the catch-all
    first = fake.send_text(4242, "slow")["update_id"]
    poller = updates.Poller(bot, db, on_conflict=lambda: True)
    poller.start()
    slow.wait(1)  # the handler runs: the batch is not handled yet
    fake.send_text(4242, "meanwhile")

    def confirmed():
        return first not in [u["update_id"] for u in fake.pending_updates()] or None

    # What must not happen: a getUpdates confirming it would come within milliseconds.
    with pytest.raises(AssertionError, match="Timed out"):
        fake.wait_for(confirmed, 1.5, "the slow update confirmed while its handler runs")
    assert seen == []
    release.set()
    seen.wait(1)  # the next batch came: the first was confirmed only now
    fake.wait_for(
        lambda: first not in [u["update_id"] for u in fake.pending_updates()] or None, 10, "confirmed"
    )
    poller.stop()
    assert updates.drain(bot, 5)
    poller.remember(db)
    assert recorded(db) == first + 1


def test_a_stop_between_the_stop_check_and_the_queueing_lets_no_batch_run(polling, fake):
    bot, db, seen = polling
    holder = {}

    def stopped_meanwhile():  # asked after the loop's stop check, before the batch is queued
        holder["poller"].stop()  # a SIGTERM, a 409 or a knock, at that very moment
        return True

    sent = fake.send_text(4242, "fetched as the stop came")["update_id"]
    poller = holder["poller"] = updates.Poller(
        bot, db, on_conflict=lambda: True, may_handle=stopped_meanwhile
    )
    poller.start()
    poller._thread.join(10)
    assert not poller._thread.is_alive()  # the loop ended without queueing it
    assert updates.drain(bot, 5)
    poller.remember(db)
    assert seen == [] and db.get_state(updates.LAST_UPDATE_KEY) is None  # neither handled nor recorded
    assert [u["update_id"] for u in fake.pending_updates()] == [sent]  # Telegram gives it to the next
