"""The Python client (`pinbase.client`) against a real server: every test runs once with the
blocking `Client` and once with the `AsyncClient` (`helpers.api_client`), on both stores.

The module's server lets an access token live 3 seconds, so that expiry can be met; the
rate-limit tests spend the budget of a server of their own, which allows 120 requests a minute.
Each client mode writes its own device and time window."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from helpers import (
    ACME,
    FLEET,
    PASSWORDS,
    Server,
    api_client,
    apply_fleet,
    apply_fleet_text,
    not_found,
    wait_for,
)
from pinbase.client import (
    BadRequest,
    ClientCredentials,
    Forbidden,
    NotFound,
    Password,
    RateLimited,
    Retries,
    TokenError,
)

MODES = ["sync", "async"]
DEVICE = {"sync": 105, "async": 106}
WINDOW = {"sync": 1_150_000_000_000, "async": 1_160_000_000_000}
CLIENT = ClientCredentials(*ACME)
TTL = 3
EVENTS = [
    {"id": 1, "code": "high_temp", "name": "High temperature", "type": "WARNING"},
    {"id": 2, "code": "door_open", "name": "Door open", "type": "INFORMATION"},
]
METAFIELDS = [{"id": 1, "name": "Site", "type": "text"}]


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The test fleet, with events and a metafield on the weather station."""
    document = yaml.safe_load(FLEET.read_text())
    station = document["organizations"][0]["products"][0]
    station["events"], station["metafields"] = EVENTS, METAFIELDS
    data_dir: Path = tmp_path_factory.mktemp(f"client-{backend}")
    apply_fleet_text(data_dir, yaml.safe_dump(document))
    running = Server(data_dir, "--access-token-ttl", str(TTL)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def limited(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose organizations may make 120 requests a minute."""
    data_dir: Path = tmp_path_factory.mktemp(f"client-limited-{backend}")
    apply_fleet(data_dir)
    running = Server(data_dir, "--org-rate-limit", "120").start()
    yield running
    running.stop()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_reads_writes_and_errors(server: Server, mode: str) -> None:
    device = DEVICE[mode]
    with api_client(mode, server.url, CLIENT) as (api, seen):
        api.write_value(device, 1, 22.5)
        api.write_values(device, {2: 150, 3: "ok"})  # humidity clamped to its max
        values = {item.data_stream_id: item for item in api.current_values(device)}
        assert (values[1].value, values[2].value, values[3].value) == (22.5, 100, "ok")
        assert values[1].pin == "v1" and values[1].data_stream_alias == "Air temperature"
        assert values[4].value is None and values[4].updated_at is None
        [only] = api.current_values(device, [2])
        assert only.data_stream_id == 2

        # eleven devices are asked in two requests; another organization's device is left out
        asked = [*range(101, 111), 201]
        found = api.batch_values(asked, [1])
        assert [entry.device_id for entry in found] == list(range(101, 111))
        assert seen.count("/api/v1/organization/device/datastreams/batch") == 2
        assert dict((e.device_id, e.data_stream_values[0].value) for e in found)[device] == 22.5

        api.set_property(device, 1, "color", "#e4f6f7")
        [props] = api.properties(device, [1])
        assert props.properties == {"color": "#E4F6F7"}
        status = api.status(device)
        assert (status.device_id, status.connected) == (device, False)

        # errors carry the status and Blynk's message; another organization's device is absent
        for absent in (201, 999):
            with pytest.raises(NotFound) as caught:
                api.current_values(absent)
            assert caught.value.status == 404 and caught.value.message == not_found(absent)
        with pytest.raises(BadRequest) as bad:
            api.write_value(device, 1, "warm")
        assert bad.value.message == "Value doesn't match the Datastream data type."
        assert values[1].value == api.current_values(device, [1])[0].value  # nothing written

        # events, the timeline and metadata
        api.trigger_event(device, "high_temp", "41.5 °C")
        [logged] = api.timeline(device, event_type="WARNING").content
        assert (logged.event_code, logged.description, logged.is_resolved) == (
            "high_temp", "41.5 °C", False,
        )  # fmt: skip
        api.resolve_event(device, logged.id, "fan fixed")
        [resolved] = api.timeline(device, event_type="WARNING").content
        assert (resolved.is_resolved, resolved.resolved_comment) == (True, "fan fixed")
        with pytest.raises(NotFound):
            api.trigger_event(device, "no_such_code")
        codes = [event.event_code for event in api.template_events(10)]
        assert {"ONLINE", "OFFLINE", "high_temp", "door_open"} <= set(codes)
        api.set_metafield(device, 1, f"site-{mode}")
        assert [(m.name, m.value) for m in api.metafields(device)] == [("Site", f"site-{mode}")]
        assert [(f.id, f.name, f.type) for f in api.template_metafields(10)] == [
            (1, "Site", "Text")
        ]


def test_the_live_stream(server: Server, mode: str) -> None:
    device = DEVICE[mode]
    stop = threading.Event()

    def write_until_heard() -> None:  # the stream may open after the first writes
        with api_client("sync", server.url, CLIENT) as (writer, _):
            for step in range(200):
                writer.write_value(device, 1, float(step))
                if stop.wait(0.05):
                    return

    with api_client(mode, server.url, CLIENT) as (api, _):
        stream = api.live([device])
        writer = threading.Thread(target=write_until_heard)
        writer.start()
        try:
            event = next(stream)
        finally:
            stop.set()
            writer.join()
            stream.close()
        assert event.kind == "value"
        assert (event.data["deviceId"], event.data["dataStreamId"]) == (device, 1)
    blind = Password(*ACME, "blind@acme.test", PASSWORDS["blind@acme.test"])
    with api_client(mode, server.url, blind) as (api, _), pytest.raises(Forbidden):
        next(api.live([device]))  # no view permission


def test_webhooks(server: Server, mode: str) -> None:
    with api_client(mode, server.url, CLIENT) as (api, _):
        created = api.create_webhook(
            {"name": f"hook {mode}", "trigger": "DEVICE_LOG_EVENT", "url": "http://127.0.0.1:9/h"}
        )
        assert created.secret and created.has_secret
        assert api.webhook(created.id).secret is None
        assert created.id in [hook.id for hook in api.webhooks()]
        replaced = api.replace_webhook(
            {"id": created.id, "name": "renamed", "trigger": "DEVICE_LOG_EVENT",
             "url": "http://127.0.0.1:9/h"}
        )  # fmt: skip
        assert (replaced.name, api.webhook(created.id).name) == ("renamed", "renamed")
        log = api.webhook_deliveries(created.id)
        assert (log.webhook_id, log.pending, log.deliveries) == (created.id, 0, [])
        api.delete_webhook(created.id)
        with pytest.raises(NotFound):
            api.webhook(created.id)
        with pytest.raises(BadRequest):
            api.create_webhook({"name": "x", "trigger": "NOPE", "url": "http://127.0.0.1:9/h"})


def test_batches_are_split_and_history_is_walked(server: Server, mode: str) -> None:
    device, start = DEVICE[mode], WINDOW[mode]
    with api_client(mode, server.url, CLIENT) as (api, seen):
        # 10,500 points: two import requests; read back 1,000 a page, in eleven pages
        points = [(start + i, i % 101) for i in range(10_500)]
        api.import_history(device, 2, points)
        assert seen.count("/api/v1/organization/device/import/batch") == 2
        walked = list(api.iter_history(device, 2, start=start, end=start + 20_000))
        assert [(p.created_at, p.value) for p in walked] == points
        assert seen.count("/api/v1/organization/device/datastream/history") == 11
        newest = api.history(device, pin="v2", start=start, end=start + 20_000, size=3)
        assert newest.total_elements == 10_500
        assert [p.created_at for p in newest.content] == [start + 10_499 - i for i in range(3)]

        # 10,002 rows: two batch updates, their reports added up and numbered as one table
        rows: list[list[object]] = [[device, float(i % 80)] for i in range(10_000)]
        rows += [[999, 1.0], [device, 42.0]]
        report = api.batch_update(["deviceId", "Temperature"], rows, debug=True)
        assert seen.count("/api/v1/organization/product/devices/batch-update") == 2
        assert report.device_not_found == 1 and report.wrong_product == 0
        assert report.skipped_rows == ["row 10000: device 999 not found"]
        assert api.current_values(device, [1])[0].value == 42.0
        clean = api.batch_update(["deviceId", "Temperature"], [[device, 1.5]])
        assert clean.skipped_rows == [] and clean.device_not_found == 0


def test_tokens_are_obtained_renewed_and_refreshed(server: Server, mode: str) -> None:
    device = DEVICE[mode]
    with api_client(mode, server.url, CLIENT) as (api, seen):
        api.current_values(device)
        assert seen.grants() == ["client_credentials"]
        first = api.access_token()

        # due for renewal (by the client's clock): refreshed before the request
        seen.skew += TTL
        api.current_values(device)
        assert seen.grants() == ["client_credentials", "refresh_token"]
        second = api.access_token()
        assert second != first

        # expired at the server while the client's clock says it is fresh (it is held back):
        # a 401, then a new token and the same request again
        seen.skew -= 3600

        def expired() -> bool:
            headers = {"Authorization": f"Bearer {second}"}
            url = server.url + "/api/v1/organization/device/status"
            response = httpx.get(url, params={"deviceId": device}, headers=headers)
            return response.status_code == 401

        wait_for("the access token to expire", expired, deadline=TTL * 10)
        answered = len(seen.answers)
        assert api.status(device).device_id == device
        statuses = [status for _, status, _ in seen.answers[answered:]]
        assert statuses == [401, 200, 200]  # the refused request, the refresh, the request
        assert seen.grants()[-1] == "refresh_token"

        # a refresh token someone else used: the refresh fails, a new grant follows
        stolen = api.tokens.refresh
        response = httpx.post(
            server.url + "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": stolen},
            auth=ACME,
        )
        assert response.status_code == 200, response.text
        seen.skew += TTL
        assert api.status(device).device_id == device
        assert seen.grants()[-2:] == ["refresh_token", "client_credentials"]

        # many callers at once with a stale token: one renewal
        seen.skew += TTL
        renewals = len(seen.grants())
        callers = [threading.Thread(target=api.status, args=(device,)) for _ in range(8)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert len(seen.grants()) == renewals + 1


def test_users_act_with_their_role(server: Server, mode: str) -> None:
    email = "user@acme.test"
    user = Password(*ACME, email, PASSWORDS[email])
    with api_client(mode, server.url, user) as (api, seen):
        assert api.current_values(101)  # its own device
        with pytest.raises(NotFound):
            api.current_values(105)  # not its own: absent, as another organization's
        assert seen.grants() == ["password"]
    auditor = Password(*ACME, "auditor@acme.test", PASSWORDS["auditor@acme.test"])
    with api_client(mode, server.url, auditor) as (api, _), pytest.raises(Forbidden):
        api.write_value(105, 1, 1.0)
    wrong = Password(*ACME, email, "not-the-password")
    with api_client(mode, server.url, wrong) as (api, _):
        with pytest.raises(TokenError) as refused:
            api.status(101)
        assert (refused.value.status, refused.value.code) == (400, "invalid_grant")
    with api_client(mode, server.url, ClientCredentials(ACME[0], "wrong-secret")) as (api, _):
        with pytest.raises(TokenError) as unknown:
            api.status(101)
        assert (unknown.value.status, unknown.value.code) == (401, "invalid_client")


def test_a_rate_limited_request_waits_and_succeeds(limited: Server, mode: str) -> None:
    device = DEVICE[mode]
    with api_client(mode, limited.url, CLIENT) as (api, seen):
        for _ in range(1000):
            assert api.status(device).device_id == device
            if seen.sleeps:
                break
        limited = [(after, path) for path, status, after in seen.answers if status == 429]
        assert limited, "the rate limit was never met"
        # every 429 was waited out for its Retry-After, then sent again, and answered
        assert seen.sleeps == [float(after) for after, _ in limited if after]
        assert seen.answers[-1][1] == 200


def test_retries_are_bounded(limited: Server, mode: str) -> None:
    device = DEVICE[mode]
    impatient = Retries(longest_wait=0.5)
    with api_client(mode, limited.url, CLIENT, impatient) as (api, seen):
        with pytest.raises(RateLimited) as caught:
            for _ in range(1000):
                api.status(device)
        assert caught.value.status == 429
        assert caught.value.message == "Rate limit exceeded for this organization; retry later."
        assert caught.value.headers["retry-after"]
        assert seen.sleeps == []  # a wait beyond the cap is not waited
