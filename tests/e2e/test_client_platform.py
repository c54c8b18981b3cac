"""The Python client's Platform operations (devices, templates, users, the organization)
against a real server, with the blocking and the async client, on both stores.

These routes are built beside the client (on other branches): this module runs once they are
merged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import ACME, PASSWORDS, Server, api_client, not_found
from pinbase.client import (
    BadRequest,
    ClientCredentials,
    Forbidden,
    NotFound,
    Password,
    password_hash,
)

CLIENT = ClientCredentials(*ACME)
MODES = ["sync", "async"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def url(server: Server) -> Iterator[str]:
    yield server.url


def test_devices_are_listed_searched_and_read(url: str, mode: str) -> None:
    with api_client(mode, url, CLIENT) as (api, seen):
        page = api.devices(size=3)
        assert [device.id for device in page.content] == [101, 102, 103]
        assert page.total_elements >= 10
        every = [device.id for device in api.iter_devices()]
        assert every[:10] == list(range(101, 111)) and 201 not in every
        assert seen.count("/api/v1/organization/devices") == 2

        roof = api.search_devices("roof").content
        assert [(d.id, d.name, d.template_id) for d in roof] == [(101, "Roof", 10)]
        owned = api.search_devices("user@acme.test", sort_by="Device Id", sort_order="DESC")
        assert [device.id for device in owned.content] == [104, 101]

        details = api.device(101)
        assert (details.id, details.name, details.online, details.token) == (101, "Roof", False,
                                                                            None)  # fmt: skip
        assert "Temperature" in [v.data_stream_label for v in details.data_stream_values]
        with pytest.raises(NotFound) as absent:
            api.device(201)
        assert absent.value.message == not_found(201)


def test_a_device_is_created_renamed_reprovisioned_cleared_and_deleted(url: str, mode: str) -> None:
    with api_client(mode, url, CLIENT) as (api, _):
        created = api.create_device(10, f"Created {mode}")
        assert created.token and created.template_id == 10 and created.name == f"Created {mode}"
        assert api.device_online(created.id) is False
        assert api.rename_device(created.id, f"Renamed {mode}").name == f"Renamed {mode}"
        api.write_value(created.id, 1, 20.5)
        token = api.reprovision_token(created.id)
        assert token.device_id == created.id and token.token != created.token
        assert api.current_values(created.id, [1])[0].value == 20.5  # same device and data
        api.clear_device(created.id)
        assert api.current_values(created.id, [1])[0].value is None
        api.delete_device(created.id)
        with pytest.raises(NotFound):
            api.device(created.id)
    auditor = Password(*ACME, "auditor@acme.test", PASSWORDS["auditor@acme.test"])
    with api_client(mode, url, auditor) as (api, _), pytest.raises(Forbidden):
        api.create_device(10, "not allowed")


def test_templates(url: str, mode: str) -> None:
    with api_client(mode, url, CLIENT) as (api, _):
        ids = [template.id for template in api.templates().content]
        assert {10, 20} <= set(ids) and 30 not in ids
        details = api.template(10)
        assert details.name == "Weather Station"
        streams = api.template_datastreams(10)
        assert [(s.label, s.pin, s.type) for s in streams][:2] == [
            ("Temperature", 1, "DOUBLE"),
            ("Humidity", 2, "INT"),
        ]
        assert [s.id for s in details.data_streams] == [s.id for s in streams]
        with pytest.raises(NotFound):
            api.template(30)


def test_users_and_the_organization(url: str, mode: str) -> None:
    with api_client(mode, url, CLIENT) as (api, _):
        emails = {user.email: user for user in api.users(size=1000).content}
        assert "admin@acme.test" in emails and "admin@globex.test" not in emails
        [auditor] = api.search_users("auditor@acme").content
        assert api.user(auditor.id).email == "auditor@acme.test"
        assert api.organization().name == "Acme Farms"
        staff_role = emails["staff@acme.test"].role_id
        user_role = emails["user@acme.test"].role_id
        invited = api.invite_user(f"invited-{mode}@acme.test", "Invited", staff_role)
        assert (invited.email, invited.status) == (f"invited-{mode}@acme.test", "Pending")
        email = f"made-{mode}@acme.test"
        with pytest.raises(BadRequest):  # passwords travel only over HTTPS: this is HTTP
            api.create_user(email, "Made", user_role, password_hash=password_hash(email, "pw-1"))
        assert email not in {user.email for user in api.users(size=1000).content}
        assert api.set_user_role(invited.id, user_role).role_id == user_role
    own = Password(*ACME, "user@acme.test", PASSWORDS["user@acme.test"])
    with api_client(mode, url, own) as (api, _):
        assert api.my_profile().email == "user@acme.test"
