"""Live updates over server-sent events: what a subscriber receives, and what it must not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import LIVE, Listener, Server, apply_fleet, client_token

UPDATE = "/api/v1/organization/device/datastream"
DEADLINE = 30.0  # bounds a hung stream; never decides a result


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    opened: list[Listener] = []
    yield opened
    for listener in opened:
        listener.close()


def write(base_url: str, token: str, device: int, ds: int, value: object) -> None:
    response = httpx.post(
        base_url + UPDATE,
        json={"deviceId": device, "dataStreamId": ds, "value": value},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 204, response.text


def test_a_write_reaches_a_subscriber(
    server: Server, tokens: dict[str, str], listeners: list[Listener]
) -> None:
    listener = Listener(server.url, tokens["org"], {"deviceIds": "106"})
    listeners.append(listener)
    write(server.url, tokens["org"], 106, 3, "live-1")
    kind, data = listener.next()
    assert kind == "value"
    assert data["deviceId"] == 106 and data["dataStreamId"] == 3 and data["pin"] == "v3"
    assert data["value"] == "live-1" and isinstance(data["updatedAt"], int)


def test_property_changes_are_streamed(
    server: Server, tokens: dict[str, str], listeners: list[Listener]
) -> None:
    listener = Listener(server.url, tokens["org"], {"deviceIds": "107"})
    listeners.append(listener)
    response = httpx.post(
        server.url + "/api/v1/organization/device/datastream/property",
        json={"deviceId": 107, "dataStreamId": 1, "property": "color", "value": "#00FF00"},
        headers={"Authorization": f"Bearer {tokens['org']}"},
    )
    assert response.status_code == 204
    assert listener.next() == (
        "property",
        {"deviceId": 107, "dataStreamId": 1, "pin": "v1", "property": "color", "value": "#00FF00"},
    )


def test_a_user_receives_only_the_devices_it_owns(
    server: Server, tokens: dict[str, str], listeners: list[Listener]
) -> None:
    listener = Listener(server.url, tokens["user"])
    listeners.append(listener)
    write(server.url, tokens["org"], 105, 3, "not yours")  # 105 has no owner
    write(server.url, tokens["org"], 104, 1, 1.5)  # user@ owns 104
    kind, data = listener.next()
    assert (kind, data["deviceId"], data["value"]) == ("value", 104, 1.5)


def test_another_organization_receives_nothing(
    server: Server, tokens: dict[str, str], listeners: list[Listener]
) -> None:
    listener = Listener(server.url, tokens["globex"])
    listeners.append(listener)
    write(server.url, tokens["org"], 108, 3, "acme only")
    write(server.url, tokens["globex"], 201, 1, 7.5)
    kind, data = listener.next()
    assert (kind, data["deviceId"], data["value"]) == ("value", 201, 7.5)


def test_a_principal_without_view_permission_is_refused(
    server: Server, tokens: dict[str, str]
) -> None:
    response = httpx.get(server.url + LIVE, headers={"Authorization": f"Bearer {tokens['blind']}"})
    assert response.status_code == 403
    assert response.json()["error"]["message"]


def test_stopping_the_server_ends_every_live_stream_cleanly(tmp_path: Path) -> None:
    # Without this, a stop waited for the graceful-shutdown timeout and then cut the stream off.
    apply_fleet(tmp_path)
    running = Server(tmp_path).start()
    listener = Listener(running.url, client_token(running.url))
    try:
        assert running.stop() == 0
        assert listener.ended.wait(DEADLINE)
        assert listener.error is None, listener.error
    finally:
        listener.close()
