"""The entities of a pinbase deployment, as immutable values.

The catalog (organizations, products, datastreams, devices, users, roles) is small next to the
value data and changes rarely, so the server keeps a snapshot of it in memory and replaces the
snapshot whenever provisioning bumps the catalog generation in the store.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from pinbase.domain.events import EventDefinition
from pinbase.domain.metadata import NO_METAFIELDS, Metafields

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class DataType(enum.StrEnum):
    INTEGER = "integer"
    DOUBLE = "double"
    ENUM = "enum"
    STRING = "string"
    LOCATION = "location"


class Permission(enum.StrEnum):
    """Blynk's names for what a user's role allows (docs/api.md#permissions)."""

    OWN_DEVICES_VIEW = "OWN_DEVICES_VIEW"
    ORG_DEVICES_VIEW = "ORG_DEVICES_VIEW"
    ORG_DEVICES_CONTROL = "ORG_DEVICES_CONTROL"
    ORG_DEVICE_DATA_IMPORT = "ORG_DEVICE_DATA_IMPORT"
    ORG_DEVICES_CREATE = "ORG_DEVICES_CREATE"
    ORG_DEVICES_EDIT = "ORG_DEVICES_EDIT"
    ORG_DEVICES_DELETE = "ORG_DEVICES_DELETE"
    PROVISION_DEVICES = "PROVISION_DEVICES"
    PRODUCT_VIEW = "PRODUCT_VIEW"
    ORG_VIEW = "ORG_VIEW"
    ORG_VIEW_USERS = "ORG_VIEW_USERS"
    ORG_INVITE_USERS = "ORG_INVITE_USERS"
    ORG_EDIT_USERS = "ORG_EDIT_USERS"
    ORG_MANAGE = "ORG_MANAGE"


ALL_PERMISSIONS = frozenset(Permission)

DEFAULT_ROLES: Mapping[str, frozenset[Permission]] = {
    "Admin": ALL_PERMISSIONS,
    "Staff": frozenset(
        {
            Permission.ORG_DEVICES_VIEW,
            Permission.ORG_DEVICES_CONTROL,
            Permission.ORG_DEVICE_DATA_IMPORT,
            Permission.ORG_DEVICES_CREATE,
            Permission.ORG_DEVICES_EDIT,
            Permission.PROVISION_DEVICES,
            Permission.PRODUCT_VIEW,
            Permission.ORG_VIEW,
            Permission.ORG_VIEW_USERS,
        }
    ),
    "User": frozenset(
        {
            Permission.OWN_DEVICES_VIEW,
            Permission.ORG_DEVICES_CONTROL,
            Permission.PRODUCT_VIEW,
            Permission.ORG_VIEW,
        }
    ),
}
DEFAULT_ROLE_IDS: Mapping[str, int] = {"Admin": 1, "Staff": 2, "User": 3}
"""Blynk's ids of the default roles; an organization's own roles take ids from 4 up."""
FIRST_CUSTOM_ROLE_ID = 4


class UserStatus(enum.StrEnum):
    PENDING = "Pending"
    """Invited; becomes Active when the invitation is accepted."""
    ACTIVE = "Active"


@dataclass(frozen=True, slots=True)
class Datastream:
    id: int
    pin: str
    label: str
    alias: str
    type: DataType
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    units: str | None = None
    options: Mapping[int, str] | None = None
    history: bool = True


@dataclass(frozen=True, slots=True)
class Schema:
    """The datastreams of a product family (a root product and its variants share them)."""

    datastreams: tuple[Datastream, ...]
    by_id: Mapping[int, Datastream] = field(init=False)
    by_label: Mapping[str, Datastream] = field(init=False)
    by_pin: Mapping[str, Datastream] = field(init=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.datastreams, key=lambda d: d.id))
        object.__setattr__(self, "datastreams", ordered)
        object.__setattr__(self, "by_id", {d.id: d for d in ordered})
        object.__setattr__(self, "by_label", {d.label: d for d in ordered})
        object.__setattr__(self, "by_pin", {d.pin.lower(): d for d in ordered})


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    org_id: int
    name: str
    root_id: int
    schema: Schema
    metafields: Metafields = NO_METAFIELDS
    """The root product's metafields (variants share them)."""
    events: Mapping[str, EventDefinition] = field(default_factory=dict)
    """The events its devices may log, by code (a variant has its root product's)."""


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    org_id: int
    product_id: int
    root_product_id: int
    name: str
    owner_id: int | None
    timezone: str | None = None
    """IANA name; None: the organization's."""
    activated_at: int | None = None
    """When the device was created (epoch ms); None when unknown."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    org_id: int
    email: str
    role: str
    name: str = ""
    status: UserStatus = UserStatus.ACTIVE
    registered_at: int = 0
    last_modified: int = 0


@dataclass(frozen=True, slots=True)
class Organization:
    id: int
    name: str
    roles: Mapping[str, frozenset[Permission]]
    timezone: str | None = None
    """IANA name; None: UTC."""
    role_ids: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_ROLE_IDS))
    """Each role's id (Blynk's roleId), by role name."""

    def role_named(self, role_id: int) -> str | None:
        """The name of the role with this id; None when the organization has none."""
        return next((name for name, rid in self.role_ids.items() if rid == role_id), None)


@dataclass(frozen=True, slots=True)
class Catalog:
    """An immutable snapshot of every entity, tagged with the store's catalog generation."""

    generation: int
    organizations: Mapping[int, Organization]
    products: Mapping[int, Product]
    devices: Mapping[int, Device]
    users: Mapping[int, User]
    device_tokens: Mapping[str, int] = field(default_factory=dict)
    """Device id by the SHA-256 digest of the device's auth token."""

    def device_by_token_digest(self, token_digest: str) -> Device | None:
        device_id = self.device_tokens.get(token_digest)
        return None if device_id is None else self.devices.get(device_id)

    def timezone_of(self, device: Device) -> str | None:
        """The device's IANA timezone, else its organization's; None: UTC."""
        if device.timezone is not None:
            return device.timezone
        org = self.organizations.get(device.org_id)
        return None if org is None else org.timezone

    def schema_of(self, device: Device) -> Schema:
        return self.products[device.product_id].schema

    def permissions_of(self, user: User) -> frozenset[Permission]:
        org = self.organizations.get(user.org_id)
        if org is None:
            return frozenset()
        return org.roles.get(user.role, frozenset())
