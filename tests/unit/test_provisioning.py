"""Provisioning: the fleet file applied to a real SQLite store."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
import yaml

from pinbase.app.auth.secrets import digest, verify_password
from pinbase.app.provisioning import (
    ApplyReport,
    ProvisioningError,
    apply,
    delete,
    load_document,
    plan,
)
from pinbase.domain.model import ALL_PERMISSIONS, DataType, Permission
from pinbase.store.records import (
    DatastreamRow,
    DeviceRow,
    Entities,
    ProductRow,
    Revocation,
    RoleRow,
    TokenRow,
)
from pinbase.store.sqlite.store import SqliteStore

T = TypeVar("T")

EXAMPLE_YAML = """
organizations:
  - id: 1
    name: Acme Farms
    clients:
      - client_id: acme-backend
        client_secret: "change-me-please-0123456789"
    roles:
      - name: Auditor
        permissions: [ORG_DEVICES_VIEW]
    users:
      - email: alice@acme.test
        password: "correct horse battery staple"
        role: Admin
    products:
      - id: 10
        name: Weather Station
        datastreams:
          - {id: 1, pin: v1, label: Temperature, alias: Air temperature, type: double,
             min: -40, max: 85, decimals: 1, units: Celsius}
          - {id: 2, pin: v2, label: Humidity, type: integer, min: 0, max: 100}
          - {id: 3, pin: v3, label: Status, type: string}
          - {id: 4, pin: v4, label: Position, type: location}
          - {id: 5, pin: v5, label: Mode, type: enum, options: {0: "Off", 1: Eco, 2: Boost},
             history: false}
        variants:
          - {id: 11, name: Weather Station Pro}
    devices:
      - {id: 101, name: Roof, product: 10, owner: alice@acme.test,
         token: "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"}
      - {id: 102, name: Barn, product: 11}
"""
CLIENT_SECRET = "change-me-please-0123456789"
PASSWORD = "correct horse battery staple"
TOKEN = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"
EXAMPLE_ENTITIES = 13  # 1 org, 1 role, 1 client, 1 user, 2 products, 5 datastreams, 2 devices


def example() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE_YAML)
    return document


def run_with_store(db: Path, body: Callable[[SqliteStore], Awaitable[T]]) -> T:
    async def main() -> T:
        store = SqliteStore(db)
        await store.open()
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def apply_doc(db: Path, document: Any) -> ApplyReport:
    return run_with_store(db, lambda store: apply(store, document))


def stored(db: Path) -> Entities:
    return run_with_store(db, lambda store: store.entities())


def generation(db: Path) -> int:
    async def body(store: SqliteStore) -> int:
        return (await store.catalog()).generation

    return run_with_store(db, body)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "p.db"


# --- a complete example -------------------------------------------------------------------


def test_example_document_creates_every_row(db: Path) -> None:
    report = apply_doc(db, example())

    assert report.created == {
        "organizations": 1,
        "roles": 1,
        "clients": 1,
        "users": 1,
        "products": 2,
        "datastreams": 5,
        "devices": 2,
    }
    assert report.updated == {}
    assert report.unchanged == 0
    assert report.changed
    rows = stored(db)
    assert [(o.id, o.name) for o in rows.organizations] == [(1, "Acme Farms")]
    assert rows.roles == [RoleRow(1, "Auditor", ("ORG_DEVICES_VIEW",), 4)]
    [client] = rows.clients
    assert (client.client_id, client.org_id) == ("acme-backend", 1)
    assert client.secret_hash == digest(CLIENT_SECRET)
    [alice] = rows.users
    assert (alice.org_id, alice.email, alice.role) == (1, "alice@acme.test", "Admin")
    assert verify_password(PASSWORD, alice.password_hash)
    assert sorted(rows.products, key=lambda p: p.id) == [
        ProductRow(10, 1, "Weather Station", None),
        ProductRow(11, 1, "Weather Station Pro", 10),
    ]
    streams = {d.id: d for d in rows.datastreams}
    assert streams[1] == DatastreamRow(
        10,
        1,
        "v1",
        "Temperature",
        "Air temperature",
        "double",
        -40.0,
        85.0,
        1,
        "Celsius",
        None,
        True,
    )
    assert streams[2].alias == "Humidity"  # alias defaults to the label
    assert (streams[2].type, streams[2].min, streams[2].max) == ("integer", 0.0, 100.0)
    assert streams[5].options is not None
    assert orjson.loads(streams[5].options) == {"0": "Off", "1": "Eco", "2": "Boost"}
    assert streams[5].history is False
    assert {d.product_id for d in rows.datastreams} == {10}  # variants have none of their own
    devices = {d.id: replace(d, activated_at=None) for d in rows.devices}
    assert all(d.activated_at is not None for d in rows.devices)  # when the apply created it
    assert devices[101] == DeviceRow(101, 1, 10, "Roof", alice.id, digest(TOKEN))
    [(what, barn_token)] = report.secrets
    assert what == "device 102 (Barn) token"
    assert len(barn_token) == 32 and barn_token.isalnum()
    assert devices[102] == DeviceRow(102, 1, 11, "Barn", None, digest(barn_token))


def test_timezones_are_stored_and_resolved_device_then_organization(db: Path) -> None:
    document = example()
    document["organizations"][0]["devices"][0]["timezone"] = "Europe/Kyiv"
    apply_doc(db, document)
    rows = stored(db)
    assert {d.id: d.timezone for d in rows.devices} == {101: "Europe/Kyiv", 102: None}
    assert [o.timezone for o in rows.organizations] == [None]

    async def resolved(store: SqliteStore) -> dict[int, str | None]:
        catalog = await store.catalog()
        return {d: catalog.timezone_of(catalog.devices[d]) for d in (101, 102)}

    assert run_with_store(db, resolved) == {101: "Europe/Kyiv", 102: None}  # None: UTC
    document["organizations"][0]["timezone"] = "America/New_York"
    apply_doc(db, document)
    assert run_with_store(db, resolved) == {101: "Europe/Kyiv", 102: "America/New_York"}
    del document["organizations"][0]["devices"][0]["timezone"]
    apply_doc(db, document)  # removed from the file: the organization's again
    assert run_with_store(db, resolved) == {101: "America/New_York", 102: "America/New_York"}


def test_example_document_builds_the_catalog(db: Path) -> None:
    apply_doc(db, example())

    async def body(store: SqliteStore) -> None:
        catalog = await store.catalog()
        assert catalog.devices[101].root_product_id == 10
        assert catalog.devices[102].product_id == 11
        assert catalog.devices[102].root_product_id == 10
        schema = catalog.schema_of(catalog.devices[102])
        assert [d.id for d in schema.datastreams] == [1, 2, 3, 4, 5]
        assert schema.by_pin["v5"].type is DataType.ENUM
        assert schema.by_pin["v5"].options == {0: "Off", 1: "Eco", 2: "Boost"}
        assert schema.by_label["Temperature"].alias == "Air temperature"
        roles = catalog.organizations[1].roles
        assert set(roles) == {"Admin", "Staff", "User", "Auditor"}
        assert roles["Auditor"] == frozenset({Permission.ORG_DEVICES_VIEW})
        [alice] = catalog.users.values()
        assert catalog.permissions_of(alice) == ALL_PERMISSIONS

    run_with_store(db, body)


def test_load_document_reads_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "fleet.yml"
    yaml_file.write_text(EXAMPLE_YAML)
    assert load_document(yaml_file) == example()
    json_file = tmp_path / "fleet.json"
    document = example()
    ds = document["organizations"][0]["products"][0]["datastreams"][4]
    ds["options"] = {str(k): v for k, v in ds["options"].items()}  # JSON keys are strings
    json_file.write_bytes(orjson.dumps(document))
    loaded = load_document(json_file)
    assert loaded == document
    rows_yaml, _ = plan(example(), Entities())
    rows_json, _ = plan(loaded, Entities())
    assert [d.options for d in rows_json.datastreams] == [d.options for d in rows_yaml.datastreams]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("bad.yaml", "organizations: [", "invalid YAML"),
        ("bad.json", '{"organizations": ', "invalid JSON"),
        ("fleet.toml", "x = 1", "unsupported file type"),
    ],
)
def test_load_document_errors_name_the_file(
    tmp_path: Path, name: str, content: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ProvisioningError) as caught:
        load_document(path)
    assert str(caught.value).startswith(f"{path}: {problem}")


def test_load_document_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ProvisioningError, match="cannot read the file"):
        load_document(path)


# --- idempotence ---------------------------------------------------------------------------


def test_applying_twice_changes_nothing(db: Path) -> None:
    apply_doc(db, example())
    before, generation_before = stored(db), generation(db)

    again = apply_doc(db, example())

    assert not again.changed
    assert (again.created, again.updated, again.secrets) == ({}, {}, [])
    assert again.unchanged == EXAMPLE_ENTITIES
    assert stored(db) == before
    assert generation(db) == generation_before  # nothing was written at all
    rows, report = plan(example(), before)
    assert rows.is_empty()
    assert not report.changed


class Recorder:
    """A `pinbase.app.progress.Progress` that remembers what it heard."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, str, int]] = []

    def begin(self, phase: str, total: int) -> None:
        self.heard.append(("begin", phase, total))

    def advance(self, phase: str, steps: int) -> None:
        self.heard.append(("advance", phase, steps))


def test_planning_reports_each_user_it_hashes_for() -> None:
    document = example()
    document["organizations"][0]["users"].append(
        {"email": "bob@acme.test", "password": "another battery staple", "role": "Staff"}
    )
    recorder = Recorder()
    plan(document, Entities(), recorder)
    assert recorder.heard == [
        ("begin", "users", 2),
        ("advance", "users", 1),
        ("advance", "users", 1),
    ]


def test_changing_one_field_updates_only_that_row(db: Path) -> None:
    apply_doc(db, example())
    document = example()
    document["organizations"][0]["devices"][0]["name"] = "Roof top"
    document["organizations"][0]["products"][0]["datastreams"][1]["max"] = 90

    rows, report = plan(document, stored(db))
    assert report.updated == {"devices": 1, "datastreams": 1}
    assert report.created == {}
    assert report.unchanged == EXAMPLE_ENTITIES - 2
    assert [d.id for d in rows.devices] == [101]
    assert [(d.product_id, d.id) for d in rows.datastreams] == [(10, 2)]
    assert not (rows.organizations or rows.users or rows.products or rows.clients or rows.roles)

    apply_doc(db, document)
    after = stored(db)
    devices = {d.id: d for d in after.devices}
    assert devices[101].name == "Roof top"
    assert devices[101].token_hash == digest(TOKEN)
    assert devices[102].name == "Barn"
    assert {d.id: d.max for d in after.datastreams}[2] == 90.0
    assert not apply_doc(db, document).changed


def test_omitting_optional_fields_resets_them(db: Path) -> None:
    apply_doc(db, example())
    document = example()
    del document["organizations"][0]["devices"][0]["owner"]
    del document["organizations"][0]["products"][0]["datastreams"][0]["alias"]

    report = apply_doc(db, document)

    assert report.updated == {"devices": 1, "datastreams": 1}
    after = stored(db)
    assert {d.id: d.owner_id for d in after.devices}[101] is None
    assert {d.id: d.alias for d in after.datastreams}[1] == "Temperature"


def test_never_deletes_what_the_file_does_not_mention(db: Path) -> None:
    apply_doc(db, example())
    before = stored(db)
    document = {
        "organizations": [
            {"id": 1, "name": "Acme Farms", "devices": [{"id": 102, "name": "Barn", "product": 11}]}
        ]
    }

    report = apply_doc(db, document)

    assert not report.changed
    assert report.unchanged == 2
    assert stored(db) == before


def test_new_datastream_and_device_are_added(db: Path) -> None:
    apply_doc(db, example())
    document = example()
    org = document["organizations"][0]
    org["products"][0]["datastreams"].append(
        {"id": 6, "pin": "V6", "label": "Wind", "type": "double"}
    )
    org["devices"].append({"id": 103, "name": "Field", "product": "Weather Station Pro"})

    report = apply_doc(db, document)

    assert report.created == {"datastreams": 1, "devices": 1}
    assert [s[0] for s in report.secrets] == ["device 103 (Field) token"]
    after = stored(db)
    assert {d.id: d.pin for d in after.datastreams}[6] == "v6"  # pins are stored lower-case
    assert {d.id: d.product_id for d in after.devices}[103] == 11


# --- secrets -------------------------------------------------------------------------------


def test_omitted_secrets_are_generated_reported_once_and_kept(db: Path) -> None:
    document = example()
    org = document["organizations"][0]
    del org["clients"][0]["client_secret"]
    del org["users"][0]["password"]
    del org["devices"][0]["token"]

    report = apply_doc(db, document)

    secrets = dict(report.secrets)
    assert set(secrets) == {
        "client acme-backend secret",
        "user alice@acme.test password",
        "device 101 (Roof) token",
        "device 102 (Barn) token",
    }
    rows = stored(db)
    assert rows.clients[0].secret_hash == digest(secrets["client acme-backend secret"])
    assert verify_password(secrets["user alice@acme.test password"], rows.users[0].password_hash)
    devices = {d.id: d for d in rows.devices}
    assert devices[101].token_hash == digest(secrets["device 101 (Roof) token"])

    again = apply_doc(db, document)

    assert again.secrets == []
    assert not again.changed
    assert stored(db) == rows


def test_given_secrets_replace_generated_ones(db: Path) -> None:
    document = example()
    del document["organizations"][0]["clients"][0]["client_secret"]
    apply_doc(db, document)

    report = apply_doc(db, example())

    assert report.updated == {"clients": 1}
    assert report.secrets == []
    assert stored(db).clients[0].secret_hash == digest(CLIENT_SECRET)


def test_changed_password_is_rehashed(db: Path) -> None:
    apply_doc(db, example())
    document = example()
    document["organizations"][0]["users"][0]["password"] = "a completely new passphrase"

    report = apply_doc(db, document)

    assert report.updated == {"users": 1}
    [alice] = stored(db).users
    assert verify_password("a completely new passphrase", alice.password_hash)
    assert not verify_password(PASSWORD, alice.password_hash)
    assert not apply_doc(db, document).changed  # the same password verifies: kept


# --- revocation ---------------------------------------------------------------------------

NOW = 1_700_000_000_000
BOB = {"email": "bob@acme.test", "password": "bob's own passphrase", "role": "Auditor"}


def with_bob() -> dict[str, Any]:
    document = example()
    document["organizations"][0]["users"].append(dict(BOB))
    document["organizations"][0]["clients"].append(
        {"client_id": "acme-scripts", "client_secret": "scripts-secret-0123456789"}
    )
    return document


def issue(db: Path) -> dict[str, TokenRow]:
    """An access token of each principal: alice and bob (through acme-backend), each client."""
    users = {u.email: u.id for u in stored(db).users}
    rows = {
        "alice": TokenRow(
            "a" * 64, "access", "acme-backend", 1, users["alice@acme.test"], "f1", NOW
        ),
        "bob": TokenRow("b" * 64, "access", "acme-backend", 1, users["bob@acme.test"], "f2", NOW),
        "backend": TokenRow("c" * 64, "access", "acme-backend", 1, None, "f3", NOW),
        "scripts": TokenRow("d" * 64, "access", "acme-scripts", 1, None, "f4", NOW),
    }
    run_with_store(db, lambda store: store.insert_tokens(list(rows.values())))
    return rows


def valid(db: Path, rows: dict[str, TokenRow]) -> set[str]:
    async def body(store: SqliteStore) -> set[str]:
        return {n for n, row in rows.items() if await store.access_token(row.hash, NOW - 1)}

    return run_with_store(db, body)


def test_a_changed_password_revokes_that_users_tokens_in_the_same_apply(db: Path) -> None:
    apply_doc(db, with_bob())
    rows = issue(db)
    document = with_bob()
    document["organizations"][0]["users"][0]["password"] = "a completely new passphrase"
    before = generation(db)

    report = apply_doc(db, document)

    assert report.revoked == Revocation((rows["alice"].user_id or 0,), ())
    assert valid(db, rows) == {"bob", "backend", "scripts"}
    assert generation(db) == before + 1  # one transaction: the change, revocation and bump


def test_a_changed_role_revokes_that_users_tokens(db: Path) -> None:
    apply_doc(db, with_bob())
    rows = issue(db)
    document = with_bob()
    document["organizations"][0]["users"][1]["role"] = "Staff"

    report = apply_doc(db, document)

    assert report.revoked == Revocation((rows["bob"].user_id or 0,), ())
    assert valid(db, rows) == {"alice", "backend", "scripts"}


def test_a_rotated_client_secret_revokes_every_token_issued_through_it(db: Path) -> None:
    apply_doc(db, with_bob())
    rows = issue(db)
    document = with_bob()
    document["organizations"][0]["clients"][0]["client_secret"] = "rotated-secret-0123456789"

    report = apply_doc(db, document)

    assert report.revoked == Revocation((), ("acme-backend",))
    assert valid(db, rows) == {"scripts"}  # users' tokens obtained through it too


def test_applying_the_same_credentials_again_revokes_nothing(db: Path) -> None:
    apply_doc(db, with_bob())
    rows = issue(db)
    document = with_bob()
    document["organizations"][0]["users"][1]["email"] = "carol@acme.test"  # a new user
    document["organizations"][0]["devices"][1]["name"] = "Old barn"

    report = apply_doc(db, document)

    assert report.changed and report.revoked.is_empty()
    assert valid(db, rows) == set(rows)


def test_deleting_users_and_clients_revokes_their_tokens(db: Path) -> None:
    apply_doc(db, with_bob())
    rows = issue(db)
    bob = rows["bob"].user_id or 0

    run_with_store(db, lambda store: delete(store, user_ids=[bob], client_ids=["acme-scripts"]))

    assert valid(db, rows) == {"alice", "backend"}
    assert [u.email for u in stored(db).users] == ["alice@acme.test"]
    assert [c.client_id for c in stored(db).clients] == ["acme-backend"]


def test_a_user_who_owns_a_device_is_not_deleted(db: Path) -> None:
    apply_doc(db, with_bob())
    rows = issue(db)
    alice = rows["alice"].user_id or 0

    with pytest.raises(ProvisioningError, match="device 101 is owned"):
        run_with_store(
            db, lambda store: delete(store, user_ids=[alice], client_ids=["acme-scripts"])
        )

    assert valid(db, rows) == set(rows)  # nothing written
    assert len(stored(db).clients) == 2


def test_secrets_are_stored_hashed_never_in_clear(db: Path) -> None:
    document = example()
    del document["organizations"][0]["devices"][1]  # keep only the given token
    report = apply_doc(db, document)
    assert report.secrets == []

    content = b"".join(path.read_bytes() for path in db.parent.glob(db.name + "*"))

    for secret in (CLIENT_SECRET, TOKEN, PASSWORD):
        assert secret.encode() not in content
    assert digest(CLIENT_SECRET).encode() in content
    assert digest(TOKEN).encode() in content


# --- ids left out --------------------------------------------------------------------------


def without_ids() -> dict[str, Any]:
    return {
        "organizations": [
            {
                "name": "Globex",
                "products": [
                    {
                        "name": "Sensor",
                        "datastreams": [{"id": 1, "pin": "v1", "label": "T", "type": "double"}],
                        "variants": [{"name": "Sensor XL"}],
                    }
                ],
                "users": [{"email": "bob@globex.test", "password": "bob-password-1"}],
                "devices": [
                    {"name": "Lab", "product": "Sensor XL", "owner": "bob@globex.test"},
                    {"name": "Hall", "product": "Sensor"},
                ],
            }
        ]
    }


def test_omitted_ids_are_assigned_then_matched_by_name(db: Path) -> None:
    apply_doc(db, example())

    report = apply_doc(db, without_ids())

    assert report.created == {
        "organizations": 1,
        "users": 1,
        "products": 2,
        "datastreams": 1,
        "devices": 2,
    }
    rows = stored(db)
    assert {o.id: o.name for o in rows.organizations} == {1: "Acme Farms", 2: "Globex"}
    products = {p.name: p for p in rows.products}
    assert (products["Sensor"].id, products["Sensor"].org_id) == (12, 2)
    assert products["Sensor XL"] == ProductRow(13, 2, "Sensor XL", 12)
    devices = {d.name: d for d in rows.devices}
    assert (devices["Lab"].id, devices["Lab"].product_id) == (103, 13)
    assert (devices["Hall"].id, devices["Hall"].product_id) == (104, 12)
    bob = next(u for u in rows.users if u.email == "bob@globex.test")
    assert (bob.id, bob.role, devices["Lab"].owner_id) == (2, "User", bob.id)

    again = apply_doc(db, without_ids())
    assert not again.changed
    assert stored(db) == rows


def test_device_can_move_to_another_product_of_its_organization(db: Path) -> None:
    apply_doc(db, example())
    document = example()
    document["organizations"][0]["devices"][1]["product"] = 10

    report = apply_doc(db, document)

    assert report.updated == {"devices": 1}
    assert {d.id: d.product_id for d in stored(db).devices}[102] == 10


# --- invalid documents ---------------------------------------------------------------------

ORG = "organizations[0]"
DS = f"{ORG}.products[0].datastreams"
GLOBEX: dict[str, Any] = {
    "id": 2,
    "name": "Globex",
    "products": [
        {
            "id": 30,
            "name": "Sensor",
            "datastreams": [{"id": 1, "pin": "v1", "label": "T", "type": "double"}],
        }
    ],
    "devices": [{"id": 201, "name": "Lab", "product": 30}],
}


def edit(document: Any, path: str, value: Any) -> None:
    """Set (or, with DELETE, remove) the value at a dotted path; list indexes are numbers."""
    *parents, last = path.split(".")
    target = document
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is DELETE:
        del target[key]
    elif isinstance(target, list) and key == len(target):
        target.append(value)
    else:
        target[key] = value


DELETE = object()
INVALID: list[tuple[str, Any, str]] = [
    # (where to edit the example, the new value, the start of the error message)
    (
        "organizations.0.products.0.datastreams.2.type",
        "float",
        f'{DS}[2].type: unknown type "float"',
    ),
    ("organizations.0.devices.1.colour", "red", f"{ORG}.devices[1].colour: unknown key"),
    (
        "organizations.0.products.0.variants.0.datastreams",
        [],
        f"{ORG}.products[0].variants[0].datastreams: unknown key",
    ),
    (
        "organizations.0.products.0.id",
        "10",
        f"{ORG}.products[0].id: expected an integer, got a string",
    ),
    (
        "organizations.0.devices.0.id",
        True,
        f"{ORG}.devices[0].id: expected an integer, got a boolean",
    ),
    ("organizations.0.id", 0, f"{ORG}.id: 0 is out of range (1 to 2147483647)"),
    ("organizations.0.devices.1.id", 2**31, f"{ORG}.devices[1].id: 2147483648 is out of range"),
    (
        "organizations.0.products.0.datastreams.1.id",
        1.5,
        f"{DS}[1].id: expected an integer, got a number",
    ),
    ("organizations.0.name", DELETE, f"{ORG}.name: missing (required)"),
    ("organizations.0.name", " ", f"{ORG}.name: must not be empty"),
    ("organizations.0.devices", {"id": 1}, f"{ORG}.devices: expected a list, got a mapping"),
    (
        "organizations.0.products.0.datastreams.1.pin",
        "V1",
        f'{DS}[1].pin: duplicate pin "v1" (also at {DS}[0].pin)',
    ),
    ("organizations.0.products.0.datastreams.1.id", 1, f"{DS}[1].id: duplicate datastream id 1"),
    (
        "organizations.0.products.0.datastreams.2.label",
        "Humidity",
        f'{DS}[2].label: duplicate label "Humidity"',
    ),
    ("organizations.0.products.0.datastreams.0.pin", "v256", f'{DS}[0].pin: invalid pin "v256"'),
    ("organizations.0.products.0.datastreams.0.pin", "d1", f'{DS}[0].pin: invalid pin "d1"'),
    (
        "organizations.0.products.0.datastreams.4.options",
        DELETE,
        f"{DS}[4].options: missing (required for type enum)",
    ),
    (
        "organizations.0.products.0.datastreams.4.options",
        [0, 1],
        f"{DS}[4].options: expected a non-empty mapping",
    ),
    (
        "organizations.0.products.0.datastreams.4.options",
        {"a": "x"},
        f'{DS}[4].options.a: option key "a" is not an integer',
    ),
    (
        "organizations.0.products.0.datastreams.4.options",
        {0: False},
        f"{DS}[4].options.0: expected a string label, got a boolean",
    ),
    (
        "organizations.0.products.0.datastreams.2.options",
        {0: "x"},
        f"{DS}[2].options: only enum datastreams have options",
    ),
    (
        "organizations.0.products.0.datastreams.1.min",
        101,
        f"{DS}[1].min: min 101 is greater than max 100",
    ),
    (
        "organizations.0.products.0.datastreams.1.min",
        0.5,
        f"{DS}[1].min: 0.5 is not a whole int32 number",
    ),
    (
        "organizations.0.products.0.datastreams.2.max",
        5,
        f"{DS}[2].max: only numeric datastreams (integer, double) have max",
    ),
    (
        "organizations.0.products.0.datastreams.0.max",
        "85",
        f"{DS}[0].max: expected a number, got a string",
    ),
    (
        "organizations.0.products.0.datastreams.0.history",
        "yes",
        f"{DS}[0].history: expected true or false, got a string",
    ),
    (
        "organizations.0.products.0.datastreams.0.decimals",
        16,
        f"{DS}[0].decimals: 16 is out of range (0 to 15)",
    ),
    (
        "organizations.0.devices.0.product",
        99,
        f"{ORG}.devices[0].product: no product 99 in this organization",
    ),
    (
        "organizations.0.devices.0.product",
        "Tractor",
        f'{ORG}.devices[0].product: no product named "Tractor"',
    ),
    (
        "organizations.0.devices.0.owner",
        "eve@acme.test",
        f'{ORG}.devices[0].owner: no user "eve@acme.test" in this organization',
    ),
    ("organizations.0.users.0.role", "Boss", f'{ORG}.users[0].role: unknown role "Boss"'),
    (
        "organizations.0.users.0.email",
        "alice.acme.test",
        f'{ORG}.users[0].email: "alice.acme.test" is not an email address',
    ),
    (
        "organizations.0.users.1",
        {"email": "alice@acme.test"},
        f'{ORG}.users[1].email: duplicate user email "alice@acme.test"',
    ),
    (
        "organizations.0.roles.0.permissions.0",
        "FLY",
        f'{ORG}.roles[0].permissions[0]: unknown permission "FLY"',
    ),
    (
        "organizations.0.roles.0.permissions",
        DELETE,
        f"{ORG}.roles[0].permissions: missing (required)",
    ),
    (
        "organizations.0.devices.0.token",
        "short",
        f"{ORG}.devices[0].token: a device token is exactly 32",
    ),
    (
        "organizations.0.devices.0.token",
        "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6G-",
        f"{ORG}.devices[0].token: a device token is exactly 32",
    ),
    (
        "organizations.0.devices.1.token",
        TOKEN,
        f"{ORG}.devices[1].token: duplicate device token (also at {ORG}.devices[0].token)",
    ),
    (
        "organizations.0.clients.0.client_secret",
        "too-short",
        f"{ORG}.clients[0].client_secret: a client secret needs at least 16",
    ),
    (
        "organizations.0.clients.1",
        {"client_id": "acme-backend"},
        f'{ORG}.clients[1].client_id: duplicate client_id "acme-backend"',
    ),
    (
        "organizations.1",
        {**GLOBEX, "devices": [{"id": 101, "name": "X", "product": 30}]},
        "organizations[1].devices[0].id: duplicate device id 101 "
        "(also at organizations[0].devices[0])",
    ),
    ("organizations.1", {**GLOBEX, "id": 1}, "organizations[1].id: duplicate organization id 1"),
    (
        "organizations.1",
        {**GLOBEX, "products": [{"id": 11, "name": "P"}]},
        "organizations[1].products[0].id: duplicate product id 11 "
        "(also at organizations[0].products[0].variants[0])",
    ),
    (
        "organizations.1",
        {**GLOBEX, "devices": [{"id": 201, "name": "Lab", "product": 10}]},
        "organizations[1].devices[0].product: no product 10 in this organization",
    ),
    (
        "organizations.1",
        {**GLOBEX, "clients": [{"client_id": "acme-backend"}]},
        'organizations[1].clients[0].client_id: duplicate client_id "acme-backend"',
    ),
    (
        "organizations.0.products.1",
        {"name": "Weather Station"},
        f'{ORG}.products[1].name: product name "Weather Station" is used more than once',
    ),
    ("organizations", {"id": 1}, "organizations: expected a list, got a mapping"),
    ("organizations.0", "Acme", f"{ORG}: expected a mapping, got a string"),
    ("version", 2, "version: unknown key"),
    (
        "organizations.0.timezone",
        "Mars/Olympus",
        f"{ORG}.timezone: 'Mars/Olympus' is not an IANA timezone name",
    ),
    (
        "organizations.0.devices.0.timezone",
        "../../etc/passwd",
        f"{ORG}.devices[0].timezone: '../../etc/passwd' is not an IANA timezone name",
    ),
    (
        "organizations.0.devices.0.timezone",
        "localtime",
        f"{ORG}.devices[0].timezone: 'localtime' is not an IANA timezone name",
    ),
    ("organizations.0.devices.1.timezone", 3, f"{ORG}.devices[1].timezone: expected a string"),
]


@pytest.mark.parametrize(("where", "value", "message"), INVALID, ids=[m for _, _, m in INVALID])
def test_invalid_document_names_the_path_and_writes_nothing(
    db: Path, where: str, value: Any, message: str
) -> None:
    apply_doc(db, example())
    before, generation_before = stored(db), generation(db)
    document = example()
    edit(document, where, value if value is DELETE else copy.deepcopy(value))

    with pytest.raises(ProvisioningError) as caught:
        apply_doc(db, document)

    assert str(caught.value).startswith(message)
    assert stored(db) == before
    assert generation(db) == generation_before


STORED_CONFLICTS: list[tuple[dict[str, Any], str]] = [
    # documents that are valid alone but not with the example already stored
    (
        {"id": 2, "name": "Globex", "products": [{"id": 10, "name": "Sensor"}]},
        "organizations[0].products[0].id: product 10 belongs to organization 1",
    ),
    (
        {**GLOBEX, "devices": [{"id": 102, "name": "Lab", "product": 30}]},
        "organizations[0].devices[0].id: device 102 belongs to organization 1",
    ),
    (
        {**GLOBEX, "clients": [{"client_id": "acme-backend"}]},
        'organizations[0].clients[0].client_id: client "acme-backend" belongs to organization 1',
    ),
    (
        {**GLOBEX, "devices": [{"id": 201, "name": "Lab", "product": 30, "token": TOKEN}]},
        "organizations[0].devices[0].token: device 201's token is already the token of device 101",
    ),
    (
        {
            "id": 1,
            "name": "Acme Farms",
            "products": [
                {
                    "id": 10,
                    "name": "Weather Station",
                    "datastreams": [{"id": 6, "pin": "v1", "label": "Wind", "type": "double"}],
                }
            ],
        },
        "organizations[0].products[0].datastreams[0].pin: pin v1 is also used by datastream 1",
    ),
    (
        {
            "id": 1,
            "name": "Acme Farms",
            "products": [
                {
                    "id": 10,
                    "name": "Weather Station",
                    "datastreams": [{"id": 6, "pin": "v6", "label": "Mode", "type": "string"}],
                }
            ],
        },
        'organizations[0].products[0].datastreams[0].label: label "Mode" '
        "is also used by datastream 5",
    ),
    (
        {
            "id": 1,
            "name": "Acme Farms",
            "products": [{"id": 20, "name": "Pump", "variants": [{"id": 10, "name": "X"}]}],
        },
        "organizations[0].products[0].variants[0]: product 10 has datastreams of its own",
    ),
    (
        {
            "id": 1,
            "name": "Acme Farms",
            "users": [{"email": "bob@acme.test", "role": "Auditor"}],
            "devices": [{"id": 101, "name": "Roof", "product": 10, "owner": "nobody@acme.test"}],
        },
        'organizations[0].devices[0].owner: no user "nobody@acme.test"',
    ),
]


@pytest.mark.parametrize(("org", "message"), STORED_CONFLICTS, ids=[m for _, m in STORED_CONFLICTS])
def test_conflicts_with_stored_rows_write_nothing(
    db: Path, org: dict[str, Any], message: str
) -> None:
    apply_doc(db, example())
    before, generation_before = stored(db), generation(db)

    with pytest.raises(ProvisioningError) as caught:
        apply_doc(db, {"organizations": [copy.deepcopy(org)]})

    assert str(caught.value).startswith(message)
    assert stored(db) == before
    assert generation(db) == generation_before


def test_two_devices_swap_tokens_in_one_apply(db: Path) -> None:
    other = "A" * 32
    document = example()
    roof, barn = document["organizations"][0]["devices"]
    barn["token"] = other
    apply_doc(db, document)
    roof["token"], barn["token"] = other, TOKEN

    report = apply_doc(db, document)

    assert report.updated == {"devices": 2}
    tokens = {d.id: d.token_hash for d in stored(db).devices}
    assert tokens == {101: digest(other), 102: digest(TOKEN)}


def test_a_conflict_the_store_finds_is_the_same_one_line_error(db: Path) -> None:
    """The planner read the stored rows before another apply added device 101: the store's
    conflict is the backstop, and nothing is written."""
    apply_doc(db, example())
    before, generation_before = stored(db), generation(db)
    stale = Entities(
        organizations=before.organizations,
        products=before.products,
        datastreams=before.datastreams,
    )
    document = {
        "organizations": [
            {"id": 1, "name": "Acme Farms", "devices": [{"id": 150, "name": "New", "product": 10}]}
        ]
    }
    document["organizations"][0]["devices"][0]["token"] = TOKEN

    async def body(store: SqliteStore) -> ApplyReport:
        reads = [stale]  # the planner's read is stale; the store's own reads are not
        current = store.entities

        async def entities() -> Entities:
            return reads.pop() if reads else await current()

        store.entities = entities  # type: ignore[method-assign]
        return await apply(store, document)

    with pytest.raises(ProvisioningError) as caught:
        run_with_store(db, body)

    assert str(caught.value) == "database: device 150's token is already the token of device 101"
    assert stored(db) == before
    assert generation(db) == generation_before


def test_stored_users_and_roles_can_be_referenced(db: Path) -> None:
    apply_doc(db, example())
    document = {
        "organizations": [
            {
                "id": 1,
                "name": "Acme Farms",
                "users": [{"email": "carol@acme.test", "role": "Auditor"}],
                "devices": [{"id": 102, "name": "Barn", "product": 11, "owner": "alice@acme.test"}],
            }
        ]
    }

    report = apply_doc(db, document)

    assert report.created == {"users": 1}
    assert report.updated == {"devices": 1}


def test_invalid_document_on_empty_store_writes_nothing(db: Path) -> None:
    document = example()
    document["organizations"][0]["products"][0]["datastreams"][2]["type"] = "float"

    with pytest.raises(ProvisioningError, match=r'datastreams\[2\]\.type: unknown type "float"'):
        apply_doc(db, document)

    assert stored(db) == Entities()
    assert generation(db) == 0


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "document: expected a mapping, got null"),
        ([], "document: expected a mapping, got a list"),
        ({}, "organizations: missing (required)"),
    ],
)
def test_document_root(document: Any, message: str) -> None:
    with pytest.raises(ProvisioningError) as caught:
        plan(document, Entities())
    assert str(caught.value) == message


def test_error_carries_path_and_problem() -> None:
    document = example()
    document["organizations"][0]["products"][0]["datastreams"][2]["type"] = "float"
    with pytest.raises(ProvisioningError) as caught:
        plan(document, Entities())
    assert caught.value.path == "organizations[0].products[0].datastreams[2].type"
    assert caught.value.problem.startswith('unknown type "float"')


ROOT = Path(__file__).resolve().parents[2]
_DOC_BLOCK = re.compile(r"^```(yaml|json)\n(.*?)^```$", re.S | re.M)


def test_the_example_fleet_is_valid() -> None:
    _, report = plan(load_document(ROOT / "examples" / "fleet.yaml"), Entities())
    assert report.created["devices"] == 3
    assert report.secrets == [], "the example fleet gives every secret: its outputs are stable"


def test_every_example_of_the_fleet_file_reference_is_valid() -> None:
    blocks = _DOC_BLOCK.findall((ROOT / "docs" / "fleet-file.md").read_text())
    assert len(blocks) >= 8
    for kind, text in blocks:
        document = orjson.loads(text) if kind == "json" else yaml.safe_load(text)
        plan(document, Entities())


# --- users of the Platform API ------------------------------------------------------------


def test_roles_get_ids_and_users_names_and_timestamps(db: Path) -> None:
    document = example()
    org = document["organizations"][0]
    org["roles"].append({"name": "Staff", "permissions": ["ORG_DEVICES_VIEW"]})
    apply_doc(db, document)
    org["roles"].insert(0, {"name": "Viewer", "permissions": []})
    org["users"][0]["name"] = "Alice"
    apply_doc(db, document)
    rows = stored(db)
    assert {r.name: r.id for r in rows.roles} == {"Auditor": 4, "Staff": 2, "Viewer": 5}
    [alice] = rows.users
    assert (alice.name, alice.status) == ("Alice", "Active")
    assert 0 < alice.registered_at <= alice.last_modified
    assert not apply_doc(db, document).changed  # the timestamps change only with the row
    catalog = run_with_store(db, lambda store: store.catalog())
    assert catalog.organizations[1].role_ids["Viewer"] == 5
    assert catalog.organizations[1].role_named(1) == "Admin"
