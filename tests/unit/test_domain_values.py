"""Value types of the Organization API: matching, canonical form, clamping (spec: Value types)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pinbase.domain.errors import Invalid, Mismatch
from pinbase.domain.model import INT32_MAX, INT32_MIN, Datastream, DataType
from pinbase.domain.values import (
    MAX_STRING_LENGTH,
    parse_json_value,
    parse_text_value,
    to_text,
)

OPTIONS = {0: "Off", 1: "On", 2: "Auto"}


def stream(kind: DataType, **extra: Any) -> Datastream:
    return Datastream(id=1, pin="v1", label="Label", alias="Alias", type=kind, **extra)


INTEGER = stream(DataType.INTEGER)
DOUBLE = stream(DataType.DOUBLE)
ENUM = stream(DataType.ENUM, options=OPTIONS)
STRING = stream(DataType.STRING)
LOCATION = stream(DataType.LOCATION)


def test_mismatch_is_an_invalid_with_the_blynk_message() -> None:
    assert issubclass(Mismatch, Invalid)
    assert str(Mismatch()) == "Value doesn't match the Datastream data type."


# --- integer -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (22, 22),
        ("22", 22),
        (22.0, 22),
        (" 22 ", 22),
        ("-7", -7),
        ("22.0", 22),
        (1e3, 1000),
        (0, 0),
        (INT32_MAX, INT32_MAX),
        (INT32_MIN, INT32_MIN),
        (str(INT32_MAX), INT32_MAX),
    ],
)
def test_integer_accepts_integral_numbers_and_strings(raw: Any, expected: int) -> None:
    value = parse_json_value(INTEGER, raw)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    "raw",
    [
        22.7,
        "22.7",
        -0.5,
        True,
        False,
        INT32_MAX + 1,
        INT32_MIN - 1,
        str(INT32_MAX + 1),
        float(INT32_MAX + 1),
        1e300,
        math.nan,
        math.inf,
        "nan",
        "inf",
        "1_0",
        "abc",
        "",
        "0x10",
        None,
        [22],
        {"value": 22},
    ],
)
def test_integer_rejects_everything_else(raw: Any) -> None:
    with pytest.raises(Mismatch):
        parse_json_value(INTEGER, raw)


@pytest.mark.parametrize(
    ("low", "high", "raw", "expected"),
    [
        (0, 100, -5, 0),
        (0, 100, 150, 100),
        (0, 100, 50, 50),
        (0, 100, 0, 0),
        (0, 100, 100, 100),
        (0, None, -5, 0),
        (None, 100, 500, 100),
        # fractional bounds: the clamped value is the nearest integer inside the range
        (0.5, 9.5, 0, 1),
        (0.5, 9.5, 10, 9),
        (0.5, 9.5, 5, 5),
        (-9.5, -0.5, -10, -9),
        (-9.5, -0.5, 0, -1),
    ],
)
def test_integer_is_clamped_to_min_max(
    low: float | None, high: float | None, raw: int, expected: int
) -> None:
    value = parse_json_value(stream(DataType.INTEGER, min=low, max=high), raw)
    assert value == expected
    assert type(value) is int


# --- double --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (22.2, 22.2),
        (22, 22.0),
        (-0.25, -0.25),
        (0, 0.0),
        ("22.5", 22.5),
        ("22", 22.0),
        (" 1e3 ", 1000.0),
        ("-0.001", -0.001),
        (1.7976931348623157e308, 1.7976931348623157e308),
    ],
)
def test_double_accepts_finite_numbers_and_numeric_strings(raw: Any, expected: float) -> None:
    value = parse_json_value(DOUBLE, raw)
    assert value == expected
    assert type(value) is float


def test_double_keeps_full_precision_whatever_the_decimals() -> None:
    ds = stream(DataType.DOUBLE, decimals=1)
    assert parse_json_value(ds, 0.123456789012345) == 0.123456789012345


@pytest.mark.parametrize(
    "raw",
    [
        math.nan,
        math.inf,
        -math.inf,
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1_0",
        "1_000.5",
        "1e999",
        "abc",
        "",
        "0x1A",
        True,
        False,
        None,
        [1.0],
        {"v": 1.0},
    ],
)
def test_double_rejects_non_finite_and_non_numbers(raw: Any) -> None:
    with pytest.raises(Mismatch):
        parse_json_value(DOUBLE, raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            "1" * 400,
            id="400-digit-string",
        ),
        pytest.param(
            10**400,
            id="401-digit-int",
        ),
    ],
)
def test_double_rejects_integers_beyond_float_range(raw: Any) -> None:
    with pytest.raises(Mismatch):
        parse_json_value(DOUBLE, raw)


@pytest.mark.parametrize(
    ("low", "high", "raw", "expected"),
    [
        (-10, 10, -20.5, -10.0),
        (-10, 10, 20, 10.0),
        (-10, 10, 3.3, 3.3),
        (-10, 10, "11.5", 10.0),
        (-0.5, 0.5, 0.75, 0.5),
        (None, 0.5, -1e6, -1e6),
        (0.25, None, -1.0, 0.25),
    ],
)
def test_double_is_clamped_to_min_max(
    low: float | None, high: float | None, raw: Any, expected: float
) -> None:
    value = parse_json_value(stream(DataType.DOUBLE, min=low, max=high), raw)
    assert value == expected
    assert type(value) is float


# --- enum ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [(0, 0), (1, 1), (2, 2), ("2", 2), (1.0, 1)])
def test_enum_accepts_option_keys_as_numbers(raw: Any, expected: int) -> None:
    value = parse_json_value(ENUM, raw)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize("raw", [3, -1, "Off", "On", 1.5, True, False, None, [1], "1_0"])
def test_enum_rejects_values_that_are_not_option_keys(raw: Any) -> None:
    with pytest.raises(Mismatch):
        parse_json_value(ENUM, raw)


def test_enum_without_options_accepts_nothing() -> None:
    with pytest.raises(Mismatch):
        parse_json_value(stream(DataType.ENUM), 0)


def test_enum_is_not_clamped() -> None:
    ds = stream(DataType.ENUM, options=OPTIONS, min=0, max=1)
    assert parse_json_value(ds, 2) == 2


# --- string --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["ok", "", "22", "  spaced  ", "ünïcødé ✓", "x" * MAX_STRING_LENGTH, "é" * 1024]
)
def test_string_accepts_strings_up_to_1024_characters_unchanged(raw: str) -> None:
    assert MAX_STRING_LENGTH == 1024
    value = parse_json_value(STRING, raw)
    assert value == raw
    assert type(value) is str


@pytest.mark.parametrize("raw", ["x" * 1025, 22, 22.5, 0, True, None, ["a"], {"a": "b"}])
def test_string_rejects_long_strings_and_non_strings(raw: Any) -> None:
    with pytest.raises(Mismatch):
        parse_json_value(STRING, raw)


def test_string_is_not_clamped() -> None:
    assert parse_json_value(stream(DataType.STRING, min=0, max=1), "999") == "999"


# --- location ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([24.1, 56.9], [24.1, 56.9]),
        ([180, 90], [180.0, 90.0]),
        ([-180, -90], [-180.0, -90.0]),
        ([100.5, 45.0], [100.5, 45.0]),  # longitude first: 100.5 is only valid as a longitude
        ([0, 0], [0.0, 0.0]),
    ],
)
def test_location_accepts_lon_lat_pairs_within_bounds(raw: Any, expected: list[float]) -> None:
    value = parse_json_value(LOCATION, raw)
    assert value == expected
    assert isinstance(value, list)
    assert all(type(part) is float for part in value)


@pytest.mark.parametrize(
    "raw",
    [
        [45.0, 100.5],  # latitude out of range: the pair is not [lat, lon]
        [180.01, 0],
        [-180.5, 0],
        [0, 90.1],
        [0, -90.1],
        [1.0],
        [1.0, 2.0, 3.0],
        [],
        [True, 0],
        [0, False],
        [None, 0],
        [math.nan, 0],
        [0, math.inf],
        [[1], [2]],
        "24.1,56.9",
        ["24.1", "56.9"],  # JSON coordinates are numbers; text is for device APIs
        24.1,
        None,
        {"lon": 24.1, "lat": 56.9},
    ],
)
def test_location_rejects_bad_shapes_and_out_of_range_coordinates(raw: Any) -> None:
    with pytest.raises(Mismatch):
        parse_json_value(LOCATION, raw)


def test_location_is_not_clamped_to_datastream_min_max() -> None:
    ds = stream(DataType.LOCATION, min=0, max=1)
    assert parse_json_value(ds, [24.1, 56.9]) == [24.1, 56.9]


# --- text form (device APIs) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ds", "parts", "expected"),
    [
        (INTEGER, ["22"], 22),
        (INTEGER, ["-3"], -3),
        (stream(DataType.INTEGER, min=0, max=10), ["99"], 10),
        (DOUBLE, ["22.5"], 22.5),
        (DOUBLE, ["7"], 7.0),
        (stream(DataType.DOUBLE, min=0.0, max=1.0), ["-3.5"], 0.0),
        (ENUM, ["1"], 1),
        (STRING, ["hello"], "hello"),
        (STRING, ["22"], "22"),
        (LOCATION, ["24.1,56.9"], [24.1, 56.9]),
        (LOCATION, [" 24.1 , 56.9 "], [24.1, 56.9]),
        (LOCATION, ["24.1", "56.9"], [24.1, 56.9]),
        (LOCATION, ["-180", "-90"], [-180.0, -90.0]),
    ],
)
def test_parse_text_value_accepts(ds: Datastream, parts: list[str], expected: Any) -> None:
    value = parse_text_value(ds, parts)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("ds", "parts"),
    [
        (INTEGER, []),
        (INTEGER, ["1", "2"]),
        (INTEGER, ["22.7"]),
        (INTEGER, ["true"]),
        (DOUBLE, ["nan"]),
        (DOUBLE, ["inf"]),
        (DOUBLE, ["1_0"]),
        (DOUBLE, [""]),
        (ENUM, ["5"]),
        (ENUM, ["On"]),
        (STRING, ["a", "b"]),
        (STRING, ["x" * 1025]),
        (LOCATION, []),
        (LOCATION, ["24.1"]),
        (LOCATION, ["1,2,3"]),
        (LOCATION, ["1", "2", "3"]),
        (LOCATION, ["200,0"]),
        (LOCATION, ["0,100"]),
        (LOCATION, ["a,b"]),
        (LOCATION, ["nan,0"]),
        (LOCATION, ["1_0,0"]),
        (LOCATION, ["24.1,"]),
    ],
)
def test_parse_text_value_rejects(ds: Datastream, parts: list[str]) -> None:
    with pytest.raises(Mismatch):
        parse_text_value(ds, parts)


@pytest.mark.parametrize(
    ("ds", "parts"),
    [
        pytest.param(
            DOUBLE,
            ["1" * 400],
            id="double",
        ),
        pytest.param(
            LOCATION,
            ["1" * 400, "0"],
            id="location",
        ),
    ],
)
def test_parse_text_value_rejects_numbers_beyond_float_range(
    ds: Datastream, parts: list[str]
) -> None:
    with pytest.raises(Mismatch):
        parse_text_value(ds, parts)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (22, "22"),
        (-3, "-3"),
        (22.5, "22.5"),
        ("hello", "hello"),
        ("", ""),
        ([24.1, 56.9], "24.1,56.9"),
        ([-180.0, 90.0], "-180.0,90.0"),
    ],
)
def test_to_text(value: Any, text: str) -> None:
    assert to_text(value) == text


@pytest.mark.parametrize(
    ("ds", "raw"),
    [(INTEGER, 42), (DOUBLE, 0.1), (ENUM, 2), (STRING, "a,b"), (LOCATION, [24.1, -56.9])],
)
def test_to_text_round_trips_through_parse_text_value(ds: Datastream, raw: Any) -> None:
    value = parse_json_value(ds, raw)
    assert parse_text_value(ds, [to_text(value)]) == value
