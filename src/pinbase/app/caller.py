"""The caller of an Organization API operation, whatever face it came through (HTTP, MCP).

`admit` turns a bearer token into a `Caller`: the token's principal, the catalog it is judged
against, and the services; the organization's rate limit is taken on the way in. The use cases
take a `Caller`, so every face checks the same permissions and tenant rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from pinbase.app.auth.bearer import authenticate
from pinbase.app.services import Services
from pinbase.domain.errors import DomainError
from pinbase.domain.model import Catalog, Device, Permission
from pinbase.domain.permissions import Principal, covered_device

RATE_LIMITED = "Rate limit exceeded for this organization; retry later."


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    catalog: Catalog
    services: Services


class OrgRateLimited(DomainError):
    """The organization spent its request budget: retry after `wait` seconds."""

    def __init__(self, org_id: int, wait: float) -> None:
        super().__init__(RATE_LIMITED)
        self.org_id = org_id
        self.wait = wait


async def admit(svc: Services, credentials: str) -> Caller:
    """The caller of a bearer token; `Unauthorized` without a valid one, `OrgRateLimited` when
    its organization is over its rate."""
    principal, catalog = await authenticate(svc, credentials)
    wait = await svc.org_limits.take(principal.org_id)
    if wait:
        raise OrgRateLimited(principal.org_id, wait)
    return Caller(principal, catalog, svc)


def viewed(caller: Caller, device_id: int) -> Device:
    """The device, if the caller may view it; else the 404 of a missing device."""
    caller.principal.require_view()
    return covered_device(caller.catalog, caller.principal, device_id)


def controlled(caller: Caller, device_id: int, permission: Permission) -> Device:
    """The device, if the caller holds `permission` and may view it (`viewed`)."""
    caller.principal.require(permission)
    return viewed(caller, device_id)
