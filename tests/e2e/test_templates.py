"""Templates (products) on the Organization API, end to end: the page of templates, one
template's details, its datastreams, events and metafields; a variant shares its root's; all
need PRODUCT_VIEW; another organization's template is "not found" like a missing one.
`test_mcp.py` serves this module's fleet too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import Api, Server, apply_fleet_text, assert_error, client_token, user_token

CLIENT = ("tmpl-backend", "tmpl-secret-0123456789abcdef")
OTHER_CLIENT = ("tmplother-backend", "tmplother-secret-0123456789abcdef")
PASSWORD = "tmpl-password-1"
TEMPLATES = "/api/v1/organization/templates"
TEMPLATE = "/api/v1/organization/template"
DATASTREAMS = "/api/v1/organization/template/datastreams"
EVENTS = "/api/v1/organization/template/events"
METAFIELDS = "/api/v1/organization/template/metafields"

STATION, STATION_PRO, GATE, FOREIGN_TEMPLATE = 70, 71, 72, 80
SHARED, OWNED, FOREIGN_DEVICE = 701, 702, 801
TEMPERATURE, MODE, LABEL = 1, 2, 3


def token_of(device_id: int) -> str:
    return f"TmplTestToken{device_id:019d}"


def fleet() -> str:
    users = [("admin@tmpl.test", "Admin"), ("user@tmpl.test", "User"),
             ("viewer@tmpl.test", "Viewer")]  # fmt: skip
    document = {
        "organizations": [
            {
                "id": 7,
                "name": "Tmpl Inc",
                "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                "roles": [{"name": "Viewer", "permissions": ["ORG_DEVICES_VIEW"]}],
                "users": [
                    {"email": email, "password": PASSWORD, "role": role} for email, role in users
                ],
                "products": [
                    {
                        "id": STATION,
                        "name": "Station",
                        "datastreams": [
                            {"id": TEMPERATURE, "pin": "v1", "label": "Temperature",
                             "type": "double", "min": -40, "max": 85, "decimals": 1,
                             "units": "Celsius"},
                            {"id": MODE, "pin": "v7", "label": "Mode", "type": "enum",
                             "options": {0: "Off", 1: "Eco"}, "history": False},
                            {"id": LABEL, "pin": "v3", "label": "Label", "type": "string"},
                        ],
                        "events": [{"id": 1, "code": "overheat", "name": "Overheat",
                                    "type": "WARNING"}],
                        "metafields": [{"id": 1, "name": "Site", "type": "text"}],
                        "variants": [{"id": STATION_PRO, "name": "Station Pro"}],
                    },
                    {"id": GATE, "name": "Gate"},
                ],
                "devices": [
                    {"id": SHARED, "name": "Shared", "product": STATION,
                     "token": token_of(SHARED)},
                    {"id": OWNED, "name": "Owned", "product": STATION_PRO,
                     "token": token_of(OWNED), "owner": "user@tmpl.test"},
                ],
            },
            {
                "id": 8,
                "name": "Other Inc",
                "clients": [{"client_id": OTHER_CLIENT[0], "client_secret": OTHER_CLIENT[1]}],
                "products": [
                    {"id": FOREIGN_TEMPLATE, "name": "Other",
                     "datastreams": [{"id": 1, "pin": "v1", "label": "T", "type": "double"}]}
                ],
                "devices": [{"id": FOREIGN_DEVICE, "name": "Foreign",
                             "product": FOREIGN_TEMPLATE, "token": token_of(FOREIGN_DEVICE)}],
            },
        ]
    }  # fmt: skip
    text: str = yaml.safe_dump(document)
    return text


def start_server(data_dir: Path, *extra: str) -> Server:
    apply_fleet_text(data_dir, fleet())
    return Server(data_dir, *extra).start()


class Env:
    def __init__(self, server: Server) -> None:
        self.server = server
        url = server.url
        self.admin = Api(url, client_token(url, CLIENT))
        self.user = Api(url, user_token(url, "user@tmpl.test", CLIENT, PASSWORD))
        self.viewer = Api(url, user_token(url, "viewer@tmpl.test", CLIENT, PASSWORD))
        self.foreign = Api(url, client_token(url, OTHER_CLIENT))

    def close(self) -> None:
        for api in (self.admin, self.user, self.viewer, self.foreign):
            api.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Env]:
    server = start_server(tmp_path_factory.mktemp(f"templates-{backend}"))
    found = Env(server)
    try:
        yield found
    finally:
        found.close()
        server.stop()


STATION_STREAMS: list[dict[str, Any]] = [
    {"id": TEMPERATURE, "label": "Temperature", "alias": "Temperature", "type": "DOUBLE",
     "pin": 1, "pinType": "VIRTUAL", "isHistory": True, "min": -40.0, "max": 85.0,
     "decimals": 1, "units": "Celsius"},
    {"id": MODE, "label": "Mode", "alias": "Mode", "type": "ENUM", "pin": 7,
     "pinType": "VIRTUAL", "isHistory": False,
     "options": [{"value": 0, "label": "Off"}, {"value": 1, "label": "Eco"}]},
    {"id": LABEL, "label": "Label", "alias": "Label", "type": "STRING", "pin": 3,
     "pinType": "VIRTUAL", "isHistory": True},
]  # fmt: skip


def test_templates_page(env: Env) -> None:
    page = env.admin.get(TEMPLATES).json()
    assert page == {
        "totalElements": 3,
        "content": [
            {"id": STATION, "name": "Station", "orgId": 7, "templateIds": []},
            {"id": STATION_PRO, "name": "Station Pro", "orgId": 7, "parentId": STATION,
             "templateIds": []},
            {"id": GATE, "name": "Gate", "orgId": 7, "templateIds": []},
        ],
    }  # fmt: skip
    second = env.admin.get(TEMPLATES, page=1, size=2).json()
    assert second["totalElements"] == 3
    assert [t["id"] for t in second["content"]] == [GATE]
    # the other organization sees only its own
    assert [t["id"] for t in env.foreign.get(TEMPLATES).json()["content"]] == [FOREIGN_TEMPLATE]
    assert_error(env.admin.get(TEMPLATES, size=0), 400)
    assert_error(env.admin.get(TEMPLATES, size=1001), 400)
    assert_error(env.admin.get(TEMPLATES, page=-1), 400)


def test_template_details_and_datastreams(env: Env) -> None:
    for template in (STATION, STATION_PRO):  # a variant has its root's datastreams
        assert env.admin.get(DATASTREAMS, templateId=template).json() == STATION_STREAMS
    details = env.user.get(TEMPLATE, templateId=STATION_PRO).json()
    assert details["id"] == STATION_PRO and details["parentId"] == STATION
    assert details["dataStreams"] == STATION_STREAMS
    assert [e["eventCode"] for e in details["events"]] == ["ONLINE", "OFFLINE", "overheat"]
    assert details["metaFields"] == [{"id": 1, "name": "Site", "type": "Text"}]
    gate = env.admin.get(TEMPLATE, templateId=GATE).json()
    assert (gate["dataStreams"], gate["metaFields"]) == ([], [])
    assert "parentId" not in gate


def test_permissions_and_tenancy(env: Env) -> None:
    for path in (TEMPLATE, DATASTREAMS, EVENTS, METAFIELDS):
        # another organization's template answers exactly like a missing one
        assert_error(env.admin.get(path, templateId=FOREIGN_TEMPLATE), 404, "Template not found.")
        assert_error(env.admin.get(path, templateId=999), 404, "Template not found.")
        assert_error(env.foreign.get(path, templateId=STATION), 404, "Template not found.")
        assert_error(env.admin.get(path), 400)
        # viewing devices without PRODUCT_VIEW is not enough
        assert_error(
            env.viewer.get(path, templateId=STATION),
            403,
            "Access denied: the PRODUCT_VIEW permission is required.",
        )
        assert env.user.get(path, templateId=STATION).status_code == 200
    assert_error(env.viewer.get(TEMPLATES), 403)
    stranger = Api(env.server.url, "not-a-token")
    try:
        assert_error(stranger.get(TEMPLATES), 401)
    finally:
        stranger.close()
