"""The statistics chart: a real PNG of the promised size, bars and dots where the numbers put them,
the same bytes for the same counts, and refusals for counts it could only draw wrongly."""

import io
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import chart
from chart import ACTIVE_COLOUR, HEIGHT, NEW_COLOUR, WIDTH, Calendar, DailyCounts, layout, render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = date(2026, 10, 28)


def days(count, start=START):
    return tuple(start + timedelta(days=i) for i in range(count))


def counts(new, active):
    return DailyCounts(days(len(new)), tuple(new), tuple(active))


# Thirty days with a peak, zero days and a small day; active users are always at least the new ones.
NEW = [3, 0, 5, 10, 40, 0, 7, 1, 20, 15] * 3
NEW[17] = 80
ACTIVE = [n + 12 for n in NEW]
MONTH = counts(NEW, ACTIVE)


def opened(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def assert_png(png: bytes) -> None:
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (WIDTH, HEIGHT)
    assert image.mode == "RGB"
    image.verify()


def test_render_gives_a_valid_png_of_the_promised_size():
    assert_png(render(MONTH))


def test_the_same_counts_give_the_same_bytes():
    assert render(MONTH) == render(counts(list(NEW), list(ACTIVE)))
    assert render(MONTH) != render(counts(NEW, [a + 1 for a in ACTIVE]))


def test_the_tallest_bar_is_the_day_with_most_new_users():
    bars = layout(MONTH).bars
    tallest = max(range(len(bars)), key=lambda i: bars[i].height if bars[i] else 0)
    assert tallest == NEW.index(max(NEW)) == 17


def test_a_zero_day_has_no_bar():
    bars = layout(MONTH).bars
    assert [i for i, box in enumerate(bars) if box is None] == [i for i, n in enumerate(NEW) if n == 0]


def test_bar_heights_are_in_the_ratio_of_the_counts():
    shape = layout(MONTH)
    peak = shape.bars[17]
    for n, box in zip(NEW, shape.bars):
        if box is not None:
            assert box.bottom == shape.plot[3]  # every bar stands on the baseline
            assert abs(box.height - peak.height * n / max(NEW)) <= 1


def test_bars_and_points_follow_the_y_ticks():
    """A bar of n and the dot of n reach the row the axis labels as n."""
    shape = layout(MONTH)
    rows = dict(shape.y_ticks)
    assert rows[0] == shape.plot[3]
    box = shape.bars[4]  # 40 new users, a tick value
    assert 40 in rows and abs(box.top - rows[40]) <= 1
    y = shape.points[3][1]  # 22 active users lies between the ticks around it
    below, above = max(v for v in rows if v <= 22), min(v for v in rows if v >= 22)
    assert rows[above] <= y <= rows[below]


def test_days_go_left_to_right_in_order():
    shape = layout(MONTH)
    xs = [x for x, _ in shape.points]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert [(box.left + box.right) // 2 for box in shape.bars if box] == [
        x for (x, _), n in zip(shape.points, NEW) if n
    ]


def test_x_ticks_label_the_day_of_month_every_five_days_ending_today():
    ticks = layout(MONTH).x_ticks
    assert [tick.day for tick in ticks] == [d.day for d in MONTH.days[4::5]]
    assert ticks[-1].day == MONTH.days[-1].day


def test_the_axis_names_the_month_where_it_starts_and_changes_in_either_calendar():
    # 28 Oct .. 26 Nov 2026 is 6 Aban .. 5 Azar 1405; 1 Azar 1405 is 22 Nov 2026
    gregorian, solar = layout(MONTH).x_ticks, layout(MONTH, Calendar.SOLAR_HIJRI).x_ticks
    assert [(t.day, t.month) for t in gregorian] == [
        (1, "Nov 2026"),
        (6, None),
        (11, None),
        (16, None),
        (21, None),
        (26, None),
    ]
    assert [(t.day, t.month) for t in solar] == [
        (10, "1405/08"),
        (15, None),
        (20, None),
        (25, None),
        (30, None),
        (5, "1405/09"),
    ]
    centres = layout(MONTH).points
    new_month = MONTH.days.index(date(2026, 11, 1))
    assert layout(MONTH).month_starts == ((centres[new_month - 1][0] + centres[new_month][0]) // 2,)
    azar = MONTH.days.index(date(2026, 11, 22))
    assert layout(MONTH, Calendar.SOLAR_HIJRI).month_starts == (
        (centres[azar - 1][0] + centres[azar][0]) // 2,
    )


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(1, 90))
@settings(max_examples=30, deadline=None)
def test_every_labelled_day_is_that_days_date_in_its_calendar(start, length):
    zeros = (0,) * length
    span = days(length, start)
    for calendar in Calendar:
        shape = layout(DailyCounts(span, zeros, zeros), calendar)
        day_at = {x: day for (x, _), day in zip(shape.points, span)}
        for tick in shape.x_ticks:
            day = chart.calendar_day(day_at[tick.x], calendar)[2]
            assert tick.day == day and 1 <= day <= 31
            assert tick.month in (None, chart.month_label(day_at[tick.x], calendar))
        assert shape.x_ticks[0].month is not None  # the first day says which month it is


def test_the_legend_is_drawn_when_the_labels_are_ascii_and_refused_otherwise():
    plain, keyed = opened(render(MONTH)), opened(render(MONTH, legend=("New users", "Active users")))
    above = [(x, y) for x in range(WIDTH) for y in range(chart.TOP - 4)]  # above the plot
    assert {plain.getpixel(p) for p in above} == {chart.BACKGROUND}
    legend_colours = {keyed.getpixel(p) for p in above}
    assert NEW_COLOUR in legend_colours and ACTIVE_COLOUR in legend_colours
    with pytest.raises(ValueError, match="ASCII"):
        render(MONTH, legend=("کاربران جدید", "کاربران فعال"))


def test_the_image_has_the_bar_colour_where_the_bars_are():
    shape = layout(MONTH)
    image = opened(render(MONTH))
    for box in filter(None, shape.bars):
        x = (box.left + box.right) // 2
        # Just above the baseline and at the bar's edges: the dot line runs higher, active > new.
        assert image.getpixel((x, box.bottom - 1)) == NEW_COLOUR
        assert image.getpixel((box.left, box.bottom - 1)) == NEW_COLOUR
        assert image.getpixel((box.right - 1, box.bottom - 1)) == NEW_COLOUR
        assert image.getpixel((box.right, box.bottom - 1)) != NEW_COLOUR
        assert image.getpixel((x, box.top - 2)) != NEW_COLOUR


def test_the_image_has_the_active_colour_at_the_dots_and_none_on_a_zero_day():
    shape = layout(MONTH)
    image = opened(render(MONTH))
    for x, y in shape.points:
        assert image.getpixel((x, y)) == ACTIVE_COLOUR
    x, _ = shape.points[1]  # zero new users that day: nothing blue above the baseline
    column = [image.getpixel((x, y)) for y in range(shape.plot[1], shape.plot[3])]
    assert NEW_COLOUR not in column


def test_colour_names_cover_both_series_and_the_colours_differ():
    assert set(chart.COLOUR_NAMES) == {"new", "active"}
    assert NEW_COLOUR != ACTIVE_COLOUR


def test_all_zeros_draw_no_bars_and_a_flat_line():
    zeros = counts([0] * 30, [0] * 30)
    shape = layout(zeros)
    assert all(box is None for box in shape.bars)
    assert {y for _, y in shape.points} == {shape.plot[3]}
    assert_png(render(zeros))


def test_one_huge_day_fits_the_scale():
    new = [0] * 30
    new[10] = 10**6
    shape = layout(counts(new, [n + 1 for n in new]))
    assert shape.bars[10].top >= shape.plot[1]
    assert min(y for _, y in shape.points) >= shape.plot[1]
    assert max(value for value, _ in shape.y_ticks) >= 10**6 + 1
    assert_png(render(counts(new, new)))


def test_a_small_day_next_to_a_huge_one_still_shows():
    shape = layout(counts([1, 10**6], [1, 10**6]))
    assert shape.bars[0] is not None and shape.bars[0].height == 1


def test_one_day_and_more_than_thirty_days_render():
    assert_png(render(counts([4], [9])))
    assert len(layout(counts([4], [9])).x_ticks) == 1
    assert_png(render(counts(list(range(45)), list(range(45)))))


@pytest.mark.parametrize("new, active", [([1, 2], [1]), ([1], [1, 2]), ([], [])])
def test_mismatched_or_empty_lengths_are_refused(new, active):
    with pytest.raises(ValueError):
        DailyCounts(days(2), tuple(new), tuple(active))


@pytest.mark.parametrize("new, active", [([1, -1], [1, 1]), ([1, 1], [-5, 1])])
def test_negative_counts_are_refused(new, active):
    with pytest.raises(ValueError):
        counts(new, active)


def test_days_that_are_not_consecutive_are_refused():
    with pytest.raises(ValueError):
        DailyCounts((START, START + timedelta(days=2)), (1, 1), (1, 1))
    with pytest.raises(ValueError):
        DailyCounts((START + timedelta(days=1), START), (1, 1), (1, 1))


def test_render_refuses_counts_changed_behind_the_dataclass():
    bad = counts([1, 1], [1, 1])
    object.__setattr__(bad, "new_users", (1, -1))
    with pytest.raises(ValueError):
        render(bad)


@st.composite
def daily_counts(draw):
    length = draw(st.integers(1, 60))
    series = st.lists(st.integers(0, 10**6), min_size=length, max_size=length)
    start = draw(st.dates(date(2000, 1, 1), date(2100, 1, 1)))
    return DailyCounts(days(length, start), tuple(draw(series)), tuple(draw(series)))


@settings(max_examples=60, deadline=None)
@given(daily_counts())
def test_any_counts_render_to_a_png_of_the_promised_size(data):
    assert_png(render(data))
    shape = layout(data)
    for box in shape.bars:
        if box is not None:
            assert shape.plot[0] <= box.left < box.right <= shape.plot[2]
            assert shape.plot[1] <= box.top < box.bottom == shape.plot[3]
    for x, y in shape.points:
        assert shape.plot[0] <= x <= shape.plot[2] and shape.plot[1] <= y <= shape.plot[3]
