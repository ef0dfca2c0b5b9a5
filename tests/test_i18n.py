"""Every text in English and Persian: the catalogs are complete and keep their placeholders, the
compiled catalogs are the ones the translators wrote, and values read right in each language."""

import gettext
import re
import string
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

import panel_screens
from backup_format import shown_table
from config import LANGUAGES
from i18n import (
    FSI,
    LANGUAGE_LABELS,
    PDI,
    RTL,
    Code,
    Plural,
    Reader,
    Size,
    Style,
    Text,
    ascii_digits,
    language_of,
    lines,
    placeholders,
)

PROJECT = Path(__file__).resolve().parent.parent
LOCALES = PROJECT / "locales"
TRANSLATED = [language for language in LANGUAGES if language != "en"]  # English is the msgids
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TEHRAN = ZoneInfo("Asia/Tehran")


def source_texts() -> set[str | tuple[str, str]]:
    """Every text the bot's modules mark for people, as `pybabel extract -F babel.cfg` finds it."""
    found = extract_from_dir(
        str(PROJECT),
        method_map=[("*.py", "python")],
        keywords={"Text": None, "Plural": (1, 2), "N_": None},
        directory_filter=lambda path: Path(path).resolve() == PROJECT,
    )
    return {message for _, _, message, _, _ in found}  # a plural's is (singular, plural)


def forms(message) -> tuple[str, ...]:
    """A catalog entry's translations: one, or one per plural form."""
    return message.string if isinstance(message.string, tuple) else (message.string,)


def catalog(language: str):
    with open(LOCALES / language / "LC_MESSAGES" / "bot.po", "rb") as po:
        return read_po(po)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_text_people_read_has_a_translation_that_keeps_its_placeholders(language):
    texts, translations = source_texts(), catalog(language)
    assert len(texts) > 100  # the extraction found the bot's texts, not nothing
    missing, fuzzy, broken = [], [], []
    for msgid in sorted(texts, key=str):
        message = translations.get(msgid)
        english = msgid if isinstance(msgid, tuple) else (msgid,)
        if message is None or not all(forms(message)):
            missing.append(msgid)
        elif message.fuzzy:
            fuzzy.append(msgid)
        # each form keeps the placeholders of one English form ("every hour" has no {count})
        elif any(placeholders(form) not in [placeholders(e) for e in english] for form in forms(message)):
            broken.append(f"{msgid!r} -> {message.string!r}")
    assert missing == [], "no translation (pybabel update, then translate)"
    assert fuzzy == [], "marked fuzzy: check the translation, then remove the mark"
    assert broken == [], "a placeholder dropped, added or renamed"


def test_the_template_lists_exactly_the_texts_in_the_source():
    with open(LOCALES / "bot.pot", "rb") as pot:
        template = {message.id for message in read_po(pot) if message.id}
    assert template == source_texts(), "run pybabel extract (README, Languages)"


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalog_is_the_one_the_translators_wrote(language):
    with open(LOCALES / language / "LC_MESSAGES" / "bot.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    written = {m.id: forms(m) for m in catalog(language) if m.id and all(forms(m)) and not m.fuzzy}
    stale = [
        msgid
        for msgid, strings in written.items()
        if (
            tuple(compiled.ngettext(*msgid, n) for n in (1, 2))
            if isinstance(msgid, tuple)
            else (compiled.gettext(msgid),)
        )
        != strings
    ]
    assert stale == [], "run pybabel compile (README, Languages)"


def test_every_panel_label_in_every_language_means_one_thing_so_every_press_finds_its_screen():
    meaning: dict[str, set[str]] = {}
    for language in LANGUAGES:
        for label in panel_screens.LABELS:
            meaning.setdefault(Reader(language).gettext(label), set()).add(label)
    assert {shown: labels for shown, labels in meaning.items() if len(labels) > 1} == {}
    assert len(meaning) == len(panel_screens.LABELS) * len(LANGUAGES)  # no label left untranslated
    assert not set(meaning) & set(LANGUAGE_LABELS)


def test_times_are_in_the_readers_zone_named_and_for_persian_readers_in_the_solar_hijri_calendar():
    assert Reader("en", TEHRAN).time(NOON) == "2026-11-26 15:30 Asia/Tehran"
    assert Reader("en").time(NOON) == "2026-11-26 12:00 UTC"
    # 26 November 2026 is 5 Azar 1405 in the Solar Hijri calendar
    assert Reader("fa", TEHRAN).time(NOON) == "۵ آذر ۱۴۰۵، ۱۵:۳۰ به وقت تهران"
    assert (
        Reader("fa", TEHRAN).time(datetime(2027, 3, 20, 21, 0, tzinfo=UTC))
        == "۱ فروردین ۱۴۰۶، ۰۰:۳۰ به وقت تهران"
    )  # Nowruz begins in Tehran before it does in UTC
    assert Reader("fa", ZoneInfo("Europe/Berlin")).time(NOON).endswith(f"به وقت {FSI}Europe/Berlin{PDI}")


def test_seconds_where_minutes_collide_and_short_times_on_buttons():
    moments = [NOON + timedelta(seconds=s) for s in (1, 14, 30, 59)]  # four backups in one minute
    for language in LANGUAGES:
        reader = Reader(language, TEHRAN)
        assert len({reader.time(m) for m in moments}) == 1  # what the list showed: all alike
        assert len({reader.time(m, Style.SECONDS) for m in moments}) == 4
    assert Reader("en", TEHRAN).time(NOON, Style.SECONDS) == "2026-11-26 15:30:00 Asia/Tehran"
    assert Reader("en", TEHRAN).time(NOON, Style.SHORT) == "Nov 26 15:30"
    assert Reader("fa", TEHRAN).time(NOON, Style.SHORT) == "۵ آذر، ۱۵:۳۰"


def test_sizes_ages_and_numbers_in_persian_words_and_digits():
    fa, en = Reader("fa"), Reader("en")
    assert (en.size(1536), fa.size(1536)) == ("1.5 KB", "۱٫۵ کیلوبایت")
    assert (en.size(20480), fa.size(20480)) == ("20 KB", "۲۰ کیلوبایت")  # no trailing .0
    assert (en.age(timedelta(hours=3)), fa.age(timedelta(hours=3))) == ("3 h", "۳ ساعت")
    assert fa.age(timedelta(days=12)) == "۱۲ روز"
    assert fa.number(2026) == "۲٬۰۲۶" and en.number(527040) == "527,040" and fa.number(527040) == "۵۲۷٬۰۴۰"
    assert (en.number(1234.5), fa.number(1234.5), en.number(2.0)) == ("1,234.5", "۱٬۲۳۴٫۵", "2")


@pytest.mark.parametrize(
    "seconds, english, persian",
    [
        (1, "every second", "هر ثانیه"),
        (60, "every minute", "هر دقیقه"),
        (90, "every 90 seconds", f"هر {FSI}۹۰{PDI} ثانیه"),
        (3600, "every hour", "هر ساعت"),
        (6 * 3600, "every 6 hours", f"هر {FSI}۶{PDI} ساعت"),
        (1800, "every 30 minutes", f"هر {FSI}۳۰{PDI} دقیقه"),
    ],
)
def test_intervals_read_in_words(seconds, english, persian):
    assert (Reader("en").interval(seconds), Reader("fa").interval(seconds)) == (english, persian)


@given(st.floats(min_value=0.001, max_value=10 * 365 * 86400))
def test_an_interval_is_never_a_fraction_of_a_unit(seconds):
    for language in LANGUAGES:
        shown = Reader(language).interval(seconds)
        assert not re.search(r"[.٫]|\b0\b|e[-+]", shown), shown
    assert re.fullmatch(
        r"every (second|minute|hour|[\d,]+ (seconds|minutes|hours))", Reader("en").interval(seconds)
    )


@given(st.integers(min_value=0, max_value=10**12))
def test_counts_take_the_right_form_and_group_thousands(count):
    text = Plural("{count} user", "{count} users", count)
    english = Reader("en")(text)
    assert english == ("1 user" if count == 1 else f"{count:,} users")
    assert int(english.split()[0].replace(",", "")) == count  # the grouping loses nothing
    persian = Reader("fa")(text)
    assert int(ascii_digits(persian.split()[0].strip(FSI + PDI)).replace("٬", "")) == count


def test_no_english_plural_reads_one_of_many():
    """For every counted text in the source, one of a thing reads as one: no "1 users"."""
    for msgid in source_texts():
        if isinstance(msgid, tuple):
            assert msgid[0] != msgid[1], msgid  # a singular that is its own
            values = dict.fromkeys(placeholders(msgid[1]) - {"count"}, "x")
            one = Reader("en")(Plural(*msgid, 1, **values))
            assert one == msgid[0].format(count=1, **values) != msgid[1].format(count=1, **values), msgid


def test_in_persian_every_value_is_isolated_so_it_keeps_its_own_order():
    text = Text(
        "✅ Backup {name}: {size} in {seconds} s; stored in {places}",
        name=Code("backup-20261126T120000000Z-manual.db.zst"),
        size=Size(2048),
        seconds=1.5,
        places=Code("local, telegram"),
    )
    shown = Reader("fa")(text)
    assert f"{FSI}backup-20261126T120000000Z-manual.db.zst{PDI}" in shown
    assert f"{FSI}۲ کیلوبایت{PDI}" in shown and f"{FSI}۱٫۵{PDI}" in shown
    assert shown.startswith("✅") and "Backup" not in shown  # the sentence is Persian
    assert FSI not in Reader("en")(text)  # left-to-right text needs no marks...
    # ...but a right-to-left value in it does: a Persian name first would turn the line around
    assert (
        Reader("en")(Text("• {user}: {count} actions", user=Code("علی · 7001"), count=4))
        == f"• {FSI}علی · 7001{PDI}: 4 actions"
    )


@given(st.text())
def test_no_value_from_outside_can_reverse_or_escape_its_isolation(hostile):
    """A user's name, a file name or an admin's reason may hold direction controls (RLO, PDI...):
    each value stays one isolated run, whatever it holds."""
    for language in LANGUAGES:
        shown = Reader(language)(
            Text(
                "User {user} is blocked until {until} ({reason}).",
                user=Code(hostile),
                until=NOON,
                reason=hostile,
            )
        )
        depth = 0
        for char in shown:
            if char in (FSI, PDI) or unicodedata.bidirectional(char) in (
                "LRE",
                "RLE",
                "LRO",
                "RLO",
                "PDF",
                "LRI",
                "RLI",
            ):
                assert char in (FSI, PDI), f"a direction control from outside: {char!r}"
                depth += 1 if char == FSI else -1
                assert depth in (0, 1), "an isolate closed that was not opened, or nested"
        assert depth == 0


def test_several_texts_render_line_by_line_and_plain_strings_stay_as_they_are():
    shown = Reader("fa")(lines(Text("🗂 No backups yet."), "  plain", None))
    assert shown.split("\n")[1] == "  plain" and "🗂" in shown.split("\n")[0]
    assert str(lines(Text("Users: {count}", count=3))) == "Users: 3"  # English: what logs carry


@pytest.mark.parametrize(
    "chosen, telegram, default, expected",
    [
        ("en", "fa", "fa", "en"),  # their own choice first
        (None, "fa", "en", "fa"),
        (None, "fa-IR", "en", "fa"),
        (None, "FA", "en", "fa"),
        (None, "en-GB", "fa", "en"),
        (None, None, "fa", "fa"),
        (None, "de", "fa", "fa"),
        (None, "", "en", "en"),  # else the default
        ("xx", "de", "fa", "fa"),  # a stored value the bot no longer offers is no choice
    ],
)
def test_the_language_is_their_choice_else_telegrams_else_the_default(chosen, telegram, default, expected):
    assert language_of(chosen, telegram, default) == expected


LRI, RLI, RLM = "\u2066", "\u2067", "\u200f"


def direction_problems(msgstr: str) -> list[str]:
    """What would lay out wrong in a right-to-left translation, read as Telegram's apps do
    (the Unicode bidi algorithm, each line a paragraph): a left-to-right character outside an
    isolate (a command reads `help/`, an @name `bot@`, 🆕 turns its label around: each needs
    FSI … PDI), or a line whose first strong character, skipping isolates and values (which
    render isolated), is not right-to-left (the whole line lays out left to right)."""
    problems = []
    depth = 0
    for index, char in enumerate(msgstr):  # "@{bot}" shows as "bot@": the mark must be inside
        depth += (char in (FSI, LRI, RLI)) - (char == PDI)
        if depth == 0 and char in "@/#" and re.match(r"\{\w+\}", msgstr[index + 1 :]):
            problems.append(f"{char!r} before a value, outside an isolate, in {msgstr!r}")
    for line in re.sub(r"\{\w+\}", "", msgstr).split("\n"):
        depth, first = 0, None
        for char in line:
            if char in (FSI, LRI, RLI):
                depth += 1
            elif char == PDI:
                depth -= 1
            elif depth == 0:
                kind = unicodedata.bidirectional(char)
                if kind == "L":
                    problems.append(f"{char!r} outside an isolate in {line!r}")
                    break
                if kind in ("R", "AL") and first is None:
                    first = kind
        if line.strip() and first is None:
            problems.append(f"no right-to-left letter starts {line!r}: begin it with RLM")
    return problems


@pytest.mark.parametrize(
    "msgstr, right",
    [
        (f"برای دیدن فهرست، {FSI}/help{PDI} را بفرستید.", True),
        ("برای دیدن فهرست، /help را بفرستید.", False),  # shows as help/
        ("\u200e/help: همین فهرست", False),  # LRM: the line lays out left to right
        (f"{FSI}/help{PDI}: همین فهرست", True),
        ("MINUTES باید عددی باشد", False),  # opens with a Latin word
        ("🆕 شروع از نو", False),  # 🆕 is a left-to-right character
        ("✨ شروع از نو", True),
        ("فهرست پشتیبان‌های @{bot}", False),  # shows as bot@
        (f"فهرست پشتیبان‌های {FSI}@{{bot}}{PDI}", True),
        ("{table}: {rows}", False),  # values only: laid out left to right under a Persian header
        (f"{RLM}{{table}}: {{rows}}", True),
        ("کاربر {user} مسدود شد.\n{count} نفر دیگر", True),
    ],
)
def test_the_direction_check_finds_what_lays_out_wrong(msgstr, right):
    assert (direction_problems(msgstr) == []) is right


@pytest.mark.parametrize("language", [language for language in TRANSLATED if language in RTL])
def test_right_to_left_translations_isolate_every_latin_run_and_start_each_line_right_to_left(language):
    problems = {
        str(message.id): found
        for message in catalog(language)
        if message.id
        for form in forms(message)
        if (found := direction_problems(form))
    }
    assert problems == {}


@given(
    st.text(alphabet=string.ascii_letters + "/@_", min_size=1, max_size=12).filter(
        lambda w: any(c.isalpha() for c in w)
    )
)
def test_any_latin_run_in_persian_words_is_caught_unless_isolated(word):
    assert direction_problems(f"برای دیدن {word} را بفرستید") != []
    assert direction_problems(f"{word} را بفرستید") != []  # and a line opening with it, the more so
    assert direction_problems(f"برای دیدن {FSI}{word}{PDI} را بفرستید") == []
    assert direction_problems(f"{FSI}{word}{PDI} را بفرستید") == []


def test_every_table_is_shown_as_what_it_holds_in_every_language(db):
    for table in db.table_row_counts():
        shown = shown_table(table)
        assert isinstance(shown, Text), f"{table}: add it to backup_format.TABLE_WORDS"
        assert "_" not in Reader("en")(shown)
        assert not re.search("[A-Za-z]", Reader("fa")(shown))
