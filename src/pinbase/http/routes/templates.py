"""Templates (products) on the Organization API: the list, one template's details, its
datastreams, events and metafields (docs/api.md, "Templates"). All need `PRODUCT_VIEW`."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from pinbase.app import templates
from pinbase.app.paging import DEFAULT_SIZE, MAX_SIZE, Page
from pinbase.domain.model import INT32_MAX
from pinbase.http.deps import Int32Query, OrgContext, PlainInteger
from pinbase.http.openapi import responses
from pinbase.http.schemas import (
    TemplateDataStream,
    TemplateDetails,
    TemplateEvent,
    TemplateMetafield,
    TemplatePage,
)

router = APIRouter(prefix="/api/v1/organization", tags=["Templates"])

_ERRORS = (400, 401, 403, 404, 429)


def _json(content: object) -> Response:
    return Response(orjson.dumps(content), media_type="application/json")


@router.get(
    "/templates",
    summary="List the organization's templates (products)",
    responses=responses(
        {200: ("One page of templates, by id", TemplatePage)}, (400, 401, 403, 429)
    ),
)
async def list_templates(
    ctx: OrgContext,
    page: Annotated[int, Query(ge=0, le=INT32_MAX), PlainInteger] = 0,
    size: Annotated[int, Query(ge=1, le=MAX_SIZE), PlainInteger] = DEFAULT_SIZE,
) -> Response:
    return _json(templates.templates(ctx, Page(page, size)))


@router.get(
    "/template",
    summary="Get a template with its datastreams, events and metafields",
    description="A variant product shares its root product's, and names it as `parentId`.",
    responses=responses({200: ("The template", TemplateDetails)}, _ERRORS),
)
async def get_template(ctx: OrgContext, templateId: Int32Query) -> Response:
    return _json(templates.template_details(ctx, templateId))


@router.get(
    "/template/datastreams",
    summary="Get the datastreams of a template",
    responses=responses({200: ("The datastreams", list[TemplateDataStream])}, _ERRORS),
)
async def template_datastreams(ctx: OrgContext, templateId: Int32Query) -> Response:
    return _json(templates.datastreams(ctx, templateId))


@router.get(
    "/template/events",
    summary="Get the events of a template",
    description=(
        "The events a product defines (a variant: its root product's), the system events "
        "ONLINE (id -1) and OFFLINE (id -2) first."
    ),
    responses=responses({200: ("The template's events", list[TemplateEvent])}, _ERRORS),
)
async def template_events(ctx: OrgContext, templateId: Int32Query) -> Response:
    return _json(templates.events(ctx, templateId))


@router.get(
    "/template/metafields",
    summary="Get the metafields of a template",
    responses=responses({200: ("The template's metafields", list[TemplateMetafield])}, _ERRORS),
)
async def template_metafields(ctx: OrgContext, templateId: Int32Query) -> Response:
    return _json(templates.metafields(ctx, templateId))
