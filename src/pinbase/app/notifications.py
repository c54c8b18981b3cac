"""E-mail notifications of device events, as outbox rows (`pinbase.app.mail_delivery` sends
them; the webhook worker claims them with the webhook deliveries).

`Events` asks `for_event` for the notice of an event about to be stored; the store adds it to
the outbox in the event's transaction unless a mail of that device and code was sent within the
definition's period (`Store.log_event`, the last-sent time kept in `notifications_sent`), so the
limit holds across restarts and across the processes sharing a database. With no SMTP server
configured no notice is made.
"""

from __future__ import annotations

import orjson

from pinbase.domain.events import EventDefinition
from pinbase.domain.model import Catalog, Device
from pinbase.domain.notifications import compose, parse_notify, recipients
from pinbase.store.records import Notice


class Notifications:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        """Whether an SMTP server is configured (`--smtp-url`)."""

    def for_event(
        self,
        catalog: Catalog,
        device: Device,
        definition: EventDefinition,
        description: str | None,
        ts: int,
    ) -> Notice | None:
        """The mail of an event about to be stored; None when its definition mails nobody."""
        settings = parse_notify(definition.notify) if self.enabled else None
        if settings is None:
            return None
        owner = catalog.users.get(device.owner_id) if device.owner_id is not None else None
        to = recipients(settings, owner.email if owner is not None else None)
        if not to:
            return None
        subject, body = compose(device.name, definition.name, definition.code, description, ts)
        context = orjson.dumps({"to": to, "subject": subject, "body": body}).decode()
        return Notice(context, settings.period_s * 1000)
