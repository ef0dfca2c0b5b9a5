"""The admin panel's 👥 Users: the lists of people, a search, a person's card with 🚫 Block and
✅ Unblock confirmed, and the 📈 chart. What it shows is admin_users.py's; blocking is
moderation.py's. A person's button is matched whole against the list this admin was shown."""

from __future__ import annotations

from datetime import UTC, datetime, time

import admin_users as texts
import chart
import moderation
from i18n import CAPTION_LIMIT, N_, Code, Style, Text, When, ascii_digits
from panel_screens import BACK, BLOCK, UNBLOCK, PanelPart, Screen


class People(PanelPart):
    """👥 Users."""

    def users(self, message) -> None:
        text, listed = texts.overview(self.db, self.panel.clock(), self.settings.admin_ids)
        self._show(message, Screen.USERS, text, listed)

    def search(self, message) -> None:
        found = self.db.find_users(ascii_digits(message.text))  # an id typed on a Persian keyboard too
        self._show(message, Screen.FOUND, texts.found(found, message.text), found)

    def _show(self, message, screen: Screen, text, listed: list[dict]) -> None:
        place = self.panel.place(message)
        place.screen = screen
        place.people = {texts.button(user): user["user_id"] for user in listed}  # replaced whole
        rows = [[label] for label in place.people] + [[self.panel.reader(message).gettext(BACK)]]
        self.panel.say(message, text, reply_markup=self.panel.keyboard(message, screen, rows))

    def open_from_button(self, message) -> None:
        """A person's button of the list as last shown; any other (from before a restart, or a
        list since replaced) shows 👥 Users again."""
        user_id = self.panel.place(message).people.get(message.text)
        if user_id is None:
            self.users(message)
        else:
            self.open_card(message, user_id)

    def open_card(self, message, user_id: int) -> None:
        user = self.db.user(user_id)
        if user is None:  # gone since the list was shown (a restore)
            self.users(message)
            return
        place = self.panel.place(message)
        place.screen, place.user_id = Screen.CARD, user_id
        reader, now = self.panel.reader(message), self.panel.clock()
        action = UNBLOCK if texts.is_blocked(user, now) else BLOCK
        rows = [[reader.gettext(action)], [reader.gettext(BACK)]]
        self.panel.say(
            message,
            texts.card(self.db, user, now, self.settings.default_language),
            reply_markup=self.panel.keyboard(message, Screen.CARD, rows),
        )

    def reopen_card(self, message) -> None:
        """🔙 Back to the card that was open; 👥 Users without one."""
        user_id = self.panel.place(message).user_id
        if user_id is None:
            self.users(message)
        else:
            self.open_card(message, user_id)

    def ask_block(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.panel.show(
                message,
                Screen.BLOCK,
                Text(
                    "Block {user} for {minutes} min? They are told until when. For another time or a reason: "
                    "/block {id} MINUTES REASON",
                    user=texts.name(user),
                    minutes=self.settings.flood_block_minutes,
                    id=Code(str(user["user_id"])),
                ),
            )

    def ask_unblock(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.panel.show(
                message, Screen.UNBLOCK, Text("Unblock {user}? They are told.", user=texts.name(user))
            )

    def confirm_block(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            reply = moderation.block(
                self.bot,
                self.db,
                self.settings,
                self.panel.readers,
                user["user_id"],
                self.settings.flood_block_minutes,
                moderation.BY_ADMIN,
                self.panel.clock(),
            )
            self.panel.say(message, reply)
            self.open_card(message, user["user_id"])

    def confirm_unblock(self, message) -> None:
        user = self._card_user(message)
        if user is not None:
            self.panel.say(
                message, moderation.unblock(self.bot, self.db, self.panel.readers, user["user_id"])
            )
            self.open_card(message, user["user_id"])

    def _card_user(self, message) -> dict | None:
        """The user whose card is open; without one (a restart since), the 👥 Users screen."""
        user_id = self.panel.place(message).user_id
        user = self.db.user(user_id) if user_id is not None else None
        if user is None:
            self.panel.say(message, Text("Open a user's card first."))
            self.users(message)
        return user

    def chart(self, message) -> None:
        reader = self.panel.reader(message)

        def job() -> None:
            counts = texts.daily(self.db, self.panel.clock().date(), self.settings.admin_ids)
            caption = Text(
                "📈 🟦 New users (bars) and 🟧 active users (line) per day, {first} to {last} "
                "(UTC days); admins left out.",
                first=When(datetime.combine(counts.days[0], time(), UTC), Style.DAY),
                last=When(datetime.combine(counts.days[-1], time(), UTC), Style.DAY),
            )
            shown = reader.fit(reader(caption), CAPTION_LIMIT)
            # The image's font draws ASCII only: its legend in words the reader reads, or none
            # (the caption always has it).
            legend = (reader.gettext(N_("New users")), reader.gettext(N_("Active users")))
            calendar = chart.Calendar.SOLAR_HIJRI if reader.language == "fa" else chart.Calendar.GREGORIAN
            image = chart.render(counts, calendar, legend if all(w.isascii() for w in legend) else None)
            self.bot.send_photo(message.chat.id, image, caption=shown)

        self.panel.in_background(message, job, Text("⏳ Drawing the chart…"))
