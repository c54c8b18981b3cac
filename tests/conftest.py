"""Fixtures and collection rules. Helpers that tests import live in `helpers.py`.

The suite has three parts:
- `unit/`: no child process and no database server (SQLite files at most); `make check`.
- `store/`: the store contract, on SQLite and, when PINBASE_TEST_POSTGRES names a server, on
  PostgreSQL.
- `e2e/`: real `pinbase` processes spoken to over HTTP, TCP and MQTT; every test runs once per
  store backend, unless its module is marked `own_backends` (it chooses its databases itself).
"""

from __future__ import annotations

import compileall
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx._transports.default
import pytest

import helpers
import pinbase
from helpers import BACKENDS, Api, Server, apply_fleet, client_token, user_token
from pinbase.app.auth.secrets import use_password_hash_memory

# Password hashes at the least cost (1 MiB instead of 64), in this process and in every server and
# command it starts: argon2 at its full cost was a third of the suite's CPU time. The tests of
# the hashing cost itself ask for it explicitly.
TEST_HASH_MEMORY = "1024"
os.environ.setdefault("PINBASE_PASSWORD_HASH_MEMORY", TEST_HASH_MEMORY)
use_password_hash_memory(int(os.environ["PINBASE_PASSWORD_HASH_MEMORY"]))

# Every httpx client builds a TLS context, reading the whole CA bundle (some 20 ms of CPU), even
# to speak plain HTTP to the loopback servers here, and each module-level `httpx.get`/`post` is a
# client of its own: thousands of them were most of the test processes' own CPU time. The clients
# in this process with the default verification share one context instead.
_DEFAULT_TLS = httpx.create_ssl_context()


def _tls_context(
    verify: ssl.SSLContext | str | bool = True,
    cert: object = None,
    trust_env: bool = True,
) -> ssl.SSLContext:
    if verify is True and cert is None and trust_env:
        return _DEFAULT_TLS
    return httpx.create_ssl_context(verify, cert, trust_env)  # type: ignore[arg-type]


httpx._transports.default.create_ssl_context = _tls_context

# Every server and command the tests start imports pinbase anew. Where PYTHONDONTWRITEBYTECODE is
# set, none of them writes the bytecode cache and each compiled all of pinbase's sources again
# (some 0.2 s of CPU a start, hundreds of starts): compile them once here (files up to date are
# left alone; a process reading the cache does not need to write it).
compileall.compile_dir(Path(pinbase.__file__).parent, quiet=2)


def _parametrized(metafunc: pytest.Metafunc) -> bool:
    parts = metafunc.definition.path.parts
    if "e2e" not in parts and "store" not in parts:
        return False
    return metafunc.definition.get_closest_marker("own_backends") is None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and _parametrized(metafunc):
        metafunc.parametrize("backend", BACKENDS, indirect=True, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            callspec
            and callspec.params.get("backend") != "sqlite"
            and item.get_closest_marker("sqlite_only")
        ):
            item.add_marker(pytest.mark.skip(reason="checks the SQLite file itself"))


@pytest.fixture(scope="session", autouse=True)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of the servers and stores started in this part of the session."""
    name: str = getattr(request, "param", "sqlite")
    helpers.use_backend(name)
    return name


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    """One shared server with the test fleet; tests use their own devices or datastreams."""
    data_dir = tmp_path_factory.mktemp(f"shared-{backend}")
    apply_fleet(data_dir)
    running = Server(data_dir).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def org_api(server: Server) -> Iterator[Api]:
    api = Api(server.url, client_token(server.url))
    yield api
    api.close()


@pytest.fixture(scope="session")
def tokens(server: Server) -> dict[str, str]:
    """One access token per principal of the permission matrix."""
    found = {"org": client_token(server.url), "globex": client_token(server.url, helpers.GLOBEX)}
    for email in helpers.PASSWORDS:
        found[email.split("@")[0]] = user_token(server.url, email)
    return found
