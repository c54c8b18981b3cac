"""Notifications end to end: events logged by a device fire DEVICE_LOG_EVENT webhooks to a
real HTTP receiver, and e-mails through a real SMTP server (aiosmtpd) in the test process.

Deliveries are awaited as conditions (`wait_for`), never by time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_webhooks import FAST, Receiver, apply  # e2e/test_webhooks.py

from helpers import Server, wait_for

LOG_EVENT = "/external/api/logEvent"
TOKEN = "NotifyTestToken0000000000000301A"
OTHER_TOKEN = "NotifyTestToken0000000000000302B"


@pytest.fixture
def receiver() -> Any:
    endpoint = Receiver()
    yield endpoint
    endpoint.down()


def document(tmp_path: Path, hook_port: int) -> Path:
    events = [
        {"id": 1, "code": "high_temp", "name": "High temperature", "type": "WARNING",
         "description": "Temperature above the limit",
         "notify": {"email": ["owner", "ops@notify.test"], "period": 300}},
        {"id": 2, "code": "door_open", "name": "Door open", "type": "INFORMATION"},
    ]  # fmt: skip
    body = '{"device": "{device_id}", "event": "{event_code}", "text": "{event_description}"}'
    organization = {
        "id": 1, "name": "Notify Farms",
        "users": [{"email": "owner@notify.test", "password": "owner-password-1", "role": "User"}],
        "products": [{"id": 30, "name": "Freezer", "events": events}],
        "devices": [
            {"id": 301, "name": "Cold room", "product": 30, "owner": "owner@notify.test",
             "token": TOKEN},
            {"id": 302, "name": "Spare", "product": 30, "token": OTHER_TOKEN},
        ],
        "webhooks": [
            {"id": 1, "name": "Alarms", "trigger": "DEVICE_LOG_EVENT", "events": ["high_temp"],
             "url": f"http://127.0.0.1:{hook_port}/events/{{device_id}}",
             "content_type": "JSON", "body": body},
        ],
    }  # fmt: skip
    path = tmp_path / "notify.json"
    path.write_text(json.dumps({"organizations": [organization]}))
    return path


def log_event(server: Server, token: str, code: str, description: str | None = None) -> None:
    params = {"token": token, "code": code}
    if description is not None:
        params["description"] = description
    response = httpx.get(server.url + LOG_EVENT, params=params)
    assert response.status_code == 200, response.text


def test_a_logged_event_fires_its_webhook_once(tmp_path: Path, receiver: Receiver) -> None:
    data_dir = tmp_path / "data"
    apply(data_dir, document(tmp_path, receiver.port))
    receiver.up()
    server = Server(data_dir, *FAST).start()
    try:
        log_event(server, TOKEN, "door_open")  # not among the webhook's events
        log_event(server, TOKEN, "high_temp", "41.5 °C")
        wait_for("the delivery", lambda: receiver.got)
        log_event(server, OTHER_TOKEN, "high_temp")  # the definition's description
        wait_for("the second delivery", lambda: len(receiver.got) >= 2)
    finally:
        server.stop()
    assert sorted((path, json.loads(body)["text"]) for _, path, _, body in receiver.got) == [
        ("/events/301", "41.5 °C"),
        ("/events/302", "Temperature above the limit"),
    ]
    assert all(json.loads(body)["event"] == "high_temp" for *_, body in receiver.got)
