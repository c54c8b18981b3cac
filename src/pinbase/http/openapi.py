"""OpenAPI from the msgspec structs in `schemas`, merged into FastAPI's generated document."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pinbase.http.schemas import ErrorBody

_REF = "#/components/schemas/{name}"
_components: dict[str, Any] = {}


def schema_of(kind: Any) -> dict[str, Any]:
    """The JSON schema of a type, its named parts registered as components."""
    (schema,), components = msgspec.json.schema_components([kind], ref_template=_REF)
    _components.update(components)
    return schema


def json_body(kind: Any) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is parsed into `kind`."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema_of(kind)}},
        }
    }


_ERROR_TEXT = {
    400: "Malformed request or mismatched value",
    401: "Missing, unknown or expired access token",
    403: "The token lacks a required permission",
    404: "Device or datastream not found or not accessible",
    413: "Request body over the limit",
    429: "Rate limit exceeded (see Retry-After)",
}


def responses(
    ok: dict[int, tuple[str, Any]], errors: tuple[int, ...] = (400, 401, 403, 404, 413, 429)
) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: success entries (status → (description, type)) and errors."""
    result: dict[int | str, dict[str, Any]] = {}
    for status, (description, kind) in ok.items():
        entry: dict[str, Any] = {"description": description}
        if kind is not None:
            entry["content"] = {"application/json": {"schema": schema_of(kind)}}
        result[status] = entry
    error_schema = schema_of(ErrorBody)
    for status in errors:
        result[status] = {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": error_schema}},
        }
    return result


def _drop_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents 422 for parameter errors; pinbase answers those with 400."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_components)
            _drop_validation_errors(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
