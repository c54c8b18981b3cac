"""Time and timezone answers (`domain.utc`) and loading zones by IANA name (`app.timezones`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pinbase.app.timezones import UnknownTimezone, check_timezone, fixed_rule, load_zone, posix_rule
from pinbase.domain.utc import next_changes, utc_all, utc_answer

# 2026-11-30 09:00:00.250 UTC: winter in Kyiv (UTC+2) and New York (UTC-5)
WINTER = int(datetime(2026, 11, 30, 9, 0, tzinfo=UTC).timestamp() * 1000) + 250
# 2026-07-01 12:00 UTC: summer time in both
SUMMER = int(datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
KYIV_SPRING_2027 = int(datetime(2027, 3, 28, 1, 0, tzinfo=UTC).timestamp())
KYIV_AUTUMN_2026 = int(datetime(2026, 10, 25, 1, 0, tzinfo=UTC).timestamp())
KYIV_AUTUMN_2027 = int(datetime(2027, 10, 31, 1, 0, tzinfo=UTC).timestamp())


def test_kyiv_in_winter_and_summer() -> None:
    kyiv = load_zone("Europe/Kyiv")
    assert kyiv.rule == "EET-2EEST,M3.5.0/3,M10.5.0/4"
    assert utc_answer("time", kyiv, WINTER) == ["time", str(WINTER)]
    assert utc_answer("iso", kyiv, WINTER) == ["iso", "2026-11-30T11:00:00+02:00"]
    assert utc_answer("tz", kyiv, WINTER) == ["tz", "120", "0"]
    assert utc_answer("tz", kyiv, SUMMER) == ["tz", "120", "60"]
    assert utc_answer("iso", kyiv, SUMMER) == ["iso", "2026-07-01T15:00:00+03:00"]
    assert utc_answer("tz_name", kyiv, WINTER) == ["tz_name", "Europe/Kyiv"]
    assert utc_answer("tz_rule", kyiv, WINTER) == ["tz_rule", "EET-2EEST,M3.5.0/3,M10.5.0/4"]
    assert utc_answer("dst_next", kyiv, WINTER) == [
        "dst_next",
        str(KYIV_SPRING_2027),
        "180",
        str(KYIV_AUTUMN_2027),
        "120",
    ]


def test_west_of_utc_and_half_hours() -> None:
    new_york = load_zone("America/New_York")
    assert utc_answer("tz", new_york, WINTER) == ["tz", "-300", "0"]
    assert utc_answer("tz", new_york, SUMMER) == ["tz", "-300", "60"]
    kolkata = load_zone("Asia/Kolkata")
    assert utc_answer("tz", kolkata, WINTER) == ["tz", "330", "0"]
    assert utc_answer("dst_next", kolkata, WINTER) == ["dst_next"]  # no changes ahead


def test_the_default_is_utc() -> None:
    zone = load_zone(None)
    assert (zone.name, zone.rule) == ("UTC", "UTC0")
    assert utc_answer("iso", zone, WINTER) == ["iso", "2026-11-30T09:00:00+00:00"]
    assert utc_answer("dst_next", zone, WINTER) == ["dst_next"]


@pytest.mark.parametrize("what", ["", "all", "TIME", "loc", "time "])
def test_unknown_requests_have_no_answer(what: str) -> None:
    assert utc_answer(what, load_zone(None), WINTER) is None


def test_all_at_once_for_mqtt() -> None:
    assert utc_all(load_zone("Europe/Kyiv"), SUMMER) == {
        "time": SUMMER,
        "iso": "2026-07-01T15:00:00+03:00",
        "tz": 120,
        "dst": 60,
        "tz_name": "Europe/Kyiv",
        "tz_rule": "EET-2EEST,M3.5.0/3,M10.5.0/4",
        "dst_next": [[KYIV_AUTUMN_2026, 120], [KYIV_SPRING_2027, 180]],
    }


def test_next_changes_finds_the_exact_second() -> None:
    fixed = timezone(timedelta(hours=3))
    assert next_changes(fixed, WINTER // 1000) == []
    kyiv = load_zone("Europe/Kyiv").info
    [(second, offset)] = next_changes(kyiv, KYIV_SPRING_2027 - 10, count=1)
    assert (second, offset) == (KYIV_SPRING_2027, 180)


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus",
        "",
        "../etc/passwd",
        "/usr/share/zoneinfo/UTC",
        "localtime",
        "europe/kyiv",
        "posix/Europe/Kyiv",
        "Factory",
    ],
)
def test_only_iana_names_are_timezones(name: str) -> None:
    with pytest.raises(UnknownTimezone):
        check_timezone(name)
    if name:  # an empty name loads the default, as None does
        with pytest.raises(UnknownTimezone):
            load_zone(name)


def test_posix_rule_is_the_tzif_footer() -> None:
    assert posix_rule(b"TZif2" + b"\0" * 40 + b"\nCET-1CEST,M3.5.0,M10.5.0/3\n") == (
        "CET-1CEST,M3.5.0,M10.5.0/3"
    )
    assert posix_rule(b"TZif\0" + b"\0" * 40) is None  # version 1: no footer
    assert posix_rule(b"not a zone\nUTC0\n") is None
    assert posix_rule(b"TZif2\n\xff\xfe\n") is None
    assert posix_rule(None) is None


@pytest.mark.parametrize(
    ("name", "rule"),
    [("Etc/GMT-3", "<+0300>-3"), ("Etc/GMT+5", "<-0500>+5"), ("Asia/Kolkata", "<+0530>-5:30")],
)
def test_a_zone_without_a_rule_is_described_by_its_offset(name: str, rule: str) -> None:
    assert fixed_rule(load_zone(name).info) == rule
