"""What the admin panel shows of people: 📊 Statistics, 👥 Users (the newest, the most active,
the blocked, a search) and a user's card, built from the database as texts for the panel to
send. The panel (admin_panel.py) keeps who is where and carries out the presses.

Every name here came from a Telegram user: it is shown as Code (never translated, isolated in
right-to-left text, direction controls dropped) and cut short on a button.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

import chart
from database import Database, parse_timestamp
from i18n import BIDI_CONTROLS, N_, Code, Joined, Plural, Text, language_of, lines
from moderation import reason_text

ACTIVE_DAYS = 7  # "the most active": over the last week
CARD_DAYS = 30  # a card's activity, and the chart's days
BLOCKED_SHOWN = 10  # the blocked users listed (and given a button) on 👥 Users
REASON_LISTED = 80  # characters of a block's reason in that list (the card shows more)
LANGUAGE_NAMES = {"en": N_("English"), "fa": N_("Persian")}


def statistics(db: Database, now: datetime, admins: Sequence[int]) -> Joined:
    stats = db.user_statistics(now, admins)
    return lines(
        Text("📊 Statistics"),
        # Everyone the bot has seen, admins too: the count a backup's caption shows.
        Text("Users: {count} ({new} new in the last 24 hours)", count=stats["users"], new=stats["new"]),
        Text("Blocked now: {count}", count=stats["blocked"]),
        Text("Actions in the last 24 hours: {count}", count=stats["actions"]),
        Text("Admins' own actions, not counted above: {count}", count=stats["admin_actions"]),
    )


def overview(db: Database, now: datetime, admins: Sequence[int]) -> tuple[Joined, list[dict]]:
    """The 👥 Users screen, and the users it lists (for their buttons), each once."""
    newest = db.newest_users(admins, 5)
    active = db.most_active_users(now - timedelta(days=ACTIVE_DAYS - 1), admins, 5)
    blocked = db.blocked_users(now, BLOCKED_SHOWN + 1)
    more_blocked = len(blocked) > BLOCKED_SHOWN and db.user_statistics(now, admins)["blocked"] - BLOCKED_SHOWN
    blocked = blocked[:BLOCKED_SHOWN]
    parts: list = [Text("👥 Users"), "", Text("Newest:")]
    parts += [
        Text("• {user}, first seen {when}", user=name(u), when=parse_timestamp(u["first_seen"]))
        for u in newest
    ]
    parts += ["", Text("Most active in the last {days} days:", days=ACTIVE_DAYS)]
    parts += [
        Plural("• {user}: {count} action", "• {user}: {count} actions", u["actions"], user=name(u))
        for u in active
    ]
    parts += ["", Text("Blocked now:") if blocked else Text("Nobody is blocked now.")]
    parts += [
        Text(
            "• {user}, until {when} ({reason})",
            user=name(u),
            when=parse_timestamp(u["blocked_until"]),
            reason=reason_text(u["block_reason"], REASON_LISTED),
        )
        for u in blocked
    ]
    if more_blocked:
        parts.append(
            Text("…and {count} more, who end later: search for them by id or name.", count=more_blocked)
        )
    parts += ["", Text("To find someone, send their id, @username or a part of their name.")]
    listed = {u["user_id"]: u for u in [*newest, *active, *blocked]}
    return lines(*parts), list(listed.values())


def found(users: list[dict], query: str) -> Text:
    if not users:
        return Text(
            "Nobody matches {query}. Send an id, @username or a part of a name.", query=Code(query[:64])
        )
    return Plural(
        "Found {count}: press it to open their card.",
        "Found {count}: press one to open their card.",
        len(users),
    )


def card(db: Database, user: dict, now: datetime, default_language: str) -> Joined:
    actions, days = db.activity(user["user_id"], now - timedelta(days=CARD_DAYS - 1))
    # the language the bot writes to them in, as readers.Readers decides it
    language = language_of(user.get("language"), user.get("telegram_language"), default_language)
    return lines(
        Text("👤 {user}", user=name(user)),
        Text("Id: {id}", id=Code(str(user["user_id"]))),
        Text(
            "First seen {first}; last seen {last}",
            first=parse_timestamp(user["first_seen"]),
            last=parse_timestamp(user["last_seen"]),
        ),
        Text("Language: {language}", language=Text(LANGUAGE_NAMES[language])),
        Text(
            "Actions in the last {days} days: {actions} (active on {active} of them)",
            days=CARD_DAYS,
            actions=actions,
            active=days,
        ),
        Text(
            "🚫 Blocked until {when} ({reason})",
            when=parse_timestamp(user["blocked_until"]),
            reason=reason_text(user["block_reason"]),
        )
        if is_blocked(user, now)
        else Text("Not blocked."),
    )


def is_blocked(user: dict, now: datetime) -> bool:
    until = parse_timestamp(user["blocked_until"])
    return until is not None and until > now


def name(user: dict) -> Code:
    """'Ann (@ann) 12345': what people call them, and the id that /block takes."""
    shown = " ".join(
        filter(None, [user.get("first_name"), f"(@{user['username']})" if user.get("username") else None])
    )
    return Code(f"{shown[:48]} · {user['user_id']}" if shown else str(user["user_id"]))


def button(user: dict) -> str:
    """A user's button: the id first (what a press is read by), then a short name."""
    first = " ".join((user.get("first_name") or user.get("username") or "").translate(BIDI_CONTROLS).split())
    return f"👤 {user['user_id']} {first[:24]}".rstrip()


def daily(db: Database, today: date, admins: Sequence[int], days: int = CARD_DAYS) -> chart.DailyCounts:
    """New and active users per UTC day, the last `days` days to `today`, admins left out."""
    first = today - timedelta(days=days - 1)
    new, active = db.daily_counts(first, today, admins)
    span = tuple(first + timedelta(days=n) for n in range(days))
    return chart.DailyCounts(
        span,
        tuple(new.get(d.isoformat(), 0) for d in span),
        tuple(active.get(d.isoformat(), 0) for d in span),
    )
