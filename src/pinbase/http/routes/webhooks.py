"""Webhooks of the caller's organization (Blynk's Platform webhook routes; reading only), and
their delivery log (a pinbase extension). Every route needs the ORG_MANAGE permission."""

from __future__ import annotations

from typing import Annotated

import msgspec
import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from pinbase.domain.errors import NotFound
from pinbase.domain.model import Permission
from pinbase.http.deps import Int32Query, OrgContext, PlainInteger
from pinbase.http.openapi import responses
from pinbase.http.schemas import DeliveryBody, DeliveryLogBody, WebhookBody
from pinbase.store.records import WebhookRow

router = APIRouter(prefix="/api", tags=["Webhooks"])


def _shown(hook: WebhookRow) -> WebhookBody:
    only = None if hook.fires_for is None else orjson.loads(hook.fires_for)
    datastream = hook.trigger_type == "DEVICE_DATASTREAM_UPDATE"
    return WebhookBody(
        id=hook.id,
        name=hook.name,
        trigger=hook.trigger_type,
        url=hook.url,
        method=hook.method,
        contentType=hook.content_type,
        body=hook.body,
        authType="BASIC" if hook.username else "NONE",
        hasSecret=bool(hook.secret),
        datastreams=only if datastream else None,
        events=None if datastream else only,
    )


def _json(value: object) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")


async def _hooks(ctx: OrgContext) -> list[WebhookRow]:
    ctx.principal.require(Permission.ORG_MANAGE)
    hooks = await ctx.services.store.webhooks()
    return sorted((h for h in hooks if h.org_id == ctx.principal.org_id), key=lambda h: h.id)


async def _hook(ctx: OrgContext, webhook_id: int) -> WebhookRow:
    for hook in await _hooks(ctx):
        if hook.id == webhook_id:
            return hook
    raise NotFound(f"Webhook with identifier {webhook_id} is not found.")


@router.get(
    "/v1/organization/webhooks",
    summary="The organization's webhooks",
    responses=responses(
        {200: ("Every webhook of the organization", list[WebhookBody])}, (401, 403, 429)
    ),
)
async def list_webhooks(ctx: OrgContext) -> Response:
    return _json([_shown(h) for h in await _hooks(ctx)])


@router.get(
    "/v1/organization/webhook",
    summary="One webhook",
    responses=responses({200: ("The webhook", WebhookBody)}, (400, 401, 403, 404, 429)),
)
async def get_webhook(ctx: OrgContext, id: Int32Query) -> Response:
    return _json(_shown(await _hook(ctx, id)))


@router.get(
    "/v1/organization/webhook/deliveries",
    summary="A webhook's delivery log, newest attempt first (pinbase extension)",
    responses=responses(
        {200: ("Pending deliveries and the latest attempts", DeliveryLogBody)},
        (400, 401, 403, 404, 429),
    ),
)
async def webhook_deliveries(
    ctx: OrgContext,
    id: Int32Query,
    limit: Annotated[int, Query(ge=1, le=1000), PlainInteger] = 100,
) -> Response:
    hook = await _hook(ctx, id)
    store = ctx.services.store
    log = await store.delivery_log(hook.id, limit)
    body = DeliveryLogBody(
        webhookId=hook.id,
        pending=await store.pending_deliveries(hook.id),
        deliveries=[
            DeliveryBody(e.id, e.attempt, e.attempted_at, e.status, e.outcome, e.detail)
            for e in log
        ],
    )
    return _json(body)
