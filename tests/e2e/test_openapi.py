"""/openapi.json documents every endpoint; /docs works offline, served entirely by pinbase."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from helpers import Server

OPERATIONS = {
    ("get", "/api/v2/organization/device/datastreams"),
    ("get", "/api/v1/organization/device/datastreams/batch"),
    ("get", "/api/v1/organization/device/datastream/history"),
    ("post", "/api/v1/organization/device/datastream"),
    ("post", "/api/v1/organization/device/datastreams"),
    ("post", "/api/v1/organization/product/devices/batch-update"),
    ("post", "/api/v1/organization/device/import/batch"),
    ("post", "/api/v1/organization/device/datastream/property"),
}
PLATFORM = {
    ("get", "/api/v1/organization/devices"),
    ("get", "/api/v1/organization/search/devices"),
    ("get", "/api/v1/organization/device"),
    ("post", "/api/v1/organization/device/create"),
    ("put", "/api/v1/organization/device"),
    ("delete", "/api/v1/organization/device"),
    ("delete", "/api/v1/organization/device/clear"),
    ("get", "/api/v1/organization/device/online"),
    ("post", "/api/v1/organization/device/provision/reprovision/token"),
    ("get", "/api/v1/organization/templates"),
    ("get", "/api/v1/organization/template"),
    ("get", "/api/v1/organization/template/datastreams"),
    ("get", "/api/v1/organization/template/events"),
    ("get", "/api/v1/organization/template/metafields"),
    ("get", "/api/v1/organization/users"),
    ("get", "/api/v1/organization/search/users"),
    ("get", "/api/v1/organization/user"),
    ("get", "/api/v1/organization/user/profile"),
    ("post", "/api/v1/organization/users/create-in-org"),
    ("post", "/api/v1/organization/users/invite"),
    ("put", "/api/v1/organization/users/role"),
    ("post", "/api/v1/invite/accept"),
    ("get", "/api/v1/organization/profile"),
}
EXTRAS = {
    ("post", "/oauth2/token"),
    ("get", "/api/v1/organization/device/datastream/properties"),
    ("get", "/api/v1/organization/device/export"),
    ("get", "/healthz"),
}
# Fields each POST body must document (Blynk's names).
BODY_FIELDS = {
    "/api/v1/organization/device/datastream": {"deviceId", "dataStreamId", "value"},
    "/api/v1/organization/device/datastreams": {"deviceId", "values"},
    "/api/v1/organization/product/devices/batch-update": {"fields", "updates"},
    "/api/v1/organization/device/import/batch": {"deviceId", "dataStreamId", "values"},
    "/api/v1/organization/device/datastream/property": {
        "deviceId",
        "dataStreamId",
        "property",
        "value",
    },
}
QUERY_PARAMETERS = {
    "/api/v2/organization/device/datastreams": {"deviceId", "dataStreamIds"},
    "/api/v1/organization/device/datastreams/batch": {"deviceIds", "dataStreamIds"},
    "/api/v1/organization/device/datastream/history": {
        "deviceId",
        "dataStreamId",
        "pin",
        "from",
        "to",
        "page",
        "size",
    },
    "/api/v1/organization/device/datastream/properties": {"deviceId"},
    "/api/v1/organization/device/export": {"deviceId", "from", "to", "dataStreamIds", "tz"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    found: dict[str, Any] = response.json()
    return found


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s (local ones only) to the schema they name."""
    while "$ref" in schema:
        reference = schema["$ref"]
        assert reference.startswith("#/"), f"non-local reference {reference}"
        target: Any = document
        for part in reference[2:].split("/"):
            assert part in target, f"dangling reference {reference}"
            target = target[part]
        schema = target
    return schema


def all_refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in all_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in all_refs(value)]
    return []


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def json_schema_of(document: dict[str, Any], holder: dict[str, Any]) -> dict[str, Any]:
    content = holder.get("content", {})
    assert "application/json" in content, f"no JSON content in {holder}"
    return resolve(document, content["application/json"]["schema"])


# --- the document -------------------------------------------------------------------------


def test_document_is_openapi_3(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.\d+\.\d+", document["openapi"])
    assert document["info"]["title"] == "pinbase"
    assert document["info"]["version"]
    assert isinstance(document["paths"], dict) and document["paths"]
    for (method, path), operation in operations(document).items():
        assert path.startswith("/")
        assert operation["responses"], f"{method} {path} documents no response"
        for status in operation["responses"]:
            assert status == "default" or re.fullmatch(r"[1-5]\d\d", status), status
            assert operation["responses"][status]["description"]
    operation_ids = [op["operationId"] for op in operations(document).values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    references = all_refs(document)
    assert references
    for reference in references:
        resolve(document, {"$ref": reference})


def test_every_endpoint_is_listed(document: dict[str, Any]) -> None:
    listed = set(operations(document))
    expected = OPERATIONS | PLATFORM | EXTRAS
    assert listed >= expected, sorted(expected - listed)
    assert ("get", "/docs") not in listed
    assert ("get", "/openapi.json") not in listed


def test_operations_are_grouped_in_the_documented_groups(document: dict[str, Any]) -> None:
    groups = [tag["name"] for tag in document["tags"]]
    assert groups[:3] == ["OAuth2", "Devices", "Organization datastreams"]
    used = {
        tag
        for item in document["paths"].values()
        for operation in item.values()
        for tag in operation.get("tags", [])
    }
    assert used == set(groups)  # every operation in one of them, and no group empty


@pytest.mark.parametrize("path", sorted(BODY_FIELDS))
def test_post_bodies_are_described(document: dict[str, Any], path: str) -> None:
    operation = document["paths"][path]["post"]
    body = operation["requestBody"]
    assert body.get("required") is True
    schema = json_schema_of(document, body)
    assert schema["type"] == "object"
    assert set(schema["properties"]) >= BODY_FIELDS[path]
    assert set(schema["required"]) >= BODY_FIELDS[path] - {"debug"}


def test_update_value_body_details(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/v1/organization/device/datastream"]["post"]["requestBody"]
    schema = json_schema_of(document, body)
    assert schema["properties"]["deviceId"]["type"] == "integer"
    assert schema["properties"]["dataStreamId"]["type"] == "integer"
    value = resolve(document, schema["properties"]["value"])
    kinds = {option.get("type") for option in value["oneOf"]}
    assert kinds == {"string", "number", "array"}


def test_import_body_describes_points(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/v1/organization/device/import/batch"]["post"]["requestBody"]
    schema = json_schema_of(document, body)
    values = schema["properties"]["values"]
    assert values["type"] == "array"
    assert values["maxItems"] == 10_000
    point = resolve(document, values["items"])
    assert set(point["required"]) == {"ts", "value"}


def test_property_names_are_enumerated(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/v1/organization/device/datastream/property"]["post"]
    schema = json_schema_of(document, body["requestBody"])
    names = resolve(document, schema["properties"]["property"])
    assert {"color", "label", "isDisabled", "url", "labels"} <= set(names["enum"])


def test_token_endpoint_is_described(document: dict[str, Any]) -> None:
    operation = document["paths"]["/oauth2/token"]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert "grant_type" in form["required"]
    grants = set(form["properties"]["grant_type"]["enum"])
    assert grants == {"client_credentials", "user_credentials", "password", "refresh_token"}
    for name in ("client_id", "client_secret", "username", "password", "refresh_token"):
        assert name in form["properties"]
    tokens = json_schema_of(document, operation["responses"]["200"])
    assert set(tokens["properties"]) >= {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
    }
    for status in ("400", "401"):
        error = json_schema_of(document, operation["responses"][status])
        assert set(error["properties"]) >= {"error", "error_description"}


@pytest.mark.parametrize("path", sorted(QUERY_PARAMETERS))
def test_query_parameters_are_described(document: dict[str, Any], path: str) -> None:
    parameters = document["paths"][path]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters if p["in"] == "query"}
    assert set(by_name) >= QUERY_PARAMETERS[path]
    if "deviceId" in by_name:
        assert by_name["deviceId"]["required"] is True


@pytest.mark.parametrize(
    ("method", "path"), sorted((OPERATIONS | EXTRAS) - {("get", "/healthz")}), ids=str
)
def test_responses_have_schemas(document: dict[str, Any], method: str, path: str) -> None:
    responses = document["paths"][path][method]["responses"]
    successes = [s for s in responses if s.startswith("2")]
    assert successes
    for status in successes:
        if status == "204":
            assert not responses[status].get("content")
            continue
        if "text/csv" in responses[status].get("content", {}):  # the history export
            assert responses[status]["content"]["text/csv"]["schema"] == {"type": "string"}
            assert "Content-Disposition" in responses[status]["headers"]
            continue
        assert json_schema_of(document, responses[status]), f"{status} has an empty schema"
    errors = [s for s in responses if s[0] in "45"]
    assert errors
    for status in errors:
        schema = json_schema_of(document, responses[status])
        assert schema.get("properties"), f"{method} {path} {status}: {schema}"


def test_organization_api_errors_use_the_error_body(document: dict[str, Any]) -> None:
    for method, path in OPERATIONS:
        responses = document["paths"][path][method]["responses"]
        for status in ("400", "401", "429"):
            schema = json_schema_of(document, responses[status])
            error = resolve(document, schema["properties"]["error"])
            assert "message" in error["properties"], (method, path, status)


def test_no_operation_documents_422(document: dict[str, Any]) -> None:
    documented = sorted(
        f"{method} {path}"
        for (method, path), operation in operations(document).items()
        if "422" in operation["responses"]
    )
    assert documented == []


def test_healthz_response_has_a_schema(document: dict[str, Any]) -> None:
    schema = json_schema_of(document, document["paths"]["/healthz"]["get"]["responses"]["200"])
    assert "status" in schema.get("properties", {})


# --- /docs --------------------------------------------------------------------------------


class AssetLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def test_docs_are_served_offline(server: Server) -> None:
    response = httpx.get(f"{server.url}/docs")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert re.findall(r"https?://", html) == [], "the docs page references external URLs"
    assert "/openapi.json" in html

    parser = AssetLinks()
    parser.feed(html)
    assert any(url.endswith(".js") for url in parser.urls), parser.urls
    assert any(url.endswith(".css") for url in parser.urls), parser.urls
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = httpx.get(f"{server.url}{url}")
        assert asset.status_code == 200, f"{url}: {asset.status_code}"
        assert asset.content, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")


def test_missing_docs_asset_is_404(server: Server) -> None:
    response = httpx.get(f"{server.url}/docs/assets/no-such-file.js")
    assert response.status_code == 404
