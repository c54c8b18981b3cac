"""Webhooks of the caller's organization (Blynk's Platform webhook routes: list, get, create,
replace, delete; the bodies are the fleet file's webhook, Blynk's being unconfirmed), and their
delivery log (a pinbase extension). Every route needs the ORG_MANAGE permission."""

from __future__ import annotations

from typing import Annotated

import msgspec
import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from pinbase.app.provisioning import ProvisioningError, put_webhook
from pinbase.domain.errors import Invalid, NotFound
from pinbase.domain.model import Permission
from pinbase.http.deps import Int32Query, OrgContext, PlainInteger, decode
from pinbase.http.openapi import json_body, responses
from pinbase.http.schemas import (
    CreatedWebhookBody,
    DeliveryBody,
    DeliveryLogBody,
    WebhookBody,
    WebhookDefinition,
    WebhookReplacement,
)
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


async def _put(ctx: OrgContext, request: Request, *, create: bool) -> tuple[WebhookRow, str | None]:
    """Create or replace a webhook from the request's definition: (the row, a generated
    secret)."""
    ctx.principal.require(Permission.ORG_MANAGE)
    body = await decode(request, WebhookDefinition if create else WebhookReplacement)
    definition = msgspec.to_builtins(body)
    try:
        put = await put_webhook(ctx.services.store, ctx.principal.org_id, definition, create=create)
    except ProvisioningError as exc:
        raise Invalid(str(exc)) from None
    if put is None:
        raise NotFound(f"Webhook with identifier {body.id} is not found.")
    return put


@router.post(
    "/v1/organization/webhook/create",
    summary="Create a webhook",
    openapi_extra=json_body(WebhookDefinition),
    responses=responses(
        {200: ("The webhook, with its secret when one was generated", CreatedWebhookBody)},
        bad_request="Malformed body, or a definition the fleet file would refuse",
    ),
)
async def create_webhook(ctx: OrgContext, request: Request) -> Response:
    row, generated = await _put(ctx, request, create=True)
    shown = _shown(row)
    fields = {f: getattr(shown, f) for f in shown.__struct_fields__}
    return _json(CreatedWebhookBody(**fields, secret=generated))


@router.put(
    "/v1/organization/webhook",
    summary="Replace a webhook (a secret left out is kept)",
    openapi_extra=json_body(WebhookReplacement),
    responses=responses(
        {200: ("The webhook", WebhookBody)},
        bad_request="Malformed body, or a definition the fleet file would refuse",
    ),
)
async def replace_webhook(ctx: OrgContext, request: Request) -> Response:
    row, _ = await _put(ctx, request, create=False)
    return _json(_shown(row))


@router.delete(
    "/v1/organization/webhook",
    summary="Delete a webhook and its pending deliveries",
    status_code=204,
    responses=responses({204: ("Deleted", None)}, (400, 401, 403, 404, 429)),
)
async def delete_webhook(ctx: OrgContext, id: Int32Query) -> Response:
    hook = await _hook(ctx, id)
    await ctx.services.store.delete_webhooks([hook.id])
    return Response(status_code=204)
