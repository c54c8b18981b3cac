"""`/openapi.json`: FastAPI's generated document, made to say exactly what the server does.

The document is checked against the running server by schemathesis in the test suite
(`tests/e2e/test_schemathesis.py`), so every rule below is one the server keeps:

- **Errors.** Every error is `{"error": {"message": "..."}}` with a 4xx (or 503), documented per
  operation with the headers it always carries: `WWW-Authenticate` on 401, `Retry-After` on 429
  and 503. The OAuth2 token endpoint alone answers its 400 and 401 in OAuth's own shape
  (`{"error", "error_description"}`, RFC 6749 §5.2). No operation answers or documents 422:
  FastAPI's validation errors are answered 400 and its 422 entries are removed here.
- **Every operation that reaches the store documents 503** (the database is unavailable), and
  every operation that takes a body documents 413 (the body limit of `limits.BodyLimit`).
- **Query parameters are never null.** A query string has no null: FastAPI's `anyOf [T, null]`
  for an optional parameter becomes plain `T` (leaving it out is how it is omitted).
- **Integers are JSON Schema 2020-12 integers** (OpenAPI 3.1): in a JSON body `110.0` is the
  integer 110 and is accepted as such (`deps.decode_json`); a fraction is refused. In a query
  string an integer is plain decimal digits (`deps.StrictInt`), which is what a client that
  serializes the documented integer sends.
- **Id lists** (`deviceIds`, `dataStreamIds`) are arrays of int32 in one comma-separated value
  (`style: form, explode: false`); repeating the key is also accepted and spaces around an id
  are ignored, but an empty id (`1,,2`) is refused.
- **OPTIONS** on any path of the server answers `204 No Content` with an `Allow` header listing
  every method of the path (`methods.py`); each documented path documents its OPTIONS operation.
  A method the path does not support answers 405 with the same `Allow` header.
- **Security.** The Organization API is documented as OAuth2 (client credentials and password
  flows) with `/oauth2/token` as the token URL, which is what it is; tokens are sent as
  `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pinbase.domain.model import INT32_MAX, INT32_MIN
from pinbase.http.methods import path_methods
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


def id_list_parameter(
    name: str, description: str, *, required: bool = False, max_items: int | None = None
) -> dict[str, Any]:
    """A query parameter holding int32 ids, as `deps.int_list` reads it."""
    schema: dict[str, Any] = {
        "type": "array",
        "items": {"type": "integer", "format": "int32", "minimum": INT32_MIN, "maximum": INT32_MAX},
    }
    if required:
        schema["minItems"] = 1
    if max_items is not None:
        schema["maxItems"] = max_items
    return {
        "name": name,
        "in": "query",
        "required": required,
        "style": "form",
        "explode": False,
        "description": (
            f"{description} Comma-separated (`1,2,3`); repeating the key also works and spaces "
            "around an id are ignored."
        ),
        "schema": schema,
        "example": [1, 2],
    }


_ERROR_TEXT = {
    400: "Malformed request or mismatched value",
    401: "Missing, unknown or expired access token",
    403: "The token lacks a required permission",
    404: "Device or datastream not found or not accessible",
    413: "Request body over the limit",
    429: "Rate limit exceeded (see Retry-After)",
    503: "The database is unavailable; retry later (see Retry-After)",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The bearer challenge: `Bearer error="invalid_token"`',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def error_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The documented `{"error": {"message": ...}}` answer of `status`."""
    entry: dict[str, Any] = {
        "description": description or _ERROR_TEXT[status],
        "content": {"application/json": {"schema": schema_of(ErrorBody)}},
    }
    if status in _ERROR_HEADERS:
        entry["headers"] = _ERROR_HEADERS[status]
    return entry


def responses(
    ok: dict[int, tuple[str, Any]],
    errors: tuple[int, ...] = (400, 401, 403, 404, 413, 429),
    bad_request: str | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: success entries (status → (description, type)) and errors.

    `bad_request` describes the route's 400 when it also refuses requests that the document's
    schemas admit (a value that does not fit its datastream, a cross-parameter rule).
    """
    result: dict[int | str, dict[str, Any]] = {}
    for status, (description, kind) in ok.items():
        entry: dict[str, Any] = {"description": description}
        if kind is not None:
            entry["content"] = {"application/json": {"schema": schema_of(kind)}}
        result[status] = entry
    for status in errors:
        result[status] = error_response(status, bad_request if status == 400 else None)
    return result


_HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "trace")


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document.get("paths", {}).items()
        for method, operation in item.items()
        if method in _HTTP_METHODS
    ]


def _drop_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents 422 for parameter errors; pinbase answers those with 400."""
    for _, _, operation in _operations(document):
        operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _no_null_parameters(document: dict[str, Any]) -> None:
    """An optional query parameter is left out, never null: `anyOf [T, null]` becomes `T`."""
    for _, _, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            options = schema.get("anyOf")
            if not options:
                continue
            kept = [option for option in options if option.get("type") != "null"]
            if len(kept) == 1:
                del schema["anyOf"]
                schema.update(kept[0])


def _common_errors(document: dict[str, Any]) -> None:
    """413 on every operation that takes a body; 503 on every one that reaches the store."""
    for path, _, operation in _operations(document):
        answers = operation.setdefault("responses", {})
        if "requestBody" in operation:
            answers.setdefault("413", error_response(413))
        if path != "/healthz":
            answers.setdefault("503", error_response(503))


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def _options_operations(document: dict[str, Any], app: FastAPI) -> None:
    """Document OPTIONS on every path: 204 with the path's methods in `Allow`."""
    for path, item in document.get("paths", {}).items():
        methods = path_methods(app, path)
        if methods is None:
            continue
        tags: list[str] = next((op["tags"] for op in item.values() if op.get("tags")), [])
        item["options"] = {
            "tags": tags,
            "summary": "Methods allowed on this path",
            "operationId": f"options_{_slug(path)}",
            "security": [],
            "responses": {
                "204": {
                    "description": "No content; `Allow` lists every method of the path",
                    "headers": {
                        "Allow": {
                            "description": "The methods of the path, comma-separated",
                            "required": True,
                            "schema": {"type": "string", "example": ", ".join(methods)},
                        }
                    },
                }
            },
        }


TAGS: list[dict[str, str]] = [
    {"name": "OAuth2", "description": "Access tokens for scripts and users."},
    {
        "name": "Devices",
        "description": "The fleet: pages, search, a device with its values, create, rename, "
        "delete, erase data, connection state, a new token.",
    },
    {
        "name": "Organization datastreams",
        "description": "Current values, history, writes, batch updates, imports, properties.",
    },
    {"name": "Device events", "description": "A device's timeline: log, read, resolve."},
    {"name": "Metadata", "description": "A device's metafield values."},
    {
        "name": "Templates",
        "description": "Products: their datastreams, events and metafields.",
    },
    {"name": "Users", "description": "The organization's users, invitations and roles."},
    {"name": "Organizations", "description": "The token's organization."},
    {"name": "Webhooks", "description": "Outgoing HTTP requests on events and value changes."},
    {"name": "Live updates", "description": "A stream of changes as they happen (pinbase)."},
    {"name": "Device HTTPS API", "description": "What devices call, with their auth token."},
    {"name": "System", "description": "Health and this documentation."},
]
"""The groups of operations, in the order of Blynk's API reference (pinbase's own last)."""


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=TAGS,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_components)
            _drop_validation_errors(document)
            _no_null_parameters(document)
            _common_errors(document)
            _options_operations(document, app)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
