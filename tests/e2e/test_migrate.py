"""`pinbase migrate`: copying a deployment between databases, re-running it, and refusing bad URLs.

The end-to-end tests fill a SQLite deployment through a real server, migrate it into a fresh
PostgreSQL database with the real command, then serve that database and read everything back
through the Organization API. They need PINBASE_TEST_POSTGRES and are skipped without it; the
unit tests of the export methods and of `migrate()` between two SQLite stores always run.

The module is marked `own_backends`: it runs once, not once per store backend, because it
chooses its databases itself.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

import helpers
from pinbase.app.migrate import KINDS, migrate, verify
from pinbase.app.progress import NoProgress
from pinbase.app.provisioning import apply, load_document
from pinbase.store.records import ValueWrites
from pinbase.store.sql import ROLLUP_SLOT
from pinbase.store.sqlite.store import SqliteStore

POSTGRES = os.environ.get("PINBASE_TEST_POSTGRES", "")
pytestmark = pytest.mark.own_backends
needs_postgres = pytest.mark.skipif(
    not POSTGRES, reason="PINBASE_TEST_POSTGRES is not set (no PostgreSQL server to migrate to)"
)

VALUES = "/api/v2/organization/device/datastreams"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
UPDATE = "/api/v1/organization/device/datastream"
IMPORT = "/api/v1/organization/device/import/batch"
PROPERTY = "/api/v1/organization/device/datastream/property"

ACME_DEVICES = range(101, 111)
GLOBEX_DEVICE = 201
HOUR_MS = 3_600_000
IMPORT_START = 1_150_000_000_000  # June 2006: 2,500 hourly points span four monthly partitions
OLD_START = 900_000_000_000  # 1998: before the monthly partitions (PostgreSQL's default one)
LIVE_WRITES: list[tuple[int, int, object]] = [
    (101, 1, 20.5),  # double
    (101, 1, 21.5),
    (101, 2, 55),  # integer
    (101, 3, "all good"),  # string
    (101, 4, [52.52, 13.405]),  # location
    (101, 5, 2),  # enum, no history
    (104, 1, 3.25),
    (104, 2, 17),
    (109, 3, "importing"),
]
PROPERTY_WRITES = [
    (101, 1, "label", "Roof temperature"),
    (101, 1, "suffix", "°C"),
    (101, 3, "color", "#FF0000"),
    (109, 1, "valueFormatting", "{value} units"),
]
# every series the test writes: (device, datastream)
SERIES = sorted({(d, s) for d, s, _ in LIVE_WRITES} | {(109, 1), (105, 3)})


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir}/pinbase.db"


def run_migrate(source: str, target: str) -> Any:
    return helpers.pinbase("migrate", "--from", source, "--to", target)


# --- row counts, read straight from the databases ---------------------------------------------


def sqlite_counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        return {k: conn.execute(f"SELECT count(*) FROM {k}").fetchone()[0] for k in KINDS}


def postgres_counts(url: str) -> dict[str, int]:
    async def run() -> dict[str, int]:
        conn = await asyncpg.connect(url)
        try:
            return {k: await conn.fetchval(f"SELECT count(*) FROM {k}") for k in KINDS}
        finally:
            await conn.close()

    return asyncio.run(run())


def postgres_admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


# --- what the Organization API shows ----------------------------------------------------------


def history_pages(api: helpers.Api, device_id: int, ds_id: int) -> list[dict[str, Any]]:
    """Every page (size 1000, newest first) of the whole history of one series."""
    pages = []
    page = 0
    while True:
        response = api.get(
            HISTORY,
            deviceId=device_id,
            dataStreamId=ds_id,
            page=page,
            size=1000,
            **{"from": 0, "to": 2**62},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        pages.append(body)
        if (page + 1) * 1000 >= body["totalElements"]:
            return pages
        page += 1


def snapshot(base_url: str) -> dict[str, Any]:
    """Current values, properties and history of every device, as both clients see them."""
    found: dict[str, Any] = {}
    acme = helpers.Api(base_url, helpers.client_token(base_url))
    globex = helpers.Api(base_url, helpers.client_token(base_url, helpers.GLOBEX))
    try:
        for api, devices in ((acme, list(ACME_DEVICES)), (globex, [GLOBEX_DEVICE])):
            for device_id in devices:
                values = api.get(VALUES, deviceId=device_id)
                properties = api.get(PROPERTIES, deviceId=device_id)
                assert values.status_code == properties.status_code == 200
                found[f"values {device_id}"] = values.json()
                found[f"properties {device_id}"] = properties.json()
        for device_id, ds_id in [*SERIES, (GLOBEX_DEVICE, 1)]:
            api = globex if device_id == GLOBEX_DEVICE else acme
            found[f"history {device_id}/{ds_id}"] = history_pages(api, device_id, ds_id)
    finally:
        acme.close()
        globex.close()
    return found


def fill(base_url: str) -> None:
    """Live writes of every datastream type, three imports (2,510 + 700 + 1 points),
    properties."""
    acme = helpers.Api(base_url, helpers.client_token(base_url))
    globex = helpers.Api(base_url, helpers.client_token(base_url, helpers.GLOBEX))
    try:
        for device_id, ds_id, value in LIVE_WRITES:
            body = {"deviceId": device_id, "dataStreamId": ds_id, "value": value}
            assert acme.post(UPDATE, body).status_code == 204
        body = {"deviceId": GLOBEX_DEVICE, "dataStreamId": 1, "value": 19.25}
        assert globex.post(UPDATE, body).status_code == 204
        temperatures: list[tuple[int, object]] = [
            (IMPORT_START + i * HOUR_MS, round(i % 120 - 39.5, 1)) for i in range(2500)
        ]
        temperatures += [(OLD_START + i, float(i)) for i in range(10)]
        statuses: list[tuple[int, object]] = [
            (IMPORT_START + i * 1000, f"reading {i}") for i in range(700)
        ]
        # an imported point at the millisecond of a live one: both stay, and both are copied
        [live] = [p for p in history_pages(acme, 101, 1)[0]["content"] if p["value"] == 20.5]
        imports = [
            (109, 1, temperatures),
            (105, 3, statuses),
            (101, 1, [(live["createdAt"], -1.5)]),
        ]
        for device_id, ds_id, pts in imports:
            values = [{"ts": ts, "value": value} for ts, value in pts]
            body = {"deviceId": device_id, "dataStreamId": ds_id, "values": values}
            response = acme.post(IMPORT, body)
            assert response.status_code == 204, response.text
        for device_id, ds_id, name, value in PROPERTY_WRITES:
            body = {"deviceId": device_id, "dataStreamId": ds_id, "property": name, "value": value}
            assert acme.post(PROPERTY, body).status_code == 204
    finally:
        acme.close()
        globex.close()


@dataclass
class Deployment:
    source_dir: Path
    source: str  # sqlite:///...
    target: str  # postgresql://.../<fresh database>
    before: dict[str, Any]  # what the source server showed
    first_run: Any  # the CompletedProcess of the first migration


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    source_dir = tmp_path_factory.mktemp("migrate-source")
    source = sqlite_url(source_dir)
    result = helpers.pinbase(
        "apply", str(helpers.FLEET), "--data-dir", str(source_dir), "--database", source
    )
    assert result.returncode == 0, result.stderr + result.stdout
    server = helpers.Server(source_dir, "--database", source).start()
    try:
        fill(server.url)
        before = snapshot(server.url)
    finally:
        assert server.stop() == 0
    name = f"mig_{uuid.uuid4().hex[:12]}"
    postgres_admin(f"CREATE DATABASE {name}")
    target = POSTGRES.rsplit("/", 1)[0] + "/" + name
    try:
        first_run = run_migrate(source, target)
        yield Deployment(source_dir, source, target, before, first_run)
    finally:
        postgres_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def serve_target(deployment: Deployment, tmp_path: Path) -> helpers.Server:
    return helpers.Server(tmp_path / "target", "--database", deployment.target).start()


@needs_postgres
def test_migration_copies_every_row_and_verifies_the_counts(deployment: Deployment) -> None:
    result = deployment.first_run
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Copied and verified" in result.stdout
    source = sqlite_counts(deployment.source_dir / "pinbase.db")
    assert postgres_counts(deployment.target) == source
    # the fleet, every live write except the enum's (no history), the imports, the properties
    assert source["devices"] == 11 and source["users"] == 8 and source["clients"] == 2
    assert source["history"] == len(LIVE_WRITES) - 1 + 1 + 2510 + 700 + 1
    assert source["current_values"] == len({(d, s) for d, s, _ in LIVE_WRITES}) + 1 + 2
    assert source["properties"] == len(PROPERTY_WRITES)
    for kind, count in source.items():  # the summary table lists every kind
        assert any(
            kind.replace("_", " ") in line and f" {count} " in line
            for line in result.stdout.splitlines()
        ), (kind, result.stdout)


@needs_postgres
def test_the_migrated_database_serves_the_same_data(deployment: Deployment, tmp_path: Path) -> None:
    assert deployment.first_run.returncode == 0
    server = serve_target(deployment, tmp_path)
    try:
        assert snapshot(server.url) == deployment.before
        # users and clients authenticate with their old secrets (only tokens were left behind)
        for email in helpers.PASSWORDS:
            helpers.user_token(server.url, email)
        globex_admin = {"username": "admin@globex.test", "password": "globex-password-1"}
        response = httpx.post(
            f"{server.url}/oauth2/token",
            data={"grant_type": "password", **globex_admin},
            auth=helpers.GLOBEX,
        )
        assert response.status_code == 200, response.text
        wrong = httpx.post(
            f"{server.url}/oauth2/token",
            params={"grant_type": "client_credentials"},
            auth=(helpers.ACME[0], "not-the-secret-0123456789"),
        )
        assert wrong.status_code in (400, 401)
    finally:
        assert server.stop() == 0


@needs_postgres
def test_a_second_run_copies_nothing_twice(deployment: Deployment, tmp_path: Path) -> None:
    assert deployment.first_run.returncode == 0
    counts = postgres_counts(deployment.target)
    again = run_migrate(deployment.source, deployment.target)
    assert again.returncode == 0, again.stderr + again.stdout
    assert postgres_counts(deployment.target) == counts
    server = serve_target(deployment, tmp_path)
    try:
        assert snapshot(server.url) == deployment.before
    finally:
        assert server.stop() == 0


@needs_postgres
def test_a_rerun_brings_in_what_the_source_gained(deployment: Deployment) -> None:
    assert deployment.first_run.returncode == 0
    store = SqliteStore(deployment.source_dir / "pinbase.db")

    async def add() -> None:
        await store.open()
        try:
            await store.write_values(
                ValueWrites(
                    current=[(110, 2, "42", IMPORT_START + 5)],
                    history=[
                        (110, 2, IMPORT_START + 5, 0, "42"),
                        (110, 2, IMPORT_START + 6, 0, "43"),
                        (110, 2, IMPORT_START + 6, 7, "44"),
                    ],
                )
            )
            await store.import_properties([(110, 2, "label", "late")])
        finally:
            await store.close()

    asyncio.run(add())
    source = sqlite_counts(deployment.source_dir / "pinbase.db")
    result = run_migrate(deployment.source, deployment.target)
    assert result.returncode == 0, result.stderr + result.stdout
    assert postgres_counts(deployment.target) == source


@needs_postgres
def test_unreachable_or_missing_databases_exit_2(deployment: Deployment, tmp_path: Path) -> None:
    base = POSTGRES.rsplit("/", 1)[0]
    cases = [
        (deployment.source, "postgresql://postgres:secret-pw@127.0.0.1:1/nowhere", "cannot reach"),
        (deployment.source, f"{base}/mig_no_such_database", "does not exist"),
        (deployment.target, deployment.target, "same database"),
        (f"sqlite:///{tmp_path}/absent.db", deployment.target, "does not exist"),
    ]
    for source, target, message in cases:
        result = run_migrate(source, target)
        assert result.returncode == 2, (source, target, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), result.stderr
        assert "Traceback" not in result.stderr
        assert "secret-pw" not in result.stderr + result.stdout  # passwords are not echoed


# --- no PostgreSQL needed ---------------------------------------------------------------------


def test_bad_urls_exit_2(tmp_path: Path) -> None:
    here = f"sqlite:///{tmp_path}/here.db"
    cases = [
        ("mysql://root@localhost/pinbase", here, "unsupported database URL scheme"),
        (f"sqlite:///{tmp_path}/absent.db", here, "does not exist"),
        (here, f"sqlite:///{tmp_path}/../{tmp_path.name}/here.db", "same database"),
    ]
    for source, target, message in cases:
        result = run_migrate(source, target)
        assert result.returncode == 2, (source, target, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), result.stderr
    assert not (tmp_path / "absent.db").exists()  # a missing source is not created


def test_migrate_needs_both_urls() -> None:
    assert helpers.pinbase("migrate", "--from", "sqlite:///x.db").returncode == 2


async def _fill_store(store: SqliteStore, rng: random.Random) -> None:
    # imported points (seq 0) and live ones: some of one millisecond, of two writers
    history = [
        (device, ds, ts, seq, str(rng.random()))
        for device in (101, 102, 105)
        for ds in (1, 2, 3)
        for ts in rng.sample(range(-(2**40), 2**41), 111)
        for seq in (0, rng.randrange(3) << 32 | 2, rng.randrange(3) << 32 | 9)
    ]
    assert await store.allocate_writer(after=8) == 9
    rng.shuffle(history)
    for start in range(0, len(history), 1000):
        await store.write_values(ValueWrites(history=history[start : start + 1000]))
    current = [(d, s, f'"{d}-{s}"', 1000 * d + s) for d in (101, 102, 105) for s in (1, 2, 3)]
    await store.write_values(ValueWrites(current=current))
    await store.import_properties(
        [(d, s, name, f"{name} of {d}/{s}") for d in (105, 101) for s in (2, 1) for name in "ba"]
    )


async def _collect(batches: Any, size: int) -> list[Any]:
    rows: list[Any] = []
    async for batch in batches:
        assert 0 < len(batch) <= size
        rows.extend(batch)
    return rows


def test_sqlite_counts_and_exports_stream_in_key_order(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "pinbase.db")

    async def run() -> None:
        await store.open()
        try:
            assert await store.counts() == dict.fromkeys(KINDS, 0)
            assert await _collect(store.export_history(10), 10) == []
            await apply(store, load_document(helpers.FLEET))
            await _fill_store(store, random.Random(7))
            counts = await store.counts()
            assert set(counts) == set(KINDS)
            assert (counts["organizations"], counts["devices"]) == (2, 11)
            assert (counts["history"], counts["current_values"], counts["properties"]) == (
                9 * 333,
                9,
                8,
            )
            with closing(sqlite3.connect(store.path)) as conn:
                for size in (1, 7, 333, 2997, 5000):  # 2997 = all: a last, empty read
                    got = await _collect(store.export_history(size), size)
                    assert (
                        got
                        == conn.execute(
                            "SELECT device_id, ds_id, ts, seq, value FROM history "
                            "ORDER BY device_id, ds_id, ts, seq"
                        ).fetchall()
                    )
                current = await _collect(store.export_current(4), 4)
                assert (
                    current
                    == conn.execute(
                        "SELECT device_id, ds_id, value, updated_at FROM current_values "
                        "ORDER BY device_id, ds_id"
                    ).fetchall()
                )
                properties = await _collect(store.export_properties(3), 3)
                assert properties == sorted(properties)
                assert len(properties) == 8
                assert (101, 1, "a", "a of 101/1") in properties
            await store.import_properties([(101, 1, "a", "replaced"), (101, 1, "c", "new")])
            assert (await store.properties(101))[1] == {
                "a": "replaced",
                "b": "b of 101/1",
                "c": "new",
            }
        finally:
            await store.close()

    asyncio.run(run())


def test_migrate_between_sqlite_stores_is_complete_and_repeatable(tmp_path: Path) -> None:
    source = SqliteStore(tmp_path / "source.db")
    target = SqliteStore(tmp_path / "target.db")

    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[str, str, int]] = []

        def begin(self, phase: str, total: int) -> None:
            self.events.append(("begin", phase, total))

        def advance(self, phase: str, rows: int) -> None:
            self.events.append(("advance", phase, rows))

    async def dump(store: SqliteStore) -> list[Any]:
        return [
            await store.entities(),
            await _collect(store.export_current(100), 100),
            await _collect(store.export_history(1000), 1000),
            await _collect(store.export_properties(100), 100),
            await _collect(store.export_hardware(100), 100),
        ]

    async def aggregated(store: SqliteStore) -> list[Any]:
        """Every series summed in rollup slots (a read that builds the rollup, too)."""
        return [
            await store.history_slots(d, s, -(2**40), 2**41, ROLLUP_SLOT, "sum")
            for d in (101, 102, 105)
            for s in (1, 2, 3)
        ]

    async def run() -> None:
        await source.open()
        await target.open()
        try:
            await apply(source, load_document(helpers.FLEET))
            await _fill_store(source, random.Random(11))
            for device_id in (101, 102):  # what devices reported of their hardware
                info = f'{{"board": "ESP32", "fw": "1.{device_id}"}}'
                await source.set_hardware_info(device_id, info, 1_767_225_600_000 + device_id)
            built = await aggregated(source)
            recorder = Recorder()
            report = await migrate(source, target, recorder, batch=500)
            assert report.ok, report.mismatches
            # the rollup is not copied: the target answers from the points, then builds its own
            assert await aggregated(target) == await aggregated(target) == built
            assert report.target_before == dict.fromkeys(KINDS, 0)
            assert report.target_after == report.source == await source.counts()
            assert report.copied["history"] == 2997
            assert await dump(target) == await dump(source)
            # the target's live points will never take the key of a copied one
            assert await target.writers() > await source.writers() == 9
            assert [e[1] for e in recorder.events if e[0] == "begin"] == [
                "entities",
                "current values",
                "history",
                "properties",
                "device events",
                "hardware",
            ]
            assert report.copied["hardware"] == 2
            assert await target.hardware_info([101, 102, 103]) == {
                101: '{"board": "ESP32", "fw": "1.101"}',
                102: '{"board": "ESP32", "fw": "1.102"}',
            }
            history_steps = [e[2] for e in recorder.events if e[:2] == ("advance", "history")]
            assert history_steps == [500] * 5 + [497]
            assert ("begin", "history", 2997) in recorder.events

            again = await migrate(source, target, NoProgress(), batch=500)
            assert again.ok, again.mismatches
            assert again.target_before == again.target_after == again.source
            assert await dump(target) == await dump(source)
        finally:
            await target.close()
            await source.close()

    asyncio.run(run())


def test_verification_rules() -> None:
    source = dict.fromkeys(KINDS, 5)
    assert verify(source, dict.fromkeys(KINDS, 0), dict(source)) == []
    # a target that already held rows may hold more than the source
    assert verify(source, {**source, "history": 9}, {**source, "history": 12}) == []
    [missing] = verify(source, dict.fromkeys(KINDS, 0), {**source, "history": 4})
    assert missing.startswith("history:")
    [extra] = verify(source, dict.fromkeys(KINDS, 0), {**source, "properties": 6})
    assert extra.startswith("properties:")
