"""Notifications end to end: events logged by a device fire DEVICE_LOG_EVENT webhooks to a
real HTTP receiver, and e-mails through a real SMTP server (aiosmtpd) in the test process.

Deliveries are awaited as conditions (`wait_for`), never by time.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from test_webhooks import FAST, Receiver  # e2e/test_webhooks.py

from helpers import Bearer, Server, apply_fleet, client_token, free_port, wait_for

LOG_EVENT = "/external/api/logEvent"
TOKEN = "NotifyTestToken0000000000000301A"
OTHER_TOKEN = "NotifyTestToken0000000000000302B"
THIRD_TOKEN = "NotifyTestToken0000000000000303C"
SENDER = "alerts@notify.test"
CLIENT = ("notify-backend", "notify-secret-0123456789abcdef")


class Mailbox:
    """A real SMTP server (aiosmtpd) on a fixed loopback port that can be started late."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[list[str], Message]] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.got.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"

    def up(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def mails(self) -> list[tuple[list[str], Message]]:
        with self.lock:
            return list(self.got)


def body_of(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    yield box
    box.down()


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
        "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
        "users": [{"email": "owner@notify.test", "password": "owner-password-1", "role": "User"}],
        "products": [{"id": 30, "name": "Freezer", "events": events}],
        "devices": [
            {"id": 301, "name": "Cold room", "product": 30, "owner": "owner@notify.test",
             "token": TOKEN},
            {"id": 302, "name": "Spare", "product": 30, "token": OTHER_TOKEN},
            {"id": 303, "name": "Third", "product": 30, "token": THIRD_TOKEN},
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


def try_log(server: Server, token: str, code: str, description: str | None = None) -> int:
    params = {"token": token, "code": code}
    if description is not None:
        params["description"] = description
    return httpx.get(server.url + LOG_EVENT, params=params).status_code


def log_event(server: Server, token: str, code: str, description: str | None = None) -> None:
    assert try_log(server, token, code, description) == 200


def mail_server(mailbox: Mailbox) -> tuple[str, ...]:
    return (*FAST, "--smtp-url", f"smtp://127.0.0.1:{mailbox.port}", "--smtp-from", SENDER)


def test_a_logged_event_fires_its_webhook_once(tmp_path: Path, receiver: Receiver) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir, document(tmp_path, receiver.port))
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


def test_an_event_mails_its_recipients_once_a_period(
    tmp_path: Path, receiver: Receiver, mailbox: Mailbox
) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir, document(tmp_path, receiver.port))
    mailbox.up()
    server = Server(data_dir, *mail_server(mailbox)).start()
    try:
        log_event(server, TOKEN, "door_open")  # no notify settings: no mail
        log_event(server, TOKEN, "high_temp", "41.5 °C\r\nBcc: evil@notify.test")
        wait_for("the mail", lambda: mailbox.mails())
        # the same code again, once the per-second limit lets it in: within the period, no mail
        wait_for("a second event", lambda: try_log(server, TOKEN, "high_temp") == 200)
        log_event(server, OTHER_TOKEN, "high_temp")  # another device: mailed (no owner)
        wait_for("the other device's mail", lambda: len(mailbox.mails()) >= 2)
    finally:
        server.stop()
    (to, mail), (other_to, other) = mailbox.mails()
    assert to == ["owner@notify.test", "ops@notify.test"]
    assert mail["From"] == SENDER and mail["To"] == "owner@notify.test, ops@notify.test"
    assert mail["Subject"] == "High temperature on Cold room"
    assert mail["Bcc"] is None
    text = body_of(mail)
    assert "Description: 41.5 °C" in text and "Event: High temperature (high_temp)" in text
    assert "Time: 20" in text and " UTC" in text
    assert other_to == ["ops@notify.test"] and other["Subject"] == "High temperature on Spare"

    # the period is kept in the database: a restarted server does not mail again
    again = Server(data_dir, *mail_server(mailbox)).start()
    try:
        log_event(again, TOKEN, "high_temp")
        log_event(again, THIRD_TOKEN, "high_temp")
        wait_for("the third device's mail", lambda: len(mailbox.mails()) >= 3)
    finally:
        again.stop()
    assert [m["Subject"] for _, m in mailbox.mails()][2:] == ["High temperature on Third"]


def test_a_mail_waits_out_an_smtp_server_down(
    tmp_path: Path, receiver: Receiver, mailbox: Mailbox
) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir, document(tmp_path, receiver.port))
    server = Server(data_dir, *mail_server(mailbox)).start()
    try:
        log_event(server, TOKEN, "high_temp", "down")
        wait_for(
            "a failed attempt",
            lambda: "mail notification via 127.0.0.1: attempt 2 retrying" in server.log.read_text(),
        )
        mailbox.up()
        wait_for("the mail after the server returned", lambda: mailbox.mails())
    finally:
        server.stop()
    ((_, mail),) = mailbox.mails()
    assert "Description: down" in body_of(mail)


def test_a_malformed_smtp_url_stops_the_start(tmp_path: Path) -> None:
    from helpers import pinbase

    result = pinbase(
        "serve", "--data-dir", str(tmp_path), "--port", "0", "--hardware-port", "0",
        "--mqtt-port", "0", "--smtp-url", "http://user:s3cret-pw@mail.test",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--smtp-url must be" in result.stderr and "s3cret-pw" not in result.stderr


def test_processes_sharing_a_database_notify_each_event_once(
    tmp_path: Path, receiver: Receiver, mailbox: Mailbox, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("several server processes share a PostgreSQL database only")
    data_dir = tmp_path / "data"
    apply_fleet(data_dir, document(tmp_path, receiver.port))
    receiver.up()
    mailbox.up()
    fast = (*mail_server(mailbox), "--webhook-rate", "1000")
    servers = [Server(data_dir, *fast).start(), Server(data_dir, *fast).start()]
    try:
        for number, token in enumerate((TOKEN, OTHER_TOKEN, THIRD_TOKEN)):
            log_event(servers[number % 2], token, "high_temp", f"from {number % 2}")
        wait_for("the deliveries", lambda: len(receiver.got) >= 3)
        wait_for("the mails", lambda: len(mailbox.mails()) >= 3)
        api = Bearer(servers[1].url, client_token(servers[1].url, CLIENT))
        log = "/api/v1/organization/webhook/deliveries"
        wait_for("an empty outbox", lambda: api.get(log, id=1).json()["pending"] == 0)
    finally:
        for server in servers:
            server.stop()
    assert sorted(path for _, path, _, _ in receiver.got) == [
        "/events/301", "/events/302", "/events/303",
    ]  # fmt: skip
    subjects = sorted(mail["Subject"] for _, mail in mailbox.mails())
    assert subjects == [f"High temperature on {name}" for name in ("Cold room", "Spare", "Third")]


# --- TLS: STARTTLS with a login, and TLS from the start ---------------------------------------


class TlsMailbox(Mailbox):
    """The mailbox with a certificate of a test CA: STARTTLS required and a login (user
    `alerts`), or, `implicit`, TLS from the first byte. It records how each mail came."""

    def __init__(self, ca: Any, implicit: bool) -> None:
        super().__init__()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.implicit = implicit
        self.sessions: list[tuple[bool, bool]] = []  # (over TLS, logged in)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append((over_tls, bool(session.authenticated)))
        return await super().handle_DATA(server, session, envelope)

    def up(self) -> None:
        def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            good = (data.login, data.password) == (b"alerts", b"mail-pass")
            return AuthResult(success=good)

        if self.implicit:
            self.controller = Controller(
                self, hostname="127.0.0.1", port=self.port, ssl_context=self.context,
                authenticator=check, auth_require_tls=False,
            )  # fmt: skip
        else:
            self.controller = Controller(
                self, hostname="127.0.0.1", port=self.port, tls_context=self.context,
                require_starttls=True, authenticator=check,
            )  # fmt: skip
        self.controller.start()


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_mail_over_tls_with_a_login_checks_the_certificate(
    tmp_path: Path, receiver: Receiver, scheme: str
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    box = TlsMailbox(ca, implicit=scheme == "smtps")
    box.up()
    data_dir = tmp_path / "data"
    apply_fleet(data_dir, document(tmp_path, receiver.port))
    url = f"{scheme}://alerts:mail-pass@127.0.0.1:{box.port}"
    server = Server(
        data_dir, *FAST, "--smtp-url", url, "--smtp-from", SENDER, "--smtp-ca", str(ca_file)
    ).start()
    try:
        log_event(server, TOKEN, "high_temp", "over TLS")
        wait_for("the mail", lambda: box.mails())
    finally:
        server.stop()
        box.down()
    ((to, mail),) = box.mails()
    assert to == ["owner@notify.test", "ops@notify.test"] and "over TLS" in body_of(mail)
    assert box.sessions == [(True, True)]
    assert "mail-pass" not in server.log.read_text()


def test_a_certificate_the_ca_does_not_sign_is_refused_and_retried(
    tmp_path: Path, receiver: Receiver
) -> None:
    box = TlsMailbox(trustme.CA(), implicit=False)  # signed by a CA pinbase does not trust
    box.up()
    ca_file = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    data_dir = tmp_path / "data"
    apply_fleet(data_dir, document(tmp_path, receiver.port))
    url = f"smtp://alerts:mail-pass@127.0.0.1:{box.port}"
    server = Server(
        data_dir, *FAST, "--smtp-url", url, "--smtp-from", SENDER, "--smtp-ca", str(ca_file)
    ).start()
    try:
        log_event(server, TOKEN, "high_temp", "untrusted")
        wait_for(
            "a refused attempt",
            lambda: "mail notification via 127.0.0.1: attempt 2 retrying" in server.log.read_text(),
        )
    finally:
        server.stop()
        box.down()
    assert box.mails() == [] and box.sessions == []
    assert "mail-pass" not in server.log.read_text()
