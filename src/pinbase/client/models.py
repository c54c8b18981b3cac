"""What the API answers, as typed records: msgspec Structs, which behave like dataclasses
(snake_case attributes for the JSON's camelCase keys) and are checked as they are decoded,
so an answer of the wrong shape raises `UnexpectedAnswer` instead of travelling on.

Values are `Any`: a number, a string, `[longitude, latitude]`, or None for an erased value.
Keys the server adds later are ignored; the Platform records keep optional what Blynk
documents as optional.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class Record(msgspec.Struct, kw_only=True, rename="camel"):
    """The base of every answer record."""


class Page(Record, Generic[T]):
    total_elements: int
    content: list[T]


# --- the Organization datastream API -----------------------------------------------------


class DataStreamValue(Record):
    data_stream_id: int
    pin: str
    data_stream_label: str
    data_stream_alias: str
    value: Any = None
    updated_at: int | None = None


class DeviceValues(Record):
    device_id: int
    data_stream_values: list[DataStreamValue]


class HistoryPoint(Record):
    created_at: int
    value: Any


class Bucket(Record):
    """A bucket of aggregated history: `ts`, the instant it starts (epoch ms), and the
    function's value over its points."""

    ts: int
    value: Any


class HistoryAggregate(Record):
    """Aggregated history (pinbase): the buckets holding points, oldest first, with the
    interval and the IANA timezone they follow."""

    data: list[Bucket]
    interval: str
    tz: str


class BatchReport(Record):
    """What a batch update skipped (all zero when nothing was)."""

    invalid_row_size: int = 0
    null_device_id: int = 0
    non_numeric_device_id: int = 0
    device_not_found: int = 0
    no_access_to_device: int = 0
    wrong_product: int = 0
    skipped_rows: list[str] = msgspec.field(default_factory=list)


class DatastreamProperties(Record):
    data_stream_id: int
    pin: str
    properties: dict[str, str]


class DeviceStatus(Record):
    device_id: int
    connected: bool
    protocol: str | None = None
    connected_since: int | None = None
    last_seen: int | None = None


class TimelineEvent(Record):
    id: int
    device_id: int
    event_id: int
    event_code: str
    event_type: str
    description: str | None
    ts: int
    is_resolved: bool
    resolved_at: int | None = None
    resolved_comment: str | None = None


class TemplateEvent(Record):
    id: int
    name: str
    event_code: str
    type: str
    description: str | None = None
    show_in_timeline: bool = True


class MetaFieldValue(Record):
    """A device's value of one metafield (`device/metafield`); `value` None when unset."""

    id: int
    name: str
    value: Any = None


class TemplateMetaField(Record):
    id: int
    name: str
    type: str
    default: Any = None
    options: list[str] | None = None
    min: float | None = None
    max: float | None = None


class Webhook(Record):
    id: int
    name: str
    trigger: str
    url: str
    method: str
    content_type: str
    body: str | None
    auth_type: str
    has_secret: bool
    datastreams: list[int] | None = None
    events: list[str] | None = None
    secret: str | None = None
    """Only in the answer of a creation (or a replacement) that generated the secret."""


class Delivery(Record):
    id: int
    attempt: int
    at: int
    status: int
    outcome: str
    detail: str


class DeliveryLog(Record):
    webhook_id: int
    pending: int
    deliveries: list[Delivery]


class LiveEvent(Record):
    """One event of the live stream: `kind` is `value`, `property`, `event` or `meta`, `data`
    its JSON object."""

    kind: str
    data: dict[str, Any]


# --- the Platform API ----------------------------------------------------------------------


class Device(Record):
    id: int
    name: str
    template_id: int
    original_template_id: int | None = None
    org_id: int | None = None
    owner_user_id: int | None = None
    activated_at: int | None = None
    last_reported_at: int | None = None
    hardware_info: dict[str, Any] | None = None


class MetaFieldEntry(Record):
    id: int
    name: str
    value: dict[str, Any] | None = None
    """Blynk's `{"type": ..., "value": ...}`."""


class DeviceDetails(Device):
    online: bool = False
    data_stream_values: list[DataStreamValue] = msgspec.field(default_factory=list)
    meta_field_values: list[MetaFieldEntry] = msgspec.field(default_factory=list)
    token: str | None = None
    """Only in the answer of `create_device`: the new device's auth token."""


class DeviceToken(Record):
    device_id: int
    token: str


class Template(Record):
    id: int
    name: str
    org_id: int | None = None
    parent_id: int | None = None
    template_ids: list[str] = msgspec.field(default_factory=list)


class EnumOption(Record):
    value: int
    label: str


class TemplateDataStream(Record):
    id: int
    label: str
    alias: str | None = None
    type: str | None = None
    """Blynk's names: `INT`, `DOUBLE`, `ENUM`, `STRING`, `LOCATION`."""
    pin: int | None = None
    pin_type: str | None = None
    is_history: bool = True
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    units: str | None = None
    options: list[EnumOption] | None = None


class TemplateDetails(Template):
    """A template with what it defines."""

    data_streams: list[TemplateDataStream] = msgspec.field(default_factory=list)
    events: list[TemplateEvent] = msgspec.field(default_factory=list)
    meta_fields: list[TemplateMetaField] = msgspec.field(default_factory=list)


class User(Record):
    id: int
    email: str
    name: str | None = None
    role_id: int | None = None
    role: Any = None
    org_id: int | None = None
    status: str | None = None


class Organization(Record):
    id: int
    name: str
    description: str | None = None
    parent_organization_id: int | None = None
    tz: str | None = None
