"""The `pinbase` command line: help, `apply` validation, conflicts and idempotence, live catalog
reload."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from helpers import ACME, FLEET, Server, apply_fleet, client_token, database_for, pinbase
from pinbase.store import open_store

VALUES = "/api/v2/organization/device/datastreams"
ENTITY_TABLES = (
    "organizations",
    "roles",
    "clients",
    "users",
    "products",
    "datastreams",
    "devices",
)
INITECH = ("initech-backend", "initech-secret-0123456789abcdef")
ROOF_TOKEN = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"  # device 101's token in the fleet file


def read_device(base_url: str, token: str, device_id: int) -> httpx.Response:
    return httpx.get(
        f"{base_url}{VALUES}",
        params={"deviceId": device_id},
        headers={"Authorization": f"Bearer {token}"},
    )


def catalog_snapshot(data_dir: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every entity table, to compare before and after a failed apply."""
    with closing(sqlite3.connect(data_dir / "pinbase.db")) as conn:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ENTITY_TABLES
        }


def stored_entities(data_dir: Path) -> dict[str, list[Any]]:
    """Every entity row, read through the store (so on either backend), in a fixed order."""
    url = database_for(data_dir) or f"sqlite:///{data_dir / 'pinbase.db'}"

    async def read() -> dict[str, list[Any]]:
        store = open_store(url)
        await store.open()
        try:
            rows = await store.entities()
        finally:
            await store.close()
        return {kind: sorted(getattr(rows, kind), key=repr) for kind in ENTITY_TABLES}

    return asyncio.run(read())


def assert_refused(result: Any, message: str) -> None:
    """`apply` refused the file: exit status 2, one error line, no traceback, nothing else."""
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: {message}", "Nothing was written."]
    assert result.stdout == ""


def write_yaml(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def fleet_document() -> dict[str, object]:
    document: dict[str, object] = yaml.safe_load(FLEET.read_text())
    return document


def initech(datastream_type: str) -> dict[str, object]:
    """A complete organization whose one datastream has the given type."""
    return {
        "id": 7,
        "name": "Initech",
        "clients": [{"client_id": INITECH[0], "client_secret": INITECH[1]}],
        "products": [
            {
                "id": 70,
                "name": "Printer",
                "datastreams": [{"id": 1, "pin": "v1", "label": "Jam", "type": datastream_type}],
            }
        ],
        "devices": [{"id": 701, "name": "Office", "product": 70}],
    }


@pytest.fixture
def started() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for running in servers:
        running.kill()


# --- help ---------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = pinbase("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "apply", "check", "demo", "migrate", "export"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["serve", "apply", "check", "demo", "export"])
def test_each_command_has_help(command: str) -> None:
    result = pinbase(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--help" in result.stdout


def test_serve_help_lists_its_flags() -> None:
    result = pinbase("serve", "--help")
    for flag in (
        "--host",
        "--port",
        "--data-dir",
        "--database",
        "--body-limit",
        "--org-rate-limit",
        "--import-rate",
        "--import-burst",
        "--access-token-ttl",
        "--refresh-token-ttl",
        "--log-level",
    ):
        assert flag in result.stdout, flag


def test_unknown_command_fails() -> None:
    result = pinbase("frobnicate")
    assert result.returncode != 0


# --- apply: validation --------------------------------------------------------------------


def test_invalid_file_names_entity_and_field(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "bad.yaml", {"organizations": [initech("float")]})
    result = pinbase("apply", str(bad), "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "products[0].datastreams[0].type" in message, message
    assert "float" in message


@pytest.mark.sqlite_only
def test_invalid_file_changes_nothing(tmp_path: Path, started: list[Server]) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    before = catalog_snapshot(data_dir)

    # Valid changes (a renamed organization, a new device, a new organization) followed by one
    # invalid datastream: none of it may be written.
    document = fleet_document()
    organizations = document["organizations"]
    assert isinstance(organizations, list)
    organizations[0]["name"] = "Acme Renamed"
    organizations[0]["devices"].append({"id": 150, "name": "Half applied", "product": 10})
    organizations.append(initech("float"))
    bad = write_yaml(tmp_path / "bad.yaml", document)
    result = pinbase("apply", str(bad), "--data-dir", str(data_dir))
    assert result.returncode != 0
    assert "organizations[2].products[0].datastreams[0].type" in result.stderr + result.stdout
    assert catalog_snapshot(data_dir) == before

    # Once the error is fixed the same file applies, and the server sees exactly its entities.
    organizations[2] = initech("double")
    good = write_yaml(tmp_path / "good.yaml", document)
    fixed = pinbase("apply", str(good), "--data-dir", str(data_dir))
    assert fixed.returncode == 0, fixed.stderr + fixed.stdout
    running = Server(data_dir).start()
    started.append(running)
    acme = client_token(running.url, ACME)
    assert read_device(running.url, acme, 150).status_code == 200
    initech_token = client_token(running.url, INITECH)
    (datastream,) = read_device(running.url, initech_token, 701).json()
    assert datastream["dataStreamLabel"] == "Jam"


@pytest.mark.sqlite_only
def test_invalid_file_on_an_empty_database_creates_no_entity(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    bad = write_yaml(tmp_path / "bad.yaml", {"organizations": [initech("float")]})
    assert pinbase("apply", str(bad), "--data-dir", str(data_dir)).returncode != 0
    if (data_dir / "pinbase.db").exists():
        assert all(rows == [] for rows in catalog_snapshot(data_dir).values())


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("organizations: 5\n", "organizations"),
        ("organizations: [\n", "YAML"),
        (
            "organizations: [{id: 1, name: X, devices: [{id: 5, name: y, product: 999}]}]\n",
            "devices[0].product",
        ),
    ],
    ids=["not-a-list", "unparsable", "unknown-product"],
)
def test_other_invalid_files_are_refused(tmp_path: Path, content: str, expected: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    result = pinbase("apply", str(bad), "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    result = pinbase("apply", str(tmp_path / "absent.yaml"), "--data-dir", str(tmp_path / "d"))
    assert result.returncode != 0
    assert "absent.yaml" in result.stderr + result.stdout


# --- apply: idempotence -------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_applying_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = pinbase("apply", str(FLEET), "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    # Secrets the file leaves out (device 102's token, for one) are generated and shown once.
    assert "device 102" in first.stdout
    snapshot = catalog_snapshot(data_dir)

    second = pinbase("apply", str(FLEET), "--data-dir", str(data_dir))
    assert second.returncode == 0, second.stderr
    assert "No changes" in second.stdout
    assert "created" not in second.stdout
    assert "updated" not in second.stdout
    assert "device 102" not in second.stdout  # no secret regenerated
    assert catalog_snapshot(data_dir) == snapshot


def test_changed_field_is_reported_as_an_update(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    document = fleet_document()
    organizations = document["organizations"]
    assert isinstance(organizations, list)
    organizations[0]["devices"][4]["name"] = "Silo (renamed)"
    changed = write_yaml(tmp_path / "changed.yaml", document)
    result = pinbase("apply", str(changed), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "updated 1 devices" in result.stdout
    assert "created" not in result.stdout


# --- apply while serving ------------------------------------------------------------------


def test_apply_is_picked_up_by_a_running_server(tmp_path: Path, started: list[Server]) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    running = Server(data_dir).start()
    started.append(running)
    token = client_token(running.url)
    missing = read_device(running.url, token, 150)
    assert missing.status_code == 404, missing.text

    addition = {
        "organizations": [
            {
                "id": 1,
                "name": "Acme Farms",
                "devices": [{"id": 150, "name": "Added while serving", "product": 10}],
            }
        ]
    }
    more = write_yaml(tmp_path / "more.yaml", addition)
    result = pinbase("apply", str(more), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "created 1 devices" in result.stdout

    found = read_device(running.url, token, 150)  # same server process, same token
    assert found.status_code == 200, found.text
    assert [ds["dataStreamLabel"] for ds in found.json()] == [
        "Temperature",
        "Humidity",
        "Status",
        "Position",
        "Mode",
    ]
    # Entities the file did not mention are untouched.
    assert read_device(running.url, token, 105).status_code == 200


# --- apply: conflicts with what is stored --------------------------------------------------


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def device_tokens(data_dir: Path) -> dict[int, str]:
    return {d.id: d.token_hash for d in stored_entities(data_dir)["devices"]}


def org(index: int, **changes: Any) -> dict[str, Any]:
    """One organization of the fleet file, with some keys replaced."""
    organizations = fleet_document()["organizations"]
    assert isinstance(organizations, list)
    found: dict[str, Any] = {**organizations[index], **changes}
    return found


def test_two_devices_swap_tokens_in_one_apply(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    acme = org(0)
    roof, barn = acme["devices"][:2]
    barn["token"] = "B" * 32
    fleet = write_yaml(tmp_path / "fleet.yaml", {"organizations": [acme]})
    assert pinbase("apply", str(fleet), "--data-dir", str(data_dir)).returncode == 0

    roof["token"], barn["token"] = barn["token"], roof["token"]
    swapped = write_yaml(tmp_path / "swapped.yaml", {"organizations": [acme]})
    result = pinbase("apply", str(swapped), "--data-dir", str(data_dir))

    assert result.returncode == 0, result.stderr + result.stdout
    assert "updated 2 devices" in result.stdout
    tokens = device_tokens(data_dir)
    assert (tokens[101], tokens[102]) == (sha256("B" * 32), sha256(ROOF_TOKEN))


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Path:
    """The test fleet, applied once per backend for the refused files below (they write nothing)."""
    data_dir = tmp_path_factory.mktemp(f"refused-{backend}")
    apply_fleet(data_dir)
    return data_dir


REFUSED: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "token-of-a-device-not-in-the-file",
        [org(0, devices=[{"id": 102, "name": "Barn", "product": 11, "token": ROOF_TOKEN}])],
        "organizations[0].devices[0].token: device 102's token is already the token of device 101",
    ),
    (
        "token-of-a-device-that-keeps-it",
        [
            org(
                0,
                devices=[
                    {"id": 101, "name": "Roof", "product": 10, "token": ROOF_TOKEN},
                    {"id": 105, "name": "Silo", "product": 10, "token": ROOF_TOKEN},
                ],
            )
        ],
        "organizations[0].devices[1].token: duplicate device token (also at "
        "organizations[0].devices[0].token)",
    ),
    (
        "client-id-of-another-organization",
        [org(1, clients=[{"client_id": ACME[0]}])],
        'organizations[0].clients[0].client_id: client "acme-backend" belongs to organization 1',
    ),
    (
        "client-id-twice-across-organizations",
        [
            org(0, clients=[{"client_id": "shared"}]),
            org(1, clients=[{"client_id": "shared"}]),
        ],
        'organizations[1].clients[0].client_id: duplicate client_id "shared" '
        "(also at organizations[0].clients[0].client_id)",
    ),
    (
        "email-twice-in-one-organization",
        [org(1, users=[{"email": "a@globex.test"}, {"email": "a@globex.test"}])],
        'organizations[0].users[1].email: duplicate user email "a@globex.test" '
        "(also at organizations[0].users[0].email)",
    ),
]


@pytest.mark.parametrize(
    ("organizations", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_conflicting_file_is_refused_in_one_line(
    fleet_dir: Path, tmp_path: Path, organizations: list[dict[str, Any]], message: str
) -> None:
    before = stored_entities(fleet_dir)
    refused = write_yaml(tmp_path / "refused.yaml", {"organizations": organizations})
    result = pinbase("apply", str(refused), "--data-dir", str(fleet_dir))
    assert_refused(result, message)
    assert stored_entities(fleet_dir) == before


def test_an_email_may_be_used_in_two_organizations(tmp_path: Path) -> None:
    """Emails are unique per organization (the password grant looks a user up in the client's)."""
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    shared = write_yaml(
        tmp_path / "shared.yaml",
        {"organizations": [org(1, users=[{"email": "admin@acme.test", "role": "Admin"}])]},
    )
    result = pinbase("apply", str(shared), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr + result.stdout
    emails = [(u.org_id, u.email) for u in stored_entities(data_dir)["users"]]
    assert (1, "admin@acme.test") in emails and (2, "admin@acme.test") in emails


@pytest.mark.sqlite_only
def test_a_damaged_database_is_one_error_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "pinbase.db").write_bytes(b"not a database, " * 512)
    message = (
        f"error: {data_dir / 'pinbase.db'} is not an SQLite database (another program's file, "
        "or a database damaged at its start); pinbase leaves it untouched"
    )

    applied = pinbase("apply", str(FLEET), "--data-dir", str(data_dir))
    assert applied.returncode == 2
    assert applied.stderr.splitlines() == [message, "Nothing was written."]

    no_ports = ("--port", "0", "--hardware-port", "0", "--mqtt-port", "0")
    served = pinbase("serve", "--data-dir", str(data_dir), *no_ports)
    assert served.returncode == 2
    assert served.stderr.splitlines() == [message]
