"""The CSV export's times and values: `LocalTimes` (the fast path) answers exactly what the
plain conversion (`iso_time`) does, across DST changes, odd offsets, the epoch and the ends of
the calendar; values as CSV fields."""

from __future__ import annotations

import random

import pytest

from pinbase.app.history_export import LocalTimes, iso_time, value_text
from pinbase.app.timezones import load_zone

KYIV_SPRING = 1_774_746_000_000  # 2026-03-29T01:00Z: Kyiv moves from +02:00 to +03:00
ZONES = ("UTC", "Europe/Kyiv", "America/St_Johns", "Asia/Kathmandu", "Australia/Lord_Howe")


@pytest.mark.parametrize("name", ZONES)
def test_fast_local_times_match_the_plain_conversion(name: str) -> None:
    zone = load_zone(name).info
    chance = random.Random(name)
    stamps = sorted(chance.randrange(-5 * 10**12, 5 * 10**12) for _ in range(5_000))
    stamps += range(KYIV_SPRING - 3_600_000, KYIV_SPRING + 3_600_000, 997)
    stamps += [-62_135_596_800_001, -62_135_596_800_000, 253_402_300_799_999, 253_402_300_800_000]
    stamps += [-1, 0, 999, 1000]
    local = LocalTimes(zone)
    assert [local(ts) for ts in stamps] == [iso_time(ts, zone) for ts in stamps]


def test_times_and_values() -> None:
    kyiv = load_zone("Europe/Kyiv").info
    assert iso_time(KYIV_SPRING - 1, kyiv) == "2026-03-29T02:59:59.999+02:00"
    assert iso_time(KYIV_SPRING, kyiv) == "2026-03-29T04:00:00.000+03:00"
    assert iso_time(-1, load_zone(None).info) == "1969-12-31T23:59:59.999+00:00"
    assert iso_time(10**17, kyiv) == ""  # past year 9999
    assert [value_text(v) for v in ("21.5", "-3.0", '"a, \\"b\\""', "[30.52,50.45]")] == [
        "21.5",
        "-3.0",
        'a, "b"',
        "30.52,50.45",
    ]
