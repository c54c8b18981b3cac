"""Provisioning: describe the fleet in one YAML or JSON document and apply it idempotently.

`plan()` checks the whole document against what the store already holds and computes the rows to
upsert (only new or changed ones); `apply()` writes them in one transaction. Nothing is written
when any check fails: the first problem raises `ProvisioningError("<path>: <problem>")`, the path
leading from the document root to the offending key (`organizations[0].devices[1].colour`).

The file format, for its users: docs/fleet-file.md. Choices made where Blynk's conventions
say nothing:

- The document is a mapping whose `organizations` key is required. An optional key whose value
  is null counts as absent (so a YAML `clients:` with nothing under it is an empty list).
- An entity the file mentions is described completely: optional fields left out take their
  defaults (`alias` = label, `history` on, no `min`/`max`/`decimals`/`units`, device without
  owner, user role `User`), so removing e.g. `owner:` clears it. Secrets are the exception: left
  out, the stored hash is kept (a new entity gets a generated secret, reported once).
- Entities the file does not mention are never touched, datastreams included.
- Datastream `id`s are required: they appear in the API, so they must not depend on file order.
- A device's `product` is a product id or, so that products with assigned ids can be referenced,
  the name of a product (root or variant) of the same organization, if that name is unique.
- Entities without an `id` are matched by name (organization by name, product and device by
  organization and name); so that this stays unambiguous on the next apply, such a name must not
  appear twice among its kind in the file (per organization for products and devices), and two
  stored entities with that name are an error too. New ids are the highest id in use plus one.
- Organizations, products, devices and clients never move to another organization: an id or
  client_id that the store holds for another organization is an error.
- A variant has no datastreams of its own: a stored product that has datastreams or variants
  cannot be declared a variant. Re-parenting a stored variant under another root is allowed.
- Datastream pins and labels must stay unique within the product counting the stored
  datastreams the file does not mention. Labels and emails are compared exactly (the OAuth
  password grant looks users up by exact email); pins case-insensitively (stored lower-case).
- `decimals` (0..15) and `units` are for numeric types only, like `min`/`max`; an `integer`
  datastream's `min`/`max` must be whole int32 numbers. `enum` option keys are int32; in JSON
  documents they are strings holding an integer ("0"), non-canonical forms ("01") are refused.
- Event definitions (`events`, root products only) are keyed by their required `id`; codes are
  unique within the product counting stored events the file does not mention (as pins are),
  and `ONLINE`/`OFFLINE` are the system events' own. `timeline` defaults to true (Blynk's
  Console defaults to off, but pinbase has no Console to turn it on). `notify` is stored as
  canonical JSON text (sorted keys), so an unchanged setting is no change.
- Role permissions are de-duplicated and stored sorted; a role named Admin, Staff or User
  overrides that default role for its organization.
- Device tokens are unique in the server, checked against the stored devices as they will be
  after the apply: two devices of one file may swap tokens, or one may take over a token that
  another gives up in the same file. The swap is applied atomically (the store moves unique
  values between the rows of one upsert; see `pinbase.store.sql`). A token that a device keeps
  while the file gives it to another is refused, naming both devices.
- The planner checks every conflict it can against the stored rows before writing. The store's
  `Conflict` is the backstop (another apply that wrote between this one's read and write): it
  becomes the same one-line `ProvisioningError` ("database: <the store's message>"), and
  nothing is written either.
- Changing a user's password or role, or a client's secret, revokes every access and refresh
  token of that user (through any client) or issued through that client, in the transaction
  that writes the change (`ApplyReport.revoked`). A password given again that verifies against
  the stored hash is no change. Changing a role's permissions revokes nothing: every request is
  judged by the current catalog's roles.
- `delete` (for the Platform API; the document format never deletes) removes users and clients
  and revokes their tokens in one transaction; a user who still owns devices is refused.
- `ApplyReport.created`/`updated` contain only kinds with a non-zero count; kinds are the
  `Entities` field names (variants count as `products`). `unchanged` counts the entities of the
  file whose rows needed no change.

Limits: `apply` reads and then writes, so two concurrent applies may race (run one at a time);
the loser of such a race fails with the store's conflict rather than writing a broken state.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import orjson
import yaml

from pinbase.app.auth.secrets import (
    digest,
    hash_password,
    new_device_token,
    new_token,
    verify_user_password,
)
from pinbase.app.progress import NoProgress, Progress
from pinbase.app.timezones import UnknownTimezone, check_timezone
from pinbase.app.webhooks import Webhooks
from pinbase.domain.clock import now_ms
from pinbase.domain.errors import Invalid
from pinbase.domain.events import (
    CODE,
    DEFINABLE,
    MAX_DEFINITION_DESCRIPTION,
    EventType,
)
from pinbase.domain.events import MAX_NAME as MAX_EVENT_NAME
from pinbase.domain.metadata import (
    MAX_METAFIELDS,
    MAX_NAME,
    MAX_OPTIONS,
    MAX_TEXT,
    RESERVED_NAMES,
    Metafield,
    MetaType,
    check_value,
    metafield_type,
)
from pinbase.domain.model import (
    DEFAULT_ROLE_IDS,
    DEFAULT_ROLES,
    FIRST_CUSTOM_ROLE_ID,
    INT32_MAX,
    INT32_MIN,
    DataType,
    Permission,
    UserStatus,
)
from pinbase.domain.webhooks import (
    CONTENT_TYPES,
    MAX_BODY,
    MAX_URL,
    METHODS,
    TRIGGERS,
    unknown_placeholders,
)
from pinbase.store import Conflict, Store, opened_store
from pinbase.store.records import (
    ClientRow,
    DatastreamRow,
    DeviceRow,
    Entities,
    EventDefRow,
    MetafieldRow,
    MetaValueRow,
    OrgRow,
    ProductRow,
    Revocation,
    RoleRow,
    UserRow,
    WebhookRow,
)

T = TypeVar("T")
R = TypeVar("R")

NUMERIC_TYPES = frozenset({DataType.INTEGER, DataType.DOUBLE})
MAX_DECIMALS = 15
MIN_CLIENT_SECRET = 16
DEFAULT_USER_ROLE = "User"

_PIN = re.compile(r"[vV](0|[1-9][0-9]{0,2})")
_DEVICE_TOKEN = re.compile(r"[A-Za-z0-9]{32}")
_OPTION_KEY = re.compile(r"-?(0|[1-9][0-9]*)")


class ProvisioningError(Exception):
    """A document that cannot be applied; `str(err)` is `"<path>: <problem>"`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class ApplyReport:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    secrets: list[tuple[str, str]] = field(default_factory=list)
    """Generated secrets, to be shown once: (what, secret)."""
    revoked: Revocation = field(default_factory=Revocation)
    """The users and clients whose tokens the apply revoked (credentials or role changed)."""
    cleared_meta: tuple[int, ...] = ()
    """Devices moved to another product family: their metadata values (the old family's
    metafields) are deleted before the file's are written."""

    @property
    def changed(self) -> bool:
        return any(self.created.values()) or any(self.updated.values())


# --- reading the document -----------------------------------------------------------------


def load_document(path: Path) -> Any:
    """Parse a YAML (.yaml, .yml) or JSON (.json) file; errors name the file."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ProvisioningError(str(path), "unsupported file type (use .yaml, .yml or .json)")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ProvisioningError(str(path), f"cannot read the file: {exc.strerror}") from exc
    try:
        if suffix == ".json":
            return orjson.loads(text)
        return yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        raise ProvisioningError(str(path), f"invalid JSON: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ProvisioningError(str(path), f"invalid YAML: {exc}") from exc


def _fail(path: str, problem: str) -> NoReturn:
    raise ProvisioningError(path or "document", problem)


_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    for cls, name in _KINDS:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _child(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class _Map:
    """One mapping of the document: reads name their full path, unknown keys are refused."""

    def __init__(self, value: object, path: str, allowed: Iterable[str]) -> None:
        if not isinstance(value, dict):
            _fail(path, f"expected a mapping, got {_kind(value)}")
        known = set(allowed)
        for key in value:
            if key not in known:
                _fail(_child(path, key), "unknown key")
        self.path = path
        self._value: dict[Any, Any] = value

    def at(self, key: str) -> str:
        return _child(self.path, key)

    def required(self, key: str, check: Callable[[Any, str], T]) -> T:
        if key not in self._value:
            _fail(self.at(key), "missing (required)")
        return check(self._value[key], self.at(key))

    def optional(self, key: str, check: Callable[[Any, str], T]) -> T | None:
        value = self._value.get(key)
        return None if value is None else check(value, self.at(key))

    def items(self, key: str, *, required: bool = False) -> list[tuple[Any, str]]:
        """The entries of a list value, each with its path."""
        if required and key not in self._value:
            _fail(self.at(key), "missing (required)")
        value = self._value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            _fail(self.at(key), f"expected a list, got {_kind(value)}")
        return [(item, f"{self.at(key)}[{index}]") for index, item in enumerate(value)]


def _int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        _fail(path, f"{value} is out of range ({low} to {high})")
    return value


def _id(value: Any, path: str) -> int:
    return _int(value, path, 1, INT32_MAX)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"expected true or false, got {_kind(value)}")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"expected a number, got {_kind(value)}")
    if not math.isfinite(value):
        _fail(path, f"expected a finite number, got {value}")
    return float(value)


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {_kind(value)}")
    if not value.strip():
        _fail(path, "must not be empty")
    return value


def _timezone(value: Any, path: str) -> str:
    try:
        return check_timezone(_text(value, path))
    except UnknownTimezone as exc:
        _fail(path, str(exc))


def _email(value: Any, path: str) -> str:
    email = _text(value, path)
    local, at, domain = email.rpartition("@")
    if not (at and local and domain) or any(c.isspace() for c in email):
        _fail(path, f"{_show(email)} is not an email address")
    return email


def _pin(value: Any, path: str) -> str:
    pin = _text(value, path)
    match = _PIN.fullmatch(pin)
    if match is None or int(match.group(1)) > 255:
        _fail(path, f"invalid pin {_show(pin)} (expected v0 to v255)")
    return pin.lower()


def _data_type(value: Any, path: str) -> DataType:
    name = _text(value, path)
    try:
        return DataType(name)
    except ValueError:
        allowed = ", ".join(t.value for t in DataType)
        _fail(path, f"unknown type {_show(name)} (expected one of {allowed})")


def _permission(value: Any, path: str) -> str:
    name = _text(value, path)
    if name not in Permission.__members__:
        allowed = ", ".join(p.value for p in Permission)
        _fail(path, f"unknown permission {_show(name)} (expected one of {allowed})")
    return name


def _client_id(value: Any, path: str) -> str:
    client_id = _text(value, path)
    if any(c.isspace() for c in client_id):
        _fail(path, "a client_id must not contain white space")
    if client_id.startswith("@"):
        _fail(path, "a client_id must not start with '@' (reserved for the console's sessions)")
    return client_id


def _client_secret(value: Any, path: str) -> str:
    secret = _text(value, path)
    if len(secret) < MIN_CLIENT_SECRET:
        _fail(path, f"a client secret needs at least {MIN_CLIENT_SECRET} characters")
    return secret


def _device_token(value: Any, path: str) -> str:
    token = _text(value, path)
    if _DEVICE_TOKEN.fullmatch(token) is None:
        _fail(path, "a device token is exactly 32 letters (A-Z, a-z) or digits")
    return token


def _password(value: Any, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {_kind(value)}")
    if not value:
        _fail(path, "must not be empty")
    return value


def _product_ref(value: Any, path: str) -> int | str:
    if isinstance(value, str):
        return _text(value, path)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, f"expected a product id or name, got {_kind(value)}")
    return _id(value, path)


def _option_key(key: Any, path: str) -> int:
    if isinstance(key, str) and _OPTION_KEY.fullmatch(key):
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, int):
        _fail(path, f"option key {_show(key)} is not an integer")
    return _int(key, path, INT32_MIN, INT32_MAX)


def _options(value: Any, path: str) -> dict[int, str]:
    if not isinstance(value, dict) or not value:
        _fail(path, "expected a non-empty mapping of integer values to labels")
    options: dict[int, str] = {}
    for key, label in value.items():
        at = _child(path, key)
        number = _option_key(key, at)
        if not isinstance(label, str):
            _fail(at, f'expected a string label, got {_kind(label)} (quote "Off", "On" in YAML)')
        if number in options:
            _fail(at, f"duplicate option value {number}")
        options[number] = label
    return options


def _unique(entries: Iterable[tuple[Hashable, str]], what: str, *, secret: bool = False) -> None:
    """Fail at the second of two entries with the same key: (key, path of the value)."""
    seen: dict[Hashable, str] = {}
    for key, path in entries:
        if key in seen:
            shown = "" if secret else f" {_show(key)}"
            _fail(path, f"duplicate {what}{shown} (also at {seen[key]})")
        seen[key] = path


# --- the parsed document ------------------------------------------------------------------


@dataclass(frozen=True)
class _DatastreamSpec:
    path: str
    id: int
    pin: str
    label: str
    alias: str
    type: DataType
    min: float | None
    max: float | None
    decimals: int | None
    units: str | None
    options: dict[int, str] | None
    history: bool


@dataclass(eq=False)
class _Named:
    """An organization, product or device: `given_id` from the file, `id` once resolved."""

    path: str
    given_id: int | None
    name: str
    id: int = field(default=0, init=False)


@dataclass(eq=False)
class _ProductSpec(_Named):
    parent: _ProductSpec | None
    datastreams: list[_DatastreamSpec]
    metafields: list[_MetafieldSpec] = field(default_factory=list)
    events: list[_EventSpec] = field(default_factory=list)


@dataclass(eq=False)
class _DeviceSpec(_Named):
    product: int | str
    owner: str | None
    token: str | None
    timezone: str | None
    meta: list[tuple[str, str, str]] = field(default_factory=list)
    """(metafield name, value as text, path of the value)."""


@dataclass(frozen=True)
class _ClientSpec:
    path: str
    client_id: str
    secret: str | None


@dataclass(frozen=True)
class _RoleSpec:
    path: str
    name: str
    permissions: tuple[str, ...]


@dataclass(frozen=True)
class _UserSpec:
    path: str
    email: str
    password: str | None
    role: str
    name: str


@dataclass(eq=False)
class _OrgSpec(_Named):
    clients: list[_ClientSpec]
    roles: list[_RoleSpec]
    users: list[_UserSpec]
    products: list[_ProductSpec]  # roots and variants, each root before its variants
    devices: list[_DeviceSpec]
    timezone: str | None
    webhooks: list[_WebhookSpec] = field(default_factory=list)


def _parse_document(document: Any) -> list[_OrgSpec]:
    root = _Map(document, "", ("organizations",))
    orgs = [_parse_org(item, path) for item, path in root.items("organizations", required=True)]
    _unique(((w.id, f"{w.path}.id") for o in orgs for w in o.webhooks), "webhook id")
    _unique(((c.client_id, f"{c.path}.client_id") for o in orgs for c in o.clients), "client_id")
    _unique(
        ((d.token, f"{d.path}.token") for o in orgs for d in o.devices if d.token is not None),
        "device token",
        secret=True,
    )
    return orgs


def _parse_org(value: Any, path: str) -> _OrgSpec:
    m = _Map(
        value,
        path,
        ("id", "name", "timezone", "clients", "roles", "users", "products", "devices", "webhooks"),
    )
    org = _OrgSpec(
        path,
        m.optional("id", _id),
        m.required("name", _text),
        clients=[_parse_client(item, at) for item, at in m.items("clients")],
        roles=[_parse_role(item, at) for item, at in m.items("roles")],
        users=[_parse_user(item, at) for item, at in m.items("users")],
        products=[p for item, at in m.items("products") for p in _parse_product(item, at)],
        devices=[_parse_device(item, at) for item, at in m.items("devices")],
        timezone=m.optional("timezone", _timezone),
        webhooks=[_parse_webhook(item, at) for item, at in m.items("webhooks")],
    )
    _unique(((r.name, f"{r.path}.name") for r in org.roles), "role")
    _unique(((u.email, f"{u.path}.email") for u in org.users), "user email")
    return org


def _parse_client(value: Any, path: str) -> _ClientSpec:
    m = _Map(value, path, ("client_id", "client_secret"))
    return _ClientSpec(
        path, m.required("client_id", _client_id), m.optional("client_secret", _client_secret)
    )


def _parse_role(value: Any, path: str) -> _RoleSpec:
    m = _Map(value, path, ("name", "permissions"))
    name = m.required("name", _text)
    permissions = {_permission(item, at) for item, at in m.items("permissions", required=True)}
    return _RoleSpec(path, name, tuple(sorted(permissions)))


def _parse_user(value: Any, path: str) -> _UserSpec:
    m = _Map(value, path, ("email", "password", "role", "name"))
    email = m.required("email", _email)
    return _UserSpec(
        path,
        email,
        m.optional("password", _password),
        m.optional("role", _text) or DEFAULT_USER_ROLE,
        m.optional("name", _text) or email,
    )


def _parse_product(value: Any, path: str, parent: _ProductSpec | None = None) -> list[_ProductSpec]:
    """A root product followed by its variants (a variant: no datastreams, no variants)."""
    keys = (
        ("id", "name")
        if parent
        else ("id", "name", "datastreams", "variants", "metafields", "events")
    )
    m = _Map(value, path, keys)
    given_id, name = m.optional("id", _id), m.required("name", _text)
    streams = [_parse_datastream(item, at) for item, at in m.items("datastreams")]
    _unique(((d.id, f"{d.path}.id") for d in streams), "datastream id")
    _unique(((d.pin, f"{d.path}.pin") for d in streams), "pin")
    _unique(((d.label, f"{d.path}.label") for d in streams), "label")
    product = _ProductSpec(path, given_id, name, parent, datastreams=streams)
    product.metafields = _parse_metafields(m)
    product.events = _parse_events(m)
    variants = [v for item, at in m.items("variants") for v in _parse_product(item, at, product)]
    return [product, *variants]


_DATASTREAM_KEYS = (
    "id",
    "pin",
    "label",
    "alias",
    "type",
    "min",
    "max",
    "decimals",
    "units",
    "options",
    "history",
)


def _parse_datastream(value: Any, path: str) -> _DatastreamSpec:
    m = _Map(value, path, _DATASTREAM_KEYS)
    ds_id, pin = m.required("id", _id), m.required("pin", _pin)
    label = m.required("label", _text)
    alias = m.optional("alias", _text) or label
    data_type = m.required("type", _data_type)
    low, high = _bounds(m, data_type)
    decimals = m.optional("decimals", lambda v, at: _int(v, at, 0, MAX_DECIMALS))
    units = m.optional("units", _text)
    for key, given in (("decimals", decimals), ("units", units)):
        if given is not None and data_type not in NUMERIC_TYPES:
            _fail(m.at(key), f"only numeric datastreams (integer, double) have {key}")
    options = m.optional("options", _options)
    if data_type is DataType.ENUM and options is None:
        _fail(m.at("options"), "missing (required for type enum)")
    if data_type is not DataType.ENUM and options is not None:
        _fail(m.at("options"), "only enum datastreams have options")
    history = m.optional("history", _bool)
    return _DatastreamSpec(
        path,
        ds_id,
        pin,
        label,
        alias,
        data_type,
        low,
        high,
        decimals,
        units,
        options,
        True if history is None else history,
    )


def _bounds(m: _Map, data_type: DataType) -> tuple[float | None, float | None]:
    low, high = m.optional("min", _number), m.optional("max", _number)
    for key, bound in (("min", low), ("max", high)):
        if bound is None:
            continue
        if data_type not in NUMERIC_TYPES:
            _fail(m.at(key), f"only numeric datastreams (integer, double) have {key}")
        if data_type is DataType.INTEGER and not (
            bound.is_integer() and INT32_MIN <= bound <= INT32_MAX
        ):
            _fail(m.at(key), f"{_number_text(bound)} is not a whole int32 number")
    if low is not None and high is not None and low > high:
        _fail(m.at("min"), f"min {_number_text(low)} is greater than max {_number_text(high)}")
    return low, high


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


# events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _EventSpec:
    path: str
    id: int
    code: str
    name: str
    type: EventType
    description: str | None
    timeline: bool
    notify: str | None


_EVENT_KEYS = ("id", "code", "name", "type", "description", "timeline", "notify")
MAX_NOTIFY_EMAILS = 20
MAX_NOTIFY_PERIOD = 86_400


def _parse_events(product: _Map) -> list[_EventSpec]:
    events = [_parse_event(item, at) for item, at in product.items("events")]
    _unique(((e.id, f"{e.path}.id") for e in events), "event id")
    _unique(((e.code, f"{e.path}.code") for e in events), "event code")
    return events


def _parse_event(value: Any, path: str) -> _EventSpec:
    m = _Map(value, path, _EVENT_KEYS)
    event_id, code = m.required("id", _id), m.required("code", _text)
    if CODE.fullmatch(code) is None:
        _fail(m.at("code"), f"invalid code {_show(code)} (1 to 200 of A-Z a-z 0-9 _ -)")
    if code in ("ONLINE", "OFFLINE"):
        _fail(m.at("code"), f"{code} is a system event (built in)")
    name = m.required("name", _text)
    if len(name) > MAX_EVENT_NAME:
        _fail(m.at("name"), f"longer than {MAX_EVENT_NAME} characters")
    kind = m.required("type", _text)
    if kind not in DEFINABLE:
        allowed = ", ".join(DEFINABLE)
        _fail(m.at("type"), f"unknown type {_show(kind)} (expected one of {allowed})")
    description = m.optional("description", _text)
    if description is not None and len(description) > MAX_DEFINITION_DESCRIPTION:
        _fail(m.at("description"), f"longer than {MAX_DEFINITION_DESCRIPTION} characters")
    timeline = m.optional("timeline", _bool)
    notify = m.optional("notify", _notify)
    return _EventSpec(
        path,
        event_id,
        code,
        name,
        EventType(kind),
        description,
        True if timeline is None else timeline,
        notify,
    )


def _notify(value: Any, path: str) -> str:
    """Notification settings, stored as canonical JSON text (`pinbase.app.notifications` mails
    them): `email`, a list of addresses or `owner`; `period`, the seconds between two mails."""
    m = _Map(value, path, ("email", "period"))
    emails = [item if item == "owner" else _email(item, at) for item, at in m.items("email")]
    if len(emails) > MAX_NOTIFY_EMAILS:
        _fail(m.at("email"), f"more than {MAX_NOTIFY_EMAILS} recipients")
    settings: dict[str, Any] = {"email": emails}
    period = m.optional("period", lambda v, at: _int(v, at, 0, MAX_NOTIFY_PERIOD))
    if period is not None:
        settings["period"] = period
    return orjson.dumps(settings, option=orjson.OPT_SORT_KEYS).decode()


def _parse_device(value: Any, path: str) -> _DeviceSpec:
    m = _Map(value, path, ("id", "name", "product", "owner", "token", "timezone", "meta"))
    spec = _DeviceSpec(
        path,
        m.optional("id", _id),
        m.required("name", _text),
        product=m.required("product", _product_ref),
        owner=m.optional("owner", _email),
        token=m.optional("token", _device_token),
        timezone=m.optional("timezone", _timezone),
    )
    spec.meta = m.optional("meta", _meta_values) or []
    return spec


# --- metadata: product metafields, devices' values ------------------------------------------


@dataclass(frozen=True)
class _MetafieldSpec:
    path: str
    meta: Metafield


def _parse_metafields(product: _Map) -> list[_MetafieldSpec]:
    specs = [_parse_metafield(item, at) for item, at in product.items("metafields")]
    if len(specs) > MAX_METAFIELDS:
        _fail(product.at("metafields"), f"at most {MAX_METAFIELDS} metafields per product")
    _unique(((s.meta.id, f"{s.path}.id") for s in specs), "metafield id")
    _unique(((s.meta.name, f"{s.path}.name") for s in specs), "metafield name")
    return specs


def _meta_name(value: Any, path: str) -> str:
    name = _text(value, path)
    if len(name) > MAX_NAME or any(c in name for c in "/+#,\0") or name != name.strip():
        _fail(
            path,
            f"a metafield name has at most {MAX_NAME} characters, no / + # , or NUL, "
            "and no leading or trailing space",
        )
    if name in RESERVED_NAMES:
        _fail(path, f"{_show(name)} is reserved")
    return name


def _meta_type(value: Any, path: str) -> MetaType:
    try:
        return metafield_type(_text(value, path))
    except Invalid as exc:
        _fail(path, str(exc))


def _meta_text(value: Any, path: str) -> str:
    """A metadata value as text: a string, or a number (YAML reads 42 as one)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        _fail(path, f"expected a string or a number, got {_kind(value)}")
    return value if isinstance(value, str) else str(value)


def _meta_options(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_OPTIONS:
        _fail(path, f"expected a list of 1 to {MAX_OPTIONS} options")
    options = tuple(_meta_text(item, f"{path}[{i}]").strip() for i, item in enumerate(value))
    _unique(((o, f"{path}[{i}]") for i, o in enumerate(options)), "option")
    for i, option in enumerate(options):
        if not option or len(option) > MAX_TEXT or any(c < " " for c in option):
            _fail(f"{path}[{i}]", f"an option has 1 to {MAX_TEXT} printable characters")
    return options


_METAFIELD_KEYS = ("id", "name", "type", "default", "options", "min", "max")


def _parse_metafield(value: Any, path: str) -> _MetafieldSpec:
    m = _Map(value, path, _METAFIELD_KEYS)
    meta_type = m.required("type", _meta_type)
    options = m.optional("options", _meta_options)
    if meta_type is MetaType.LIST and options is None:
        _fail(m.at("options"), "missing (required for type list)")
    if meta_type is not MetaType.LIST and options is not None:
        _fail(m.at("options"), "only list metafields have options")
    low, high = m.optional("min", _number), m.optional("max", _number)
    for key, bound in (("min", low), ("max", high)):
        if bound is None:
            continue
        if meta_type not in (MetaType.NUMBER, MetaType.TEXT):
            _fail(m.at(key), f"only number and text metafields have {key}")
        if meta_type is MetaType.TEXT and not (bound.is_integer() and 0 <= bound <= MAX_TEXT):
            _fail(m.at(key), f"a text length bound is a whole number from 0 to {MAX_TEXT}")
    if low is not None and high is not None and low > high:
        _fail(m.at("min"), f"min {_number_text(low)} is greater than max {_number_text(high)}")
    meta = Metafield(
        m.required("id", _id), m.required("name", _meta_name), meta_type, None, options, low, high
    )
    default = m.optional("default", _meta_text)
    if default is not None:
        meta = replace(meta, default=_checked(meta, default, m.at("default")))
    return _MetafieldSpec(path, meta)


def _checked(meta: Metafield, text: str, path: str) -> str:
    try:
        return check_value(meta, text)
    except Invalid as exc:
        _fail(path, str(exc))


def _meta_values(value: Any, path: str) -> list[tuple[str, str, str]]:
    if not isinstance(value, dict):
        _fail(path, f"expected a mapping of metafield names to values, got {_kind(value)}")
    found = []
    for name, item in value.items():
        at = _child(path, name)
        if not isinstance(name, str):
            _fail(at, f"a metafield name is a string, got {_kind(name)}")
        found.append((name, _meta_text(item, at), at))
    return found


def _metafield_row(product_id: int, meta: Metafield) -> MetafieldRow:
    options = None if meta.options is None else orjson.dumps(list(meta.options)).decode()
    return MetafieldRow(
        product_id, meta.id, meta.name, meta.type.value, meta.default, options, meta.min, meta.max
    )


def _metafield_of(row: MetafieldRow) -> Metafield:
    options = None if row.options is None else tuple(orjson.loads(row.options))
    return Metafield(
        row.id, row.name, MetaType(row.type), row.default_value, options, row.min, row.max
    )


# --- planning -----------------------------------------------------------------------------


def _options_text(options: dict[int, str] | None) -> str | None:
    if options is None:
        return None
    return orjson.dumps({str(k): options[k] for k in sorted(options)}).decode()


def _canonical_options(text: str | None) -> str | None:
    if text is None:
        return None
    return _options_text({int(k): str(v) for k, v in orjson.loads(text).items()})


def _ids_by_name(rows: Iterable[tuple[int, int, str]]) -> dict[tuple[int, str], list[int]]:
    """(scope, name) -> ids, from (scope, id, name) triples."""
    found: dict[tuple[int, str], list[int]] = {}
    for scope, row_id, name in rows:
        found.setdefault((scope, name), []).append(row_id)
    return found


def _resolve_ids(
    entries: list[tuple[int, _Named]],
    what: str,
    stored_scope: dict[int, int],
    stored_names: dict[tuple[int, str], list[int]],
) -> None:
    """Give every (scope, entity) its id: the given one, a stored one matched by name, or new.

    `stored_scope` maps stored ids to their organization (or 0 for organizations themselves).
    """
    claimed: dict[int, str] = {}
    for scope, spec in entries:
        if spec.given_id is None:
            continue
        at, owner = f"{spec.path}.id", stored_scope.get(spec.given_id, scope)
        if spec.given_id in claimed:
            _fail(at, f"duplicate {what} id {spec.given_id} (also at {claimed[spec.given_id]})")
        if owner != scope:
            _fail(at, f"{what} {spec.given_id} belongs to organization {owner}")
        spec.id = spec.given_id
        claimed[spec.id] = spec.path
    _match_names(entries, what, stored_names, claimed)
    next_id = max([*stored_scope, *claimed], default=0) + 1
    for _, spec in entries:
        if spec.id == 0:
            if next_id > INT32_MAX:
                _fail(spec.path, f"no {what} id left to assign")
            spec.id, next_id = next_id, next_id + 1


def _match_names(
    entries: list[tuple[int, _Named]],
    what: str,
    stored_names: dict[tuple[int, str], list[int]],
    claimed: dict[int, str],
) -> None:
    """Match entities without an id to the stored entity of the same name, if there is one."""
    in_file = Counter((scope, spec.name) for scope, spec in entries)
    for scope, spec in entries:
        if spec.given_id is not None:
            continue
        at, name = f"{spec.path}.name", _show(spec.name)
        if in_file[scope, spec.name] > 1:
            _fail(at, f"{what} name {name} is used more than once here; give each an id")
        matches = stored_names.get((scope, spec.name), [])
        if len(matches) > 1:
            _fail(at, f"{len(matches)} stored {what}s are named {name}; give an id to choose one")
        if matches:
            if matches[0] in claimed:
                _fail(
                    at,
                    f"{name} is the name of {what} {matches[0]}, "
                    f"which {claimed[matches[0]]} defines too",
                )
            spec.id = matches[0]
            claimed[spec.id] = spec.path


class _Planner:
    """Compares the document with the stored rows; collects the rows that must be written."""

    def __init__(self, existing: Entities, progress: Progress) -> None:
        self.existing = existing
        self.progress = progress
        self.rows = Entities()
        self.created: Counter[str] = Counter()
        self.updated: Counter[str] = Counter()
        self.unchanged = 0
        self.secrets: list[tuple[str, str]] = []
        self.revoke_users: list[int] = []
        self.revoke_clients: list[str] = []
        self.role_names: dict[int, set[str]] = {}
        self.users: dict[tuple[int, str], UserRow] = {
            (u.org_id, u.email): u for u in existing.users
        }
        self.products: dict[int, ProductRow] = {p.id: p for p in existing.products}
        self.datastreams: dict[int, dict[int, DatastreamRow]] = {}
        for ds in existing.datastreams:
            self.datastreams.setdefault(ds.product_id, {})[ds.id] = ds
        self.devices: dict[int, DeviceRow] = {d.id: d for d in existing.devices}
        self.metafields: dict[int, dict[int, Metafield]] = {}
        for row in existing.metafields:
            self.metafields.setdefault(row.product_id, {})[row.id] = _metafield_of(row)
        self.stored_metafields = {(r.product_id, r.id): r for r in existing.metafields}
        self.meta_values = {(v.device_id, v.field_id): v for v in existing.meta_values}
        self.cleared_meta: list[int] = []
        self.events: dict[int, dict[int, EventDefRow]] = {}
        for event in existing.events:
            self.events.setdefault(event.product_id, {})[event.id] = event

    def run(self, orgs: list[_OrgSpec]) -> tuple[Entities, ApplyReport]:
        self._resolve(orgs)
        stored_orgs = {o.id: o for o in self.existing.organizations}
        for org in orgs:
            row = OrgRow(org.id, org.name, org.timezone)
            self._put("organizations", stored_orgs.get(org.id), row)
        for org in orgs:
            self._plan_roles(org)
        clients = {c.client_id: c for c in self.existing.clients}
        for org in orgs:
            for client in org.clients:
                self._plan_client(org, client, clients.get(client.client_id))
        self.progress.begin("users", sum(len(org.users) for org in orgs))  # slow hashes
        for org in orgs:
            self._plan_users(org)
        for org in orgs:
            self._plan_products(org)
        for org in orgs:
            for spec in org.devices:
                self._plan_device(org, spec)
        self._check_tokens(orgs)
        self._plan_webhooks(orgs)
        report = ApplyReport(
            created={k: n for k, n in self.created.items() if n},
            updated={k: n for k, n in self.updated.items() if n},
            unchanged=self.unchanged,
            secrets=self.secrets,
            revoked=Revocation(tuple(self.revoke_users), tuple(self.revoke_clients)),
            cleared_meta=tuple(self.cleared_meta),
        )
        return self.rows, report

    def _plan_webhooks(self, orgs: list[_OrgSpec]) -> None:
        stored = {w.id: w for w in self.existing.webhooks}
        for org in orgs:
            assert org.id is not None  # resolved
            for spec in org.webhooks:
                old = stored.get(spec.id)
                if old is not None and old.org_id != org.id:
                    _fail(f"{spec.path}.id", f"webhook {spec.id} belongs to another organization")
                secret = spec.secret
                if secret is None:
                    secret = old.secret if old is not None else None
                if secret is None:
                    secret = self._secret(f"webhook {spec.id} secret", new_token)
                self._put("webhooks", old, webhook_row(org.id, spec, secret))

    def _put(self, kind: str, old: R | None, new: R) -> None:
        if old == new:
            self.unchanged += 1
            return
        (self.created if old is None else self.updated)[kind] += 1
        getattr(self.rows, kind).append(new)

    def _secret(self, what: str, make: Callable[[], str]) -> str:
        secret = make()
        self.secrets.append((what, secret))
        return secret

    # ids ----------------------------------------------------------------------------------
    def _resolve(self, orgs: list[_OrgSpec]) -> None:
        ex = self.existing
        _resolve_ids(
            [(0, org) for org in orgs],
            "organization",
            {o.id: 0 for o in ex.organizations},
            _ids_by_name((0, o.id, o.name) for o in ex.organizations),
        )
        _resolve_ids(
            [(org.id, p) for org in orgs for p in org.products],
            "product",
            {p.id: p.org_id for p in ex.products},
            _ids_by_name((p.org_id, p.id, p.name) for p in ex.products),
        )
        _resolve_ids(
            [(org.id, d) for org in orgs for d in org.devices],
            "device",
            {d.id: d.org_id for d in ex.devices},
            _ids_by_name((d.org_id, d.id, d.name) for d in ex.devices),
        )

    # roles, clients, users ----------------------------------------------------------------
    def _plan_roles(self, org: _OrgSpec) -> None:
        stored = {r.name: r for r in self.existing.roles if r.org_id == org.id}
        self.role_names[org.id] = {*DEFAULT_ROLES, *stored, *(r.name for r in org.roles)}
        next_id = max((r.id + 1 for r in stored.values()), default=FIRST_CUSTOM_ROLE_ID)
        next_id = max(next_id, FIRST_CUSTOM_ROLE_ID)
        for spec in org.roles:
            old = stored.get(spec.name)
            if old is not None:
                old = replace(old, permissions=tuple(sorted(set(old.permissions))))
                role_id = old.id
            else:
                role_id = DEFAULT_ROLE_IDS.get(spec.name, next_id)
                next_id += role_id == next_id
            self._put("roles", old, RoleRow(org.id, spec.name, spec.permissions, role_id))

    def _plan_client(self, org: _OrgSpec, spec: _ClientSpec, old: ClientRow | None) -> None:
        if old is not None and old.org_id != org.id:
            _fail(
                f"{spec.path}.client_id",
                f"client {_show(spec.client_id)} belongs to organization {old.org_id}",
            )
        if spec.secret is not None:
            secret_hash = digest(spec.secret)
        elif old is not None:
            secret_hash = old.secret_hash
        else:
            secret_hash = digest(self._secret(f"client {spec.client_id} secret", new_token))
        if old is not None and old.secret_hash != secret_hash:
            self.revoke_clients.append(spec.client_id)
        self._put("clients", old, ClientRow(spec.client_id, org.id, secret_hash))

    def _plan_users(self, org: _OrgSpec) -> None:
        next_id = max((u.id for u in self.users.values()), default=0) + 1
        for spec in org.users:
            if spec.role not in self.role_names[org.id]:
                known = ", ".join(sorted(self.role_names[org.id]))
                _fail(f"{spec.path}.role", f"unknown role {_show(spec.role)} (known: {known})")
            old = self.users.get((org.id, spec.email))
            if old is None:
                user_id, next_id = next_id, next_id + 1
            else:
                user_id = old.id
            row = self._user_row(org.id, user_id, spec, old)
            if old is not None and (old.password_hash, old.role) != (row.password_hash, row.role):
                self.revoke_users.append(user_id)
            self._put("users", old, row)
            self.users[org.id, spec.email] = row
            self.progress.advance("users", 1)

    def _user_row(self, org_id: int, user_id: int, spec: _UserSpec, old: UserRow | None) -> UserRow:
        """The user as the file describes it. A user invited over the API stays Pending, with
        its invitation, until the file gives it a password; its timestamps are kept unless
        the row changes."""
        password_hash = self._password_hash(spec, old)
        now = now_ms()
        row = UserRow(user_id, org_id, spec.email, password_hash, spec.role, spec.name)
        if old is None:
            return replace(row, registered_at=now, last_modified=now)
        row = replace(row, registered_at=old.registered_at, last_modified=old.last_modified)
        if spec.password is None and old.status != UserStatus.ACTIVE:
            row = replace(
                row,
                status=old.status,
                invitation_hash=old.invitation_hash,
                invitation_expires=old.invitation_expires,
            )
        return row if row == old else replace(row, last_modified=now)

    def _password_hash(self, spec: _UserSpec, old: UserRow | None) -> str:
        if spec.password is None:
            if old is not None:
                return old.password_hash
            return hash_password(self._secret(f"user {spec.email} password", new_token))
        if old is not None and verify_user_password(spec.email, spec.password, old.password_hash):
            return old.password_hash
        return hash_password(spec.password)

    # products and datastreams -------------------------------------------------------------
    def _plan_products(self, org: _OrgSpec) -> None:
        for spec in org.products:
            parent_id = spec.parent.id if spec.parent else None
            row = ProductRow(spec.id, org.id, spec.name, parent_id)
            self._put("products", self.products.get(spec.id), row)
            self.products[spec.id] = row
        for spec in org.products:
            if spec.parent is None:
                self._plan_datastreams(spec)
                self._plan_metafields(spec)
                self._plan_events(spec)
            else:
                self._check_variant(spec)

    def _check_variant(self, spec: _ProductSpec) -> None:
        if self.datastreams.get(spec.id):
            _fail(
                spec.path, f"product {spec.id} has datastreams of its own: it cannot be a variant"
            )
        children = sorted(p.id for p in self.products.values() if p.parent_id == spec.id)
        if children:
            _fail(
                spec.path, f"product {spec.id} has variants ({children[0]}): it cannot be a variant"
            )

    def _plan_datastreams(self, product: _ProductSpec) -> None:
        stored = self.datastreams.setdefault(product.id, {})
        for spec in product.datastreams:
            old = stored.get(spec.id)
            if old is not None:
                old = replace(old, options=_canonical_options(old.options))
            row = DatastreamRow(
                product.id,
                spec.id,
                spec.pin,
                spec.label,
                spec.alias,
                spec.type.value,
                spec.min,
                spec.max,
                spec.decimals,
                spec.units,
                _options_text(spec.options),
                spec.history,
            )
            self._put("datastreams", old, row)
            stored[spec.id] = row
        for spec in product.datastreams:
            for other in stored.values():
                if other.id == spec.id:
                    continue
                if other.pin.lower() == spec.pin:
                    _fail(
                        f"{spec.path}.pin", f"pin {spec.pin} is also used by datastream {other.id}"
                    )
                if other.label == spec.label:
                    _fail(
                        f"{spec.path}.label",
                        f"label {_show(spec.label)} is also used by datastream {other.id}",
                    )

    def _plan_metafields(self, product: _ProductSpec) -> None:
        stored = self.metafields.setdefault(product.id, {})
        for spec in product.metafields:
            old = self.stored_metafields.get((product.id, spec.meta.id))
            self._put("metafields", old, _metafield_row(product.id, spec.meta))
            stored[spec.meta.id] = spec.meta
        for spec in product.metafields:
            for other in stored.values():
                if other.id != spec.meta.id and other.name == spec.meta.name:
                    _fail(
                        f"{spec.path}.name",
                        f"metafield name {_show(other.name)} is also used by metafield {other.id}",
                    )
        if len(stored) > MAX_METAFIELDS:
            _fail(product.path, f"at most {MAX_METAFIELDS} metafields per product")

    def _family(self, product_id: int) -> int:
        """The root product of `product_id` (whose metafields its devices have)."""
        root = self.products[product_id]
        while root.parent_id is not None and root.parent_id in self.products:
            root = self.products[root.parent_id]
        return root.id

    def _plan_meta(self, device: DeviceRow, old: DeviceRow | None, spec: _DeviceSpec) -> None:
        family = self._family(device.product_id)
        if old is not None and self._family(old.product_id) != family:
            stale = [key for key in self.meta_values if key[0] == device.id]
            for key in stale:
                del self.meta_values[key]
            if stale:
                self.cleared_meta.append(device.id)
        by_name = {m.name: m for m in self.metafields.get(family, {}).values()}
        for name, text, at in spec.meta:
            meta = by_name.get(name)
            if meta is None:
                _fail(at, f"product {family} has no metafield named {_show(name)}")
            row = MetaValueRow(device.id, meta.id, _checked(meta, text, at))
            self._put("meta_values", self.meta_values.get((device.id, meta.id)), row)

    def _plan_events(self, product: _ProductSpec) -> None:
        stored = self.events.setdefault(product.id, {})
        for spec in product.events:
            row = EventDefRow(
                product.id,
                spec.id,
                spec.code,
                spec.name,
                spec.type.value,
                spec.description,
                spec.timeline,
                spec.notify,
            )
            self._put("events", stored.get(spec.id), row)
            stored[spec.id] = row
        for spec in product.events:
            for other in stored.values():
                if other.id != spec.id and other.code == spec.code:
                    _fail(
                        f"{spec.path}.code",
                        f"code {_show(spec.code)} is also used by event {other.id}",
                    )

    # devices ------------------------------------------------------------------------------
    def _plan_device(self, org: _OrgSpec, spec: _DeviceSpec) -> None:
        product_id = self._device_product(org, spec)
        owner_id = None
        if spec.owner is not None:
            owner = self.users.get((org.id, spec.owner))
            if owner is None:
                _fail(f"{spec.path}.owner", f"no user {_show(spec.owner)} in this organization")
            owner_id = owner.id
        old = self.devices.get(spec.id)
        if spec.token is not None:
            token_hash = digest(spec.token)
        elif old is not None:
            token_hash = old.token_hash
        else:
            what = f"device {spec.id} ({spec.name}) token"
            token_hash = digest(self._secret(what, new_device_token))
        activated_at = old.activated_at if old is not None else now_ms()
        row = DeviceRow(
            spec.id,
            org.id,
            product_id,
            spec.name,
            owner_id,
            token_hash,
            spec.timezone,
            activated_at,
        )
        self._put("devices", old, row)
        self.devices[spec.id] = row
        self._plan_meta(row, old, spec)

    def _device_product(self, org: _OrgSpec, spec: _DeviceSpec) -> int:
        at, ref = f"{spec.path}.product", spec.product
        if isinstance(ref, int):
            product = self.products.get(ref)
            if product is None or product.org_id != org.id:
                _fail(at, f"no product {ref} in this organization")
            return ref
        matches = sorted(
            p.id for p in self.products.values() if (p.org_id, p.name) == (org.id, ref)
        )
        if not matches:
            _fail(at, f"no product named {_show(ref)} in this organization")
        if len(matches) > 1:
            _fail(at, f"{len(matches)} products are named {_show(ref)}; use the product id")
        return matches[0]

    def _check_tokens(self, orgs: list[_OrgSpec]) -> None:
        holders: dict[str, list[int]] = {}
        for device in self.devices.values():
            holders.setdefault(device.token_hash, []).append(device.id)
        for org in orgs:
            for spec in org.devices:
                if spec.token is None:
                    continue
                others = [d for d in holders[digest(spec.token)] if d != spec.id]
                if others:
                    _fail(
                        f"{spec.path}.token",
                        f"device {spec.id}'s token is already the token of device {others[0]}",
                    )


# --- webhooks -------------------------------------------------------------------------------


@dataclass
class _WebhookSpec:
    path: str
    id: int
    name: str
    trigger: str
    url: str
    method: str
    content_type: str
    body: str | None
    secret: str | None
    username: str | None
    password: str | None
    fires_for: list[int] | list[str] | None


def _choice(allowed: Sequence[str]) -> Callable[[Any, str], str]:
    def check(value: Any, path: str) -> str:
        if value not in allowed:
            _fail(path, f"expected one of {', '.join(allowed)}, got {_show(value)}")
        return str(value)

    return check


def _template(limit: int) -> Callable[[Any, str], str]:
    def check(value: Any, path: str) -> str:
        text = _text(value, path)
        if len(text) > limit:
            _fail(path, f"longer than {limit} characters")
        unknown = unknown_placeholders(text)
        if unknown:
            _fail(path, f"unknown placeholder {{{unknown[0]}}}")
        return text

    return check


def _webhook_url(value: Any, path: str) -> str:
    url = _template(MAX_URL)(value, path)
    try:
        parts = urlsplit(url)
    except ValueError:
        _fail(path, "not a URL")
    if parts.scheme not in ("http", "https") or not parts.netloc or "{" in parts.netloc:
        _fail(path, "expected an http:// or https:// URL with a fixed host")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        _fail(path, "must not hold spaces or control characters")
    return url


def _short_text(value: Any, path: str) -> str:
    text = _text(value, path)
    if len(text) > 256 or any(ord(ch) < 32 for ch in text):
        _fail(path, "expected at most 256 printable characters")
    return text


def _parse_webhook(value: Any, path: str) -> _WebhookSpec:
    m = _Map(
        value,
        path,
        (
            "id",
            "name",
            "trigger",
            "url",
            "method",
            "content_type",
            "body",
            "secret",
            "auth",
            "datastreams",
            "events",
        ),
    )
    trigger = m.required("trigger", _choice(TRIGGERS))
    fires_for: list[int] | list[str] | None = None
    datastreams = m.items("datastreams")
    events = m.items("events")
    if datastreams:
        if trigger != "DEVICE_DATASTREAM_UPDATE":
            _fail(m.at("datastreams"), "only for trigger DEVICE_DATASTREAM_UPDATE")
        fires_for = sorted({_id(item, at) for item, at in datastreams})
    if events:
        if trigger != "DEVICE_LOG_EVENT":
            _fail(m.at("events"), "only for trigger DEVICE_LOG_EVENT")
        fires_for = sorted({_short_text(item, at) for item, at in events})
    username = password = None
    auth = m.optional("auth", lambda v, at: _Map(v, at, ("username", "password")))
    if auth is not None:
        username = auth.required("username", _short_text)
        if ":" in username:
            _fail(auth.at("username"), "must not hold a colon")
        password = auth.required("password", _short_text)
    return _WebhookSpec(
        path,
        m.required("id", _id),
        m.required("name", _short_text),
        trigger,
        m.required("url", _webhook_url),
        m.optional("method", _choice(METHODS)) or "POST",
        m.optional("content_type", _choice(tuple(CONTENT_TYPES))) or "JSON",
        m.optional("body", _template(MAX_BODY)),
        m.optional("secret", _short_text),
        username,
        password,
        fires_for,
    )


def webhook_row(org_id: int, spec: _WebhookSpec, secret: str) -> WebhookRow:
    only = None if spec.fires_for is None else orjson.dumps(spec.fires_for).decode()
    return WebhookRow(
        spec.id,
        org_id,
        spec.name,
        spec.trigger,
        spec.url,
        spec.method,
        spec.content_type,
        spec.body,
        secret,
        spec.username,
        spec.password,
        only,
    )


async def put_webhook(
    store: Store, org_id: int, definition: dict[str, Any], *, create: bool
) -> tuple[WebhookRow, str | None] | None:
    """Create a webhook of the organization (with the next free id when the definition has
    none), or replace one it has (None when it has none of that id): the definition is a
    fleet-file webhook, checked alike. Returns the stored row and, for a secret generated here,
    that secret (to be shown once)."""
    hooks = {h.id: h for h in await store.webhooks()}
    if create and definition.get("id") is None:
        definition = {**definition, "id": max(hooks, default=0) + 1}
    spec = _parse_webhook(definition, "")
    old = hooks.get(spec.id)
    if old is not None and old.org_id != org_id:
        if not create:
            return None
        _fail("id", f"webhook {spec.id} belongs to another organization")
    if create and old is not None:
        _fail("id", f"webhook {spec.id} exists already")
    if not create and old is None:
        return None
    generated = None
    secret = spec.secret or (old.secret if old is not None else None)
    if secret is None:
        secret = generated = new_token()
    row = webhook_row(org_id, spec, secret)
    try:
        await store.upsert_entities(Entities(webhooks=[row]))
    except Conflict as exc:
        raise ProvisioningError("database", str(exc)) from exc
    return row, generated


def plan(
    document: Any, existing: Entities, progress: Progress | None = None
) -> tuple[Entities, ApplyReport]:
    """Check `document` against the stored rows; the rows to upsert (new or changed ones).
    Hashing the users' passwords is the slow part: `progress` hears of each user."""
    planner = _Planner(existing, progress if progress is not None else NoProgress())
    return planner.run(_parse_document(document))


async def apply(store: Store, document: Any, progress: Progress | None = None) -> ApplyReport:
    """Apply `document` to the store in one transaction, revoking the tokens of the users and
    clients whose credentials or role it changes; nothing is written if it is invalid."""
    existing = await store.entities()
    rows, report = plan(document, existing, progress)
    if not rows.is_empty():
        try:
            await store.upsert_entities(rows, report.revoked, report.cleared_meta)
        except Conflict as exc:  # the stored rows changed since they were read
            raise ProvisioningError("database", str(exc)) from exc
        known = {d.id for d in existing.devices}
        added = [d for d in rows.devices if d.id not in known]
        if added:  # after the commit: see `pinbase.app.webhooks`
            await Webhooks(store).device_added(added, now_ms())
    return report


async def delete(
    store: Store, user_ids: Sequence[int] = (), client_ids: Sequence[str] = ()
) -> None:
    """Delete users and clients, and revoke every token issued to them or through them, in one
    transaction. Unknown ids are no error; a user who still owns a device is refused (give the
    device another owner, or none, first) and nothing is written."""
    users = set(user_ids)
    owned = sorted(d.id for d in (await store.entities()).devices if d.owner_id in users)
    if owned:
        raise ProvisioningError("users", f"device {owned[0]} is owned by a user to delete")
    try:
        await store.delete_entities(sorted(users), sorted(set(client_ids)))
    except Conflict as exc:  # a device was given to the user since
        raise ProvisioningError("database", str(exc)) from exc


async def apply_to_database(
    url: str, document: Any, progress: Progress | None = None
) -> ApplyReport:
    """Open the store at `url`, apply `document` to it, and close it again."""
    async with opened_store(url) as store:
        return await apply(store, document, progress)
