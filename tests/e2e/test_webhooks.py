"""Webhooks end to end: a real server delivering to a real HTTP receiver in the test process.

Deliveries are awaited as conditions (`wait_for`), never by time: the servers run with short
poll and retry intervals so that the conditions come true quickly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import (
    GLOBEX,
    Bearer,
    Server,
    apply_fleet,
    client_token,
    free_port,
    wait_for,
)
from pinbase.domain.webhooks import verify

SECRET = "hook-secret-0123456789"
UPDATE = "/api/v1/organization/device/datastream"
FAST = (
    "--webhook-poll", "0.05", "--webhook-retry-first", "0.1", "--webhook-retry-longest", "0.3",
    "--webhook-attempts", "1000", "--webhook-timeout", "0.5",
)  # fmt: skip


class Receiver:
    """An HTTP endpoint on a fixed port that can go down and come back; records each request
    as (method, path, headers, body)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[str, str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.got.append((self.command, self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_PUT = do_GET = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, _, _, body in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.down()


def hooks_document(tmp_path: Path, port: int, rate: int | None = None) -> Path:
    body = '{"device": "{device_id}", "name": "{device_name}", "pin": "{pin}", "value": "{value}"}'
    hooks = [
        {
            "id": 1, "name": "Temperature", "trigger": "DEVICE_DATASTREAM_UPDATE",
            "datastreams": [1], "url": f"http://127.0.0.1:{port}/hooks/{{device_id}}",
            "content_type": "JSON", "body": body, "secret": SECRET,
            "auth": {"username": "hook", "password": "hook-password"},
        },
        {
            "id": 2, "name": "New devices", "trigger": "DEVICE_ADDED",
            "url": f"http://127.0.0.1:{port}/added", "secret": SECRET,
        },
    ]  # fmt: skip
    document = {"organizations": [{"id": 1, "name": "Acme Farms", "webhooks": hooks}]}
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps(document))
    return path


def write(api: Bearer, device_id: int, ds_id: int, value: object) -> None:
    response = api.post(UPDATE, {"deviceId": device_id, "dataStreamId": ds_id, "value": value})
    assert response.status_code == 204, response.text


def test_a_value_write_is_delivered_signed_and_logged(tmp_path: Path, receiver: Receiver) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    apply_fleet(data_dir, hooks_document(tmp_path, receiver.port))
    receiver.up()
    server = Server(data_dir, *FAST).start()
    try:
        api = Bearer(server.url, client_token(server.url))
        write(api, 101, 2, 40)  # humidity: the webhook is for datastream 1 only
        write(api, 101, 1, 21.5)
        wait_for("the delivery", lambda: receiver.got)
        (method, path, headers, body) = receiver.got[0]
        assert (method, path) == ("POST", "/hooks/101")
        assert json.loads(body) == {"device": "101", "name": "Roof", "pin": "V1", "value": "21.5"}
        assert verify(SECRET, body, headers["X-Pinbase-Signature"])
        assert headers["Authorization"] == "Basic aG9vazpob29rLXBhc3N3b3Jk"

        listed = api.get("/api/v1/organization/webhooks").json()
        assert [(h["id"], h["trigger"], h["hasSecret"]) for h in listed] == [
            (1, "DEVICE_DATASTREAM_UPDATE", True),
            (2, "DEVICE_ADDED", True),
        ]
        assert SECRET not in json.dumps(listed) and "hook-password" not in json.dumps(listed)
        assert api.get("/api/v1/organization/webhook", id=1).json()["datastreams"] == [1]
        assert api.get("/api/v1/organization/webhook", id=9).status_code == 404
        log = api.get("/api/v1/organization/webhook/deliveries", id=1).json()
        assert log["pending"] == 0
        assert [(d["status"], d["outcome"]) for d in log["deliveries"]] == [(200, "delivered")]

        # a device added by `pinbase apply` fires DEVICE_ADDED
        added = {"organizations": [{"id": 1, "name": "Acme Farms", "devices": [
            {"id": 111, "name": "Annex", "product": 10}]}]}  # fmt: skip
        (tmp_path / "added.json").write_text(json.dumps(added))
        apply_fleet(data_dir, tmp_path / "added.json")
        wait_for("DEVICE_ADDED", lambda: any(g[1] == "/added" for g in receiver.got))
        context = next(json.loads(g[3]) for g in receiver.got if g[1] == "/added")
        assert (context["trigger"], context["device_id"]) == ("DEVICE_ADDED", "111")
    finally:
        server.stop()
    assert len(receiver.got) == 2  # each event once


def test_deliveries_wait_out_a_receiver_down_and_a_sigkill(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    apply_fleet(data_dir, hooks_document(tmp_path, receiver.port))
    server = Server(data_dir, *FAST).start()
    values = [float(n) for n in range(6)]
    try:
        api = Bearer(server.url, client_token(server.url))
        for value in values[:3]:
            write(api, 101, 1, value)
        # the receiver is down: every delivery is retried, none is lost
        log = "/api/v1/organization/webhook/deliveries"
        wait_for(
            "failed attempts of each delivery",
            lambda: len({d["attempt"] for d in api.get(log, id=1).json()["deliveries"]}) > 1,
        )
        assert api.get(log, id=1).json()["pending"] == 3
        receiver.up()
        wait_for("the deliveries after the receiver returned", lambda: len(receiver.got) >= 3)
        receiver.down()
        for value in values[3:]:
            write(api, 101, 1, value)
        wait_for("pending deliveries", lambda: api.get(log, id=1).json()["pending"] == 3)
    finally:
        server.kill()
    receiver.up()
    again = Server(data_dir, *FAST).start()
    try:
        wait_for("the deliveries after the restart", lambda: len(receiver.got) >= 6)
        api = Bearer(again.url, client_token(again.url))
        wait_for("an empty outbox", lambda: api.get(log, id=1).json()["pending"] == 0)
    finally:
        again.stop()
    assert sorted(float(b["value"]) for b in receiver.bodies()) == values


def test_the_rate_limit_holds_deliveries_back(tmp_path: Path, receiver: Receiver) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    apply_fleet(data_dir, hooks_document(tmp_path, receiver.port))
    receiver.up()
    server = Server(data_dir, *FAST, "--webhook-rate", "2").start()
    try:
        api = Bearer(server.url, client_token(server.url))
        for value in range(5):
            write(api, 101, 1, value)
        log = "/api/v1/organization/webhook/deliveries"
        wait_for("the burst delivered", lambda: len(receiver.got) >= 2)
        wait_for(
            "the rest waiting",
            lambda: (
                (body := api.get(log, id=1).json())["pending"] == 3 and len(body["deliveries"]) == 2
            ),
        )
        assert len(receiver.got) == 2  # the next token is 30 s away
    finally:
        server.stop()


def test_processes_sharing_a_database_deliver_each_event_once(
    tmp_path: Path, receiver: Receiver, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("several server processes share a PostgreSQL database only")
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    apply_fleet(data_dir, hooks_document(tmp_path, receiver.port))
    receiver.up()
    fast = (*FAST, "--webhook-rate", "1000")
    servers = [Server(data_dir, *fast).start(), Server(data_dir, *fast).start()]
    try:
        apis = [Bearer(s.url, client_token(s.url)) for s in servers]
        values = [float(n) for n in range(40)]
        for number, value in enumerate(values):
            write(apis[number % 2], 101, 1, value)
        wait_for("every delivery", lambda: len(receiver.got) >= len(values))
        log = "/api/v1/organization/webhook/deliveries"
        wait_for("an empty outbox", lambda: apis[0].get(log, id=1).json()["pending"] == 0)
        entries = apis[1].get(log, id=1, limit=1000).json()["deliveries"]
    finally:
        for server in servers:
            server.stop()
    assert sorted(float(b["value"]) for b in receiver.bodies()) == values
    assert len(entries) == len(values) and {e["outcome"] for e in entries} == {"delivered"}


def test_webhooks_are_created_replaced_and_deleted_through_the_api(
    tmp_path: Path, receiver: Receiver
) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    receiver.up()
    server = Server(data_dir, *FAST).start()
    try:
        api = Bearer(server.url, client_token(server.url))
        headers = api.headers
        url = f"http://127.0.0.1:{receiver.port}/made/{{pin}}"
        made = api.post(
            "/api/v1/organization/webhook/create",
            {"name": "Made", "trigger": "DEVICE_DATASTREAM_UPDATE", "url": url},
        )
        assert made.status_code == 200, made.text
        created = made.json()
        assert (created["id"], created["method"], created["hasSecret"]) == (1, "POST", True)
        secret = created["secret"]
        write(api, 101, 2, 55)
        wait_for("the delivery", lambda: receiver.got)
        (_, path, got_headers, body) = receiver.got[0]
        assert path == "/made/V2" and verify(secret, body, got_headers["X-Pinbase-Signature"])

        bad = api.post(
            "/api/v1/organization/webhook/create",
            {"name": "x", "trigger": "DEVICE_ADDED", "url": "http://h.test/{oops}"},
        )
        assert bad.status_code == 400 and "url: unknown placeholder {oops}" in bad.text
        replaced = httpx.put(
            f"{server.url}/api/v1/organization/webhook",
            json={"id": 1, "name": "Renamed", "trigger": "DEVICE_ADDED", "url": url},
            headers=headers,
        )
        assert replaced.status_code == 200, replaced.text
        assert (replaced.json()["name"], replaced.json()["hasSecret"]) == ("Renamed", True)
        assert "secret" not in replaced.json()

        # another organization neither sees nor changes it
        globex = Bearer(server.url, client_token(server.url, GLOBEX))
        assert globex.get("/api/v1/organization/webhooks").json() == []
        assert globex.get("/api/v1/organization/webhook", id=1).status_code == 404
        gone = httpx.delete(f"{server.url}/api/v1/organization/webhook", params={"id": 1},
                            headers=globex.headers)  # fmt: skip
        assert gone.status_code == 404

        deleted = httpx.delete(
            f"{server.url}/api/v1/organization/webhook", params={"id": 1}, headers=headers
        )
        assert deleted.status_code == 204
        assert api.get("/api/v1/organization/webhook", id=1).status_code == 404
    finally:
        server.stop()
