"""Metadata: a product's metafields, and the rules a device's metadata value must follow.

A metafield has a name unique within its product family, a type, and optionally a default
that a device without a value of its own reads. Values are stored as text in a canonical form
(`check_value`); only `number` values are numbers in JSON answers. Types Blynk has that
pinbase does not support (device name, owner, contact, image, hotspot, ...) are refused when
the fleet file is applied, by `metafield_type`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pinbase.domain.errors import Invalid

MAX_TEXT = 255
"""The longest text value, in characters (a `max` of a text field may only lower it)."""
MAX_NAME = 100
MAX_OPTIONS = 100
MAX_METAFIELDS = 50
"""Metafields per product family (Blynk allows 20 on PRO)."""
RESERVED_NAMES = frozenset({"Auth Token"})
"""Blynk keeps the device's token under this name; it is not a metafield here."""
INVALID_VALUE = "The provided value for metafield is invalid."

_NUMBER = re.compile(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")


class MetaType(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    LIST = "list"
    EMAIL = "email"
    LOCATION = "location"
    IMEI = "imei"
    ICCID = "iccid"


BLYNK_NAMES: Mapping[MetaType, str] = {
    MetaType.TEXT: "Text",
    MetaType.NUMBER: "Number",
    MetaType.LIST: "List",
    MetaType.EMAIL: "Email",
    MetaType.LOCATION: "Location",
    MetaType.IMEI: "Imei",
    MetaType.ICCID: "Iccid",
}
"""The type names of the Platform API (`template/metafields`)."""


def metafield_type(name: str) -> MetaType:
    """The type named `name` (case and `_`/space insensitive); Invalid names what is supported."""
    key = name.strip().lower().replace(" ", "").replace("_", "")
    try:
        return MetaType(key)
    except ValueError:
        allowed = ", ".join(t.value for t in MetaType)
        raise Invalid(f'type "{name}" is not supported (supported: {allowed})') from None


@dataclass(frozen=True, slots=True)
class Metafield:
    id: int
    name: str
    type: MetaType
    default: str | None = None
    """Canonical text (`check_value`); None: a device without a value of its own has none."""
    options: tuple[str, ...] | None = None
    """The choices of a `list` field."""
    min: float | None = None
    """`number`: the least value; `text`: the least length."""
    max: float | None = None
    """`number`: the greatest value; `text`: the greatest length (at most `MAX_TEXT`)."""


@dataclass(frozen=True, slots=True)
class Metafields:
    """The metafields of a product family (a root product and its variants share them)."""

    fields: tuple[Metafield, ...] = ()
    by_id: Mapping[int, Metafield] = field(init=False)
    by_name: Mapping[str, Metafield] = field(init=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.fields, key=lambda f: f.id))
        object.__setattr__(self, "fields", ordered)
        object.__setattr__(self, "by_id", {f.id: f for f in ordered})
        object.__setattr__(self, "by_name", {f.name: f for f in ordered})


NO_METAFIELDS = Metafields()


def check_value(meta: Metafield, raw: str) -> str:
    """The canonical text of `raw` as a value of `meta`; Invalid says why it is not one."""
    if len(raw) > 4 * MAX_TEXT:
        raise Invalid(f"{meta.name}: the value is too long")
    if meta.type is MetaType.TEXT:
        return _text(meta, raw)
    if _CONTROL.search(raw):
        raise Invalid(f"{meta.name}: the value holds a control character")
    text = raw.strip()
    if meta.type is MetaType.NUMBER:
        return _number(meta, text)
    if meta.type is MetaType.LIST:
        if meta.options is None or text not in meta.options:
            choices = ", ".join(meta.options or ())
            raise Invalid(f'{meta.name}: "{text}" is not one of the options ({choices})')
        return text
    if meta.type is MetaType.EMAIL:
        return _email(meta, text)
    if meta.type is MetaType.LOCATION:
        return _location(meta, text)
    if meta.type is MetaType.IMEI:
        if not (_DIGITS.fullmatch(text) and len(text) == 15):
            raise Invalid(f"{meta.name}: an IMEI is 15 digits")
        return text
    if not (_DIGITS.fullmatch(text) and 18 <= len(text) <= 22):
        raise Invalid(f"{meta.name}: an ICCID is 18 to 22 digits")
    return text


def _text(meta: Metafield, raw: str) -> str:
    if _CONTROL.search(raw):
        raise Invalid(f"{meta.name}: the value holds a control character")
    low = int(meta.min) if meta.min is not None else 0
    high = int(meta.max) if meta.max is not None else MAX_TEXT
    if not low <= len(raw) <= min(high, MAX_TEXT):
        raise Invalid(f"{meta.name}: the text must be {low} to {min(high, MAX_TEXT)} characters")
    return raw


def _number(meta: Metafield, text: str) -> str:
    if not _NUMBER.fullmatch(text):
        raise Invalid(f'{meta.name}: "{text}" is not a number')
    number = float(text)
    if not math.isfinite(number):
        raise Invalid(f'{meta.name}: "{text}" is not a finite number')
    if meta.min is not None and number < meta.min:
        raise Invalid(f"{meta.name}: {text} is below the minimum {number_text(meta.min)}")
    if meta.max is not None and number > meta.max:
        raise Invalid(f"{meta.name}: {text} is above the maximum {number_text(meta.max)}")
    return number_text(number)


def number_text(number: float) -> str:
    """A number's canonical text: `25` for a whole number (within 2**53), else `repr`."""
    if number.is_integer() and abs(number) <= 2**53:
        return str(int(number))
    return repr(number)


def _email(meta: Metafield, text: str) -> str:
    local, at, domain = text.rpartition("@")
    if (
        len(text) > 254
        or not (at and local and domain)
        or "." not in domain.strip(".")
        or any(c.isspace() or c in "<>()[]," for c in text)
    ):
        raise Invalid(f'{meta.name}: "{text}" is not an email address')
    return text


def _location(meta: Metafield, text: str) -> str:
    parts = text.replace(",", " ").split()
    bad = Invalid(f'{meta.name}: a location is "<lat> <lon>" (degrees), got "{text}"')
    if len(parts) != 2 or not all(_NUMBER.fullmatch(p) for p in parts):
        raise bad
    lat, lon = float(parts[0]), float(parts[1])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise bad
    return f"{number_text(lat)} {number_text(lon)}"


def json_value(meta: Metafield, text: str) -> str | float | int:
    """A stored value as the JSON answers carry it: a number for `number` fields."""
    if meta.type is MetaType.NUMBER:
        number = float(text)
        return int(number) if number.is_integer() and abs(number) <= 2**53 else number
    return text
