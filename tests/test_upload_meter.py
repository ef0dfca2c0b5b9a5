"""What backups upload, in sight: the last 24 hours and the month's pace per place off the
machine, kept across a restart on the same disk; past BACKUP_UPLOAD_BUDGET_GB on-change
backups space out, and the admins are told once."""

from datetime import timedelta

import pytest
from conftest import NOW
from hypothesis import given
from hypothesis import strategies as st

import tasks
from config import ConfigError, load_settings
from upload_meter import GB, UploadMeter


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


def test_the_last_24_hours_and_the_months_pace_per_destination(tmp_path):
    clock = Clock()
    meter = UploadMeter(tmp_path / "uploads.json", 20, clock)
    meter.record("telegram", 1000)
    clock.now += timedelta(hours=2)
    meter.record("telegram", 500)
    meter.record("s3", 700)
    assert meter.last_24h() == {"telegram": 1500, "s3": 700}
    # 2200 bytes in two hours: a month of that pace is 360 times as much
    assert meter.month_pace() == 2200 * 360
    clock.now += timedelta(hours=23)
    assert meter.last_24h() == {"telegram": 500, "s3": 700}  # the first hour has left the day


def test_the_counts_survive_a_restart_on_the_same_disk_and_an_unreadable_file_starts_afresh(tmp_path):
    clock = Clock()
    UploadMeter(tmp_path / "uploads.json", 20, clock).record("telegram", 4096)
    assert UploadMeter(tmp_path / "uploads.json", 20, clock).last_24h() == {"telegram": 4096}
    (tmp_path / "uploads.json").write_text("{not json")
    assert UploadMeter(tmp_path / "uploads.json", 20, clock).last_24h() == {}


@given(st.binary(max_size=200))
def test_whatever_the_file_holds_the_meter_starts(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("meter")
    (folder / "uploads.json").write_bytes(content)
    meter = UploadMeter(folder / "uploads.json", 20, Clock())
    meter.record("s3", 1)
    assert meter.last_24h()["s3"] >= 1


def test_over_the_budget_on_change_backups_space_out_and_the_admins_are_told_once(tmp_path):
    clock, told = Clock(), []
    meter = UploadMeter(None, 1, clock, told.append)  # 1 GB a month
    assert meter.spacing() == 1.0
    meter.record("telegram", 3 * GB // 720)  # in an hour: 3 GB a month at this pace
    assert meter.spacing() == pytest.approx(3.0, rel=0.01)
    assert meter.spacing() == pytest.approx(3.0, rel=0.01)
    assert len(told) == 1 and "BACKUP_UPLOAD_BUDGET_GB" in str(told[0])

    # the debouncer waits three windows instead of one after a write
    ticks = [1000.0]
    debouncer = tasks.ChangeDebouncer(60, clock=lambda: ticks[0], spacing=meter.spacing)
    debouncer.backed_up(5)
    due = []
    for second in range(300):
        if debouncer.due(6 if second else 5):
            due.append(second)
            break
        ticks[0] += 1
    assert due and 179 <= due[0] <= 181

    clock.now += timedelta(days=8)  # a week later the pace is back under the budget
    assert meter.spacing() == 1.0
    meter.record("telegram", 3 * GB // 720 * 8 * 24)
    meter.spacing()
    assert len(told) == 2  # told again: a new streak


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1e9", "nan"])
def test_a_budget_out_of_range_is_one_line(value):
    with pytest.raises(ConfigError, match="BACKUP_UPLOAD_BUDGET_GB"):
        load_settings({"BOT_TOKEN": "123456:AAbbCCddEEffGGhhIIjjKKll", "BACKUP_UPLOAD_BUDGET_GB": value})
