"""Rows exchanged between the store and the layers above it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OrgRow:
    id: int
    name: str
    timezone: str | None = None
    """IANA name; None: UTC."""


@dataclass(frozen=True, slots=True)
class RoleRow:
    org_id: int
    name: str
    permissions: tuple[str, ...]
    id: int = 0
    """Blynk's roleId, unique in the organization: 1 Admin, 2 Staff, 3 User, 4 and up custom
    roles (`pinbase.domain.model.DEFAULT_ROLE_IDS`)."""


@dataclass(frozen=True, slots=True)
class ClientRow:
    client_id: str
    org_id: int
    secret_hash: str


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    org_id: int
    email: str
    password_hash: str
    """argon2 of the password, or of its Blynk pre-hash behind a scheme marker
    (`pinbase.app.auth.secrets`); empty for an invited user who has not accepted yet."""
    role: str
    name: str = ""
    status: str = "Active"
    """Pending (invited, not accepted yet) or Active."""
    registered_at: int = 0
    last_modified: int = 0
    """Epoch ms of the latest change of the row."""
    invitation_hash: str | None = None
    """SHA-256 of the pending invitation's token; None once accepted (or never invited)."""
    invitation_expires: int | None = None


@dataclass(frozen=True, slots=True)
class ProductRow:
    id: int
    org_id: int
    name: str
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class DatastreamRow:
    product_id: int
    id: int
    pin: str
    label: str
    alias: str
    type: str
    min: float | None
    max: float | None
    decimals: int | None
    units: str | None
    options: str | None  # JSON object text: {"0": "Off", ...}
    history: bool


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: int
    org_id: int
    product_id: int
    name: str
    owner_id: int | None
    token_hash: str
    timezone: str | None = None
    """IANA name; None: the organization's."""
    activated_at: int | None = None
    """When the device was created (epoch ms); None for devices older than migration 8."""


# metadata -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MetafieldRow:
    product_id: int
    id: int
    name: str
    type: str
    default_value: str | None
    options: str | None  # JSON array text: ["North", "South"]
    min: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class MetaValueRow:
    """A device's own value of a metafield (canonical text, `domain.metadata.check_value`)."""

    device_id: int
    field_id: int
    value: str


# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WebhookRow:
    """An organization's webhook (`pinbase.domain.webhooks`). The secret and the basic-auth
    password are kept as given: they sign and authenticate each delivery."""

    id: int
    org_id: int
    name: str
    trigger_type: str
    url: str
    method: str
    content_type: str
    body: str | None
    secret: str | None
    username: str | None
    password: str | None
    fires_for: str | None
    """JSON list: the datastream ids (or event codes) it fires for; None: all."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A pending delivery: the webhook and its context (JSON object text)."""

    id: int
    webhook_id: int
    context: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One attempt in the delivery log."""

    id: int
    webhook_id: int
    outbox_id: int
    attempt: int
    attempted_at: int
    status: int
    """The HTTP status received; 0 when none was (no connection, a timeout)."""
    outcome: str
    """delivered, retrying or failed (given up)."""
    detail: str


@dataclass(frozen=True, slots=True)
class EventDefRow:
    """An event a product's devices may log (`pinbase.domain.events`)."""

    product_id: int
    id: int
    code: str
    name: str
    type: str
    description: str | None
    timeline: bool
    notify: str | None  # JSON object text: {"email": [...], "period": 300}


@dataclass(slots=True)
class Entities:
    """A set of catalog rows: what the store holds, or what provisioning upserts."""

    organizations: list[OrgRow] = field(default_factory=list)
    roles: list[RoleRow] = field(default_factory=list)
    clients: list[ClientRow] = field(default_factory=list)
    users: list[UserRow] = field(default_factory=list)
    products: list[ProductRow] = field(default_factory=list)
    datastreams: list[DatastreamRow] = field(default_factory=list)
    devices: list[DeviceRow] = field(default_factory=list)
    metafields: list[MetafieldRow] = field(default_factory=list)
    meta_values: list[MetaValueRow] = field(default_factory=list)
    """Per-device metadata values: upserted by provisioning, never deleted by it."""
    webhooks: list[WebhookRow] = field(default_factory=list)
    events: list[EventDefRow] = field(default_factory=list)
    """Event definitions (after devices: a table of its own, added by migration 4)."""

    def is_empty(self) -> bool:
        return not any(
            (
                self.organizations,
                self.roles,
                self.clients,
                self.users,
                self.products,
                self.datastreams,
                self.devices,
                self.metafields,
                self.meta_values,
                self.webhooks,
                self.events,
            )
        )


@dataclass(frozen=True, slots=True)
class TokenRow:
    """An OAuth token, stored by the SHA-256 of its secret."""

    hash: str
    kind: str  # "access" or "refresh"
    client_id: str
    org_id: int
    user_id: int | None
    family: str  # every token issued from one grant, through all its refreshes
    expires_at: int  # epoch ms


@dataclass(frozen=True, slots=True)
class TokenState:
    """A stored refresh token and what has happened to it."""

    token: TokenRow
    used: bool  # redeemed once already
    revoked: bool  # its family was revoked


@dataclass(frozen=True, slots=True)
class Revocation:
    """Whose OAuth tokens to revoke: every token issued to these users, and every token issued
    through these clients (client-credentials tokens and users' tokens alike)."""

    user_ids: tuple[int, ...] = ()
    client_ids: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.user_ids or self.client_ids)


@dataclass(slots=True)
class ValueWrites:
    """Rows of one write: the values are JSON text, timestamps epoch ms."""

    current: list[tuple[int, int, str, int]] = field(default_factory=list)
    """(device_id, ds_id, value, ts): becomes the current value."""
    current_if_newer: list[tuple[int, int, str, int]] = field(default_factory=list)
    """(device_id, ds_id, value, ts): becomes current only if not older than the current one."""
    history: list[tuple[int, int, int, int, str]] = field(default_factory=list)
    """(device_id, ds_id, ts, seq, value): a history point; the same key (all but the value)
    again replaces it. Imported points carry seq 0 (`sql.IMPORTED_SEQ`), live ones their own."""
    outbox: list[tuple[int, str, int]] = field(default_factory=list)
    """(webhook_id, context JSON, due_at): deliveries the write triggers, in its transaction."""


@dataclass(frozen=True, slots=True)
class StoredValue:
    value: str  # JSON text
    updated_at: int


MAIL_OUTBOX = 0
"""The `webhook_id` of an outbox row that is an e-mail notification (no webhook has id 0)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """An e-mail notification of an event about to be stored: its outbox context, sent unless
    one of the same device and code was sent less than `period_ms` before."""

    context: str
    period_ms: int

    def due(self, last_sent: int | None, ts: int) -> bool:
        """Whether to send it for an event at `ts`, the last mail having gone at `last_sent`."""
        return last_sent is None or ts - last_sent >= self.period_ms


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event on a device's timeline (epoch ms timestamps)."""

    id: int
    device_id: int
    event_id: int
    code: str
    type: str
    description: str | None
    ts: int
    resolved_at: int | None = None
    resolved_comment: str | None = None
