"""The fleet file's `webhooks` key: what is stored, what is refused (naming the key), and the
DEVICE_ADDED deliveries of an apply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pinbase.app.provisioning import ProvisioningError, apply, plan
from pinbase.store.records import Entities, OrgRow, WebhookRow
from pinbase.store.sqlite.store import SqliteStore

HOOK: dict[str, Any] = {
    "id": 1,
    "name": "Hook",
    "trigger": "DEVICE_DATASTREAM_UPDATE",
    "url": "https://h.test/{device_id}",
}


def document(**changes: Any) -> dict[str, Any]:
    hook = {k: v for k, v in {**HOOK, **changes}.items() if v is not None}
    return {"organizations": [{"id": 1, "name": "Acme", "webhooks": [hook]}]}


def test_a_webhook_is_stored_with_its_defaults_and_a_generated_secret() -> None:
    rows, report = plan(document(datastreams=[2, 1, 2]), Entities())
    (hook,) = rows.webhooks
    assert hook == WebhookRow(
        1, 1, "Hook", "DEVICE_DATASTREAM_UPDATE", "https://h.test/{device_id}", "POST", "JSON",
        None, hook.secret, None, None, "[1,2]",
    )  # fmt: skip
    assert report.secrets == [("webhook 1 secret", hook.secret)] and hook.secret


def test_a_secret_left_out_is_kept_and_an_unchanged_webhook_is_no_change() -> None:
    rows, _ = plan(
        document(secret="given-secret", auth={"username": "u", "password": "p"}), Entities()
    )
    existing = Entities(organizations=[OrgRow(1, "Acme")], webhooks=rows.webhooks)
    again, report = plan(document(auth={"username": "u", "password": "p"}), existing)
    assert again.webhooks == [] and report.secrets == []


@pytest.mark.parametrize(
    ("changes", "where", "problem"),
    [
        ({"trigger": "NEW_USER"}, "trigger", "expected one of"),
        ({"url": "ftp://h.test/"}, "url", "http:// or https://"),
        ({"url": "https://{device_id}.test/"}, "url", "fixed host"),
        ({"url": "https://h.test/{secret}"}, "url", "unknown placeholder {secret}"),
        ({"url": "https://h.test/" + "a" * 600}, "url", "longer than 512"),
        ({"url": "https://h.test/a b"}, "url", "spaces"),
        ({"method": "TRACE"}, "method", "expected one of"),
        ({"content_type": "XML"}, "content_type", "expected one of"),
        ({"body": "x" * 6000}, "body", "longer than 5120"),
        ({"events": ["a"]}, "events", "only for trigger DEVICE_LOG_EVENT"),
        ({"datastreams": [0]}, "datastreams[0]", "out of range"),
        ({"auth": {"username": "a:b", "password": "p"}}, "auth.username", "colon"),
        ({"auth": {"username": "a"}}, "auth.password", "missing"),
        ({"secret": "a\nb"}, "secret", "printable"),
        ({"colour": 1}, "colour", "unknown key"),
        ({"id": "1"}, "id", "expected an integer"),
    ],
)
def test_hostile_webhooks_are_refused_naming_the_key(
    changes: dict[str, Any], where: str, problem: str
) -> None:
    with pytest.raises(ProvisioningError) as caught:
        plan(document(**changes), Entities())
    assert caught.value.path == f"organizations[0].webhooks[0].{where}"
    assert problem in caught.value.problem


def test_a_webhook_id_of_another_organization_is_refused() -> None:
    existing = Entities(
        organizations=[OrgRow(1, "Acme"), OrgRow(2, "Globex")],
        webhooks=[WebhookRow(1, 2, "x", "DEVICE_ADDED", "https://h/", "POST", "JSON", *[None] * 5)],
    )
    with pytest.raises(ProvisioningError, match="belongs to another organization"):
        plan(document(), existing)


def test_applying_new_devices_fills_the_outbox_of_device_added(tmp_path: Path) -> None:
    doc: dict[str, Any] = document(trigger="DEVICE_ADDED")
    org = doc["organizations"][0]
    org["products"] = [{"id": 10, "name": "P"}]
    org["devices"] = [{"id": 5, "name": "Five", "product": 10}]

    async def main() -> None:
        store = SqliteStore(tmp_path / "db")
        await store.open()
        try:
            await apply(store, doc)
            (row,) = await store.claim_deliveries(2**62, 2**62 + 1, 10)
            context = json.loads(row.context)
            assert (context["trigger"], context["device_id"], context["device_name"]) == (
                "DEVICE_ADDED", "5", "Five",
            )  # fmt: skip
            await apply(store, doc)  # nothing new: nothing fired
            assert await store.pending_deliveries(1) == 1
        finally:
            await store.close()

    asyncio.run(main())
