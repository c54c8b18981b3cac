"""Every operation of the API as a plan (see `exchange.py`): the requests it makes and how it
reads their answers. `api.Operations` binds each to the sync and the async client.

The API's own limits are split transparently: a batch update and an import send at most
`MAX_ROWS` rows a request, current values of several devices ask for `MAX_DEVICES` at a time,
and history and pages are walked `MAX_PAGE` items a request.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, Literal, TypeVar

from pinbase.client.exchange import Exchange, Plan, Reply, Request, call, command
from pinbase.client.models import (
    BatchReport,
    DatastreamProperties,
    DataStreamValue,
    DeliveryLog,
    Device,
    DeviceDetails,
    DeviceStatus,
    DeviceToken,
    DeviceValues,
    HistoryAggregate,
    HistoryPoint,
    MetaFieldValue,
    Organization,
    Page,
    Record,
    Template,
    TemplateDataStream,
    TemplateDetails,
    TemplateEvent,
    TemplateMetaField,
    TimelineEvent,
    User,
    Webhook,
)

T = TypeVar("T")
MAX_ROWS = 10_000
MAX_DEVICES = 10
MAX_PAGE = 1000
ORG = "/api/v1/organization"
Order = Literal["asc", "desc"]
SortOrder = Literal["ASC", "DESC"]
AggregateInterval = Literal["1m", "5m", "15m", "1h", "day", "week", "month"]
AggregateFunction = Literal["avg", "min", "max", "sum", "count", "first", "last"]


def query(**params: object) -> tuple[tuple[str, str], ...]:
    """Query parameters, leaving out None; lists comma-separated; `from_` is `from`."""
    pairs = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        pairs.append((name.rstrip("_"), str(value)))
    return tuple(pairs)


def get(path: str, kind: type[T], **params: object) -> Plan[T]:
    return call(Request("GET", ORG + path, query(**params), replayable=True), kind)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class Walk(Generic[T]):
    """Pages of `size` items: `page(index)` reads one; `more` says whether another follows."""

    page: Callable[[int], Plan[Page[T]]]
    size: int

    def more(self, index: int, page: Page[T]) -> bool:
        return len(page.content) >= self.size and (index + 1) * self.size < page.total_elements


# --- reading -------------------------------------------------------------------------------


def current_values(
    device_id: int, datastream_ids: Sequence[int] = ()
) -> Plan[list[DataStreamValue]]:
    """The current value of every datastream of a device (or of `datastream_ids`)."""
    return call(
        Request(
            "GET",
            "/api/v2/organization/device/datastreams",
            query(deviceId=device_id, dataStreamIds=list(datastream_ids) or None),
            replayable=True,
        ),
        list[DataStreamValue],
    )


def batch_values(
    device_ids: Sequence[int], datastream_ids: Sequence[int] = ()
) -> Plan[list[DeviceValues]]:
    """Current values of any number of devices (asked `MAX_DEVICES` at a time); devices that
    do not exist or that the token does not cover are left out."""
    found: list[DeviceValues] = []
    for group in chunks(device_ids, MAX_DEVICES):
        found += yield from get(
            "/device/datastreams/batch",
            list[DeviceValues],
            deviceIds=group,
            dataStreamIds=list(datastream_ids) or None,
        )
    return found


def history(
    device_id: int,
    datastream_id: int | None = None,
    *,
    pin: str | None = None,
    start: int = 0,
    end: int,
    page: int = 0,
    size: int = 50,
    order: Order = "desc",
) -> Plan[Page[HistoryPoint]]:
    """One page of a datastream's history (named by id or `pin`) from `start` to `end` (epoch
    ms, both included)."""
    return get(
        "/device/datastream/history",
        Page[HistoryPoint],
        deviceId=device_id,
        dataStreamId=datastream_id,
        pin=pin,
        from_=start,
        to=end,
        page=page,
        size=size,
        order=order,
    )


def iter_history(
    device_id: int,
    datastream_id: int | None = None,
    *,
    pin: str | None = None,
    start: int = 0,
    end: int,
    order: Order = "asc",
) -> Walk[HistoryPoint]:
    """Every point from `start` to `end`, oldest first by default, read a page at a time."""

    def page(index: int) -> Plan[Page[HistoryPoint]]:
        return history(
            device_id,
            datastream_id,
            pin=pin,
            start=start,
            end=end,
            page=index,
            size=MAX_PAGE,
            order=order,
        )

    return Walk(page, MAX_PAGE)


def history_aggregate(
    device_id: int,
    datastream_id: int | None = None,
    *,
    pin: str | None = None,
    start: int,
    end: int,
    interval: AggregateInterval,
    fn: AggregateFunction,
    tz: str | None = None,
) -> Plan[HistoryAggregate]:
    """A datastream's points from `start` to `end` (epoch ms, both included) summed up by `fn`
    in buckets of `interval` of the local time of `tz` (the device's zone when None): only the
    buckets holding points, oldest first (pinbase)."""
    return get(
        "/device/datastream/history/aggregate",
        HistoryAggregate,
        deviceId=device_id,
        dataStreamId=datastream_id,
        pin=pin,
        from_=start,
        to=end,
        interval=interval,
        fn=fn,
        tz=tz,
    )


def export(
    device_id: int,
    *,
    start: int = 0,
    end: int,
    datastream_ids: Sequence[int] = (),
    tz: str | None = None,
) -> Request:
    """Every point of a device's datastreams (or of `datastream_ids`) from `start` to `end`
    (epoch ms, both included) as CSV (`ts_iso` in `tz`, UTC when None), in time order: the
    body's bytes as the server sends them, a chunk at a time (pinbase)."""
    return Request(
        "GET",
        ORG + "/device/export",
        query(
            deviceId=device_id,
            from_=start,
            to=end,
            dataStreamIds=list(datastream_ids) or None,
            tz=tz,
        ),
        replayable=True,
        streamed=True,
    )


def properties(
    device_id: int, datastream_ids: Sequence[int] = ()
) -> Plan[list[DatastreamProperties]]:
    """The widget properties set on a device's datastreams (pinbase)."""
    return get(
        "/device/datastream/properties",
        list[DatastreamProperties],
        deviceId=device_id,
        dataStreamIds=list(datastream_ids) or None,
    )


def status(device_id: int) -> Plan[DeviceStatus]:
    """Whether the device holds a connection, over what, since when (pinbase)."""
    return get("/device/status", DeviceStatus, deviceId=device_id)


# --- writing -------------------------------------------------------------------------------


def post(path: str, body: object, replayable: bool = False) -> Request:
    return Request("POST", ORG + path, json=body, replayable=replayable)


def write_value(device_id: int, datastream_id: int, value: Any) -> Plan[None]:
    """Write one value (not sent again after a connection failure: see `exchange.py`)."""
    return command(
        post(
            "/device/datastream",
            {"deviceId": device_id, "dataStreamId": datastream_id, "value": value},
        )
    )


def write_values(device_id: int, values: Mapping[int, Any]) -> Plan[None]:
    """Write several values of one device, by datastream id."""
    body = {"deviceId": device_id, "values": {str(key): value for key, value in values.items()}}
    return command(post("/device/datastreams", body))


ROW = re.compile(r"^row (\d+)")


def renumbered(line: str, offset: int) -> str:
    """A skipped row's reason, its row counted from the first row of all the requests."""
    return ROW.sub(lambda match: f"row {int(match[1]) + offset}", line)


def batch_update(
    fields: Sequence[str], rows: Iterable[Sequence[Any]], debug: bool = False
) -> Plan[BatchReport]:
    """Write a table of values (first column the device id, then one per datastream label),
    `MAX_ROWS` rows a request; the counts are added up and the skipped rows numbered from the
    first row given. Each request's product is found from its own rows."""
    totals: dict[str, int] = {}
    skipped: list[str] = []
    offset = 0
    for group in chunks(rows, MAX_ROWS):
        body = {"fields": list(fields), "updates": [list(row) for row in group], "debug": debug}
        reply: Reply = yield Exchange(post("/product/devices/batch-update", body))
        if reply.status != 204:
            report = reply.decode(BatchReport)
            for name in BatchReport.__struct_fields__[:-1]:
                totals[name] = totals.get(name, 0) + getattr(report, name)
            skipped += (renumbered(line, offset) for line in report.skipped_rows)
        offset += len(group)
    return BatchReport(**totals, skipped_rows=skipped)


def import_history(
    device_id: int, datastream_id: int, points: Iterable[tuple[int, Any]]
) -> Plan[None]:
    """Import (epoch ms, value) points, `MAX_ROWS` a request. Importing the same points again
    replaces them, so a request is sent again after a connection failure."""
    for group in chunks(points, MAX_ROWS):
        body = {
            "deviceId": device_id,
            "dataStreamId": datastream_id,
            "values": [{"ts": ts, "value": value} for ts, value in group],
        }
        yield Exchange(post("/device/import/batch", body, replayable=True))


def set_property(device_id: int, datastream_id: int, name: str, value: str) -> Plan[None]:
    """Set a widget property of a datastream."""
    body = {"deviceId": device_id, "dataStreamId": datastream_id, "property": name, "value": value}
    return command(post("/device/datastream/property", body, replayable=True))


# --- events and metadata -------------------------------------------------------------------


def timeline(
    device_id: int,
    *,
    page: int = 0,
    size: int = 20,
    event_type: str | None = None,
    start: int | None = None,
    end: int | None = None,
) -> Plan[Page[TimelineEvent]]:
    """One page of a device's timeline, newest first."""
    return get(
        "/device/timeline",
        Page[TimelineEvent],
        deviceId=device_id,
        page=page,
        size=size,
        eventType=event_type,
        from_=start,
        to=end,
    )


def trigger_event(device_id: int, code: str, description: str | None = None) -> Plan[None]:
    """Log an event of the device's product, by code."""
    body: dict[str, Any] = {"deviceId": device_id, "eventCode": code}
    if description is not None:
        body["eventDescription"] = description
    return command(post("/device/trigger-event", body))


def resolve_event(device_id: int, log_event_id: int, comment: str | None = None) -> Plan[None]:
    """Resolve a logged WARNING or CRITICAL event."""
    body: dict[str, Any] = {"deviceId": device_id, "logEventId": log_event_id}
    if comment is not None:
        body["comment"] = comment
    return command(post("/device/resolve-event", body))


def template_events(template_id: int) -> Plan[list[TemplateEvent]]:
    """The events a template (product) defines, the system events first."""
    return get("/template/events", list[TemplateEvent], templateId=template_id)


def metafields(device_id: int) -> Plan[list[MetaFieldValue]]:
    """The device's value of each metafield of its product."""
    return get("/device/metafield", list[MetaFieldValue], deviceId=device_id)


def set_metafield(device_id: int, metafield_id: int, value: Any) -> Plan[None]:
    """Set the device's value of a metafield."""
    body = {"deviceId": device_id, "metaFieldId": metafield_id, "newValue": value}
    return command(post("/device/metafield", body, replayable=True))


def template_metafields(template_id: int) -> Plan[list[TemplateMetaField]]:
    """The metafields a template defines."""
    return get("/template/metafields", list[TemplateMetaField], templateId=template_id)


# --- webhooks ------------------------------------------------------------------------------


def webhooks() -> Plan[list[Webhook]]:
    """The organization's webhooks."""
    return get("/webhooks", list[Webhook])


def webhook(webhook_id: int) -> Plan[Webhook]:
    """One webhook."""
    return get("/webhook", Webhook, id=webhook_id)


def create_webhook(definition: Mapping[str, Any]) -> Plan[Webhook]:
    """Create a webhook from its definition (the fleet file's webhook, as JSON); a generated
    secret is in the answer's `secret`, this once."""
    return call(post("/webhook/create", dict(definition)), Webhook)


def replace_webhook(definition: Mapping[str, Any]) -> Plan[Webhook]:
    """Replace the webhook of the definition's `id`."""
    return call(Request("PUT", ORG + "/webhook", json=dict(definition), replayable=True), Webhook)


def delete_webhook(webhook_id: int) -> Plan[None]:
    """Delete a webhook and its pending deliveries."""
    return command(Request("DELETE", ORG + "/webhook", query(id=webhook_id)))


def webhook_deliveries(webhook_id: int, limit: int = 100) -> Plan[DeliveryLog]:
    """A webhook's pending count and latest delivery attempts (pinbase)."""
    return get("/webhook/deliveries", DeliveryLog, id=webhook_id, limit=limit)


# --- the Platform API: devices ---------------------------------------------------------------


def devices(page: int = 0, size: int = 50) -> Plan[Page[Device]]:
    """One page of the organization's devices (those the token may read), by id."""
    return get("/devices", Page[Device], page=page, size=size)


def iter_devices() -> Walk[Device]:
    """Every device the token may read, by id."""
    return Walk(lambda index: devices(index, MAX_PAGE), MAX_PAGE)


@dataclass(frozen=True)
class Search(Generic[T]):
    """A search of the Platform API: `text` (at most 255 characters), sorted by one of Blynk's
    column names (`sort_by`, e.g. "Name") `ASC` or `DESC`, a page of the matches."""

    path: str
    kind: type[Page[T]]
    __doc__: str

    def __call__(
        self,
        text: str,
        *,
        sort_by: str | None = None,
        sort_order: SortOrder | None = None,
        page: int = 0,
        size: int = 50,
    ) -> Plan[Page[T]]:
        params = {"sortBy": sort_by, "sortOrder": sort_order, "page": page, "size": size}
        return get(self.path, self.kind, query=text, **params)


search_devices = Search(
    "/search/devices",
    Page[Device],
    "Devices whose name, id, product name or owner's e-mail match `text`.",
)


def device(device_id: int) -> Plan[DeviceDetails]:
    """A device with its connection, current values and metadata."""
    return get("/device", DeviceDetails, deviceId=device_id)


def create_device(template_id: int, name: str, owner_id: int | None = None) -> Plan[DeviceDetails]:
    """Create a device; its auth token is in the answer's `token`, this once."""
    body: dict[str, Any] = {"templateId": template_id, "name": name}
    if owner_id is not None:
        body["ownerId"] = owner_id
    return call(post("/device/create", body), DeviceDetails)


def rename_device(device_id: int, name: str) -> Plan[Device]:
    """Rename a device."""
    request = Request(
        "PUT", ORG + "/device", query(deviceId=device_id), {"name": name}, replayable=True
    )
    return call(request, Device)


def delete_device(device_id: int) -> Plan[None]:
    """Delete a device: its token stops working and its connections close."""
    return command(Request("DELETE", ORG + "/device", query(deviceId=device_id)))


def clear_device(device_id: int) -> Plan[None]:
    """Erase a device's history and current values."""
    return command(Request("DELETE", ORG + "/device/clear", query(deviceId=device_id)))


class Connected(Record):
    connected: bool


def device_online(device_id: int) -> Plan[bool]:
    """Whether the device is connected."""
    answer = yield from get("/device/online", Connected, deviceId=device_id)
    return bool(answer.connected)


def reprovision_token(device_id: int) -> Plan[DeviceToken]:
    """Give a device a new auth token (the old one stops working; its data stays)."""
    body = {"deviceId": device_id}
    return call(post("/device/provision/reprovision/token", body), DeviceToken)


# --- the Platform API: templates, users, the organization --------------------------------------


def templates(page: int = 0, size: int = 50) -> Plan[Page[Template]]:
    """One page of the organization's templates (products)."""
    return get("/templates", Page[Template], page=page, size=size)


def template(template_id: int) -> Plan[TemplateDetails]:
    """One template's details."""
    return get("/template", TemplateDetails, templateId=template_id)


def template_datastreams(template_id: int) -> Plan[list[TemplateDataStream]]:
    """The datastreams a template defines."""
    return get("/template/datastreams", list[TemplateDataStream], templateId=template_id)


def users(page: int = 0, size: int = 50) -> Plan[Page[User]]:
    """One page of the organization's users."""
    return get("/users", Page[User], page=page, size=size)


search_users = Search("/search/users", Page[User], "Users whose name or e-mail match `text`.")


def user(user_id: int) -> Plan[User]:
    """One user of the organization."""
    return get("/user", User, userId=user_id)


def my_profile() -> Plan[User]:
    """The profile of the user whose token this is (a password-grant token)."""
    return get("/user/profile", User)


def organization() -> Plan[Organization]:
    """The token's organization."""
    return get("/profile", Organization)


def password_hash(email: str, password: str) -> str:
    """Blynk's `passwordHash` of a user: Base64(SHA-256(password + SHA-256(lower-cased
    e-mail))), the digest Blynk's own apps send in place of the password."""
    salt = hashlib.sha256(email.lower().encode()).digest()
    return base64.b64encode(hashlib.sha256(password.encode() + salt).digest()).decode()


def create_user(
    email: str,
    name: str,
    role_id: int,
    *,
    password: str | None = None,
    password_hash: str | None = None,
) -> Plan[User]:
    """Create an active user in the organization, with a `password_hash` (see `password_hash`)
    or a `password` (which the server takes only over TLS)."""
    body: dict[str, Any] = {"email": email, "name": name, "roleId": role_id}
    if password is not None:
        body["password"] = password
    if password_hash is not None:
        body["passwordHash"] = password_hash
    return call(post("/users/create-in-org", body), User)


def invite_user(email: str, name: str, role_id: int) -> Plan[User]:
    """Invite a user (status Pending until the invitation is taken)."""
    return call(post("/users/invite", {"email": email, "name": name, "roleId": role_id}), User)


def set_user_role(user_id: int, role_id: int) -> Plan[User]:
    """Give a user another role."""
    request = Request(
        "PUT", ORG + "/users/role", query(userId=user_id, roleId=role_id), replayable=True
    )
    return call(request, User)


def live_request(device_ids: Sequence[int]) -> Request:
    """The request that opens the live stream (pinbase), of `device_ids` or of every device."""
    return Request(
        "GET",
        ORG + "/live",
        query(deviceIds=list(device_ids) or None),
        replayable=True,
        streamed=True,
    )
