"""/openapi.json describes exactly what the server accepts and answers, checked by schemathesis.

Schemathesis reads the document from a real server (the test fleet, on each store backend) and
sends requests generated from it: valid ones, which must be answered as documented (status,
content type, body schema, headers) and never refused as malformed, and invalid ones, which
must be refused with a 4xx. `OPTIONS` and methods a path lacks are checked against `Allow`.
The settings are in `schemathesis.toml`; `schemathesis_hooks.py` adds a check on the 400s that
some operations may answer to valid requests.

Generation is derandomized (the fixed SEED is passed too, though derandomized generation does
not draw on it) and bounded (EXAMPLES per operation and phase), so a run sends the same requests
every time and takes well under a minute (about 10 s). To run it by hand against a server:

    SCHEMATHESIS_HOOKS=tests/e2e/schemathesis_hooks.py .venv/bin/schemathesis \\
        --config-file tests/e2e/schemathesis.toml run http://127.0.0.1:8080/openapi.json \\
        -H "Authorization: Bearer $TOKEN" --max-examples 10

(the device API cases use device 101's token from tests/fleet.yaml).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from helpers import FLEET, Server, apply_fleet, assert_error, client_token

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "schemathesis_hooks.py"
EXAMPLES = 10
SEED = 20261130
HANG_BOUND = 300.0  # seconds; bounds a hung run (a run takes 10 to 30), never decides a result
# Rate limits far above what the run sends, so that no 429 stands in for a real answer.
UNLIMITED = (
    "--org-rate-limit",
    "10000000",
    "--import-rate",
    "1000000",
    "--import-burst",
    "1000000",
    "--device-rate",
    "1000000",
    "--device-burst",
    "1000000",
)


def fleet_without_users(directory: Path) -> Path:
    """The test fleet less its users (and so its roles and owners): the run signs in no user,
    and hashing their passwords would take most of this test's setup."""
    document = yaml.safe_load(FLEET.read_text())
    for organization in document["organizations"]:
        organization.pop("users", None)
        organization.pop("roles", None)
        for device in organization.get("devices", []):
            device.pop("owner", None)
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    """A server of its own: the run writes to the fleet's devices and needs no rate limits."""
    data_dir = tmp_path_factory.mktemp(f"schemathesis-{backend}")
    apply_fleet(data_dir, fleet_without_users(tmp_path_factory.mktemp("fleet")))
    running = Server(data_dir, *UNLIMITED).start()
    yield running
    running.stop()


def test_the_server_does_what_its_document_says(fuzzed: Server, tmp_path: Path) -> None:
    token = client_token(fuzzed.url)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{fuzzed.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--no-color",
    ]
    try:
        run = subprocess.run(
            command,
            cwd=tmp_path,  # where hypothesis and schemathesis may leave files
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            capture_output=True,
            text=True,
            timeout=HANG_BOUND,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"schemathesis did not finish within {HANG_BOUND} s:\n{output[-5000:]}")
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5000:]
    assert " passed" in run.stdout and "generated" in run.stdout, run.stdout


# --- OPTIONS and 405, spelled out ---------------------------------------------------------


def test_options_lists_every_method_of_each_documented_path(fuzzed: Server) -> None:
    document = httpx.get(f"{fuzzed.url}/openapi.json").json()
    for path, item in document["paths"].items():
        response = httpx.request("OPTIONS", fuzzed.url + path)
        assert response.status_code == 204, (path, response.text)
        assert response.content == b""
        documented = sorted(method.upper() for method in item)
        assert response.headers["allow"] == ", ".join(documented), path


def test_a_method_the_path_lacks_is_405_with_every_method_allowed(fuzzed: Server) -> None:
    response = httpx.delete(f"{fuzzed.url}/external/api/batch/update")
    assert_error(response, 405)
    assert response.headers["allow"] == "GET, OPTIONS, POST"


def test_options_outside_the_document(fuzzed: Server) -> None:
    docs = httpx.request("OPTIONS", f"{fuzzed.url}/docs")
    assert docs.status_code == 204
    assert docs.headers["allow"] == "GET, OPTIONS"
    asset = httpx.request("OPTIONS", f"{fuzzed.url}/docs/assets/swagger-ui.css")
    assert asset.status_code == 204
    assert asset.headers["allow"] == "GET, HEAD, OPTIONS"
    assert_error(httpx.request("OPTIONS", f"{fuzzed.url}/no/such/path"), 404)
