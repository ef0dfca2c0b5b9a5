"""The writer's quiet periods, on a movable clock: a QUIET head must name everything written,
or an instance that starts after a deep sleep serves at once without it."""

from conftest import NOW
from helpers import chat_index

import database
import startup
from config import load_settings
from lease import HeadState
from liveness import Liveness

CHAT = -1001234567890


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def writer(tmp_path, fake):
    settings = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "TELEGRAM_API_URL": fake.url,
            "DB_PATH": str(tmp_path / "bot.db"),
            "ADMIN_IDS": "1000",
            "BACKUP_CHAT_ID": str(CHAT),
            "BACKUP_AFTER_CHANGE_SECONDS": "5",
        }
    )
    db = database.open_database(settings.db_path)
    db.migrate()
    engine = startup.backup_engine(db, settings, startup.offsite(settings), alert=lambda text: None)
    engine.lease.become(1, "writer")
    engine.lease.publish(HeadState.WRITING)
    clock = Clock()
    return db, engine, Liveness(engine, settings, clock=clock), clock


def register(db, user_id):
    db.track_message(user_id, None, "N", user_id, "message", NOW, NOW)


def head(fake):
    return chat_index(fake, CHAT)["head"]["state"]


def backed_up_and_quiet(db, engine, liveness, clock, fake):
    register(db, 1)
    engine.create("change")
    liveness.check_quiet()  # sees the write
    clock.now += 6
    liveness.check_quiet()
    assert head(fake) == "quiet" and liveness.quiet


def test_a_write_seen_while_quiet_claims_the_writers_place_again(tmp_path, fake):
    db, engine, liveness, clock = writer(tmp_path, fake)
    backed_up_and_quiet(db, engine, liveness, clock, fake)
    register(db, 2)  # a job's write, or a handler's let in just before the head went quiet
    liveness.check_quiet()
    assert head(fake) == "writing"  # the quiet head would have named a backup without user 2
    assert not liveness.quiet
    db.close()


def test_an_update_let_in_recently_keeps_the_writer_from_going_quiet(tmp_path, fake):
    db, engine, liveness, clock = writer(tmp_path, fake)
    register(db, 1)
    engine.create("change")
    liveness.check_quiet()
    clock.now += 3
    assert liveness.may_handle()  # its handler has not written yet
    clock.now += 3  # nothing written for 6 s, but the update came in 3 s ago
    liveness.check_quiet()
    assert head(fake) == "writing"
    clock.now += 3
    liveness.check_quiet()  # 6 s after the update and nothing written: quiet
    assert head(fake) == "quiet"
    db.close()


def test_the_first_update_after_a_quiet_period_claims_the_place_before_it_is_handled(tmp_path, fake):
    db, engine, liveness, clock = writer(tmp_path, fake)
    backed_up_and_quiet(db, engine, liveness, clock, fake)
    assert liveness.may_handle()
    assert head(fake) == "writing"
    db.close()
