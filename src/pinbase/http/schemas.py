"""Request and response bodies, declared once: they parse requests and produce OpenAPI."""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from pinbase.app.devices import MAX_NAME as MAX_DEVICE_NAME
from pinbase.app.devices import NAME_PATTERN as DEVICE_NAME_PATTERN
from pinbase.domain.batch import MAX_ROWS
from pinbase.domain.events import MAX_CODE, MAX_COMMENT, MAX_DESCRIPTION
from pinbase.domain.model import INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN
from pinbase.domain.notifications import ADDRESS_PATTERN
from pinbase.domain.properties import MAX_PROPERTY_LENGTH, NO_NUL_PATTERN, PROPERTY_NAMES
from pinbase.domain.users import (
    MAX_EMAIL,
    MAX_NAME,
    MAX_PASSWORD,
    MIN_PASSWORD,
    NAME_PATTERN,
    PREHASH_PATTERN,
)

Int32 = Annotated[int, Meta(ge=INT32_MIN, le=INT32_MAX)]
Int64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]

_VALUE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "description": "String datastream value"},
        {"type": "number", "format": "double", "description": "Double, integer or enum value"},
        {
            "type": "array",
            "items": {"type": "number", "format": "double"},
            "minItems": 2,
            "maxItems": 2,
            "description": "Location: [longitude, latitude]",
        },
    ],
    "example": 22.2,
}
RawValue = Annotated[Any, Meta(extra_json_schema=_VALUE_SCHEMA)]

PropertyName = enum.StrEnum("PropertyName", {name: name for name in PROPERTY_NAMES})  # type: ignore[misc]


class _Body(Struct, forbid_unknown_fields=True):
    pass


class UpdateValue(_Body):
    deviceId: Int32
    dataStreamId: Int32
    value: RawValue


class UpdateValues(_Body):
    deviceId: Int32
    values: Annotated[
        dict[str, Any],
        Meta(description="Datastream id (as an object key) → value", examples=[{"1": 22.2}]),
    ]


class BatchUpdate(_Body):
    fields: Annotated[
        list[str],
        Meta(
            min_length=2,
            description="`deviceId`, then the labels of the datastreams, each once",
            examples=[["deviceId", "Temperature", "Humidity"]],
            extra_json_schema={"prefixItems": [{"const": "deviceId"}], "uniqueItems": True},
        ),
    ]
    updates: Annotated[
        list[Any], Meta(max_length=MAX_ROWS, examples=[[[101, 22.5, 40], [102, None, 41]]])
    ]
    debug: bool = False


class ImportPoint(_Body):
    ts: Annotated[Int64, Meta(description="Epoch milliseconds")]
    value: RawValue


class ImportBatch(_Body):
    deviceId: Int32
    dataStreamId: Int32
    values: Annotated[list[ImportPoint], Meta(min_length=1, max_length=MAX_ROWS)]


class PropertyUpdate(_Body):
    deviceId: Int32
    dataStreamId: Int32
    property: PropertyName
    value: Annotated[str, Meta(max_length=MAX_PROPERTY_LENGTH, pattern=NO_NUL_PATTERN)]


# --- responses ---------------------------------------------------------------------------


class DataStreamValue(Struct, omit_defaults=True):
    dataStreamId: int
    pin: str
    dataStreamLabel: str
    dataStreamAlias: str
    value: RawValue | msgspec.UnsetType = msgspec.UNSET
    updatedAt: int | msgspec.UnsetType = msgspec.UNSET


class DeviceValues(Struct):
    deviceId: int
    dataStreamValues: list[DataStreamValue]


class HistoryPoint(Struct):
    createdAt: int
    value: RawValue


class HistoryPage(Struct):
    totalElements: int
    content: list[HistoryPoint]


class AggregatePoint(Struct):
    ts: Annotated[int, Meta(description="The bucket's start, epoch milliseconds")]
    value: Annotated[RawValue, Meta(description="A number; the stored value for first and last")]


class HistoryAggregate(Struct):
    data: Annotated[list[AggregatePoint], Meta(description="Buckets holding points, oldest first")]
    interval: str
    tz: Annotated[str, Meta(description="The IANA timezone of the buckets")]


class BatchReport(Struct, omit_defaults=True):
    invalidRowSize: int = 0
    nullDeviceId: int = 0
    nonNumericDeviceId: int = 0
    deviceNotFound: int = 0
    noAccessToDevice: int = 0
    wrongProduct: int = 0
    skippedRows: list[str] | msgspec.UnsetType = msgspec.UNSET


class DatastreamProperties(Struct):
    dataStreamId: int
    pin: str
    properties: dict[str, str]


class ErrorDetail(Struct):
    message: str


class ErrorBody(Struct):
    error: ErrorDetail


class TokenResponse(Struct):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class OAuthError(Struct):
    error: str
    error_description: str


class DeviceStatusBody(Struct):
    deviceId: int
    connected: bool
    protocol: str | None
    connectedSince: int | None
    lastSeen: int | None


# --- devices -------------------------------------------------------------------------------

DeviceName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_DEVICE_NAME,
        pattern=DEVICE_NAME_PATTERN,
        description="Letters A to Z, digits, spaces, `'`, `_` and `-`; not only spaces",
        examples=["Boiler room"],
    ),
]


class DeviceCreate(_Body):
    templateId: Annotated[Int32, Meta(description="The product (template) id")]
    name: DeviceName
    ownerId: Annotated[Int64, Meta(description="A user of the organization")] | None = None


class DeviceRename(_Body):
    name: DeviceName


class Reprovision(_Body):
    deviceId: Int32


class DeviceBody(Struct, omit_defaults=True, kw_only=True):
    """A device; keys it has no value for are left out. Its token is never shown again."""

    id: int
    name: str
    templateId: int
    originalTemplateId: int
    orgId: int
    ownerUserId: int | msgspec.UnsetType = msgspec.UNSET
    activatedAt: int | msgspec.UnsetType = msgspec.UNSET
    lastReportedAt: int | msgspec.UnsetType = msgspec.UNSET
    hardwareInfo: dict[str, str] | msgspec.UnsetType = msgspec.UNSET


class ListedDevice(DeviceBody, kw_only=True):
    online: bool


class DevicePage(Struct):
    totalElements: int
    content: list[ListedDevice]


class MetaFieldValue(Struct, omit_defaults=True):
    type: str
    value: Any = msgspec.UNSET


class DeviceMetaValue(Struct):
    id: int
    name: str
    value: MetaFieldValue


class FullDeviceBody(ListedDevice, kw_only=True):
    dataStreamValues: list[DataStreamValue]
    metaFieldValues: list[DeviceMetaValue]
    token: Annotated[str, Meta(description="The new device's auth token (create only)")] | (
        msgspec.UnsetType
    ) = msgspec.UNSET


class DeviceToken(Struct):
    deviceId: int
    token: str


class OnlineBody(Struct):
    connected: bool


# --- webhooks ------------------------------------------------------------------------------


class WebhookBody(Struct):
    """A webhook as the API shows it: its secret and basic-auth password are never shown."""

    id: int
    name: str
    trigger: str
    url: str
    method: str
    contentType: str
    body: str | None
    authType: str
    """NONE or BASIC."""
    hasSecret: bool
    datastreams: list[int] | None
    events: list[str] | None


class CreatedWebhookBody(WebhookBody):
    secret: str | None
    """The secret generated for it, shown this once; None when the definition gave one."""


class WebhookAuth(Struct, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=256)]
    password: Annotated[str, Meta(min_length=1, max_length=256)]


WebhookId = Annotated[int, Meta(ge=1, le=INT32_MAX)]
ShortText = Annotated[str, Meta(min_length=1, max_length=256)]


class WebhookDefinition(Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """A webhook as the fleet file defines it (docs/fleet-file.md#webhook), checked by the
    same rules; to create one, `id` is optional (then the next free id)."""

    name: ShortText
    trigger: Literal[
        "DEVICE_DATASTREAM_UPDATE", "DEVICE_ADDED", "DEVICE_DELETED", "DEVICE_LOG_EVENT"
    ]
    url: Annotated[str, Meta(min_length=1, max_length=512)]
    id: WebhookId | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    content_type: Literal["JSON", "PLAIN_TEXT", "URL_ENCODED_FORM"] | None = None
    body: Annotated[str, Meta(min_length=1, max_length=5120)] | None = None
    secret: ShortText | None = None
    auth: WebhookAuth | None = None
    datastreams: list[WebhookId] = msgspec.field(default_factory=list)
    events: list[ShortText] = msgspec.field(default_factory=list)


class WebhookReplacement(WebhookDefinition, kw_only=True):
    """A webhook's new definition: the fleet file's, `id` naming the webhook replaced."""

    id: WebhookId


class DeliveryBody(Struct):
    id: int
    attempt: int
    at: int
    status: int
    outcome: str
    detail: str


class DeliveryLogBody(Struct):
    webhookId: int
    pending: int
    deliveries: list[DeliveryBody]


# --- device events (the timeline) ------------------------------------------------------------


class TriggerEvent(_Body):
    deviceId: Int32
    eventCode: Annotated[str, Meta(min_length=1, max_length=MAX_CODE)]
    eventDescription: (
        Annotated[str, Meta(max_length=MAX_DESCRIPTION, pattern=NO_NUL_PATTERN)] | None
    ) = None


class ResolveEvent(_Body):
    deviceId: Int32
    logEventId: Int64
    comment: Annotated[str, Meta(max_length=MAX_COMMENT, pattern=NO_NUL_PATTERN)] | None = None


class TimelineItem(Struct):
    id: int
    deviceId: int
    eventId: int
    eventCode: str
    eventType: str
    description: str | None
    ts: int
    isResolved: bool
    resolvedAt: int | None
    resolvedComment: str | None


class TimelinePage(Struct):
    totalElements: int
    content: list[TimelineItem]


class TemplateEvent(Struct):
    id: int
    name: str
    eventCode: str
    type: str
    description: str | None
    showInTimeline: bool


class TemplateMetafield(Struct):
    id: int
    name: str
    type: str
    default: Any = None
    options: list[str] | None = None
    min: float | None = None
    max: float | None = None


class Template(Struct):
    id: int
    name: str
    orgId: int
    templateIds: list[str]
    parentId: int | None = None


class TemplatePage(Struct):
    totalElements: int
    content: list[Template]


class EnumOption(Struct):
    value: int
    label: str


class TemplateDataStream(Struct):
    id: int
    label: str
    alias: str
    type: Literal["INT", "DOUBLE", "ENUM", "STRING", "LOCATION"]
    pin: int
    pinType: Literal["VIRTUAL"]
    isHistory: bool
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    units: str | None = None
    options: list[EnumOption] | None = None


class TemplateDetails(Struct):
    id: int
    name: str
    orgId: int
    templateIds: list[str]
    dataStreams: list[TemplateDataStream]
    events: list[TemplateEvent]
    metaFields: list[TemplateMetafield]
    parentId: int | None = None


# --- users and the organization ---------------------------------------------------------------
Email = Annotated[
    str,
    Meta(max_length=MAX_EMAIL, pattern=f"^{ADDRESS_PATTERN}$", examples=["ann@example.com"]),
]
UserName = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern=f"^{NAME_PATTERN}$")]
Password = Annotated[str, Meta(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]


class UserBody(Struct):
    id: int
    name: str
    email: str
    roleId: int
    role: str
    orgId: int
    status: Literal["Pending", "Active"]
    registeredAt: int
    lastModifiedTs: int


class InvitedUserBody(UserBody):
    invitationToken: str
    """The one-time invitation token (a pinbase extension): shown in this answer only."""


class UserProfileBody(UserBody):
    orgName: str
    permissions: list[str]


class UsersPage(Struct):
    totalElements: int
    content: list[UserBody]


class OrganizationBody(Struct):
    id: int
    name: str
    tz: str


class NewUserBody(_Body):
    email: Email
    name: UserName
    roleId: Int32
    orgId: Int32 | None = None
    """Blynk's organization id; when given it must be the token's organization."""


class CreateUserBody(NewUserBody):
    passwordHash: Annotated[str, Meta(pattern=f"^{PREHASH_PATTERN}$")] | None = None
    password: Password | None = None


class AcceptInvitationBody(_Body):
    token: Annotated[str, Meta(min_length=1, max_length=128)]
    password: Password
