"""Local-time aggregation buckets (`domain.buckets`): DST days, Monday weeks, months, zones whose
offsets are not whole hours."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pinbase.domain.buckets import EARLIEST, HOUR, LATEST, MINUTE, Buckets, Interval


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)  # type: ignore[misc]


def length(buckets: Buckets, ts: int) -> int:
    """How long the bucket holding `ts` lasts: up to the start of the bucket after it."""
    key = buckets.key(ts)
    start = buckets.start(key)
    probe = start
    while buckets.key(probe) == key or buckets.start(buckets.key(probe)) <= start:
        probe += 15 * MINUTE
    return buckets.start(buckets.key(probe)) - start


def test_kyiv_days_across_dst_last_23_and_25_hours() -> None:
    days = Buckets(Interval.DAY, ZoneInfo("Europe/Kyiv"))
    spring = ms(2026, 3, 29, 12, tz="Europe/Kyiv")
    assert days.start(days.key(spring)) == ms(2026, 3, 28, 22)  # midnight at UTC+2
    assert length(days, spring) == 23 * HOUR
    autumn = ms(2026, 10, 25, 12, tz="Europe/Kyiv")
    assert days.start(days.key(autumn)) == ms(2026, 10, 24, 21)  # midnight at UTC+3
    assert length(days, autumn) == 25 * HOUR
    assert length(days, ms(2026, 7, 1, 12)) == 24 * HOUR


def test_new_york_days_and_the_repeated_hour() -> None:
    zone = ZoneInfo("America/New_York")
    days = Buckets(Interval.DAY, zone)
    assert length(days, ms(2026, 3, 8, 12, tz="America/New_York")) == 23 * HOUR
    assert length(days, ms(2026, 11, 1, 12, tz="America/New_York")) == 25 * HOUR
    hours = Buckets(Interval.HOUR, zone)
    # 01:00-02:00 happens twice on 2026-11-01: one bucket from 05:00 UTC to 07:00 UTC
    second = ms(2026, 11, 1, 6, 30)
    assert hours.start(hours.key(second)) == ms(2026, 11, 1, 5)
    assert hours.key(second) == hours.key(ms(2026, 11, 1, 5, 30))
    assert hours.start(hours.key(ms(2026, 11, 1, 7, 10))) == ms(2026, 11, 1, 7)
    # spring: 02:00-03:00 is skipped, 01:00 EST is followed by 03:00 EDT
    assert hours.start(hours.key(ms(2026, 3, 8, 7, 10))) == ms(2026, 3, 8, 7)
    assert hours.start(hours.key(ms(2026, 3, 8, 6, 59))) == ms(2026, 3, 8, 6)


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    zone = ZoneInfo("Europe/Kyiv")
    weeks = Buckets(Interval.WEEK, zone)
    # Sunday 2026-11-29 23:30 in Kyiv is still the week of Monday 2026-11-23
    assert weeks.start(weeks.key(ms(2026, 11, 29, 21, 30))) == ms(2026, 11, 22, 22)
    assert weeks.start(weeks.key(ms(2026, 11, 29, 22, 30))) == ms(2026, 11, 29, 22)
    assert weeks.start(weeks.key(ms(1970, 1, 1))) == ms(1969, 12, 28, 21)
    months = Buckets(Interval.MONTH, zone)
    assert months.start(months.key(ms(2026, 3, 31, 12))) == ms(2026, 2, 28, 22)
    assert months.start(months.key(ms(2026, 4, 1))) == ms(2026, 3, 31, 21)
    assert months.start(months.key(ms(2024, 2, 29, 12))) == ms(2024, 1, 31, 22)


def test_grid_buckets_follow_the_local_clock() -> None:
    hours = Buckets(Interval.HOUR, ZoneInfo("Asia/Kolkata"))
    assert hours.start(hours.key(ms(2026, 5, 1, 10, 29))) == ms(2026, 5, 1, 9, 30)
    assert hours.start(hours.key(ms(2026, 5, 1, 10, 30))) == ms(2026, 5, 1, 10, 30)
    quarters = Buckets(Interval.MINUTES_15, ZoneInfo("Asia/Kathmandu"))  # UTC+05:45
    assert quarters.start(quarters.key(ms(2026, 5, 1, 10, 14))) == ms(2026, 5, 1, 10)
    fives = Buckets(Interval.MINUTES_5, ZoneInfo("UTC"))
    assert fives.start(fives.key(ms(2026, 5, 1, 10, 9, 59))) == ms(2026, 5, 1, 10, 5)


def test_lord_howe_shifts_by_half_an_hour() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")  # +10:30, +11:00 in summer
    hours = Buckets(Interval.HOUR, zone)
    # 2026-10-04 02:00 local becomes 02:30: the hour keyed 02:00 starts at the change
    change = ms(2026, 10, 3, 15, 30)
    assert hours.start(hours.key(change)) == change
    assert hours.start(hours.key(change - 1)) == ms(2026, 10, 3, 14, 30)
    assert length(hours, change) == 30 * MINUTE
    # 2026-04-05 02:00 local goes back to 01:30: the hour keyed 01:00 lasts 90 minutes
    back = ms(2026, 4, 4, 15)
    assert length(hours, back) == 90 * MINUTE
    days = Buckets(Interval.DAY, zone)
    assert length(days, back) == 24 * HOUR + 30 * MINUTE


def test_utc_and_far_instants() -> None:
    days = Buckets(Interval.DAY, ZoneInfo("UTC"))
    assert days.start(days.key(ms(2026, 1, 1, 23, 59))) == ms(2026, 1, 1)
    assert days.start(days.key(-1)) == -24 * HOUR
    assert days.estimate(0, 10 * 24 * HOUR) == 11
    assert datetime.fromtimestamp(days.start(days.key(0)) / 1000, UTC).year == 1970


def test_every_bucket_of_the_supported_instants_can_be_placed() -> None:
    for zone in ("Asia/Tokyo", "Etc/GMT-14", "Etc/GMT+12", "America/New_York"):
        for interval in Interval:
            buckets = Buckets(interval, ZoneInfo(zone))
            assert buckets.start(buckets.key(EARLIEST)) <= EARLIEST
            assert buckets.start(buckets.key(LATEST)) <= LATEST
