"""Health, the OpenAPI document's interactive docs (served offline), and a trivial endpoint.

`/healthz` is a readiness probe that includes the storage: 200 while the store is healthy, 503
while it is failing, naming how (`unavailable`, `full`, `corrupt`). It reads the store's health
(`pinbase.store.health`), which costs no query while all is well; a failing store is probed
with one small write at most once a second, so the answer turns 200 again by itself once the
database takes writes. The answer gives the kind of failure and what to do in general words;
the precise message (which names files, hosts and ports) goes to the server's log only, since
the probe needs no authentication.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from pinbase.app.services import Services
from pinbase.store.health import KINDS, Kind

router = APIRouter(tags=["System"])

_OK = b'{"status":"ok","storage":"ok"}'
REASONS: dict[Kind, str] = {
    "unavailable": "The database cannot be used (unreachable, locked, read-only or failing); "
    "the server's log says why. Ready again by itself once it can.",
    "full": "The disk holding the database is full: writes are refused until space is "
    "freed. Ready again by itself once it is.",
    "corrupt": "The database is damaged: restore it from a backup and restart the server.",
}


def _schema(status: str, storage: list[str], reason: bool) -> dict[str, object]:
    properties: dict[str, object] = {
        "status": {"type": "string", "enum": [status]},
        "storage": {"type": "string", "enum": storage, "description": "The store's health"},
    }
    if reason:
        properties["reason"] = {"type": "string", "description": "What is wrong and what to do"}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
    }


@router.get(
    "/healthz",
    summary="Readiness probe: 200 when the server and its storage can serve, else 503",
    description=(
        "Answers 200 once the server is ready and while its database works; 503 while the "
        "database is failing: `unavailable` (unreachable, locked, read-only or failing), "
        "`full` (the disk is full, writes are refused) or `corrupt` (damaged; restore it). "
        "A failing database is re-tested with one small write at most once a second, so the "
        "answer returns to 200 by itself when it recovers (a damaged one excepted)."
    ),
    responses={
        200: {
            "description": "Ready",
            "content": {"application/json": {"schema": _schema("ok", ["ok"], reason=False)}},
        },
        503: {
            "description": "The storage is failing",
            "content": {
                "application/json": {"schema": _schema("unavailable", list(KINDS), reason=True)}
            },
        },
    },
)
async def healthz(request: Request) -> Response:
    services: Services = request.app.state.services
    failure = await services.store.health.status()
    if failure is None:
        return Response(_OK, media_type="application/json")
    body = {"status": "unavailable", "storage": failure.kind, "reason": REASONS[failure.kind]}
    return Response(orjson.dumps(body), status_code=503, media_type="application/json")


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="pinbase API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
    )


def mount_docs_assets(app: FastAPI) -> None:
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
