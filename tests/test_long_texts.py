"""Texts that grow with the data (names, reasons, lists of people, error texts) still reach the
admin: every text the bot sends fits Telegram's limits (4096 UTF-16 code units for a message,
1024 for a caption), and one that had to be cut ends with how much was left out.

Reader.fit is the one place that cuts; every send goes through it (messaging.send). Lists are
bounded where they are built, and free text from outside is shown up to a length in a line
(i18n.Code's `most`). The stand-in refuses a longer text with 400 "message is too long", so
a message that is there at all was sendable; each is measured as Telegram measures it too."""

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from conftest import NOW
from helpers import bot_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telebot import types

import handlers
import panel_screens as panel
import startup
import tasks
from admin_panel import AdminPanel
from config import load_settings
from destinations import DestinationError
from engine import BackupEngine, Refusal
from i18n import CAPTION_LIMIT, PDI, TEXT_LIMIT, Code, Reader, Text, lines, utf16_length
from outbox import Outbox
from readers import Readers

ADMIN, PERSIAN_ADMIN, USER = 7, 8, 2000
NOTE = {
    "en": re.compile(r"\n…and ([\d,]+) more (lines|characters) not shown\Z"),
    "fa": re.compile(r"\n…و ([۰-۹٬]+) (سطر|نویسهٔ) دیگر که نشان داده نشد\Z"),
}
FAMILY = {
    "max_examples": 60,
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
# Free text as people and errors write it: any script, emoji beyond the BMP (two UTF-16 units
# each), line breaks, direction controls; short, or long: a piece repeated up to a few thousand
# times (hypothesis itself seldom draws long texts).
PIECE = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from("😀𝔘\n\u2067\u202e ی"),
    min_size=1,
    max_size=30,
)
FREE = st.one_of(
    PIECE,
    st.builds(lambda piece, times, tail: piece * times + tail, PIECE, st.integers(50, 3000), PIECE),
)


def number(shown: str) -> int:
    return int(shown.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789", ",٬")))  # thousands grouped


def assert_sendable(
    text: str, language: str = "en", limit: int = TEXT_LIMIT, full: str | None = None
) -> None:
    """Within Telegram's limit as Telegram counts; when `full` (what was to be said) did not fit,
    what was sent is its start and ends with how much was left out."""
    assert utf16_length(text) <= limit, utf16_length(text)
    if full is None or utf16_length(full) <= limit:
        assert full is None or text == full
        return
    note = NOTE[language].search(text)
    assert note, text[-200:]
    sent, count = text[: note.start()], number(note.group(1))
    lines_left_out = note.group(2) in ("lines", "سطر")
    # The start of what was to be said, then the marks that close what the cut left open.
    closed = len(sent) - len(sent.rstrip(PDI))
    for marks in range(closed + 1):
        kept = sent[: len(sent) - marks]
        left_out = full[len(kept) :]
        if full.startswith(kept) and (
            (left_out.startswith("\n") and count == left_out.count("\n"))
            if lines_left_out
            else count == len(left_out)
        ):
            return
    raise AssertionError(f"not the start of the text, or not what was left out: {text[-200:]!r}")


# --- the one place that cuts -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=FREE, language=st.sampled_from(["en", "fa"]), limit=st.sampled_from([TEXT_LIMIT, CAPTION_LIMIT]))
def test_fit_keeps_the_start_within_the_limit_and_says_how_much_was_left_out(text, language, limit):
    reader = Reader(language)
    assert_sendable(reader.fit(text, limit), language, limit, full=text)


def test_fit_cuts_a_list_between_lines_and_closes_what_it_left_open():
    listed = "\n".join(f"• user {n}: \u2068{'x' * 30}\u2069" for n in range(300))
    fitted = Reader("en").fit(listed)
    assert fitted.endswith("more lines not shown") and "\u2068x" not in fitted.splitlines()[-1]
    assert_sendable(fitted, full=listed)
    one_line = "\u2068" + "y" * 5000  # an isolate the cut leaves open is closed before the note
    fitted = Reader("fa").fit(one_line)
    assert fitted.count("\u2068") == fitted.count(PDI) and NOTE["fa"].search(fitted)


# --- alerts: error texts quoted in them --------------------------------------------------------


@pytest.fixture
def people(db, fake, tmp_path):
    """The settings, readers and a bot talking to the stand-in; two admins, one reads Persian."""
    conf = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "ADMIN_IDS": f"{ADMIN},{PERSIAN_ADMIN}",
            "BACKUP_CHAT_ID": "off",
            "DB_PATH": str(tmp_path / "bot.db"),
        }
    )
    readers = Readers(conf, clock=lambda: NOW)
    readers.attach(db)
    for admin in (ADMIN, PERSIAN_ADMIN):
        db.track_message(admin, None, "Admin", admin, "message", NOW, NOW)
    readers.choose(PERSIAN_ADMIN, "fa")
    return SimpleNamespace(
        settings=conf, readers=readers, bot=bot_for(fake, threaded=False), fake=fake, db=db
    )


def last_text(fake, chat):
    return fake.messages(chat)[-1]["text"]


@settings(**FAMILY)
@given(error=FREE)
def test_an_alert_quoting_any_error_reaches_every_admin_within_the_limit(people, error):
    alert = Text("⚠️ not in {destination}: {error}", destination=Code("telegram"), error=Code(error))
    before = {admin: len(people.fake.messages(admin)) for admin in (ADMIN, PERSIAN_ADMIN)}
    assert Outbox(people.bot, people.settings, people.readers.of).alert(alert)
    for admin, language in ((ADMIN, "en"), (PERSIAN_ADMIN, "fa")):
        assert len(people.fake.messages(admin)) == before[admin] + 1  # it was sent: nobody sees nothing
        assert_sendable(last_text(people.fake, admin), language, full=Reader(language)(alert))


def test_the_startup_alerts_bound_what_was_passed_over_and_why(people):
    said = []
    refusals = [
        Refusal(SimpleNamespace(name=f"backup-{n}.db.zst", destination="telegram"), "e" * 5000, True)
        for n in range(2000)  # BACKUP_KEEP=1000 in two places, every one refused (a wrong passphrase)
    ]
    engine = SimpleNamespace(pause_offsite=said.append)
    outcome = SimpleNamespace(restored=None, passed_over=refusals, unreachable=[])
    why = startup._pause_if_a_real_backup_may_exist(engine, outcome)
    assert said == [why] and len(why) < 1200 and why.endswith("; and 1997 more (the log names each)")
    report = startup.StartupReport(restored=None, offsite_paused=why, passed_over=refusals)
    report.restored = SimpleNamespace(
        name="backup-x.db.zst", destination="telegram", created_at=NOW, total_rows=3, generation=1
    )
    report.restore_reason = "the database was damaged"
    alerts = []
    startup._tell_admins(alerts.append, people.db, report, NOW)
    for language in ("en", "fa"):
        shown = Reader(language)(alerts[-1])
        assert utf16_length(shown) <= TEXT_LIMIT and "1997" in shown.translate(
            str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789", ",٬")
        )


# --- the admin panel: lists of people, their names and reasons, error texts --------------------


@pytest.fixture
def admin_panel(people, tmp_path):
    class Refusing:  # a place off the machine whose every answer is a long error
        name = "s3"
        error = "x"

        def put(self, path, info):
            raise DestinationError(self.error)

        def list(self):
            raise DestinationError(self.error)

        def fetch(self, info, workdir):
            raise DestinationError(self.error)

        def delete(self, backups):
            pass

    place = Refusing()
    engine = BackupEngine(people.db, people.settings, [place], clock=lambda: NOW)
    runner = tasks.JobRunner(lambda: NOW)
    made = AdminPanel(
        people.bot, people.db, engine, runner.statuses, people.settings, people.readers, lambda: NOW
    )
    made.work.shutdown()
    made.work = Inline()  # in_background as it is (its answers, its errors), each job run at once
    yield SimpleNamespace(panel=made, place=place, runner=runner, engine=engine)


class Inline:
    def submit(self, run):
        run()

    def shutdown(self, **options):
        pass


def press(made, text, admin=ADMIN):
    who = SimpleNamespace(id=admin, language_code=None, is_bot=False)
    message = SimpleNamespace(text=text, chat=SimpleNamespace(id=admin, type="private"), from_user=who)
    if text.startswith("/"):
        made.open_panel(message)
    else:
        made.on_label(message)
    return message


PEOPLE = st.lists(
    st.tuples(FREE.map(lambda t: t[:2000]), st.one_of(st.none(), FREE)),  # a name; a block's reason
    min_size=1,
    max_size=40,
)


@settings(**{**FAMILY, "max_examples": 30})
@given(people_listed=PEOPLE, admin=st.sampled_from([ADMIN, PERSIAN_ADMIN]))
def test_the_users_screen_lists_whoever_is_there_within_the_limit(admin_panel, people, people_listed, admin):
    for n, (name, reason) in enumerate(people_listed):
        user_id = 10_000 + n
        people.db.track_message(user_id, name[:300], name, user_id, "message", NOW, NOW)
        if reason is not None:
            people.db.block_user(user_id, NOW + timedelta(days=n + 1), reason, notified=True, now=NOW)
    press(admin_panel.panel, panel.USERS, admin)
    shown = last_text(people.fake, admin)
    language = "fa" if admin == PERSIAN_ADMIN else "en"
    assert_sendable(shown, language)
    hint = Reader(language)(Text("To find someone, send their id, @username or a part of their name."))
    assert shown.endswith(hint) or NOTE[language].search(shown)  # all of it, or how much is missing
    for n, _ in enumerate(people_listed):  # the card of each: within the limit too
        admin_panel.panel.people.open_card(press(admin_panel.panel, panel.USERS, admin), 10_000 + n)
        assert_sendable(last_text(people.fake, admin), language)
        people.db.unblock_user(10_000 + n)


@settings(**{**FAMILY, "max_examples": 30})
@given(error=FREE, admin=st.sampled_from([ADMIN, PERSIAN_ADMIN]))
def test_failures_quoted_on_the_panel_fit_whatever_the_error(admin_panel, people, error, admin):
    """A place that fails with any error text: 💾 Create backup's answer, the 💾 Backup screen,
    ⚙️ System, 🗂 Backups; a job that failed with it on 🩺 Jobs; a "❌ …" answer."""
    admin_panel.place.error = error
    language = "fa" if admin == PERSIAN_ADMIN else "en"

    def fail():
        raise RuntimeError(error)

    admin_panel.runner.add(f"job{len(admin_panel.runner.statuses())}", 60, fail)
    for job in list(admin_panel.runner._jobs.values()):
        job.run()
    seen = len(people.fake.messages(admin))
    for label in (panel.CREATE, panel.BACKUP, panel.SYSTEM, panel.LIST, panel.JOBS):
        press(admin_panel.panel, label, admin)

    def job():
        raise DestinationError(error)

    admin_panel.panel.in_background(
        press(admin_panel.panel, panel.BACKUP, admin), job, Text("⏳ Working on a backup…")
    )
    sent = [m["text"] for m in people.fake.messages(admin)[seen:]]
    assert len(sent) >= 7  # every answer was sent: none refused as too long
    for text in sent:
        assert_sendable(text, language)


# --- the handlers: /block with a reason as long as a message -----------------------------------


@settings(**FAMILY)
@given(reason=FREE.map(lambda t: t[:4000]).filter(lambda t: t.strip() and not t.split()[0][0].isdecimal()))
def test_a_block_with_any_reason_is_told_to_the_admin_and_the_user_within_the_limit(people, reason):
    if reason.split()[0][0] in "+-\u2212\ufe63\uff0b\uff0d":
        reason = "r " + reason  # a sign would start MINUTES
    bot = bot_for(people.fake, threaded=False, use_class_middlewares=True)
    handlers.register(bot, people.db, people.settings, people.readers, clock=lambda: NOW)
    people.db.track_message(USER, None, "U", USER, "message", NOW, NOW)
    before = {chat: len(people.fake.messages(chat)) for chat in (ADMIN, USER)}
    update = people.fake.send_text(ADMIN, f"/block {USER} 30 {reason}")
    bot.process_new_updates([types.Update.de_json(update)])
    for chat in (ADMIN, USER):
        told = people.fake.messages(chat)[before[chat] :]
        assert len(told) == 1  # sent, not refused as too long
        assert_sendable(told[0]["text"])
    assert people.db.user(USER)["block_reason"] == reason.strip()  # kept whole; shown up to a length
    people.db.unblock_user(USER)


def test_captions_fit_their_1024(people):
    long = lines(*[Text("{table}: {rows}", table=Code("t" * 50), rows=n) for n in range(100)])
    for language in ("en", "fa"):
        reader = Reader(language)
        assert_sendable(reader.fit(reader(long), CAPTION_LIMIT), language, CAPTION_LIMIT, full=reader(long))
