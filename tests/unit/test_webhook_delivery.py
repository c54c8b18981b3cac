"""Webhooks without a server: placeholders, bodies, the signature, the backoff schedule, and the
delivery worker on a SQLite store with an injected clock and an in-process HTTP transport."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx

from pinbase.app.webhook_delivery import Deliveries, Policy
from pinbase.domain.webhooks import Backoff, fill, render, signature, unknown_placeholders, verify
from pinbase.store.records import Entities, OrgRow, WebhookRow
from pinbase.store.sqlite.store import SqliteStore

CONTEXT = {"device_id": "101", "device_name": 'Roof "A"&B', "pin": "V1", "value": "21.5"}


def test_placeholders_are_filled_and_escaped_where_they_stand() -> None:
    assert fill("/d/{device_id}/{datastream_pin}", CONTEXT, "url") == "/d/101/V1"
    assert fill("{device_name}", CONTEXT, "url") == "Roof%20%22A%22%26B"
    assert fill('{"n": "{device_name}"}', CONTEXT, "json") == '{"n": "Roof \\"A\\"&B"}'
    assert fill("{event_code}|{nope}", CONTEXT) == "|{nope}"  # absent: empty; unknown: kept
    assert unknown_placeholders("{device_id} {nope} {value}") == ["nope"]


def test_a_json_body_stays_json_whatever_the_values() -> None:
    hostile = {"device_name": '"},"x":{"\n\\', "value": "\u2028"}
    request = render("POST", "http://h.test/", "JSON", '{"n": "{device_name}"}', None, hostile)
    assert json.loads(request.body) == {"n": hostile["device_name"]}
    assert request.headers["Content-Type"] == "application/json"


def test_default_bodies_and_bodiless_methods() -> None:
    form = render("POST", "http://h.test/", "URL_ENCODED_FORM", None, None, CONTEXT)
    assert form.body == b"device_id=101&device_name=Roof+%22A%22%26B&pin=V1&value=21.5"
    assert json.loads(render("PUT", "http://h/", "JSON", None, None, CONTEXT).body) == CONTEXT
    get = render("GET", "http://h.test/{device_id}?v={value}", "JSON", None, "k", CONTEXT)
    assert (get.url, get.body, "Content-Type" in get.headers) == (
        "http://h.test/101?v=21.5",
        b"",
        False,
    )


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    # RFC 4231 test case 2: HMAC-SHA256 of "what do ya want for nothing?" under "Jefe"
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    request = render("POST", "http://h.test/", "PLAIN_TEXT", "v={value}", "key", CONTEXT)
    assert verify("key", request.body, request.headers["X-Pinbase-Signature"])
    assert not verify("other", request.body, request.headers["X-Pinbase-Signature"])
    assert "X-Pinbase-Signature" not in render("POST", "http://h/", "JSON", None, None, {}).headers


def test_the_backoff_doubles_up_to_the_longest_then_gives_up() -> None:
    backoff = Backoff(first=10, longest=60, attempts=6)
    assert [backoff.delay(n) for n in range(1, 7)] == [10, 20, 40, 60, 60, None]


class Receiver:
    """An in-process HTTP endpoint: answers with `status`, records what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.got: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.got.append(request)
        if self.status == 0:
            raise httpx.ConnectError("refused", request=request)
        headers = {"Location": "http://elsewhere.test/"} if self.status == 302 else {}
        return httpx.Response(self.status, headers=headers, stream=httpx.ByteStream(b"x" * 99_999))


HOOK = WebhookRow(
    5, 1, "h", "DEVICE_DATASTREAM_UPDATE", "http://h.test/{device_id}", "POST", "JSON",
    None, "key", "u", "p", None,
)  # fmt: skip


def _deliveries(
    store: SqliteStore, receiver: Receiver, clock: list[int], rate: int = 100
) -> Deliveries:
    policy = Policy(poll=0.01, timeout=5, backoff=Backoff(1, 4, 3), per_minute=rate)
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver), follow_redirects=False)
    return Deliveries(store, policy, client, clock=lambda: clock[0])


def _with_store(tmp_path: Path, body: object) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "db")
        await store.open()
        try:
            await store.upsert_entities(Entities(organizations=[OrgRow(1, "A")], webhooks=[HOOK]))
            await body(store)  # type: ignore[operator]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_delivery_is_signed_authenticated_and_logged(tmp_path: Path) -> None:
    receiver, clock = Receiver(), [1_000_000]

    async def body(store: SqliteStore) -> None:
        await store.enqueue_deliveries([(5, json.dumps({"device_id": "9"}), clock[0])])
        assert await _deliveries(store, receiver, clock).round() == 1
        (request,) = receiver.got
        assert str(request.url) == "http://h.test/9"
        assert verify("key", request.content, request.headers["X-Pinbase-Signature"])
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
        (entry,) = await store.delivery_log(5, 10)
        assert (entry.status, entry.outcome, entry.attempt) == (200, "delivered", 1)
        assert await store.pending_deliveries(5) == 0

    _with_store(tmp_path, body)


def test_failures_are_retried_on_the_backoff_schedule_then_given_up(tmp_path: Path) -> None:
    receiver, clock = Receiver(), [1_000_000]
    receiver.status = 0

    async def body(store: SqliteStore) -> None:
        worker = _deliveries(store, receiver, clock)
        await store.enqueue_deliveries([(5, "{}", clock[0])])
        assert await worker.round() == 1  # attempt 1 fails: again in 1 s
        clock[0] += 999
        assert await worker.round() == 0
        clock[0] += 1
        receiver.status = 302  # a redirect is a failure, never followed
        assert await worker.round() == 1  # attempt 2: again in 2 s
        clock[0] += 2000
        receiver.status = 500
        assert await worker.round() == 1  # attempt 3 of 3: given up
        clock[0] += 10_000
        assert await worker.round() == 0
        log = await store.delivery_log(5, 10)
        assert [(e.attempt, e.status, e.outcome) for e in log] == [
            (3, 500, "failed"),
            (2, 302, "retrying"),
            (1, 0, "retrying"),
        ]
        assert len(receiver.got) == 3 and all(r.url.host == "h.test" for r in receiver.got)

    _with_store(tmp_path, body)


def test_the_rate_limit_postpones_without_counting_an_attempt(tmp_path: Path) -> None:
    receiver, clock = Receiver(), [1_000_000]

    async def body(store: SqliteStore) -> None:
        worker = _deliveries(store, receiver, clock, rate=2)
        await store.enqueue_deliveries(
            [(5, json.dumps({"value": str(n)}), clock[0]) for n in range(4)]
        )
        assert await worker.round() == 4
        assert len(receiver.got) == 2  # the burst; the rest wait
        assert await store.pending_deliveries(5) == 2
        rows = await store.claim_deliveries(clock[0] + 60_000, clock[0] + 60_001, 10)
        assert [r.attempts for r in rows] == [0, 0]

    _with_store(tmp_path, body)


def test_a_delivery_of_a_deleted_webhook_is_dropped(tmp_path: Path) -> None:
    receiver, clock = Receiver(), [1_000_000]

    async def body(store: SqliteStore) -> None:
        await store.enqueue_deliveries([(99, "{}", clock[0])])
        assert await _deliveries(store, receiver, clock).round() == 1
        assert receiver.got == [] and await store.pending_deliveries(99) == 0
        assert [e.detail for e in await store.delivery_log(99, 1)] == ["webhook deleted"]

    _with_store(tmp_path, body)


def test_the_log_event_seam_fires_for_the_webhooks_codes(tmp_path: Path) -> None:
    from pinbase.app.webhooks import Webhooks
    from pinbase.domain.model import Device

    hook = WebhookRow(6, 1, "e", "DEVICE_LOG_EVENT", "http://h/", "POST", "JSON",
                      None, None, None, None, '["high_temp"]')  # fmt: skip

    async def body(store: SqliteStore) -> None:
        await store.upsert_entities(Entities(webhooks=[hook]))
        device = Device(101, 1, 10, 10, "Roof", None)
        assert await Webhooks(store).for_event(device, "low_temp", "cold", 5) == []
        ((hook_id, context, due),) = await Webhooks(store).for_event(device, "high_temp", "hot", 7)
        assert (hook_id, due) == (6, 7)
        assert json.loads(context) == {
            "trigger": "DEVICE_LOG_EVENT", "org_id": "1", "device_id": "101",
            "device_name": "Roof", "ts": "7", "event_code": "high_temp",
            "event_description": "hot",
        }  # fmt: skip

    _with_store(tmp_path, body)


def test_mail_rows_are_retried_without_an_smtp_server_and_unusable_ones_given_up(
    tmp_path: Path,
) -> None:
    from pinbase.app.mail_delivery import parse_smtp_url
    from pinbase.store.records import MAIL_OUTBOX

    receiver, clock = Receiver(), [1_000_000]

    async def body(store: SqliteStore) -> None:
        mail = json.dumps({"to": ["a@b.test"], "subject": "s", "body": "b"})
        await store.enqueue_deliveries([(MAIL_OUTBOX, mail, clock[0])])
        worker = _deliveries(store, receiver, clock)
        assert await worker.round() == 1  # no SMTP server in this process: due again later
        (entry,) = await store.delivery_log(MAIL_OUTBOX, 5)
        assert (entry.outcome, entry.detail) == (
            "retrying",
            "no SMTP server configured in this process",
        )
        assert await store.pending_deliveries(MAIL_OUTBOX) == 1 and receiver.got == []

        await store.enqueue_deliveries([(MAIL_OUTBOX, '{"to": []}', clock[0])])
        smtp = parse_smtp_url("smtp://127.0.0.1:9", "me@x.test")
        worker.smtp = smtp
        assert await worker.round() == 1  # the unusable row only; the other is not due yet
        newest = (await store.delivery_log(MAIL_OUTBOX, 5))[0]
        assert (newest.outcome, newest.detail) == ("failed", "unrenderable (ValueError)")
        assert await store.pending_deliveries(MAIL_OUTBOX) == 1

    _with_store(tmp_path, body)
