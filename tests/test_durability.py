"""A 204 is a promise: writes acknowledged before a SIGKILL are all there after a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from conftest import Api, Server, apply_fleet, client_token

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


class Writer(threading.Thread):
    def __init__(self, url: str, token: str, device_id: int, enough: threading.Event) -> None:
        super().__init__(name=f"writer-{device_id}", daemon=True)
        self.url = url
        self.token = token
        self.device_id = device_id
        self.enough = enough
        self.acknowledged: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as http:
            for number in range(WRITES_PER_DEVICE):
                value = f"device {self.device_id} write {number}"
                try:
                    response = http.post(
                        UPDATE,
                        json={"deviceId": self.device_id, "dataStreamId": STATUS, "value": value},
                    )
                except httpx.TransportError:
                    return  # the server is gone: this write was never acknowledged
                if response.status_code != 204:
                    self.failures.append(f"{value}: {response.status_code} {response.text}")
                    return
                self.acknowledged.append(value)
                counter.tick(self.enough)
                next_millisecond()


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def tick(self, enough: threading.Event) -> None:
        with self.lock:
            self.count += 1
            if self.count >= KILL_AFTER:
                enough.set()


counter = Counter()


def stored_history(api: Api, device_id: int) -> list[str]:
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
    try:
        token = client_token(running.url)
        enough = threading.Event()
        writers = [Writer(running.url, token, device, enough) for device in DEVICES]
        for writer in writers:
            writer.start()
        # Decided by count, not by time: kill once KILL_AFTER writes were acknowledged.
        finished = [w for w in writers if not w.is_alive()]
        while not enough.wait(0.01):
            finished = [w for w in writers if not w.is_alive()]
            assert len(finished) < len(writers), "every writer stopped before the kill"
        running.kill()
    finally:
        if running.process is not None and running.process.poll() is None:
            running.kill()
    for writer in writers:
        writer.join(timeout=60)
        assert not writer.is_alive()
    assert [f for w in writers for f in w.failures] == []
    acknowledged = sum(len(w.acknowledged) for w in writers)
    assert acknowledged >= KILL_AFTER
    # Writes were still streaming when the server died.
    assert acknowledged < len(DEVICES) * WRITES_PER_DEVICE

    again = Server(data_dir).start()
    try:
        api = Api(again.url, client_token(again.url))
        for writer in writers:
            stored = stored_history(api, writer.device_id)
            missing = [v for v in writer.acknowledged if v not in set(stored)]
            assert missing == [], f"device {writer.device_id} lost acknowledged writes"
            # Newest first, and nothing beyond what was sent (at most the in-flight write).
            assert stored[: len(writer.acknowledged)][::-1] == writer.acknowledged or (
                stored[1 : len(writer.acknowledged) + 1][::-1] == writer.acknowledged
            )
            assert len(stored) - len(writer.acknowledged) in (0, 1)
            # The current value is the newest stored write.
            response = api.get(VALUES, deviceId=writer.device_id, dataStreamIds=STATUS)
            assert response.status_code == 200, response.text
            if stored:
                assert response.json()[0]["value"] == stored[0]
    finally:
        again.stop()
