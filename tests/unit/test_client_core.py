"""The Python client's sans-IO core: retry and token decisions, answers, pages, the live
stream's parser, and the splitting of big batches, driven with canned answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from pinbase.client import (
    ApiError,
    BadRequest,
    Client,
    ClientCredentials,
    Password,
    RateLimited,
    Retries,
    TokenError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnexpectedAnswer,
)
from pinbase.client import operations as ops
from pinbase.client.exchange import (
    Action,
    Authorize,
    Failure,
    Reply,
    Request,
    Send,
    Sleep,
    error_from,
    exchange,
)
from pinbase.client.models import Page
from pinbase.client.sse import EventParser
from pinbase.client.tokens import Tokens

GET = Request("GET", "/api/v1/organization/device/status", replayable=True)
WRITE = Request("POST", "/api/v1/organization/device/datastream", json={})


def reply(status: int, body: object = None, **headers: str) -> Reply:
    content = b"" if body is None else msgspec.json.encode(body)
    return Reply(status, {name.replace("_", "-"): value for name, value in headers.items()},
                 content)  # fmt: skip


class Driver(Client):
    """The blocking client with canned answers: its sends are answered from `answers` in
    turn, its waits recorded, and its tokens named `token-1`, `token-2`, ... ."""

    def __init__(self, *answers: Reply | Failure, retries: Retries = Retries()) -> None:
        super().__init__("http://pinbase.invalid", ClientCredentials("app", "secret"),
                         retries=retries)  # fmt: skip
        self.answers: Iterator[Reply | Failure] = iter(answers)
        self.sent: list[tuple[Request, str | None]] = []
        self.sleeps: list[float] = []
        self.stale: list[str | None] = []

    def _perform(self, action: Action) -> Any:
        match action:
            case Send(request, token):
                self.sent.append((request, token))
                return next(self.answers)
            case Sleep(seconds):
                self.sleeps.append(seconds)
                return None
            case Authorize(stale):
                self.stale.append(stale)
                return f"token-{len(self.stale)}"
        return super()._perform(action)


def test_429_and_503_are_retried_after_their_retry_after() -> None:
    driver = Driver(reply(429, retry_after="2"), reply(503, retry_after="1"), reply(204))
    assert driver.run(exchange(GET, driver.retries)).status == 204
    assert driver.sleeps == [2.0, 1.0] and len(driver.sent) == 3


def test_retries_stop_at_the_cap_and_the_attempts() -> None:
    beyond = Driver(reply(429, retry_after="61"))
    with pytest.raises(RateLimited) as caught:
        beyond.run(exchange(GET, beyond.retries))
    assert caught.value.headers == {"retry-after": "61"} and beyond.sleeps == []
    twice = Driver(*[reply(429, retry_after="1")] * 2, retries=Retries(attempts=2))
    with pytest.raises(RateLimited):
        twice.run(exchange(GET, twice.retries))
    assert len(twice.sent) == 2 and twice.sleeps == [1.0]
    damaged = Driver(reply(503, {"error": {"message": "damaged"}}))
    with pytest.raises(Unavailable) as broken:
        damaged.run(exchange(GET, damaged.retries))
    assert broken.value.message == "damaged" and len(damaged.sent) == 1


def test_a_401_renews_the_token_once() -> None:
    driver = Driver(reply(401), reply(200, []))
    driver.run(exchange(GET, driver.retries))
    assert driver.stale == [None, "token-1"]
    assert [token for _, token in driver.sent] == ["token-1", "token-2"]
    again = Driver(reply(401), reply(401, {"error": {"message": "Invalid token."}}))
    with pytest.raises(Unauthorized):
        again.run(exchange(GET, again.retries))


def test_a_write_that_may_have_arrived_is_not_sent_again() -> None:
    unsent = Driver(Failure("refused", sent=False), reply(204))
    assert unsent.run(exchange(WRITE, unsent.retries)).status == 204
    sent = Driver(Failure("cut", sent=True), reply(204))
    with pytest.raises(TransportError) as caught:
        sent.run(exchange(WRITE, sent.retries))
    assert caught.value.sent and len(sent.sent) == 1
    read = Driver(Failure("cut", sent=True), reply(200, []))
    assert read.run(exchange(GET, read.retries)).status == 200
    down = Driver(*[Failure("refused", sent=False)] * 5)
    with pytest.raises(TransportError):
        down.run(exchange(GET, down.retries))
    assert len(down.sent) == 5


def test_errors_carry_blynks_or_oauths_message() -> None:
    blynk = error_from(reply(400, {"error": {"message": "Bad value."}}))
    assert isinstance(blynk, BadRequest) and (blynk.status, blynk.message) == (400, "Bad value.")
    oauth = error_from(reply(400, {"error": "invalid_grant", "error_description": "Expired."}))
    assert isinstance(oauth, TokenError) and (oauth.code, oauth.message) == ("invalid_grant",
                                                                           "Expired.")  # fmt: skip
    other = error_from(Reply(502, {}, b"<html>bad gateway</html>"))
    assert type(other) is ApiError and other.message == "<html>bad gateway</html>"
    with pytest.raises(UnexpectedAnswer):
        Reply(200, {}, b'{"totalElements": "many"}').decode(Page[int])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def token_answer(access: str, refresh: str, expires_in: int = 100) -> Reply:
    body = {"access_token": access, "token_type": "Bearer", "expires_in": expires_in,
            "refresh_token": refresh}  # fmt: skip
    return reply(200, body)


def test_tokens_are_renewed_before_expiry_and_by_a_grant_when_refresh_fails() -> None:
    clock = Clock()
    tokens = Tokens(Password("app", "secret", "u@x.test", "pw"), clock)
    driver = Driver(token_answer("a1", "r1"))
    assert driver.run(tokens.obtain()) == "a1"
    [(grant, token)] = driver.sent
    assert grant.form == {"grant_type": "password", "username": "u@x.test", "password": "pw"}
    assert grant.basic_auth == ("app", "secret") and grant.replayable and token is None
    clock.now = 89.9
    assert tokens.usable(None) == "a1" and tokens.usable("a1") is None  # refused: stale
    clock.now = 90.0  # the last tenth of its life
    assert tokens.usable(None) is None

    failing = Driver(reply(400, {"error": "invalid_grant", "error_description": "reused"}),
                     token_answer("a2", "r2"))  # fmt: skip
    assert failing.run(tokens.obtain()) == "a2"
    refresh, grant = (request for request, _ in failing.sent)
    assert refresh.form == {"grant_type": "refresh_token", "refresh_token": "r1"}
    assert not refresh.replayable  # a refresh token works once
    assert grant.form is not None and grant.form["grant_type"] == "password"
    assert tokens.refresh == "r2"

    organization = Tokens(ClientCredentials("app", "secret"), clock)
    plain = Driver(token_answer("a3", "r3", expires_in=2000))
    plain.run(organization.obtain())
    assert plain.sent[0][0].form == {"grant_type": "client_credentials"}
    assert organization.renew_at == clock.now + 2000 - 60  # at most the last minute


def test_the_live_stream_parser() -> None:
    parser = EventParser()
    lines = [": connected", "", "event: value", 'data: {"deviceId": 1,', 'data: "value": 2}', "",
             ": keep-alive", "", "event: meta", 'data: {"id": 3}', ""]  # fmt: skip
    events = [event for line in lines if (event := parser.feed(line))]
    assert [(e.kind, e.data) for e in events] == [
        ("value", {"deviceId": 1, "value": 2}),
        ("meta", {"id": 3}),
    ]


def test_big_batch_updates_are_split_and_their_reports_added_up() -> None:
    rows = [[101, float(i)] for i in range(20_001)]
    first = {"deviceNotFound": 1, "skippedRows": ["row 5: device 7 not found"]}
    last = {"wrongProduct": 1, "skippedRows": ["row 0: device 9 belongs to another product"]}
    driver = Driver(reply(200, first), reply(204), reply(200, last))
    report = driver.run(ops.batch_update(["deviceId", "Temperature"], rows, debug=True))
    assert [len(request.json["updates"]) for request, _ in driver.sent] == [10_000, 10_000, 1]
    assert (report.device_not_found, report.wrong_product) == (1, 1)
    assert report.skipped_rows == [
        "row 5: device 7 not found",
        "row 20000: device 9 belongs to another product",
    ]


def test_imports_are_split_and_may_be_sent_again() -> None:
    points = [(1000 + i, i) for i in range(10_001)]
    driver = Driver(Failure("cut", sent=True), reply(204), reply(204))
    driver.run(ops.import_history(101, 2, points))
    sizes = [len(request.json["values"]) for request, _ in driver.sent]
    assert sizes == [10_000, 10_000, 1]  # the first sent again after the cut connection


def test_pages_are_walked_until_the_last() -> None:
    walk = ops.iter_history(101, 1, end=10)
    full = Page(total_elements=2500, content=list(range(1000)))
    assert walk.more(0, full) and walk.more(1, full)
    assert not walk.more(2, full)  # 3,000 >= 2,500
    assert not walk.more(0, Page(total_elements=2500, content=list(range(10))))
    driver = Driver(reply(200, {"totalElements": 0, "content": []}))
    driver.run(walk.page(3))
    assert dict(driver.sent[0][0].params) == {
        "deviceId": "101", "dataStreamId": "1", "from": "0", "to": "10", "page": "3",
        "size": "1000", "order": "asc",
    }  # fmt: skip


def test_a_streamed_answer_is_retried_like_any_read_then_read_as_it_arrives() -> None:
    body = httpx.Response(200, stream=httpx.ByteStream(b"ts_iso,ts_ms\r\n"))
    driver = Driver(reply(429, retry_after="1"), reply(401), Reply(200, opened=body))
    chunks = driver.export(101, start=5, end=9, datastream_ids=[1, 2], tz="Europe/Kyiv")
    assert driver.sent == []  # sent when the first chunk is asked for
    assert list(chunks) == [b"ts_iso,ts_ms\r\n"] and body.is_closed
    assert driver.sleeps == [1.0] and driver.stale == [None, None, "token-2"]
    request, token = driver.sent[-1]
    assert (request.path, request.streamed, token) == ("/api/v1/organization/device/export",
                                                       True, "token-3")  # fmt: skip
    assert request.params == (("deviceId", "101"), ("from", "5"), ("to", "9"),
                              ("dataStreamIds", "1,2"), ("tz", "Europe/Kyiv"))  # fmt: skip
    refused = Driver(reply(404, {"error": {"message": "Device not found."}}))
    with pytest.raises(ApiError, match="Device not found"):
        next(iter(refused.export(7, end=9)))
