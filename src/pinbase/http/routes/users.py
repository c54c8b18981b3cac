"""Users: Blynk's Platform API user operations, and accepting an invitation.

Listing, searching and reading users need ORG_VIEW_USERS; creating and inviting
ORG_INVITE_USERS; changing a role ORG_EDIT_USERS (and every permission of the role handed
out). A route that takes a password answers only requests that arrived over TLS (`--https-port`):
over plain HTTP it is 400 and nothing is written. The rules are `pinbase.app.users`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from pinbase.app.auth.guard import address_key
from pinbase.app.paging import Page, page_of
from pinbase.app.users import NewUser, Secret
from pinbase.domain import users
from pinbase.domain.errors import Forbidden, Invalid
from pinbase.domain.model import Catalog, Permission, User
from pinbase.domain.permissions import Principal
from pinbase.http.deps import (
    AppServices,
    Int32Query,
    OrgContext,
    PageQuery,
    SizeQuery,
    decode,
)
from pinbase.http.errors import ApiError, guarded
from pinbase.http.openapi import json_body, responses
from pinbase.http.responses import json_response
from pinbase.http.schemas import (
    AcceptInvitationBody,
    CreateUserBody,
    InvitedUserBody,
    NewUserBody,
    UserBody,
    UserProfileBody,
    UsersPage,
)

router = APIRouter(tags=["Users"])

SortBy = Literal["User Id", "Name", "Email", "Status", "Role", "Registered At"]
TLS_ONLY = (
    "Passwords are accepted only over HTTPS (the server's --https-port); this request came "
    "over plain HTTP and nothing was written."
)


def user_object(catalog: Catalog, user: User) -> dict[str, Any]:
    org = catalog.organizations[user.org_id]
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "roleId": org.role_ids.get(user.role, 0),
        "role": user.role,
        "orgId": user.org_id,
        "status": user.status.value,
        "registeredAt": user.registered_at,
        "lastModifiedTs": user.last_modified,
    }


def _page(catalog: Catalog, found: list[User], page: int, size: int) -> Response:
    return json_response(page_of(found, Page(page, size), lambda user: user_object(catalog, user)))


def require_tls(request: Request) -> None:
    if request.url.scheme != "https":
        raise Invalid(TLS_ONLY)


def _new_user(principal: Principal, body: NewUserBody) -> NewUser:
    if body.orgId is not None and body.orgId != principal.org_id:
        raise ApiError(404, f"Organization with identifier {body.orgId} is not found.")
    email = users.checked_email(body.email)
    return NewUser(email, users.checked_name(body.name), body.roleId)


@router.get(
    "/api/v1/organization/users",
    summary="List users",
    responses=responses({200: ("A page of the organization's users, by id", UsersPage)}),
)
async def list_users(ctx: OrgContext, page: PageQuery = 0, size: SizeQuery = 50) -> Response:
    ctx.principal.require(Permission.ORG_VIEW_USERS)
    return _page(ctx.catalog, users.org_users(ctx.catalog, ctx.principal.org_id), page, size)


@router.get(
    "/api/v1/organization/search/users",
    summary="Search users",
    responses=responses({200: ("A page of the users whose name, e-mail or id match", UsersPage)}),
)
async def search_users(
    ctx: OrgContext,
    query: Annotated[str, Query(min_length=1, max_length=255)],
    sortBy: SortBy = "User Id",
    sortOrder: Literal["ASC", "DESC"] = "ASC",
    page: PageQuery = 0,
    size: SizeQuery = 50,
) -> Response:
    ctx.principal.require(Permission.ORG_VIEW_USERS)
    found = users.search(ctx.catalog, ctx.principal.org_id, query, sortBy, sortOrder == "DESC")
    return _page(ctx.catalog, found, page, size)


@router.get(
    "/api/v1/organization/user",
    summary="Get a user",
    responses=responses({200: ("The user", UserBody)}),
)
async def get_user(ctx: OrgContext, userId: Int32Query) -> Response:
    ctx.principal.require(Permission.ORG_VIEW_USERS)
    return json_response(user_object(ctx.catalog, users.find(ctx.catalog, ctx.principal, userId)))


@router.get(
    "/api/v1/organization/user/profile",
    summary="Get the token's own user profile",
    responses=responses(
        {200: ("The user the token was issued to", UserProfileBody)}, errors=(401, 403, 429)
    ),
)
async def own_profile(ctx: OrgContext) -> Response:
    user_id = ctx.principal.user_id
    if user_id is None:
        raise Forbidden(
            "A client-credentials token has no user profile; use a token of the password grant."
        )
    user = users.find(ctx.catalog, ctx.principal, user_id)
    org = ctx.catalog.organizations[user.org_id]
    profile = user_object(ctx.catalog, user)
    profile["orgName"] = org.name
    profile["permissions"] = users.role_permissions(org, user)
    return json_response(profile)


@router.post(
    "/api/v1/organization/users/create-in-org",
    summary="Create a user with a password (HTTPS only)",
    status_code=201,
    openapi_extra=json_body(CreateUserBody),
    responses=responses(
        {201: ("The new user, Active", UserBody)},
        bad_request="Not over HTTPS, malformed body, e-mail in use, or not exactly one of "
        "password and passwordHash",
    ),
)
async def create_in_org(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, CreateUserBody)
    require_tls(request)
    ctx.principal.require(Permission.ORG_INVITE_USERS)
    new = _new_user(ctx.principal, body)
    if (body.password is None) == (body.passwordHash is None):
        raise Invalid("Give exactly one of 'password' and 'passwordHash'.")
    if body.passwordHash is not None:
        secret = Secret(users.checked_prehash(body.passwordHash), prehashed=True)
    else:
        assert body.password is not None
        secret = Secret(users.checked_password(body.password), prehashed=False)
    user = await guarded(ctx.services.users.create(ctx.catalog, ctx.principal, new, secret))
    return json_response(user_object(await ctx.services.store.catalog(), user), 201)


@router.post(
    "/api/v1/organization/users/invite",
    summary="Invite a user",
    status_code=201,
    openapi_extra=json_body(NewUserBody),
    responses=responses(
        {201: ("The new user, Pending, with its one-time invitation token", InvitedUserBody)},
        bad_request="Malformed body or e-mail in use",
    ),
)
async def invite(ctx: OrgContext, request: Request) -> Response:
    body = await decode(request, NewUserBody)
    ctx.principal.require(Permission.ORG_INVITE_USERS)
    new = _new_user(ctx.principal, body)
    user, token = await ctx.services.users.invite(ctx.catalog, ctx.principal, new)
    answer = user_object(await ctx.services.store.catalog(), user)
    answer["invitationToken"] = token
    return json_response(answer, 201)


@router.put(
    "/api/v1/organization/users/role",
    summary="Change a user's role",
    responses=responses({200: ("The user with its new role; its tokens are revoked", UserBody)}),
)
async def change_role(ctx: OrgContext, userId: Int32Query, roleId: Int32Query) -> Response:
    ctx.principal.require(Permission.ORG_EDIT_USERS)
    await ctx.services.users.set_role(ctx.catalog, ctx.principal, userId, roleId)
    catalog = await ctx.services.store.catalog()
    return json_response(user_object(catalog, catalog.users[userId]))


@router.post(
    "/api/v1/invite/accept",
    summary="Accept an invitation (HTTPS only, no token needed)",
    status_code=204,
    openapi_extra=json_body(AcceptInvitationBody),
    responses=responses(
        {204: ("The user is Active with this password; the invitation is used up", None)},
        errors=(400, 404, 413, 429),
        bad_request="Not over HTTPS, malformed body, or a password too short or long",
    ),
)
async def accept_invitation(svc: AppServices, request: Request) -> Response:
    body = await decode(request, AcceptInvitationBody)
    require_tls(request)
    password = users.checked_password(body.password)
    address = address_key(request.client.host if request.client is not None else None)
    await guarded(svc.users.accept(address, body.token, password))
    return Response(status_code=204)
