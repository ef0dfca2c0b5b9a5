"""The panel when its answers come late: pyTelegramBotAPI runs handlers on worker threads and the
panel checks backups on its own, so a list or a preview can arrive after the admin moved on.
A real AdminPanel on a real database, its messages sent to the local Bot API stand-in; each
press is a direct call, so the order is the test's."""

from types import SimpleNamespace

import pytest
from conftest import NOW
from helpers import bot_for

import panel_screens as panel
from admin_panel import AdminPanel
from config import load_settings
from engine import BackupEngine
from readers import Readers

ADMIN = 7


@pytest.fixture
def setup(db, fake, tmp_path, monkeypatch):
    settings = load_settings(
        {
            "BOT_TOKEN": fake.token,
            "ADMIN_IDS": str(ADMIN),
            "BACKUP_CHAT_ID": "off",
            "DB_PATH": str(tmp_path / "bot.db"),
        }
    )
    engine = BackupEngine(db, settings, clock=lambda: NOW)
    engine.create("manual")
    readers = Readers(settings)
    readers.attach(db)
    admin_panel = AdminPanel(bot_for(fake, threaded=False), db, engine, list, settings, readers, lambda: NOW)
    admin_panel.in_background = lambda message, job, working, **options: job()  # in order, here
    yield admin_panel, fake
    admin_panel.close()


def press(admin_panel, text):
    admin = SimpleNamespace(id=ADMIN, language_code=None)
    message = SimpleNamespace(text=text, chat=SimpleNamespace(id=ADMIN, type="private"), from_user=admin)
    admin_panel.on_label(message)
    return message


def said(fake):
    return [m.get("text") or "" for m in fake.messages(ADMIN)]


def test_a_preview_that_comes_after_the_admin_moved_on_offers_nothing_to_confirm(setup):
    admin_panel, fake = setup
    label = next(iter(admin_panel.place(press(admin_panel, panel.RESTORE)).backups))
    checks = []
    admin_panel.in_background = lambda message, job, working, **options: checks.append(job)
    press(admin_panel, label)  # the check is queued...
    admin_panel.in_background = lambda message, job, working, **options: job()
    press(admin_panel, panel.BACK)  # ...and the admin goes back to the list meanwhile
    checks.pop()()  # the check's answer comes now
    assert said(fake)[-1].startswith("The backup you chose was checked, but you had moved on")
    assert admin_panel.place(press(admin_panel, panel.CONFIRM)).pending is None
    assert "Nothing to confirm" in said(fake)[-2]


def test_a_button_of_an_older_list_shows_the_list_again_instead_of_picking_by_its_number(setup):
    admin_panel, fake = setup
    press(admin_panel, panel.RESTORE)
    stale = "♻️ 1: 2026-11-25 09:00 UTC manual (local)"  # a 1 that is not this list's 1
    before = len(said(fake))
    press(admin_panel, stale)
    assert admin_panel.place(press(admin_panel, panel.CONFIRM)).pending is None
    assert any(text.startswith("♻️ Restore: choose a backup") for text in said(fake)[before:])


def test_a_list_that_comes_after_the_admin_moved_on_leaves_their_keyboard_alone(setup):
    admin_panel, fake = setup
    jobs = []
    admin_panel.in_background = lambda message, job, working, **options: jobs.append(job)
    press(admin_panel, panel.RESTORE)
    admin_panel.in_background = lambda message, job, working, **options: job()
    press(admin_panel, panel.BACK)  # the 💾 Backup screen, with its keyboard
    jobs.pop()()  # the list arrives
    late = fake.messages(ADMIN)[-1]
    assert late["text"].startswith("♻️ Restore: choose a backup") and late.get("reply_markup") is None
    assert admin_panel.place(press(admin_panel, panel.REFRESH)).screen is panel.Screen.BACKUP
