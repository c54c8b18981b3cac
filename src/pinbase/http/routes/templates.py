"""Templates (products) on the Organization API: the list, one template's details, its
datastreams, events and metafields (docs/api.md, "Templates"). All need `PRODUCT_VIEW`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from pinbase.app import templates
from pinbase.app.caller import Caller
from pinbase.app.paging import DEFAULT_SIZE, Page
from pinbase.http.deps import Int32Query, OrgContext, PageQuery, SizeQuery
from pinbase.http.openapi import responses
from pinbase.http.responses import json_response
from pinbase.http.schemas import (
    TemplateDataStream,
    TemplateDetails,
    TemplateEvent,
    TemplateMetafield,
    TemplatePage,
)

router = APIRouter(prefix="/api/v1/organization", tags=["Templates"])

_ERRORS = (400, 401, 403, 404, 429)


@router.get(
    "/templates",
    summary="List the organization's templates (products)",
    responses=responses(
        {200: ("One page of templates, by id", TemplatePage)}, (400, 401, 403, 429)
    ),
)
async def list_templates(
    ctx: OrgContext,
    page: PageQuery = 0,
    size: SizeQuery = DEFAULT_SIZE,
) -> Response:
    return json_response(templates.templates(ctx, Page(page, size)))


def _template_route(
    path: str,
    summary: str,
    answer: tuple[str, Any],
    use: Callable[[Caller, int], object],
    description: str | None = None,
) -> None:
    """A route answering `use(caller, templateId)`: one template or a part of it."""

    async def route(ctx: OrgContext, templateId: Int32Query) -> Response:
        return json_response(use(ctx, templateId))

    router.get(
        path,
        summary=summary,
        description=description,
        responses=responses({200: answer}, _ERRORS),
        name=use.__name__,
    )(route)


_template_route(
    "/template",
    "Get a template with its datastreams, events and metafields",
    ("The template", TemplateDetails),
    templates.template_details,
    "A variant product shares its root product's, and names it as `parentId`.",
)
_template_route(
    "/template/datastreams",
    "Get the datastreams of a template",
    ("The datastreams", list[TemplateDataStream]),
    templates.datastreams,
)
_template_route(
    "/template/events",
    "Get the events of a template",
    ("The template's events", list[TemplateEvent]),
    templates.events,
    "The events a product defines (a variant: its root product's), the system events "
    "ONLINE (id -1) and OFFLINE (id -2) first.",
)
_template_route(
    "/template/metafields",
    "Get the metafields of a template",
    ("The template's metafields", list[TemplateMetafield]),
    templates.metafields,
)
