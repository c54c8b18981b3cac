"""Live updates over server-sent events: what a subscriber receives, and what it must not."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from helpers import Server, apply_fleet, client_token

UPDATE = "/api/v1/organization/device/datastream"
LIVE = "/api/v1/organization/live"
DEADLINE = 30.0  # bounds a hung stream; never decides a result


class Listener:
    """Reads an event stream on a thread and hands each parsed event to the test."""

    def __init__(self, base_url: str, token: str, params: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
        self.ready = threading.Event()
        self.ended = threading.Event()
        """Set when the server ended the stream, cleanly (`error` None) or not."""
        self.error: Exception | None = None
        self._client = httpx.Client(base_url=base_url, timeout=None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(token, params or {}), daemon=True)
        self._thread.start()
        assert self.ready.wait(DEADLINE), "the stream did not open"

    def _run(self, token: str, params: dict[str, str]) -> None:
        try:
            self._read(token, params)
        except (httpx.HTTPError, OSError) as exc:
            if not self._stop.is_set():  # closing the client ends the read; nothing else may
                self.error = exc
        finally:
            self.ended.set()

    def _read(self, token: str, params: dict[str, str]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with self._client.stream("GET", LIVE, headers=headers, params=params) as response:
            kind = ""
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    self.ready.set()
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.put((kind, orjson.loads(line[6:])))
                if self._stop.is_set():
                    return

    def next(self) -> tuple[str, dict[str, object]]:
        return self.events.get(timeout=DEADLINE)

    def close(self) -> None:
        self._stop.set()
        self._client.close()


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
