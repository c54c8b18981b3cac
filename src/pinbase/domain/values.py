"""Datastream value types: parsing, type matching and clamping.

A value arrives either as a decoded JSON value (Organization API) or as text (device APIs). It
either matches its datastream's type and becomes a canonical value (int, float, str or a
[lon, lat] list), clamped to the datastream's min/max, or raises `Mismatch`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pinbase.domain.errors import Mismatch
from pinbase.domain.model import INT32_MAX, INT32_MIN, Datastream, DataType

MAX_STRING_LENGTH = 1024
MAX_NUMBER_TEXT = 400  # longer digit strings are no datastream's number

Value = int | float | str | list[float]


def _finite_number(raw: Any) -> float | int:
    """A finite JSON number or a string holding one; bools are not numbers."""
    if isinstance(raw, bool):
        raise Mismatch()
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise Mismatch()
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if "_" in text or not text.isascii() or len(text) > MAX_NUMBER_TEXT:
            raise Mismatch()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise Mismatch() from None
        if not math.isfinite(number):
            raise Mismatch()
        return number
    raise Mismatch()


def _integral(raw: Any) -> int:
    number = _finite_number(raw)
    if isinstance(number, float):
        if not number.is_integer():
            raise Mismatch()
        number = int(number)
    if not INT32_MIN <= number <= INT32_MAX:
        raise Mismatch()
    return number


def _clamp_int(ds: Datastream, value: int) -> int:
    if ds.min is not None and value < ds.min:
        value = math.ceil(ds.min)
    if ds.max is not None and value > ds.max:
        value = math.floor(ds.max)
    return value


def _clamp_float(ds: Datastream, value: float) -> float:
    if ds.min is not None and value < ds.min:
        value = ds.min
    if ds.max is not None and value > ds.max:
        value = ds.max
    return float(value)


def _as_float(raw: Any) -> float:
    try:
        number = float(_finite_number(raw))
    except OverflowError:
        raise Mismatch() from None
    if not math.isfinite(number):
        raise Mismatch()
    return number


def _location(lon_raw: Any, lat_raw: Any) -> list[float]:
    lon = _as_float(lon_raw)
    lat = _as_float(lat_raw)
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise Mismatch()
    return [lon, lat]


def parse_json_value(ds: Datastream, raw: Any) -> Value:
    """Match a decoded JSON value against the datastream type (Organization API rules)."""
    kind = ds.type
    if kind is DataType.DOUBLE:
        return _clamp_float(ds, _as_float(raw))
    if kind is DataType.INTEGER:
        return _clamp_int(ds, _integral(raw))
    if kind is DataType.STRING:
        if not isinstance(raw, str) or len(raw) > MAX_STRING_LENGTH:
            raise Mismatch()
        return raw
    if kind is DataType.ENUM:
        key = _integral(raw)
        if ds.options is None or key not in ds.options:
            raise Mismatch()
        return key
    if not isinstance(raw, list) or len(raw) != 2 or any(isinstance(v, str) for v in raw):
        raise Mismatch()
    return _location(raw[0], raw[1])


def parse_text_value(ds: Datastream, parts: Sequence[str]) -> Value:
    """Match values sent as text by a device (HTTP query, TCP frame, MQTT payload)."""
    if ds.type is DataType.LOCATION:
        if len(parts) == 1 and "," in parts[0]:
            parts = parts[0].split(",")
        if len(parts) != 2:
            raise Mismatch()
        return _location(parts[0], parts[1])
    if len(parts) != 1:
        raise Mismatch()
    return parse_json_value(ds, parts[0])


def to_text(value: Value | None) -> str:
    """The text form a device receives (Blynk sends values as strings; location as lon,lat);
    an erased value (None) is empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return f"{value[0]},{value[1]}"
    return str(value)
