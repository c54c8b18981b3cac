"""The HTTP application: routes, error handlers and limits over the running services.

It only routes: `pinbase.server` opens the store, builds the services and starts everything
else before handing them to `create_app`.
"""

from __future__ import annotations

from fastapi import FastAPI

from pinbase import __version__
from pinbase.app.services import Services
from pinbase.http.access import AccessLog
from pinbase.http.errors import install_error_handlers
from pinbase.http.limits import BodyLimit
from pinbase.http.openapi import install_openapi
from pinbase.http.routes import (
    console,
    datastreams,
    device_api,
    devices,
    events,
    legacy,
    live,
    metadata,
    oauth,
    organization,
    system,
    templates,
    users,
    webhooks,
)

DESCRIPTION = (
    "Blynk's Organization datastream API, self-hosted. Obtain a token at `/oauth2/token`, then "
    "send it as `Authorization: Bearer <token>`. Every error answers "
    '`{"error": {"message": "..."}}` with a 4xx, 503 or 507, except the token endpoint\'s OAuth '
    'errors (`{"error": "...", "error_description": "..."}`). A database that cannot be used is '
    "answered 503 (with `Retry-After` while retrying may help), a full disk 507 Insufficient "
    "Storage: nothing of that request was stored. `OPTIONS` on any path answers 204 with `Allow` "
    "listing the path's methods; a method the path lacks answers 405."
)


def create_app(services: Services) -> FastAPI:
    """The pinbase HTTP application serving `services`."""
    app = FastAPI(
        title="pinbase",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_error_handlers(app)
    install_openapi(app)
    # The routes join the application's own route list: FastAPI's include_router wraps each
    # router in a layer that matches every request twice, a quarter of a small request's cost.
    for router in (
        system.router,
        oauth.router,
        datastreams.router,
        devices.router,
        events.router,
        device_api.router,
        metadata.router,  # metadata
        templates.router,
        live.router,
        webhooks.router,
        users.router,
        organization.router,
        console.router,
    ):
        app.router.routes.extend(router.routes)
    # blynk-server's /{token}/... routes come last: they match only a token-shaped first
    # segment, and nothing else may be shadowed by them.
    app.router.routes.extend(legacy.routes)
    system.mount_docs_assets(app)
    console.mount_assets(app)
    app.add_middleware(BodyLimit, limit=services.settings.body_limit)
    app.add_middleware(AccessLog)  # outermost: it sees every answer, a 413 included
    return app
