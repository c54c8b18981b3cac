"""The MCP server at /mcp, end to end with the SDK's own client: the tools listed and each
called; a value written by `update_datastream_value` read back and received by a connected
hardware device; a User sees only the devices they own; another organization's template and
device are not found; no token or a bad one is 401. The fleet is `test_templates.py`'s."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent
from test_hardware import HARDWARE, OK, RawDevice  # e2e/test_hardware.py
from test_templates import (
    CLIENT,
    FOREIGN_DEVICE,
    FOREIGN_TEMPLATE,
    LABEL,
    MODE,
    OTHER_CLIENT,
    OWNED,
    PASSWORD,
    SHARED,
    STATION,
    STATION_PRO,
    STATION_STREAMS,
    TEMPERATURE,
    start_server,
    token_of,
)

from helpers import Server, client_token, free_port, user_token

T = TypeVar("T")
TOOLS = {
    "search_devices",
    "get_device",
    "create_device",
    "get_all_templates",
    "get_template",
    "get_datastream_values",
    "update_datastream_value",
    "get_history",
    "get_history_aggregate",
    "get_timeline",
}


class Env:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.endpoint = server.url + "/mcp"
        self.admin = client_token(server.url, CLIENT)
        self.user = user_token(server.url, "user@tmpl.test", CLIENT, PASSWORD)
        self.viewer = user_token(server.url, "viewer@tmpl.test", CLIENT, PASSWORD)
        self.foreign = client_token(server.url, OTHER_CLIENT)

    def session(self, token: str, work: Callable[[ClientSession], Awaitable[T]]) -> T:
        """`work` done in one MCP session of the SDK's client, with `token`."""

        async def run() -> T:
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                streamable_http_client(self.endpoint, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await work(session)

        return asyncio.run(run())

    def call(self, token: str, tool: str, **arguments: Any) -> CallToolResult:
        async def work(session: ClientSession) -> CallToolResult:
            result = await session.call_tool(tool, arguments)
            assert isinstance(result, CallToolResult)
            return result

        return self.session(token, work)

    def answer(self, token: str, tool: str, **arguments: Any) -> Any:
        """The JSON a tool answered; the call must succeed."""
        result = self.call(token, tool, **arguments)
        assert not result.is_error, text_of(result)
        text = text_of(result)
        return json.loads(text) if text else None

    def error(self, token: str, tool: str, **arguments: Any) -> str:
        """The message of a tool error; the call must fail."""
        result = self.call(token, tool, **arguments)
        assert result.is_error, text_of(result)
        return text_of(result)


def text_of(result: CallToolResult) -> str:
    (content,) = result.content
    assert isinstance(content, TextContent)
    return content.text


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp(f"mcp-{backend}")
    hardware_port = free_port()
    server = start_server(data_dir, "--hardware-port", str(hardware_port))
    server.hardware_port = hardware_port
    try:
        yield Env(server)
    finally:
        assert server.stop() == 0  # a clean stop, the MCP session manager included


def test_tools_are_listed(env: Env) -> None:
    async def names(session: ClientSession) -> set[str]:
        return {tool.name for tool in (await session.list_tools()).tools}

    assert env.session(env.admin, names) >= TOOLS


def test_templates(env: Env) -> None:
    page = env.answer(env.admin, "get_all_templates")
    assert [t["id"] for t in page["content"]] == [STATION, STATION_PRO, 72]
    assert env.answer(env.admin, "get_all_templates", page=1, size=2)["content"][0]["id"] == 72
    template = env.answer(env.user, "get_template", templateId=STATION_PRO)
    assert template["parentId"] == STATION
    assert template["dataStreams"] == STATION_STREAMS
    assert [e["eventCode"] for e in template["events"]] == ["ONLINE", "OFFLINE", "overheat"]
    assert template["metaFields"] == [{"id": 1, "name": "Site", "type": "Text"}]
    # the HTTP API's refusals, with its messages
    not_found = "Template not found."
    assert env.error(env.admin, "get_template", templateId=FOREIGN_TEMPLATE) == not_found
    assert env.error(env.admin, "get_template", templateId=999) == not_found
    assert env.error(env.foreign, "get_template", templateId=STATION) == not_found
    denied = "Access denied: the PRODUCT_VIEW permission is required."
    assert env.error(env.viewer, "get_template", templateId=STATION) == denied
    assert env.error(env.viewer, "get_all_templates") == denied
    assert "size" in env.error(env.admin, "get_all_templates", size=0)


def test_written_value_is_read_back_and_reaches_the_device(env: Env) -> None:
    device = RawDevice(env.server.hardware_port)
    try:
        assert device.login(token_of(SHARED)) == OK
        device.ping()
        before = int(time.time() * 1000) - 1
        assert (
            env.answer(
                env.admin,
                "update_datastream_value",
                deviceId=SHARED,
                dataStreamId=TEMPERATURE,
                value=22.5,
            )
            is None
        )
        command, _, fields = device.receive()
        assert (command, fields) == (HARDWARE, ["vw", "1", "22.5"])
        # by pin too, clamped like any write
        env.answer(env.admin, "update_datastream_value", deviceId=SHARED, pin="V1", value=99)
        assert device.receive()[2] == ["vw", "1", "85.0"]
    finally:
        device.close()
    values = env.answer(env.admin, "get_datastream_values", deviceId=SHARED)
    assert {v["dataStreamId"]: v.get("value") for v in values}[TEMPERATURE] == 85
    history = env.answer(
        env.admin,
        "get_history",
        deviceId=SHARED,
        dataStreamId=TEMPERATURE,
        start=before,
        end=int(time.time() * 1000) + 60_000,
    )
    assert [p["value"] for p in history["content"]] == [85, 22.5]
    assert history["totalElements"] == 2
    one = env.answer(
        env.admin, "get_history", deviceId=SHARED, pin="v1", start=before, end=2**62, size=1
    )
    assert [p["value"] for p in one["content"]] == [85]
    # a value that does not fit, an unknown datastream, a bad range: nothing written
    mismatch = "Value doesn't match the Datastream data type."
    assert (
        env.error(
            env.admin, "update_datastream_value", deviceId=SHARED, dataStreamId=MODE, value="x"
        )
        == mismatch
    )
    assert (
        env.error(env.admin, "update_datastream_value", deviceId=SHARED, dataStreamId=99, value=1)
        == "Datastream with identifier 99 is not found."
    )
    assert env.error(env.admin, "get_history", deviceId=SHARED, start=0, end=1) == (
        "Query parameter 'dataStreamId' or 'pin' is required."
    )
    assert env.answer(env.admin, "get_datastream_values", deviceId=SHARED) == values


def test_history_aggregate(env: Env) -> None:
    day = 86_400_000
    start = 1_767_571_200_000  # Monday 5 January 2026, 00:00 UTC
    points = [(start + 1_800_000, 20.5), (start + 3_600_000, 21.5), (start + day, 30.0)]
    imported = httpx.post(
        env.server.url + "/api/v1/organization/device/import/batch",
        json={"deviceId": OWNED, "dataStreamId": TEMPERATURE,
              "values": [{"ts": ts, "value": value} for ts, value in points]},
        headers={"Authorization": f"Bearer {env.admin}"},
    )  # fmt: skip
    assert imported.status_code == 204, imported.text
    span = {"start": start, "end": start + 7 * day - 1}
    daily = env.answer(
        env.user, "get_history_aggregate", deviceId=OWNED, pin="v1", interval="day", fn="avg",
        **span,
    )  # fmt: skip
    assert daily == {
        "data": [{"ts": start, "value": 21.0}, {"ts": start + day, "value": 30.0}],
        "interval": "day",
        "tz": "UTC",  # the device's zone: it has none, nor has its organization
    }
    kyiv = env.answer(
        env.user, "get_history_aggregate", deviceId=OWNED, dataStreamId=TEMPERATURE,
        interval="week", fn="count", tz="Europe/Kyiv", **span,
    )  # fmt: skip
    assert kyiv == {
        "data": [{"ts": start - 7_200_000, "value": 3}],
        "interval": "week",
        "tz": "Europe/Kyiv",
    }

    # the HTTP API's refusals, with its messages
    def refusal(token: str, **arguments: Any) -> str:
        given = {"deviceId": OWNED, "dataStreamId": TEMPERATURE, "interval": "day", "fn": "avg"}
        return env.error(token, "get_history_aggregate", **{**given, **span, **arguments})

    assert refusal(env.admin, fn="median") == (
        "Query parameter 'fn' must be one of: avg, min, max, sum, count, first, last."
    )
    assert "'tz'" in refusal(env.admin, tz="Mars/Olympus")
    assert refusal(env.admin, dataStreamId=LABEL) == (
        "Query parameter 'fn' avg needs a numeric datastream; 'v3' holds string."
    )
    assert refusal(env.admin, dataStreamId=None) == (
        "Query parameter 'dataStreamId' or 'pin' is required."
    )
    assert refusal(env.user, deviceId=SHARED) == (
        "Device with identifier 701 is not found or belong to another organization."
    )
    assert refusal(env.foreign, deviceId=OWNED) == (
        "Device with identifier 702 is not found or belong to another organization."
    )
    assert refusal(env.admin, deviceId=FOREIGN_DEVICE) == (
        "Device with identifier 801 is not found or belong to another organization."
    )


def test_timeline(env: Env) -> None:
    assert (
        httpx.post(
            env.server.url + "/api/v1/organization/device/trigger-event",
            json={"deviceId": OWNED, "eventCode": "overheat", "eventDescription": "hot"},
            headers={"Authorization": f"Bearer {env.admin}"},
        ).status_code
        == 204
    )
    page = env.answer(env.user, "get_timeline", deviceId=OWNED, eventType="WARNING")
    assert [(e["eventCode"], e["description"]) for e in page["content"]] == [("overheat", "hot")]
    assert env.answer(env.user, "get_timeline", deviceId=OWNED, eventType="CRITICAL") == {
        "totalElements": 0,
        "content": [],
    }
    assert "eventType" in env.error(env.user, "get_timeline", deviceId=OWNED, eventType="nope")


def test_users_and_organizations_see_only_their_devices(env: Env) -> None:
    shared = "Device with identifier 701 is not found or belong to another organization."
    # a User reads and writes only the devices they own
    assert env.error(env.user, "get_datastream_values", deviceId=SHARED) == shared
    assert env.error(env.user, "get_timeline", deviceId=SHARED) == shared
    assert (
        env.error(
            env.user, "get_history", deviceId=SHARED, dataStreamId=TEMPERATURE, start=0, end=1
        )
        == shared
    )
    assert (
        env.error(
            env.user, "update_datastream_value", deviceId=SHARED, dataStreamId=TEMPERATURE, value=1
        )
        == shared
    )
    env.answer(
        env.user, "update_datastream_value", deviceId=OWNED, dataStreamId=TEMPERATURE, value=5
    )
    owned = env.answer(env.user, "get_datastream_values", deviceId=OWNED)
    assert {v["dataStreamId"]: v.get("value") for v in owned}[TEMPERATURE] == 5
    # another organization's device is not found, for reading and writing
    foreign = "Device with identifier 801 is not found or belong to another organization."
    assert env.error(env.admin, "get_datastream_values", deviceId=FOREIGN_DEVICE) == foreign
    assert (
        env.error(
            env.admin, "update_datastream_value", deviceId=FOREIGN_DEVICE, dataStreamId=1, value=1
        )
        == foreign
    )
    # viewing without control is not enough to write
    assert (
        env.error(
            env.viewer,
            "update_datastream_value",
            deviceId=SHARED,
            dataStreamId=TEMPERATURE,
            value=1,
        )
        == "Access denied: the ORG_DEVICES_CONTROL permission is required."
    )


def test_devices_found_read_and_created(env: Env) -> None:
    every = env.answer(env.admin, "search_devices")
    assert {SHARED, OWNED} <= {d["id"] for d in every["content"]}
    assert FOREIGN_DEVICE not in {d["id"] for d in every["content"]}
    assert [d["id"] for d in env.answer(env.user, "search_devices")["content"]] == [OWNED]
    found = env.answer(env.admin, "search_devices", query="owned")
    assert [(d["id"], d["templateId"], d["originalTemplateId"]) for d in found["content"]] == [
        (OWNED, STATION_PRO, STATION)
    ]
    by_name = env.answer(env.admin, "search_devices", query="e", sortBy="Name", descending=True)
    assert [d["name"] for d in by_name["content"]][:2] == ["Shared", "Owned"]
    assert "sortBy" in env.error(env.admin, "search_devices", query="x", sortBy="Colour")
    # the full device: values and metadata; another user's or organization's: not found
    device = env.answer(env.user, "get_device", deviceId=OWNED)
    assert device["online"] is False
    assert [v["dataStreamId"] for v in device["dataStreamValues"]] == [TEMPERATURE, MODE, LABEL]
    assert device["metaFieldValues"] == [{"id": 1, "name": "Site", "value": {"type": "Text"}}]
    shared = "Device with identifier 701 is not found or belong to another organization."
    assert env.error(env.user, "get_device", deviceId=SHARED) == shared
    foreign = "Device with identifier 801 is not found or belong to another organization."
    assert env.error(env.admin, "get_device", deviceId=FOREIGN_DEVICE) == foreign
    # a device created by an agent: its token logs in over the hardware protocol at once
    created = env.answer(env.admin, "create_device", templateId=STATION, name="From an agent")
    assert (created["name"], created["templateId"], created["online"]) == (
        "From an agent",
        STATION,
        False,
    )
    device = RawDevice(env.server.hardware_port)
    try:
        assert device.login(created["token"]) == OK
    finally:
        device.close()
    assert env.answer(env.admin, "get_device", deviceId=created["id"])["name"] == "From an agent"
    assert "token" not in env.answer(env.admin, "get_device", deviceId=created["id"])
    # refusals: another organization's template, a bad name, a role without the permission
    assert (
        env.error(env.admin, "create_device", templateId=FOREIGN_TEMPLATE, name="X")
        == "Template not found."
    )
    assert "name" in env.error(env.admin, "create_device", templateId=STATION, name="<b>")
    assert env.error(env.viewer, "create_device", templateId=STATION, name="X") == (
        "Access denied: the ORG_DEVICES_CREATE permission is required."
    )


def test_no_token_or_a_bad_one_is_401(env: Env) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    for auth in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eA=="}):
        response = httpx.post(env.endpoint, json=initialize, headers={**headers, **auth})
        assert response.status_code == 401, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer") and "resource_metadata=" in challenge
    metadata = httpx.get(env.server.url + "/.well-known/oauth-protected-resource/mcp")
    assert metadata.status_code == 200
    assert metadata.json()["resource"].endswith("/mcp")
    # the SDK's client is refused too
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a 401
        env.call("not-a-token", "get_all_templates")
    # the endpoint is stateless: no stream to GET
    get = httpx.get(env.endpoint, headers={"Authorization": f"Bearer {env.admin}"})
    assert get.status_code == 405
