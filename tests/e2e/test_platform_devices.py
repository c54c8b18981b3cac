"""Devices over the Platform API end to end, on one server of this module's own (it creates and
deletes devices): pages and totals, search and sorting, OWN_DEVICES_VIEW scoping, the tenant
rule on every route, create (its token opens the device over the hardware protocol and the
device HTTP API), rename, delete (the token refused, an open connection closed), clear,
a new token, bad input refused with nothing written, and `pinbase apply` beside devices the API
created.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from test_hardware import RawDevice  # e2e/test_hardware.py

from helpers import (
    DEADLINE,
    FLEET,
    GLOBEX,
    Api,
    Server,
    apply_fleet,
    assert_error,
    client_token,
    device_server,
    not_found,
    user_token,
    wait_for,
)

DEVICES = "/api/v1/organization/devices"
SEARCH = "/api/v1/organization/search/devices"
DEVICE = "/api/v1/organization/device"
CREATE = "/api/v1/organization/device/create"
CLEAR = "/api/v1/organization/device/clear"
ONLINE = "/api/v1/organization/device/online"
REPROVISION = "/api/v1/organization/device/provision/reprovision/token"
WRITE = "/api/v1/organization/device/datastream"
HISTORY = "/api/v1/organization/device/datastream/history"
DEVICE_UPDATE = "/external/api/update"
MAKER = "maker@acme.test"
MAKER_PASSWORD = "maker-password-1"
FLEET_IDS = [101, 102, 103, 104, 105, 106, 107, 108, 109, 110]

OK = 200  # the hardware protocol's status, spelled out rather than imported


def module_fleet() -> str:
    """The test fleet with a role that may create devices but not see other users."""
    text = FLEET.read_text()
    text = text.replace(
        "      - {name: Blind, permissions: [ORG_DEVICES_CONTROL, ORG_DEVICE_DATA_IMPORT]}\n",
        "      - {name: Blind, permissions: [ORG_DEVICES_CONTROL, ORG_DEVICE_DATA_IMPORT]}\n"
        "      - {name: Maker, permissions: [OWN_DEVICES_VIEW, ORG_DEVICES_CREATE]}\n",
    )
    text = text.replace(
        '      - {email: blind@acme.test, password: "blind-password-1", role: Blind}\n',
        '      - {email: blind@acme.test, password: "blind-password-1", role: Blind}\n'
        f'      - {{email: {MAKER}, password: "{MAKER_PASSWORD}", role: Maker}}\n',
    )
    assert MAKER in text and "role: Maker" in text
    return text


class Env:
    def __init__(self, server: Server, fleet: Path) -> None:
        self.server = server
        self.fleet = fleet
        url = server.url
        self.org = Api(url, client_token(url))
        self.globex = Api(url, client_token(url, GLOBEX))
        self.user = Api(url, user_token(url, "user@acme.test"))
        self.staff = Api(url, user_token(url, "staff@acme.test"))
        self.auditor = Api(url, user_token(url, "auditor@acme.test"))
        self.blind = Api(url, user_token(url, "blind@acme.test"))
        self.maker = Api(url, user_token(url, MAKER, password=MAKER_PASSWORD))

    def close(self) -> None:
        for api in (
            self.org,
            self.globex,
            self.user,
            self.staff,
            self.auditor,
            self.blind,
            self.maker,
        ):
            api.close()


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp(f"platform-devices-{backend}")
    server = device_server(data_dir, module_fleet())
    found = Env(server, data_dir / "fleet.yaml")
    try:
        yield found
    finally:
        found.close()
        assert server.stop() == 0, server.log.read_text()


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [device["id"] for device in response.json()["content"]]


def total(api: Api) -> int:
    response = api.get(DEVICES, size=1)
    assert response.status_code == 200, response.text
    count: int = response.json()["totalElements"]
    return count


def create(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(CREATE, body)
    assert response.status_code == 201, response.text
    device: dict[str, Any] = response.json()
    return device


def device_write(token: str, env: Env, value: float) -> httpx.Response:
    return httpx.get(env.server.url + DEVICE_UPDATE, params={"token": token, "v1": str(value)})


def hardware(env: Env, token: str) -> RawDevice:
    """A raw hardware connection logged in with `token`."""
    device = RawDevice(env.server.hardware_port)
    assert device.login(token) == OK
    return device


def test_pages_hold_the_devices_one_may_view_by_id(env: Env) -> None:
    first = env.org.get(DEVICES, page=0, size=3)
    assert first.json()["totalElements"] >= len(FLEET_IDS)
    assert ids(first) == [101, 102, 103]
    assert ids(env.org.get(DEVICES, page=1, size=3)) == [104, 105, 106]
    every = env.org.get(DEVICES, size=1000)
    assert ids(every)[: len(FLEET_IDS)] == FLEET_IDS and 201 not in ids(every)
    assert ids(env.org.get(DEVICES, page=1000, size=1000)) == []
    by_id = {d["id"]: d for d in every.json()["content"]}
    roof, barn = by_id[101], by_id[102]
    assert roof["templateId"] == roof["originalTemplateId"] == 10
    assert (barn["templateId"], barn["originalTemplateId"], barn["orgId"]) == (11, 10, 1)
    assert "ownerUserId" in roof and "ownerUserId" not in barn
    assert isinstance(roof["activatedAt"], int) and "token" not in roof
    for bad in ({"size": 0}, {"size": 1001}, {"page": -1}, {"size": "x"}):
        assert_error(env.org.get(DEVICES, **bad), 400)
    # scoping: a user with OWN_DEVICES_VIEW sees its own devices; another organization its own
    assert ids(env.user.get(DEVICES)) == [101, 104]
    assert env.user.get(DEVICES).json()["totalElements"] == 2
    assert ids(env.globex.get(DEVICES))[:1] == [201]
    assert_error(env.blind.get(DEVICES), 403)


def test_search_matches_name_id_product_and_owner_and_sorts(env: Env) -> None:
    def found(api: Api = env.org, **params: object) -> list[int]:
        return [i for i in ids(api.get(SEARCH, size=1000, **params)) if i in FLEET_IDS]

    assert found(query="WELL") == [104]  # the name, case-insensitive
    assert found(query="105") == [105]  # the id
    assert found(query="station pro") == [102, 108]  # the product's name
    assert found(query="user@acme") == [101, 104]  # the owner's e-mail
    owned = [101, 103, 104, 109]  # owned by someone of @acme.test
    assert found(query="@acme.test") == owned
    by_name = found(query="@acme.test", sortBy="Name", sortOrder="ASC")
    assert by_name == [103, 109, 101, 104]  # Field, Import target, Roof, Well pump
    assert found(query="@acme.test", sortBy="Name", sortOrder="DESC") == by_name[::-1]
    assert found(query="@acme.test", sortOrder="DESC") == owned[::-1]
    assert found(query="@acme.test", sortBy="Template Id") == [101, 103, 109, 104]
    page = env.org.get(SEARCH, query="user@acme", size=1, page=1, sortBy="Device Id")
    assert page.json()["totalElements"] == 2 and ids(page) == [104]
    # the last report: the value written now comes first in descending order
    assert env.org.post(WRITE, {"deviceId": 106, "dataStreamId": 1, "value": 3}).status_code == 204
    reported = found(query="o", sortBy="Last Reported At", sortOrder="DESC")
    assert reported[0] == 106
    assert found(query="o", sortBy="Last Reported At")[-1] != 106  # never reported: last
    assert "lastReportedAt" in env.org.get(SEARCH, query="106").json()["content"][0]
    # scoping and refusals
    assert found(env.user, query="U") == [101, 104]
    assert found(env.globex, query="o") == []
    for bad in (
        {},
        {"query": ""},
        {"query": "x" * 256},
        {"query": "o", "sortBy": "Colour"},
        {"query": "o", "sortOrder": "UP"},
        {"query": "o", "size": 1001},
    ):
        assert_error(env.org.get(SEARCH, **bad), 400)
    assert_error(env.blind.get(SEARCH, query="o"), 403)


def test_another_organization_s_device_is_404_like_a_missing_one(env: Env) -> None:
    for device_id in (101, 9_999_999):
        message = not_found(device_id)
        assert_error(env.globex.get(DEVICE, deviceId=device_id), 404, message)
        assert_error(env.globex.get(ONLINE, deviceId=device_id), 404, message)
        put = env.globex.http.put(DEVICE, params={"deviceId": device_id}, json={"name": "Mine"})
        assert_error(put, 404, message)
        assert_error(env.globex.http.delete(DEVICE, params={"deviceId": device_id}), 404, message)
        assert_error(env.globex.http.delete(CLEAR, params={"deviceId": device_id}), 404, message)
        assert_error(env.globex.post(REPROVISION, {"deviceId": device_id}), 404, message)
    # a user with only OWN_DEVICES_VIEW: another user's device is missing too
    assert_error(env.user.get(DEVICE, deviceId=103), 404, not_found(103))
    assert env.user.get(DEVICE, deviceId=101).status_code == 200
    assert_error(
        env.globex.post(CREATE, {"templateId": 10, "name": "X"}), 404, "Template not found."
    )
    roof = env.org.get(DEVICE, deviceId=101).json()
    owner = roof["ownerUserId"]
    body = {"templateId": 30, "name": "X", "ownerId": owner}
    assert_error(env.globex.post(CREATE, body), 404, "User not found.")
    assert roof["name"] == "Roof"
    assert env.org.get(ONLINE, deviceId=101).json() == {"connected": False}


def test_create_gives_a_working_token_and_bad_input_writes_nothing(env: Env) -> None:
    count = total(env.org)
    bad_bodies: list[tuple[Any, int]] = [
        ({"templateId": 10, "name": ""}, 400),
        ({"templateId": 10, "name": "a/b"}, 400),
        ({"templateId": 10, "name": "   "}, 400),
        ({"templateId": 10, "name": "x" * 51}, 400),
        ({"templateId": "10", "name": "A"}, 400),
        ({"templateId": 10, "name": "A", "colour": 1}, 400),
        ({"name": "A"}, 400),
        ([1, 2], 400),
        ({"templateId": 999, "name": "A"}, 404),
        ({"templateId": 10, "name": "A", "ownerId": 999_999}, 404),
    ]
    for body, status in bad_bodies:
        assert_error(env.org.post(CREATE, body), status)
    assert_error(env.org.raw(CREATE, b"{"), 400)
    assert_error(env.auditor.post(CREATE, {"templateId": 10, "name": "A"}), 403)
    other = env.org.get(DEVICE, deviceId=103).json()["ownerUserId"]
    assert_error(env.maker.post(CREATE, {"templateId": 10, "name": "A", "ownerId": other}), 403)
    assert total(env.org) == count

    made = create(env.org, {"templateId": 11, "name": "Api made 1", "ownerId": other})
    assert made["id"] > 201 and len(made["token"]) == 32
    assert (made["templateId"], made["originalTemplateId"], made["ownerUserId"]) == (11, 10, other)
    assert made["online"] is False and made["metaFieldValues"] == []
    assert [v["dataStreamId"] for v in made["dataStreamValues"]] == [1, 2, 3, 4, 5]
    assert all("value" not in v for v in made["dataStreamValues"])
    assert total(env.org) == count + 1
    # the caller owns what it creates, unless it names someone
    mine = create(env.maker, {"templateId": 10, "name": "Maker's own"})
    assert env.maker.get(DEVICE, deviceId=mine["id"]).json()["ownerUserId"] == mine["ownerUserId"]
    assert ids(env.maker.get(DEVICES)) == [mine["id"]]
    assert create(env.org, {"templateId": 10, "name": "Nobody's"}).get("ownerUserId") is None

    # the token works over the device HTTP API and the hardware protocol
    assert device_write(made["token"], env, 21.5).status_code == 200
    device = hardware(env, made["token"])
    try:
        device.announce("ver", "1.3.2", "h-beat", "45", "dev", "ESP32", "fw", "1.0.4", "x", "no")

        def full() -> dict[str, Any] | None:
            body: dict[str, Any] = env.org.get(DEVICE, deviceId=made["id"]).json()
            return body if "hardwareInfo" in body else None

        got = wait_for("the hardware info", full)
        assert got["hardwareInfo"] == {
            "blynkVersion": "1.3.2",
            "heartbeatInterval": "45",
            "boardType": "ESP32",
            "version": "1.0.4",
        }
        assert got["online"] is True and "lastReportedAt" in got and "token" not in got
        assert got["dataStreamValues"][0]["value"] == 21.5
        assert env.org.get(ONLINE, deviceId=made["id"]).json() == {"connected": True}
    finally:
        device.close()


def test_rename_changes_the_name_only(env: Env) -> None:
    made = create(env.org, {"templateId": 10, "name": "Before"})
    url = {"deviceId": made["id"]}
    renamed = env.staff.http.put(DEVICE, params=url, json={"name": "After it's-done_2"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "After it's-done_2" and renamed.json()["id"] == made["id"]
    for body in ({"name": "no/slash"}, {"name": ""}, {}, {"name": 5}):
        assert_error(env.org.http.put(DEVICE, params=url, json=body), 400)
    assert_error(env.auditor.http.put(DEVICE, params=url, json={"name": "Auditor"}), 403)
    assert_error(env.org.http.put(DEVICE, json={"name": "No id"}), 400)
    shown = env.org.get(DEVICE, deviceId=made["id"]).json()
    assert shown["name"] == "After it's-done_2" and shown["activatedAt"] == made["activatedAt"]
    assert device_write(made["token"], env, 1).status_code == 200  # same token


def test_delete_refuses_the_token_and_closes_its_connection(env: Env) -> None:
    made = create(env.org, {"templateId": 10, "name": "Doomed"})
    url = {"deviceId": made["id"]}
    assert device_write(made["token"], env, 5).status_code == 200
    count = total(env.org)
    assert_error(env.staff.http.delete(DEVICE, params=url), 403)  # no ORG_DEVICES_DELETE
    device = hardware(env, made["token"])
    try:
        assert env.org.http.delete(DEVICE, params=url).status_code == 204
        assert device.closed_by_server()
    finally:
        device.close()
    assert device_write(made["token"], env, 6).status_code == 400
    assert_error(env.org.get(DEVICE, **url), 404, not_found(made["id"]))
    assert_error(env.org.http.delete(DEVICE, params=url), 404)
    assert total(env.org) == count - 1
    history = env.org.get(HISTORY, deviceId=made["id"], dataStreamId=1, **{"from": 0, "to": 2**62})
    assert_error(history, 404)


def test_clear_erases_values_and_history_and_keeps_the_device(env: Env) -> None:
    made = create(env.org, {"templateId": 10, "name": "Cleared"})
    url = {"deviceId": made["id"]}
    device = hardware(env, made["token"])
    try:
        for value in (1, 2):
            assert device_write(made["token"], env, value).status_code == 200
        window = {"dataStreamId": 1, "from": 0, "to": 2**62}
        assert env.org.get(HISTORY, **url, **window).json()["totalElements"] == 2
        assert_error(env.auditor.http.delete(CLEAR, params=url), 403)
        assert env.org.http.delete(CLEAR, params=url).status_code == 204
        assert env.org.get(HISTORY, **url, **window).json() == {"totalElements": 0, "content": []}
        shown = env.org.get(DEVICE, **url).json()
        assert all("value" not in v for v in shown["dataStreamValues"])
        assert "lastReportedAt" not in shown and shown["name"] == "Cleared"
        # the connection stays
        device.announce("ver", "1.3.2")
        assert env.org.get(ONLINE, **url).json() == {"connected": True}
    finally:
        device.close()


def test_a_new_token_keeps_the_device_and_its_data(env: Env) -> None:
    made = create(env.org, {"templateId": 10, "name": "Reprovisioned"})
    old = made["token"]
    assert device_write(old, env, 7).status_code == 200
    device = hardware(env, old)
    try:
        assert_error(env.auditor.post(REPROVISION, {"deviceId": made["id"]}), 403)
        for body in ({}, {"deviceId": "x"}, {"deviceId": made["id"], "more": 1}):
            assert_error(env.org.post(REPROVISION, body), 400)
        answer = env.staff.post(REPROVISION, {"deviceId": made["id"]})
        assert answer.status_code == 200, answer.text
        new = answer.json()["token"]
        assert answer.json() == {"deviceId": made["id"], "token": new} and new != old
        assert device.closed_by_server()
    finally:
        device.close()
    assert device_write(old, env, 8).status_code == 400
    assert device_write(new, env, 9).status_code == 200
    window = {"deviceId": made["id"], "dataStreamId": 1, "from": 0, "to": 2**62}
    points = env.org.get(HISTORY, **window).json()
    assert points["totalElements"] == 2  # the old token's value and the new one's
    assert env.org.get(DEVICE, deviceId=made["id"]).json()["name"] == "Reprovisioned"


def test_apply_keeps_api_devices_and_updates_those_it_names(env: Env) -> None:
    made = create(env.org, {"templateId": 10, "name": "Api kept"})
    apply_fleet(env.server.data_dir, env.fleet)  # the file does not mention it
    assert env.org.get(DEVICE, deviceId=made["id"]).json()["name"] == "Api kept"
    assert device_write(made["token"], env, 1).status_code == 200
    named = env.server.data_dir / "named.yaml"
    named.write_text(
        env.fleet.read_text().replace(
            "      - {id: 110, name: Scratch, product: 10}\n",
            "      - {id: 110, name: Scratch, product: 10}\n"
            f"      - {{id: {made['id']}, name: Api renamed, product: 10}}\n",
        )
    )
    apply_fleet(env.server.data_dir, named)

    def renamed() -> bool:
        return env.org.get(DEVICE, deviceId=made["id"]).json()["name"] == "Api renamed"

    wait_for("the applied name", renamed)
    assert device_write(made["token"], env, 2).status_code == 200  # its token kept


def test_what_an_mqtt_device_tells_of_itself_is_its_hardware_info(env: Env) -> None:
    made = create(env.org, {"templateId": 10, "name": "Mqtt made"})
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set("device", made["token"])
    client.connect("127.0.0.1", env.server.mqtt_port, keepalive=60)
    client.loop_start()
    try:
        for payload in ("not json", '["a list"]'):  # refused, and nothing kept
            client.publish("info/mcu", payload, qos=1).wait_for_publish(DEADLINE)
        info = '{"ver": "2.1.0", "type": "ESP32", "rxbuff": 1024, "tmpl": true, "x": "y"}'
        published = client.publish("info/mcu", info, qos=1)
        published.wait_for_publish(DEADLINE)
        assert published.is_published()

        def kept() -> dict[str, Any] | None:
            body: dict[str, Any] = env.org.get(DEVICE, deviceId=made["id"]).json()
            return body.get("hardwareInfo")

        assert wait_for("the hardware info", kept) == {
            "version": "2.1.0",
            "boardType": "ESP32",
            "buffIn": "1024",
        }
    finally:
        client.loop_stop()
        client.disconnect()
