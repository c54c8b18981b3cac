"""A 204 is a promise: writes acknowledged before a SIGKILL are all there after a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from helpers import Bearer, Server, apply_fleet, client_token

UPDATE = "/api/v1/organization/device/datastream"
HISTORY = "/api/v1/organization/device/datastream/history"
VALUES = "/api/v2/organization/device/datastreams"
STATUS = 3  # the string datastream `Status` of products 10 and 11: every value is unique text

# One writer per device, so that no two writers share a (device, datastream) history.
DEVICES = (101, 102, 103, 105, 106, 107, 108, 110)
WRITES_PER_DEVICE = 300
KILL_AFTER = 1000  # acknowledgements over all writers; well below the 2400 writes planned


def next_millisecond() -> None:
    """Wait for the wall clock to pass the current millisecond.

    History is keyed by (device, datastream, server timestamp in ms) and a later write at the
    same millisecond replaces an earlier one by design. The server stamps a write before it
    answers, on the same clock, so a writer that waits here between its writes gives each of
    them its own timestamp. This bounds no outcome; it only rules out the documented overwrite.
    """
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= start:
        pass


class Progress:
    """Counts acknowledgements over all writers; `enough` is set at KILL_AFTER."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.enough = threading.Event()

    def acknowledged(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= KILL_AFTER:
                self.enough.set()


class Writer(threading.Thread):
    """Writes distinct values to one device, one after the other, until done or refused."""

    def __init__(self, url: str, token: str, device_id: int, progress: Progress) -> None:
        super().__init__(name=f"writer-{device_id}", daemon=True)
        self.url = url
        self.token = token
        self.device_id = device_id
        self.progress = progress
        self.acknowledged: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:
            for number in range(WRITES_PER_DEVICE):
                value = f"device {self.device_id} write {number}"
                body = {"deviceId": self.device_id, "dataStreamId": STATUS, "value": value}
                try:
                    response = http.post(UPDATE, json=body)
                except httpx.TransportError:
                    return  # the server is gone: this write was never acknowledged
                if response.status_code != 204:
                    self.failures.append(f"{value}: {response.status_code} {response.text}")
                    return
                self.acknowledged.append(value)
                self.progress.acknowledged()
                next_millisecond()


def stored_history(api: Bearer, device_id: int) -> list[str]:
    values: list[str] = []
    page = 0
    while True:
        response = api.get(
            HISTORY,
            deviceId=device_id,
            dataStreamId=STATUS,
            **{"from": 0, "to": 2**62},
            page=page,
            size=1000,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        values += [point["value"] for point in body["content"]]
        if len(body["content"]) < 1000:
            assert body["totalElements"] == len(values)
            return values
        page += 1


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "durable"
    apply_fleet(data_dir)
    running = Server(data_dir).start()
    progress = Progress()
    try:
        token = client_token(running.url)
        writers = [Writer(running.url, token, device, progress) for device in DEVICES]
        for writer in writers:
            writer.start()
        # Decided by count, not by time: SIGKILL once KILL_AFTER writes were acknowledged.
        while not progress.enough.wait(0.05):
            if not any(w.is_alive() for w in writers):
                break
    finally:
        running.kill()
    for writer in writers:
        writer.join(timeout=60)
        assert not writer.is_alive()
    assert [f for w in writers for f in w.failures] == []
    assert progress.enough.is_set()
    # Writes were still streaming when the server died.
    assert progress.count < len(DEVICES) * WRITES_PER_DEVICE

    again = Server(data_dir).start()
    try:
        api = Bearer(again.url, client_token(again.url))
        for writer in writers:
            oldest_first = stored_history(api, writer.device_id)[::-1]
            acknowledged = writer.acknowledged
            missing = set(acknowledged) - set(oldest_first)
            assert not missing, f"device {writer.device_id} lost acknowledged writes: {missing}"
            # In order, and beyond the acknowledged ones at most the one write in flight.
            assert oldest_first[: len(acknowledged)] == acknowledged
            assert len(oldest_first) - len(acknowledged) in (0, 1)
            if oldest_first:
                response = api.get(VALUES, deviceId=writer.device_id, dataStreamIds=STATUS)
                assert response.status_code == 200, response.text
                assert response.json()[0]["value"] == oldest_first[-1]
    finally:
        again.stop()
