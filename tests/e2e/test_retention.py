"""History retention: points older than --history-retention-days are gone after a start."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from helpers import Server, apply_fleet, client_token

IMPORT = "/api/v1/organization/device/import/batch"
HISTORY = "/api/v1/organization/device/datastream/history"
DAY = 86_400_000


def test_history_older_than_the_retention_is_dropped_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    apply_fleet(data_dir)
    now = time.time_ns() // 1_000_000
    old = [now - 90 * DAY + i * 1000 for i in range(50)]
    recent = [now - 5 * DAY + i * 1000 for i in range(20)]

    server = Server(data_dir).start()
    try:
        token = client_token(server.url)
        headers = {"Authorization": f"Bearer {token}"}
        points = [{"ts": ts, "value": 1.5} for ts in old + recent]
        response = httpx.post(
            server.url + IMPORT,
            json={"deviceId": 105, "dataStreamId": 1, "values": points},
            headers=headers,
        )
        assert response.status_code == 204
    finally:
        assert server.stop() == 0

    server = Server(data_dir, "--history-retention-days", "30").start()
    try:
        token = client_token(server.url)
        page = httpx.get(
            server.url + HISTORY,
            params={"deviceId": 105, "dataStreamId": 1, "from": 0, "to": now, "size": 1000},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    finally:
        server.stop()
    assert page["totalElements"] == len(recent)
    assert sorted(point["createdAt"] for point in page["content"]) == recent
