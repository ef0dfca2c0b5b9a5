"""Who reads the bot, and in which language: each person's i18n.Reader, from the database.

A person's language is their own choice (/language, or the admin panel's 🌐), else the language
Telegram reports for them (kept from their last message), else DEFAULT_LANGUAGE; their times
are in BOT_TIMEZONE. The database is attached once it is open: until then (alerts at startup)
everyone reads the default language.
"""

from __future__ import annotations

from clock import Clock, utc_now
from config import Settings
from database import Database
from i18n import Reader, language_of


class Readers:
    def __init__(self, settings: Settings, clock: Clock = utc_now):
        self.settings, self.clock = settings, clock
        self.db: Database | None = None

    def attach(self, db: Database) -> None:
        self.db = db

    def default(self) -> Reader:
        return Reader(self.settings.default_language, self.settings.time_zone)

    def of(self, user_id: int, telegram_code: str | None = None) -> Reader:
        """`user_id`'s reader; `telegram_code`: the language_code of the message in hand."""
        chosen, seen = self.db.languages(user_id) if self.db is not None else (None, None)
        language = language_of(chosen, telegram_code or seen, self.settings.default_language)
        return Reader(language, self.settings.time_zone)

    def of_message(self, message) -> Reader:
        user = message.from_user
        return self.of(user.id, user.language_code) if user is not None else self.default()

    def choose(self, user_id: int, language: str) -> Reader:
        self.db.choose_language(user_id, language, self.clock())
        return Reader(language, self.settings.time_zone)
