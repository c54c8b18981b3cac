"""Widget properties: the names Blynk knows, the format each value must have, and the one form
each is stored in.

Devices send some values in more than one form: Blynk's samples send a colour without its `#`
(`E4F6F7`) and booleans as `1`/`0`. Every interface that writes properties goes through
`parse_property`, which accepts those forms and returns the stored one, so readers (the
Organization API, the live stream, a device's downlink) see one form whatever the writer sent:

- colours: `#RRGGBB` or `#RRGGBBAA`, upper-case hex with `#` (`E4F6F7`, `#e4f6f7` ->
  `#E4F6F7`, as Blynk's own examples write them); colour names in lower case (`Red` -> `red`);
- booleans: `true` or `false`, from `true`/`false`/`1`/`0` in any letter case.
"""

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

_HEX_COLOR = re.compile(r"#?((?:[0-9a-fA-F]{6}|[0-9a-fA-F]{8}))")
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


Parse = Callable[[str], str | None]
"""A property's value in its stored form, or None when the value is not one of its forms."""


def _text(value: str) -> str | None:
    return value


def _color(value: str) -> str | None:
    hex_digits = _HEX_COLOR.fullmatch(value)
    if hex_digits is not None:
        return "#" + hex_digits.group(1).upper()
    name = value.lower()
    return name if name in _CSS_COLOR_NAMES else None


_BOOLEANS = {"true": "true", "1": "true", "false": "false", "0": "false"}


def _boolean(value: str) -> str | None:
    return _BOOLEANS.get(value.lower())


def _number(value: str, low: float = -math.inf, high: float = math.inf) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if math.isfinite(number) and low <= number <= high and "_" not in value:
        return value
    return None


def _url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme in ("http", "https") and bool(parts.netloc) and " " not in value:
        return value
    return None


def _fraction_digits(value: str) -> str | None:
    return value if value.isascii() and value.isdigit() and int(value) <= 10 else None


def _is_url(value: str) -> bool:
    return _url(value) is not None


def _string_list(value: str, each: Callable[[str], bool] = lambda _: True) -> str | None:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, list) and all(isinstance(v, str) and each(v) for v in decoded):
        return value
    return None


FORMATS: dict[str, tuple[str, Parse]] = {
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
    "isDisabled": ("true or false (or 1 or 0)", _boolean),
    "isHidden": ("true or false (or 1 or 0)", _boolean),
    "isOnPlay": ("true or false (or 1 or 0)", _boolean),
    "isMuted": ("true or false (or 1 or 0)", _boolean),
    "min": ("a finite number", _number),
    "max": ("a finite number", _number),
    "step": ("a finite number", _number),
    "maximumFractionDigits": ("an integer from 0 to 10", _fraction_digits),
    "opacity": ("a number from 0 to 100", lambda v: _number(v, 0, 100)),
    "scale": ("a number from 0 to 100", lambda v: _number(v, 0, 100)),
    "rotation": ("a number from 0 to 360", lambda v: _number(v, 0, 360)),
    "url": ("an http or https URL", _url),
    "labels": ("a JSON array of strings", _string_list),
    "urls": ("a JSON array of http or https URLs", lambda v: _string_list(v, _is_url)),
}

PROPERTY_NAMES = tuple(FORMATS)


def check_property_name(name: str) -> None:
    """Raise `Invalid` unless `name` is a widget property."""
    if name not in FORMATS:
        raise Invalid(f"Unknown widget property '{name}'.")


def parse_property(name: str, value: str) -> str:
    """`value` of widget property `name` in its stored form; `Invalid` unless it is well formed
    (in one of the forms the module docstring lists)."""
    check_property_name(name)
    if len(value) > MAX_PROPERTY_LENGTH:
        raise Invalid(
            f"Value of property '{name}' is longer than {MAX_PROPERTY_LENGTH} characters."
        )
    description, parse = FORMATS[name]
    if "\x00" in value:
        raise Invalid(f"Value of property '{name}' holds a NUL character.")
    stored = parse(value)
    if stored is None:
        raise Invalid(f"Invalid value for property '{name}': expected {description}.")
    return stored
