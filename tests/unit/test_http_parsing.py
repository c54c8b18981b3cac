"""Request parsing of the HTTP layer: JSON bodies (integers as JSON Schema 2020-12 has them)
and id lists in query strings."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from pinbase.domain.errors import Invalid
from pinbase.http.deps import decode_json, int_list
from pinbase.http.schemas import ImportBatch, Int64, UpdateValue


@pytest.mark.parametrize(
    ("body", "device_id"),
    [
        (b'{"deviceId": 110, "dataStreamId": 1, "value": 1}', 110),
        (b'{"deviceId": 110.0, "dataStreamId": 1, "value": 1}', 110),
        (b'{"deviceId": 1.1e2, "dataStreamId": 1, "value": 1}', 110),
        (b'{"deviceId": -0.0, "dataStreamId": 1, "value": 1}', 0),
    ],
)
def test_a_whole_number_is_an_integer_however_written(body: bytes, device_id: int) -> None:
    decoded = decode_json(body, UpdateValue)
    assert decoded.deviceId == device_id
    assert type(decoded.deviceId) is int


@pytest.mark.parametrize(
    "raw",
    [b"110.5", b'"110"', b"true", b"null", b"2147483648.0", b"1e300", b"[110]"],
    ids=["fraction", "string", "boolean", "null", "beyond-int32", "huge", "array"],
)
def test_anything_else_is_not_an_integer(raw: bytes) -> None:
    body = b'{"deviceId": ' + raw + b', "dataStreamId": 1, "value": 1}'
    with pytest.raises(msgspec.ValidationError):
        decode_json(body, UpdateValue)


def test_only_integer_positions_change() -> None:
    body = b'{"deviceId": 1.0, "dataStreamId": 2.0, "values": [{"ts": 3.0, "value": 4.0}]}'
    decoded = decode_json(body, ImportBatch)
    assert (decoded.deviceId, decoded.dataStreamId, decoded.values[0].ts) == (1, 2, 3)
    value: Any = decoded.values[0].value
    assert value == 4.0 and type(value) is float  # a value keeps its JSON spelling


def test_tuples_and_their_limits() -> None:
    points = decode_json(b"[[1.0, 2.0], [3, 4]]", list[tuple[Int64, Any]])
    assert points == [(1, 2.0), (3, 4)]
    with pytest.raises(msgspec.ValidationError):
        decode_json(b"[[9007199254740994.0, 1]]", list[tuple[Int64, Any]])  # beyond 2**53


def test_unknown_fields_are_still_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        decode_json(b'{"deviceId": 1.0, "dataStreamId": 1, "value": 1, "x": 1}', UpdateValue)


@pytest.mark.parametrize(
    ("raw", "ids"),
    [
        (None, []),
        ([""], []),
        (["1,3"], [1, 3]),
        (["3, 1,1"], [3, 1, 1]),
        (["1", "2,3"], [1, 2, 3]),
        (["-4"], [-4]),
    ],
)
def test_id_lists(raw: list[str] | None, ids: list[int]) -> None:
    assert int_list("ids", raw, -100, 100) == ids


@pytest.mark.parametrize("raw", ["1,,2", "1,", ",", " ", "a", "1.0", "+1", "101"])
def test_bad_id_lists(raw: str) -> None:
    with pytest.raises(Invalid):
        int_list("ids", [raw], -100, 100)
