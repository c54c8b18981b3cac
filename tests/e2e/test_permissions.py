"""Who may do what: every principal against every operation, expectations from the documented rules.

The expected status of each (principal, operation) pair is computed from the small table of
principals below (organization, permissions, owned devices) and the rules of docs/api.md,
never from the server:

- reads need OWN_DEVICES_VIEW or ORG_DEVICES_VIEW (else 403);
- writes need ORG_DEVICES_CONTROL, import needs ORG_DEVICE_DATA_IMPORT (else 403), plus a view
  permission;
- the device must be covered (same organization, and ORG_DEVICES_VIEW or owned); a device that is
  not covered answers exactly like a missing one: 404 with the same message.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from helpers import Api, Server, not_found

VALUES = "/api/v2/organization/device/datastreams"
BATCH = "/api/v1/organization/device/datastreams/batch"
HISTORY = "/api/v1/organization/device/datastream/history"
EXPORT = "/api/v1/organization/device/export"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
UPDATE = "/api/v1/organization/device/datastream"
UPDATES = "/api/v1/organization/device/datastreams"
BATCH_UPDATE = "/api/v1/organization/product/devices/batch-update"
IMPORT = "/api/v1/organization/device/import/batch"
PROPERTY = "/api/v1/organization/device/datastream/property"

OWN_VIEW = "OWN_DEVICES_VIEW"
ORG_VIEW = "ORG_DEVICES_VIEW"
CONTROL = "ORG_DEVICES_CONTROL"
IMPORT_DATA = "ORG_DEVICE_DATA_IMPORT"
EVERYTHING = frozenset({OWN_VIEW, ORG_VIEW, CONTROL, IMPORT_DATA})
DEVICE = 101  # owned by user@acme.test
READS = ("read", "history", "export", "properties")  # with batch-read, the view operations
STATUS = 3
MISSING_DEVICE = 424_242


@dataclass(frozen=True)
class Who:
    org: int
    permissions: frozenset[str]
    owns: frozenset[int] = frozenset()


PRINCIPALS: dict[str, Who] = {
    "org": Who(1, EVERYTHING),  # organization-scoped token: every right in Acme
    "admin": Who(1, EVERYTHING),
    "staff": Who(1, frozenset({ORG_VIEW, CONTROL, IMPORT_DATA})),
    "user": Who(1, frozenset({OWN_VIEW, CONTROL}), frozenset({101, 104})),
    "other": Who(1, frozenset({OWN_VIEW, CONTROL}), frozenset({103})),
    "auditor": Who(1, frozenset({ORG_VIEW})),
    "importer": Who(1, frozenset({OWN_VIEW, IMPORT_DATA}), frozenset({109})),
    "blind": Who(1, frozenset({CONTROL, IMPORT_DATA})),  # rights to act, none to see
    "globex": Who(2, EVERYTHING),  # Globex's organization token
}
DEVICE_ORG = {101: 1, 103: 1, 104: 1, 105: 1, 109: 1, 201: 2}


def can_view(who: Who) -> bool:
    return bool(who.permissions & {OWN_VIEW, ORG_VIEW})


def covers(who: Who, device_id: int) -> bool:
    if DEVICE_ORG.get(device_id) != who.org:
        return False
    return ORG_VIEW in who.permissions or (OWN_VIEW in who.permissions and device_id in who.owns)


def expected_status(who: Who, operation: str, device_id: int = DEVICE) -> int:
    if operation in READS or operation == "batch-read":
        if not can_view(who):
            return 403
        if operation == "batch-read":
            return 200
        return 200 if covers(who, device_id) else 404
    needed = IMPORT_DATA if operation == "import" else CONTROL
    if needed not in who.permissions or not can_view(who):
        return 403
    if covers(who, device_id):
        return 204
    # Batch update has no single device to be missing: no valid device in the batch is 400.
    return 400 if operation == "batch-update" else 404


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clients(server: Server, tokens: dict[str, str]) -> Iterator[dict[str, Api]]:
    made = {name: Api(server.url, token) for name, token in tokens.items()}
    yield made
    for client in made.values():
        client.http.close()


@pytest.fixture(scope="module")
def org(clients: dict[str, Api]) -> Api:
    return clients["org"]


_unique = itertools.count()


def unique(label: str) -> str:
    return f"{label} #{next(_unique)} {time.time_ns()}"


def error_message(response: httpx.Response) -> str:
    body = response.json()
    assert list(body) == ["error"] and list(body["error"]) == ["message"], body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def status_of(org: Api, device_id: int) -> object:
    items = org.get(VALUES, deviceId=device_id, dataStreamIds=str(STATUS)).json()
    return items[0].get("value")


def label_property(org: Api, device_id: int) -> str | None:
    items = org.get(PROPERTIES, deviceId=device_id, dataStreamIds=str(STATUS)).json()
    found: str | None = items[0]["properties"].get("label")
    return found


def history_count(org: Api, device_id: int, ts: int) -> int:
    query = {"deviceId": device_id, "dataStreamId": STATUS, "from": ts, "to": ts}
    count: int = org.get(HISTORY, **query).json()["totalElements"]
    return count


# Each operation: (send it as `api` against `device_id` with a marker, check whether it landed).
Send = Callable[[Api, int, str, int], httpx.Response]


def _read(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.get(VALUES, deviceId=device_id)


def _batch_read(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.get(BATCH, deviceIds=str(device_id))


def _history(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.get(HISTORY, deviceId=device_id, dataStreamId=1, **{"from": 0, "to": ts})


def _export(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.get(EXPORT, deviceId=device_id, **{"from": 0, "to": ts})


def _properties(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.get(PROPERTIES, deviceId=device_id)


def _update(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.post(UPDATE, {"deviceId": device_id, "dataStreamId": STATUS, "value": marker})


def _updates(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.post(UPDATES, {"deviceId": device_id, "values": {str(STATUS): marker}})


def _batch_update(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    return api.post(
        BATCH_UPDATE, {"fields": ["deviceId", "Status"], "updates": [[device_id, marker]]}
    )


def _import(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    body = {"deviceId": device_id, "dataStreamId": STATUS, "values": [{"ts": ts, "value": marker}]}
    return api.post(IMPORT, body)


def _property(api: Api, device_id: int, marker: str, ts: int) -> httpx.Response:
    body = {"deviceId": device_id, "dataStreamId": STATUS, "property": "label", "value": marker}
    return api.post(PROPERTY, body)


OPERATIONS: dict[str, Send] = {
    "read": _read,
    "batch-read": _batch_read,
    "history": _history,
    "export": _export,
    "properties": _properties,
    "update": _update,
    "updates": _updates,
    "batch-update": _batch_update,
    "import": _import,
    "property": _property,
}
_import_stamps = itertools.count(1_300_000_000_000, 1000)


def landed(org: Api, operation: str, device_id: int, marker: str, ts: int) -> bool:
    """Whether a write operation's marker is now stored (read with the organization token)."""
    if operation == "import":
        return history_count(org, device_id, ts) == 1
    if operation == "property":
        return label_property(org, device_id) == marker
    return status_of(org, device_id) == marker


# --- the matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("principal", list(PRINCIPALS))
def test_permission_matrix(
    clients: dict[str, Api], org: Api, principal: str, operation: str
) -> None:
    who = PRINCIPALS[principal]
    expected = expected_status(who, operation)
    marker = unique(f"{principal} {operation}")
    ts = next(_import_stamps)

    response = OPERATIONS[operation](clients[principal], DEVICE, marker, ts)

    assert response.status_code == expected, (principal, operation, response.text)
    if expected >= 400:
        message = error_message(response)
        if expected == 404:
            assert message == not_found(DEVICE)
    if operation == "batch-read" and expected == 200:
        listed = [entry["deviceId"] for entry in response.json()]
        assert listed == ([DEVICE] if covers(who, DEVICE) else [])
    if operation in READS and expected == 200:
        assert response.content == OPERATIONS[operation](org, DEVICE, marker, ts).content
    if operation not in READS and operation != "batch-read":
        assert landed(org, operation, DEVICE, marker, ts) == (expected == 204)


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op != "batch-read"])
@pytest.mark.parametrize("principal", ["other", "importer", "globex"])
def test_uncovered_device_answers_like_a_missing_device(
    clients: dict[str, Api], principal: str, operation: str
) -> None:
    api = clients[principal]
    send = OPERATIONS[operation]
    hidden = send(api, DEVICE, unique("hidden"), next(_import_stamps))
    missing = send(api, MISSING_DEVICE, unique("missing"), next(_import_stamps))
    assert hidden.status_code == missing.status_code, (hidden.text, missing.text)
    assert hidden.headers.get("content-type") == missing.headers.get("content-type")
    if hidden.status_code >= 400:
        assert error_message(hidden) == error_message(missing).replace(
            str(MISSING_DEVICE), str(DEVICE)
        )


# --- specific rules -----------------------------------------------------------------------


def test_permission_is_checked_before_the_device(clients: dict[str, Api]) -> None:
    """Lacking the operation's permission is 403 whether or not the device exists."""
    for principal, operation in [("auditor", "update"), ("auditor", "import"), ("user", "import")]:
        for device_id in (DEVICE, MISSING_DEVICE):
            send = OPERATIONS[operation]
            response = send(clients[principal], device_id, unique("x"), next(_import_stamps))
            assert response.status_code == 403, (principal, operation, device_id, response.text)
            error_message(response)


def test_owner_reads_only_owned_devices(clients: dict[str, Api]) -> None:
    user = clients["user"]
    assert user.get(VALUES, deviceId=104).status_code == 200  # owned, another product
    assert user.get(VALUES, deviceId=105).status_code == 404
    assert user.get(VALUES, deviceId=103).status_code == 404  # owned by other@
    listed = user.get(BATCH, deviceIds="103,101,105,104").json()
    assert [entry["deviceId"] for entry in listed] == [101, 104]
    assert clients["other"].get(VALUES, deviceId=103).status_code == 200


def test_owner_writes_its_own_device_of_another_product(clients: dict[str, Api], org: Api) -> None:
    response = clients["user"].post(UPDATE, {"deviceId": 104, "dataStreamId": 1, "value": 3.25})
    assert response.status_code == 204, response.text
    flow = org.get(VALUES, deviceId=104, dataStreamIds="1").json()[0]
    assert flow["value"] == 3.25


def test_user_batch_update_counts_devices_it_does_not_own(
    clients: dict[str, Api], org: Api
) -> None:
    before_103 = status_of(org, 103)
    before_105 = status_of(org, 105)
    mine = unique("user batch")
    updates = [[103, unique("not mine")], [DEVICE, mine], [105, unique("not mine")], [999, "x"]]
    response = clients["user"].post(
        BATCH_UPDATE, {"fields": ["deviceId", "Status"], "updates": updates}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["noAccessToDevice"] == 2
    assert body["deviceNotFound"] == 1
    assert [body[k] for k in ("invalidRowSize", "nullDeviceId", "nonNumericDeviceId")] == [0, 0, 0]
    assert body["wrongProduct"] == 0
    assert status_of(org, DEVICE) == mine
    assert status_of(org, 103) == before_103
    assert status_of(org, 105) == before_105


def test_user_batch_update_debug_names_rows_without_access(clients: dict[str, Api]) -> None:
    updates = [[DEVICE, unique("mine")], [103, "not mine"]]
    body = {"fields": ["deviceId", "Status"], "updates": updates, "debug": True}
    response = clients["user"].post(BATCH_UPDATE, body)
    assert response.status_code == 200, response.text
    [reason] = response.json()["skippedRows"]
    assert reason.startswith("row 1:")


def test_user_batch_update_with_only_foreign_devices_is_400(clients: dict[str, Api]) -> None:
    body = {"fields": ["deviceId", "Status"], "updates": [[103, "x"], [105, "y"]]}
    response = clients["user"].post(BATCH_UPDATE, body)
    assert response.status_code == 400, response.text
    error_message(response)


def test_importer_imports_into_its_own_device_only(clients: dict[str, Api], org: Api) -> None:
    importer = clients["importer"]
    ts = next(_import_stamps)
    marker = unique("importer")
    assert _import(importer, 109, marker, ts).status_code == 204
    assert history_count(org, 109, ts) == 1
    assert importer.get(VALUES, deviceId=109).status_code == 200
    # Import is not control: no live writes or properties, even on its own device.
    assert _update(importer, 109, marker, ts).status_code == 403
    assert _property(importer, 109, marker, ts).status_code == 403


def test_auditor_sees_every_device_and_changes_none(clients: dict[str, Api], org: Api) -> None:
    auditor = clients["auditor"]
    listed = auditor.get(BATCH, deviceIds="101,103,105,109,201").json()
    assert [entry["deviceId"] for entry in listed] == [101, 103, 105, 109]
    before = status_of(org, 105)
    for operation in ("update", "updates", "batch-update", "import", "property"):
        response = OPERATIONS[operation](auditor, 105, unique("auditor"), next(_import_stamps))
        assert response.status_code == 403, (operation, response.text)
    assert status_of(org, 105) == before


def test_globex_never_sees_acme_devices(clients: dict[str, Api]) -> None:
    globex = clients["globex"]
    assert globex.get(BATCH, deviceIds="101,102,105").json() == []
    listed = globex.get(BATCH, deviceIds="101,201,105").json()
    assert [entry["deviceId"] for entry in listed] == [201]
    assert globex.get(VALUES, deviceId=201).status_code == 200
    for device_id in (101, 105, 109):
        response = globex.get(VALUES, deviceId=device_id)
        assert response.status_code == 404
        assert error_message(response) == not_found(device_id)


def test_globex_batch_update_counts_acme_devices_as_not_found(
    clients: dict[str, Api], org: Api
) -> None:
    globex = clients["globex"]
    before = org.get(VALUES, deviceId=105, dataStreamIds="1").json()
    updates = [[201, 21.5], [105, 99.0], [101, 98.0]]
    response = globex.post(
        BATCH_UPDATE, {"fields": ["deviceId", "Temperature"], "updates": updates}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["deviceNotFound"] == 2
    assert body["noAccessToDevice"] == 0  # never reveals that the device exists elsewhere
    current = globex.get(VALUES, deviceId=201, dataStreamIds="1").json()
    assert current[0]["value"] == 21.5
    assert org.get(VALUES, deviceId=105, dataStreamIds="1").json() == before


def test_globex_batch_update_of_acme_devices_only_is_400(clients: dict[str, Api]) -> None:
    body = {"fields": ["deviceId", "Temperature"], "updates": [[101, 1.0], [105, 2.0]]}
    response = clients["globex"].post(BATCH_UPDATE, body)
    assert response.status_code == 400, response.text
    error_message(response)


def test_acme_cannot_touch_globex_device(clients: dict[str, Api]) -> None:
    globex = clients["globex"]
    before = globex.get(VALUES, deviceId=201).json()
    for principal in ("org", "admin", "staff"):
        for operation in ("update", "updates", "import", "property"):
            send = OPERATIONS[operation]
            response = send(clients[principal], 201, unique("acme"), next(_import_stamps))
            assert response.status_code == 404, (principal, operation, response.text)
            assert error_message(response) == not_found(201)
    assert globex.get(VALUES, deviceId=201).json() == before
