"""Organizations: the organization of the token (`GET /api/v1/organization/profile`, ORG_VIEW)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from pinbase.domain.model import Permission
from pinbase.http.deps import OrgContext
from pinbase.http.openapi import responses
from pinbase.http.responses import json_response
from pinbase.http.schemas import OrganizationBody

router = APIRouter(tags=["Organizations"])


@router.get(
    "/api/v1/organization/profile",
    summary="Get the token's organization",
    responses=responses({200: ("The organization", OrganizationBody)}, errors=(400, 401, 403, 429)),
)
async def organization_profile(ctx: OrgContext) -> Response:
    ctx.principal.require(Permission.ORG_VIEW)
    org = ctx.catalog.organizations[ctx.principal.org_id]
    body = {"id": org.id, "name": org.name, "tz": org.timezone or "UTC"}
    return json_response(body)
