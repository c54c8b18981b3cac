"""Principals, permissions and the device-coverage rule (spec: Permissions)."""

from __future__ import annotations

import pytest

from pinbase.domain.errors import Forbidden, NotFound
from pinbase.domain.model import (
    ALL_PERMISSIONS,
    DEFAULT_ROLES,
    Catalog,
    Device,
    Organization,
    Permission,
    Product,
    Schema,
    User,
)
from pinbase.domain.permissions import Principal, covered_device

P = Permission
ACME, GLOBEX = 1, 2

ACME_ROLES = {
    **DEFAULT_ROLES,
    "Auditor": frozenset({P.ORG_DEVICES_VIEW}),
    "Controller": frozenset({P.ORG_DEVICES_CONTROL}),
    "Importer": frozenset({P.ORG_DEVICE_DATA_IMPORT}),
}

USERS = {
    10: User(10, ACME, "admin@acme.test", "Admin"),
    11: User(11, ACME, "user@acme.test", "User"),
    12: User(12, ACME, "other@acme.test", "User"),
    13: User(13, ACME, "staff@acme.test", "Staff"),
    14: User(14, ACME, "auditor@acme.test", "Auditor"),
    15: User(15, ACME, "controller@acme.test", "Controller"),
    16: User(16, ACME, "importer@acme.test", "Importer"),
    17: User(17, ACME, "ghost@acme.test", "NoSuchRole"),
    21: User(21, GLOBEX, "user@globex.test", "User"),
}

# Device 102 is owned by user 11, 103 by user 12, 104 by nobody; 201 is Globex's and owned by its
# user 21. Device ids of the two tenants are disjoint, as they are in the store.
DEVICES = {
    102: Device(102, ACME, 1, 1, "acme-1", owner_id=11),
    103: Device(103, ACME, 1, 1, "acme-2", owner_id=12),
    104: Device(104, ACME, 1, 1, "acme-unowned", owner_id=None),
    105: Device(105, ACME, 1, 1, "acme-of-controller", owner_id=15),
    201: Device(201, GLOBEX, 2, 2, "globex-1", owner_id=21),
}

CATALOG = Catalog(
    generation=1,
    organizations={
        ACME: Organization(ACME, "Acme", ACME_ROLES),
        GLOBEX: Organization(GLOBEX, "Globex", dict(DEFAULT_ROLES)),
    },
    products={
        1: Product(1, ACME, "Sensor", 1, Schema(())),
        2: Product(2, GLOBEX, "Meter", 2, Schema(())),
    },
    devices=DEVICES,
    users=USERS,
)


def user_principal(user_id: int) -> Principal:
    user = USERS[user_id]
    return Principal(user.org_id, user.id, CATALOG.permissions_of(user))


PRINCIPALS = {
    "org": Principal(ACME, None, ALL_PERMISSIONS),
    "globex-org": Principal(GLOBEX, None, ALL_PERMISSIONS),
    "admin": user_principal(10),
    "user": user_principal(11),
    "other": user_principal(12),
    "staff": user_principal(13),
    "auditor": user_principal(14),
    "controller": user_principal(15),
    "importer": user_principal(16),
    "ghost": user_principal(17),
    "globex-user": user_principal(21),
}


def not_found_message(device_id: int) -> str:
    return f"Device with identifier {device_id} is not found or belong to another organization."


# --- roles ---------------------------------------------------------------------------------------


def test_default_roles_match_the_spec() -> None:
    blynk_four = {
        P.OWN_DEVICES_VIEW,
        P.ORG_DEVICES_VIEW,
        P.ORG_DEVICES_CONTROL,
        P.ORG_DEVICE_DATA_IMPORT,
    }
    assert blynk_four <= DEFAULT_ROLES["Admin"]
    assert DEFAULT_ROLES["Admin"] == set(P)
    assert DEFAULT_ROLES["Staff"] == {
        P.ORG_DEVICES_VIEW,
        P.ORG_DEVICES_CONTROL,
        P.ORG_DEVICE_DATA_IMPORT,
        P.ORG_DEVICES_CREATE,
        P.ORG_DEVICES_EDIT,
        P.PROVISION_DEVICES,
        P.PRODUCT_VIEW,
        P.ORG_VIEW,
        P.ORG_VIEW_USERS,
    }
    assert DEFAULT_ROLES["User"] == {
        P.OWN_DEVICES_VIEW,
        P.ORG_DEVICES_CONTROL,
        P.PRODUCT_VIEW,
        P.ORG_VIEW,
    }


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        (10, DEFAULT_ROLES["Admin"]),
        (13, DEFAULT_ROLES["Staff"]),
        (11, DEFAULT_ROLES["User"]),
        (14, frozenset({P.ORG_DEVICES_VIEW})),
        (17, frozenset()),  # a role the organization does not define grants nothing
        (21, DEFAULT_ROLES["User"]),
    ],
)
def test_permissions_of_a_user_come_from_its_organizations_roles(
    user_id: int, expected: frozenset[Permission]
) -> None:
    assert CATALOG.permissions_of(USERS[user_id]) == expected


# --- covers --------------------------------------------------------------------------------------

COVERAGE = [
    # organization-scoped: every device of its own organization, none of another
    ("org", 102, True),
    ("org", 103, True),
    ("org", 104, True),
    ("org", 201, False),
    ("globex-org", 201, True),
    ("globex-org", 102, False),
    # ORG_DEVICES_VIEW roles: every device of the organization
    ("admin", 102, True),
    ("admin", 104, True),
    ("admin", 201, False),
    ("staff", 102, True),
    ("staff", 103, True),
    ("staff", 104, True),
    ("staff", 201, False),
    ("auditor", 102, True),
    ("auditor", 104, True),
    ("auditor", 201, False),
    # OWN_DEVICES_VIEW: only devices the user owns
    ("user", 102, True),
    ("user", 103, False),
    ("user", 104, False),
    ("user", 201, False),
    ("other", 103, True),
    ("other", 102, False),
    ("globex-user", 201, True),
    ("globex-user", 102, False),
    # no view permission at all: not even an owned device
    ("controller", 105, False),
    ("controller", 102, False),
    ("importer", 102, False),
    ("ghost", 102, False),
]


@pytest.mark.parametrize(("who", "device_id", "expected"), COVERAGE)
def test_covers(who: str, device_id: int, expected: bool) -> None:
    assert PRINCIPALS[who].covers(DEVICES[device_id]) is expected


@pytest.mark.parametrize(("who", "device_id", "expected"), COVERAGE)
def test_covered_device_agrees_with_covers(who: str, device_id: int, expected: bool) -> None:
    principal = PRINCIPALS[who]
    if expected:
        assert covered_device(CATALOG, principal, device_id) is DEVICES[device_id]
    else:
        with pytest.raises(NotFound) as err:
            covered_device(CATALOG, principal, device_id)
        assert str(err.value) == not_found_message(device_id)


def test_owner_id_matching_in_another_organization_does_not_cover() -> None:
    # An Acme principal whose user id equals the owner id of a Globex device.
    principal = Principal(ACME, 21, DEFAULT_ROLES["User"])
    assert not principal.covers(DEVICES[201])


def test_principal_without_user_does_not_own_unowned_devices() -> None:
    principal = Principal(ACME, None, frozenset({P.OWN_DEVICES_VIEW}))
    assert DEVICES[104].owner_id is None
    assert not principal.covers(DEVICES[104])


# --- require / require_view ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "permission", "allowed"),
    [
        ("org", P.ORG_DEVICES_CONTROL, True),
        ("org", P.ORG_DEVICE_DATA_IMPORT, True),
        ("org", P.ORG_DEVICES_VIEW, True),
        ("admin", P.ORG_DEVICES_CONTROL, True),
        ("admin", P.ORG_DEVICE_DATA_IMPORT, True),
        ("staff", P.ORG_DEVICES_CONTROL, True),
        ("staff", P.ORG_DEVICE_DATA_IMPORT, True),
        ("staff", P.OWN_DEVICES_VIEW, False),
        ("user", P.ORG_DEVICES_CONTROL, True),
        ("user", P.ORG_DEVICE_DATA_IMPORT, False),
        ("user", P.ORG_DEVICES_VIEW, False),
        ("auditor", P.ORG_DEVICES_CONTROL, False),
        ("auditor", P.ORG_DEVICE_DATA_IMPORT, False),
        ("importer", P.ORG_DEVICE_DATA_IMPORT, True),
        ("importer", P.ORG_DEVICES_CONTROL, False),
        ("ghost", P.ORG_DEVICES_CONTROL, False),
    ],
)
def test_require(who: str, permission: Permission, allowed: bool) -> None:
    principal = PRINCIPALS[who]
    if allowed:
        principal.require(permission)
    else:
        with pytest.raises(Forbidden) as err:
            principal.require(permission)
        assert permission.value in str(err.value)


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("org", True),
        ("admin", True),
        ("staff", True),
        ("user", True),
        ("auditor", True),
        ("globex-user", True),
        ("controller", False),
        ("importer", False),
        ("ghost", False),
    ],
)
def test_require_view(who: str, allowed: bool) -> None:
    principal = PRINCIPALS[who]
    if allowed:
        principal.require_view()
    else:
        with pytest.raises(Forbidden) as err:
            principal.require_view()
        assert "OWN_DEVICES_VIEW" in str(err.value)
        assert "ORG_DEVICES_VIEW" in str(err.value)


# --- another tenant's device answers exactly like a missing one ----------------------------------


def test_another_organizations_device_is_indistinguishable_from_a_missing_one() -> None:
    acme_device = Device(101, ACME, 1, 1, "acme-101", owner_id=11)
    with_101 = Catalog(1, CATALOG.organizations, CATALOG.products, {101: acme_device}, USERS)
    without_101 = Catalog(1, CATALOG.organizations, CATALOG.products, {}, USERS)
    expected = "Device with identifier 101 is not found or belong to another organization."
    for principal in (PRINCIPALS["globex-org"], PRINCIPALS["globex-user"]):
        with pytest.raises(NotFound) as foreign:
            covered_device(with_101, principal, 101)
        with pytest.raises(NotFound) as missing:
            covered_device(without_101, principal, 101)
        assert str(foreign.value) == str(missing.value) == expected
        assert type(foreign.value) is type(missing.value)


def test_a_non_owned_device_is_indistinguishable_from_a_missing_one() -> None:
    with pytest.raises(NotFound) as not_owned:
        covered_device(CATALOG, PRINCIPALS["user"], 103)
    with pytest.raises(NotFound) as missing:
        covered_device(CATALOG, PRINCIPALS["user"], 999)
    assert str(not_owned.value) == not_found_message(103)
    assert str(missing.value) == not_found_message(999)
