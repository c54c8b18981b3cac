"""Widget properties: the names Blynk knows and the format each value must have."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson

from pinbase.domain.errors import Invalid

MAX_PROPERTY_LENGTH = 200
NO_NUL_PATTERN = "^[^\\u0000]*$"
"""Property values never hold NUL (U+0000): PostgreSQL text cannot store it, so no store does."""

_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_CSS_COLOR_NAMES = frozenset(
    [
        "black",
        "white",
        "red",
        "green",
        "blue",
        "yellow",
        "orange",
        "purple",
        "pink",
        "brown",
        "gray",
        "grey",
        "cyan",
        "magenta",
        "lime",
        "navy",
        "teal",
        "olive",
        "maroon",
        "silver",
        "gold",
        "aqua",
        "fuchsia",
        "transparent",
    ]
)


def _text(value: str) -> bool:
    return True


def _color(value: str) -> bool:
    return bool(_HEX_COLOR.fullmatch(value)) or value.lower() in _CSS_COLOR_NAMES


def _boolean(value: str) -> bool:
    return value in ("true", "false")


def _number(value: str, low: float = -math.inf, high: float = math.inf) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and low <= number <= high and "_" not in value


def _url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value


def _fraction_digits(value: str) -> bool:
    return value.isascii() and value.isdigit() and 0 <= int(value) <= 10


def _string_list(value: str, each: Callable[[str], bool] = _text) -> bool:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(decoded, list) and all(isinstance(v, str) and each(v) for v in decoded)


FORMATS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "label": ("text", _text),
    "onLabel": ("text", _text),
    "offLabel": ("text", _text),
    "suffix": ("text", _text),
    "valueFormatting": ("text", _text),
    "color": ("a #RRGGBB or #RRGGBBAA colour", _color),
    "onColor": ("a #RRGGBB or #RRGGBBAA colour", _color),
    "offColor": ("a #RRGGBB or #RRGGBBAA colour", _color),
    "onBackColor": ("a #RRGGBB or #RRGGBBAA colour", _color),
    "offBackColor": ("a #RRGGBB or #RRGGBBAA colour", _color),
    "isDisabled": ("true or false", _boolean),
    "isHidden": ("true or false", _boolean),
    "isOnPlay": ("true or false", _boolean),
    "isMuted": ("true or false", _boolean),
    "min": ("a finite number", _number),
    "max": ("a finite number", _number),
    "step": ("a finite number", _number),
    "maximumFractionDigits": ("an integer from 0 to 10", _fraction_digits),
    "opacity": ("a number from 0 to 100", lambda v: _number(v, 0, 100)),
    "scale": ("a number from 0 to 100", lambda v: _number(v, 0, 100)),
    "rotation": ("a number from 0 to 360", lambda v: _number(v, 0, 360)),
    "url": ("an http or https URL", _url),
    "labels": ("a JSON array of strings", _string_list),
    "urls": ("a JSON array of http or https URLs", lambda v: _string_list(v, _url)),
}

PROPERTY_NAMES = tuple(FORMATS)


def check_property(name: str, value: str) -> None:
    """Raise `Invalid` unless `value` is a well-formed value of widget property `name`."""
    spec = FORMATS.get(name)
    if spec is None:
        raise Invalid(f"Unknown widget property '{name}'.")
    if len(value) > MAX_PROPERTY_LENGTH:
        raise Invalid(
            f"Value of property '{name}' is longer than {MAX_PROPERTY_LENGTH} characters."
        )
    description, check = spec
    if "\x00" in value:
        raise Invalid(f"Value of property '{name}' holds a NUL character.")
    if not check(value):
        raise Invalid(f"Invalid value for property '{name}': expected {description}.")
