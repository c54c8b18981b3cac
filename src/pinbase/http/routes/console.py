"""The console: the web page at `/`, its assets, and its sign-in.

The page is one HTML document and static modules (`pinbase/http/console/`); everything it
shows it reads through the Organization and Platform API with the session cookie, and every
change it makes goes through the same API (`deps.credentials` takes the cookie and checks the
CSRF header of writes). This module adds only what a browser needs beyond the API:

- `GET /`: the page, with a Content-Security-Policy that allows nothing but this server (and
  the page's own import map);
- `/console/assets/...`: its scripts, styles and the chart library, cached by version;
- `POST /console/session` signs in (`{"email", "password"}` as JSON, so a form of another site
  cannot post it) and sets the httpOnly, SameSite=Lax session cookie, Secure when the request
  came over TLS or `--secure-cookies` says a proxy terminates TLS;
- `GET /console/session`: who is signed in, with what permissions, and the CSRF token;
- `DELETE /console/session` signs out: the session is revoked and the cookie dropped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from msgspec import Struct
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from pinbase.app.auth.bearer import Unauthorized
from pinbase.app.auth.sessions import (
    SignInRaced,
    SignInRefused,
    csrf_token,
    sign_in,
    sign_out,
)
from pinbase.app.caller import Caller
from pinbase.app.services import Services
from pinbase.http.deps import SESSION_COOKIE, OrgContext, admitted, credentials, decode
from pinbase.http.errors import ApiError, guarded
from pinbase.http.responses import json_response

router = APIRouter(tags=["Console"], include_in_schema=False)

ASSETS = "/console/assets"
CSP = (
    "default-src 'self'; script-src 'self' {import_map}; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


class SignIn(Struct, forbid_unknown_fields=True):
    email: str
    password: str


def assets_dir() -> Path:
    return Path(str(files("pinbase.http") / "console"))


@dataclass(frozen=True, slots=True)
class _Page:
    html: bytes
    headers: dict[str, str]


@cache
def _page() -> _Page:
    """index.html with every asset's URL carrying a digest of its content, so that a browser
    keeps each asset until it changes. The modules import each other by their plain URLs: an
    import map (allowed by its own digest in the Content-Security-Policy) sends those to the
    versioned ones."""
    root = assets_dir()
    html = (root / "index.html").read_text()
    modules: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix != ".html":
            plain = f"{ASSETS}/{path.relative_to(root).as_posix()}"
            versioned = f"{plain}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
            html = html.replace(f'"{plain}"', f'"{versioned}"')
            if path.suffix == ".js" and path.parent.name == "js":
                modules[plain] = versioned
    import_map = json.dumps({"imports": modules}, indent=1)
    html = html.replace("<!-- import map -->", f'<script type="importmap">{import_map}</script>')
    allowed = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    csp = CSP.format(import_map=f"'sha256-{allowed}'")
    return _Page(html.encode(), {**SECURITY_HEADERS, "Content-Security-Policy": csp})


@router.get("/")
async def page() -> Response:
    found = _page()
    return HTMLResponse(found.html, headers=found.headers)


def _session_view(caller: Caller, token: str | None) -> dict[str, object]:
    principal = caller.principal
    org = caller.catalog.organizations[principal.org_id]
    user = caller.catalog.users.get(principal.user_id) if principal.user_id is not None else None
    return {
        "signedIn": True,
        "user": None
        if user is None
        else {"id": user.id, "email": user.email, "name": user.name, "role": user.role},
        "organization": {"id": org.id, "name": org.name, "timezone": org.timezone},
        "permissions": sorted(p.value for p in principal.permissions),
        "csrf": None if token is None else csrf_token(token),
    }


@router.get("/console/session")
async def current_session(request: Request) -> Response:
    """The session, or `{"signedIn": false}`: a page asking whether anyone is signed in is
    answered 200 either way (a 401 would be a failed load in the browser's console)."""
    token = credentials(request)
    try:
        caller = await admitted(request, token)
    except Unauthorized:
        return json_response({"signedIn": False})
    from_cookie = token == request.cookies.get(SESSION_COOKIE)
    return json_response(_session_view(caller, token if from_cookie else None))


@router.post("/console/session")
async def create_session(request: Request) -> Response:
    svc: Services = request.app.state.services
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, 'Sign in with a JSON body: {"email": ..., "password": ...}.')
    body = await decode(request, SignIn)
    remote = request.client.host if request.client is not None else None
    try:
        session = await guarded(sign_in(svc, body.email, body.password, remote))
    except SignInRefused as exc:
        raise ApiError(401, str(exc)) from None
    except SignInRaced as exc:
        raise ApiError(503, str(exc), {"Retry-After": "1"}) from None
    caller = await admitted(request, session.token)  # the new session, judged as any request
    response = json_response(_session_view(caller, session.token))
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=svc.settings.session_ttl,
        path="/",
        secure=request.url.scheme == "https" or svc.settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


@router.delete("/console/session")
async def delete_session(ctx: OrgContext, request: Request) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None and credentials(request) == cookie:
        await sign_out(ctx.services, cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


class _Assets(StaticFiles):
    """The page's assets; one asked for by its versioned URL is cached for a year."""

    def file_response(
        self, full_path: Any, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if scope.get("query_string", b"").startswith(b"v="):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_assets(app: FastAPI) -> None:
    app.mount(ASSETS, _Assets(directory=assets_dir()), name="console-assets")
