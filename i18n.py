"""Every text a person reads, in their language: English or Persian.

A text is written once, in English, as a `Text`: its English words are the gettext msgid, its
values named placeholders, filled in only when it is rendered for a reader:

    Text("✅ Backup {name}: {size} in {seconds} s", name=Code(info.name), size=Size(n), seconds=1.5)

A `Reader` is a language and a time zone. It renders a Text: the catalog's translation (gettext,
locales/<lang>/LC_MESSAGES/bot.mo, compiled from the .po a translator edits and committed, so
the host needs no build step), then each value in the reader's way: times in the reader's zone,
named, and for Persian readers in the Solar Hijri calendar (jdatetime); ages and sizes in words;
numbers in Persian digits. In a right-to-left language every value is wrapped in Unicode
isolation marks (FSI ... PDI), so a file name, a size or a time inside a Persian sentence keeps
its own order. str(text) is its English, UTC rendering: what logs and exceptions carry.

A count that names what it counts is a `Plural`: the catalog holds each language's forms (gettext
ngettext), so English reads "1 user", "2 users".

`N_` marks a text that is translated where it is shown, not where it is written (labels).
Extraction: pybabel extract -k Text -k Plural:1,2 -k N_ (docs/languages.md).
"""

from __future__ import annotations

import gettext
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import jdatetime

import human
from config import LANGUAGES

NAMES = {"en": "English", "fa": "فارسی"}  # each in its own language
LANGUAGE_LABELS = {f"🌐 {NAMES[language]}": language for language in LANGUAGES}  # the buttons
RTL = frozenset({"fa"})
LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "bot"
FSI, PDI = "\u2068", "\u2069"  # first-strong isolate ... pop directional isolate
PERSIAN_DIGITS = str.maketrans("0123456789.,", "۰۱۲۳۴۵۶۷۸۹٫٬")  # and the decimal and thousands marks
TEXT_LIMIT, CAPTION_LIMIT = 4096, 1024  # Telegram's most for a message's text and a caption
ISOLATES = "\u2066\u2067\u2068"  # LRI, RLI, FSI: each closed by a PDI
DETAIL = 300  # characters shown of free text from outside in a line (an error, a reason), then how many more
_OPEN_MOST = 8  # isolates a cut may leave open that fit() closes (ours nest two or three deep)
# Direction controls: in a value from outside (a user's name, a file name, an admin's reason)
# they could close our isolation early or reverse the rest of the line, so they are dropped.
BIDI_CONTROLS = dict.fromkeys(
    map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def N_(msgid: str) -> str:
    """Marks `msgid` for the catalogs; it is translated where it is shown."""
    return msgid


@dataclass(frozen=True)
class Size:
    """A number of bytes: 1.2 MB, ۱٫۲ مگابایت."""

    count: int


class Style(Enum):
    """How much of a moment to show: where several backups fall in one minute, its seconds; on
    a phone's button, no year and no zone."""

    MINUTES = "minutes"
    SECONDS = "seconds"
    SHORT = "short"
    DAY = "day"  # the date alone, as the moment gives it, not moved to a zone (a UTC day's)


@dataclass(frozen=True)
class When:
    """A moment shown in a `Style` other than the usual (a plain datetime is MINUTES)."""

    moment: datetime | None
    style: Style


@dataclass(frozen=True)
class Every:
    """An interval, in words: every minute, every 6 hours."""

    seconds: float


# A zone's city in Persian, for «به وقت تهران»; other zones keep their name.
PERSIAN_ZONES = {"Asia/Tehran": "تهران", "Asia/Kabul": "کابل", "Asia/Dubai": "دبی", "UTC": "گرینویچ"}


@dataclass(frozen=True)
class Code:
    """Something to show exactly as it is, never translated: a file name, a path, a command,
    an id, a technical error. Isolated in right-to-left text. `most`: shown up to that many
    characters, then how many more there were (free text from outside: a reason, an error)."""

    text: str
    most: int | None = None


class Text:
    """A text to render later, for each reader in their own language."""

    __slots__ = ("msgid", "params")

    def __init__(self, msgid: str, **params):
        self.msgid, self.params = msgid, params

    def __str__(self) -> str:
        return ENGLISH(self)

    def __repr__(self) -> str:
        return f"Text({self.msgid!r})"


class Plural(Text):
    """A text whose words follow a count: Plural("{count} user", "{count} users", n). The count
    is passed as `count` too, so the forms can show it."""

    __slots__ = ("count", "plural")

    def __init__(self, singular: str, plural: str, count: int, **params):
        super().__init__(singular, count=count, **params)
        self.plural, self.count = plural, count


Alert = Callable[[Text], object]  # tells every admin, each in their language (outbox.Outbox.alert)


class Joined:
    """Texts one after another, each on its own line: a screen of several."""

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = tuple(parts)

    def __str__(self) -> str:
        return ENGLISH(self)


class Series:
    """Values in a row, joined by the reader's comma: local, Telegram; محلی، تلگرام."""

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = tuple(parts)

    def __str__(self) -> str:
        return ENGLISH(self)


def lines(*parts) -> Joined:
    """Several texts (or plain strings, shown as they are), one per line; None left out."""
    return Joined(p for p in parts if p is not None)


class Reader:
    """Someone who reads the bot: their language and time zone."""

    def __init__(self, language: str, zone: ZoneInfo | timezone = UTC):
        self.language = language if language in LANGUAGES else "en"
        self.zone = zone
        self.rtl = self.language in RTL

    def __call__(self, text) -> str:
        """`text` (a Text, several joined, or a plain string) in this reader's language."""
        if isinstance(text, Joined):
            return "\n".join(self(part) for part in text.parts)
        if isinstance(text, Series):
            return ("، " if self.language == "fa" else ", ").join(self._value(part) for part in text.parts)
        if not isinstance(text, Text):
            return str(text)
        if isinstance(text, Plural):
            template = self.ngettext(text.msgid, text.plural, text.count)
        else:
            template = self.gettext(text.msgid)
        values = {name: self._value(value) for name, value in text.params.items()}
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):  # a broken translation: the English, not nothing
            return text.msgid.format(**values)

    def gettext(self, msgid: str) -> str:
        return _catalog(self.language).gettext(msgid)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        return _catalog(self.language).ngettext(singular, plural, count)

    def _value(self, value) -> str:
        if isinstance(value, (Text, Joined, Series)):
            return self(value)  # already right for this reader, isolated inside itself
        if isinstance(value, Code):
            shown = self.clipped(value.text.translate(BIDI_CONTROLS), value.most)
        elif isinstance(value, bool):
            shown = str(value)
        elif isinstance(value, datetime):
            shown = self.time(value)
        elif isinstance(value, When):
            shown = self.time(value.moment, value.style)
        elif isinstance(value, Every):
            shown = self.interval(value.seconds)
        elif isinstance(value, timedelta):
            shown = self.age(value)
        elif isinstance(value, Size):
            shown = self.size(value.count)
        elif isinstance(value, (int, float)):
            shown = self.number(value)
        else:
            shown = str(value).translate(BIDI_CONTROLS)
        # In left-to-right text only a value with right-to-left letters needs isolating (a
        # Persian name at the start of an English line would turn the whole line around).
        return f"{FSI}{shown}{PDI}" if self.rtl or _has_rtl(shown) else shown

    # --- values, the reader's way ---

    def number(self, value: int | float) -> str:
        # thousands grouped (527,040; ۵۲۷٬۰۴۰); a float with at most two decimals, trailing
        # zeros dropped: 1.5, 0.04, 2
        shown = f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
        return self._digits(shown or "0")

    def time(self, moment: datetime | None, style: Style = Style.MINUTES) -> str:
        """2026-11-26 15:30 Asia/Tehran; ۵ آذر ۱۴۰۵، ۱۵:۳۰ به وقت تهران. SECONDS adds them
        (15:30:07); SHORT, for a button, drops the year and the zone (Nov 26 15:30)."""
        if moment is None:
            return "—"
        local = moment if style is Style.DAY else moment.astimezone(self.zone)
        zone = getattr(self.zone, "key", None) or "UTC"
        clock = f"{local:%H:%M:%S}" if style is Style.SECONDS else f"{local:%H:%M}"
        if self.language == "fa":
            solar = jdatetime.datetime.fromgregorian(datetime=local.replace(tzinfo=None), locale="fa_IR")
            if style is Style.DAY:
                return self._digits(f"{solar.day} {solar.strftime('%B')} {solar.year}")
            if style is Style.SHORT:
                return self._digits(f"{solar.day} {solar.strftime('%B')}، {clock}")
            # A Latin zone name is isolated so that it keeps its order inside the Persian words.
            city = PERSIAN_ZONES.get(zone, f"{FSI}{zone}{PDI}")
            return (
                self._digits(f"{solar.day} {solar.strftime('%B')} {solar.year}، {clock}") + f" به وقت {city}"
            )
        if style is Style.DAY:
            return f"{local:%Y-%m-%d}"
        if style is Style.SHORT:
            return f"{local:%b} {local.day} {clock}"
        return f"{local:%Y-%m-%d} {clock} {zone}"

    def age(self, delta: timedelta) -> str:
        # A time from another machine may be ahead of this one's clock: never a negative age.
        minutes = max(0, int(delta.total_seconds() // 60))
        if minutes < 120:
            count, unit = minutes, N_("{count} min")
        elif minutes < 48 * 60:
            count, unit = minutes // 60, N_("{count} h")
        else:
            count, unit = minutes // 1440, N_("{count} days")
        return self.gettext(unit).format(count=self.number(count))

    def size(self, count: float) -> str:
        shown = human.size(count)
        number, unit = shown.split(" ")
        number = number.removesuffix(".0")  # 20 KB, not 20.0 KB
        return f"{self._digits(number)} {self.gettext(unit)}"

    def interval(self, seconds: float) -> str:
        """every minute, every 6 hours, every 30 seconds: in the largest whole unit."""
        whole = max(1, round(seconds))
        if whole % 3600 == 0:
            words = Plural("every hour", "every {count} hours", whole // 3600)
        elif whole % 60 == 0:
            words = Plural("every minute", "every {count} minutes", whole // 60)
        else:
            words = Plural("every second", "every {count} seconds", whole)
        return self(words)

    def _digits(self, shown: str) -> str:
        return shown.translate(PERSIAN_DIGITS) if self.language == "fa" else shown

    # --- within Telegram's limits ---

    def clipped(self, shown: str, most: int | None) -> str:
        """`shown` up to `most` characters, then how many more there were."""
        if most is None or len(shown) <= most:
            return shown
        more = self.gettext(N_("… {count} more characters")).format(count=self.number(len(shown) - most))
        return f"{shown[:most]}{more}"

    def fit(self, shown: str, limit: int = TEXT_LIMIT) -> str:
        """A rendered text cut to Telegram's `limit` (UTF-16 code units, as Telegram counts),
        ending with what was left out: whole lines when a line break lies in the second half of
        what fits, else characters. Isolation marks left open by the cut are closed."""
        if utf16_length(shown) <= limit:
            return shown
        notes = (N_("…and {count} more lines not shown"), N_("…and {count} more characters not shown"))
        worst = max(utf16_length(self.gettext(n).format(count=self.number(len(shown)))) for n in notes)
        budget = limit - worst - 1 - _OPEN_MOST  # the note, its line break, the closing marks
        kept = _prefix_within(shown, budget)
        lines_from = kept.rfind("\n")
        if lines_from >= len(kept) // 2:
            kept, count = kept[:lines_from], shown[lines_from + 1 :].count("\n") + 1
            note = notes[0]
        else:
            count, note = len(shown) - len(kept), notes[1]
        opened = sum(kept.count(c) for c in ISOLATES) - kept.count(PDI)
        closing = PDI * min(max(opened, 0), _OPEN_MOST)
        return f"{kept}{closing}\n{self.gettext(note).format(count=self.number(count))}"


def utf16_length(text: str) -> int:
    """How long Telegram counts `text`: UTF-16 code units (an emoji beyond the BMP is two)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _prefix_within(text: str, units: int) -> str:
    """The longest start of `text` of at most `units` UTF-16 code units."""
    total = 0
    for index, character in enumerate(text):
        total += 2 if ord(character) > 0xFFFF else 1
        if total > units:
            return text[:index]
    return text


# The units human.size writes, for the catalogs.
UNITS = (N_("B"), N_("KB"), N_("MB"), N_("GB"))

ENGLISH = Reader("en")


@cache
def _catalog(language: str) -> gettext.NullTranslations:
    if language == "en":  # the msgids are the English
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=str(LOCALES), languages=[language])


# What a Persian (or Arabic) keyboard types for digits, read as the ASCII digits they are.
TYPED_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


def _has_rtl(shown: str) -> bool:
    return any(unicodedata.bidirectional(c) in ("R", "AL") for c in shown)


def ascii_digits(typed: str) -> str:
    """`typed` with Persian and Arabic-Indic digits as ASCII ones (an id or a number of minutes
    typed on a Persian keyboard); other characters as they are."""
    return typed.translate(TYPED_DIGITS)


def language_of(chosen: str | None, telegram_code: str | None, default: str) -> str:
    """Their own choice if they made one, else Telegram's language_code (fa, fa-IR: Persian;
    en, en-GB: English), else the deployment's default."""
    if chosen in LANGUAGES:
        return chosen
    base = (telegram_code or "").split("-")[0].lower()
    return base if base in LANGUAGES else default


def placeholders(template: str) -> set[str]:
    """The {names} a template fills in."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
