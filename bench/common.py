"""Helpers shared by the benchmarks (bench/run.py on SQLite, bench/postgres.py on PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent
if str(ROOT.parent / "src") not in sys.path:
    sys.path.insert(0, str(ROOT.parent / "src"))

DEVICES = 10_000
REPEATS = 7
CLIENT = ("bench-backend", "bench-secret-0123456789abcdef")
WRK_SECONDS = 10
WRK_CONNECTIONS = 64


def fleet() -> dict[str, Any]:
    return {
        "organizations": [
            {
                "id": 1,
                "name": "Bench",
                "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                "products": [
                    {
                        "id": 1,
                        "name": "Meter",
                        "datastreams": [
                            {"id": 1, "pin": "v1", "label": "Temperature", "type": "double"},
                            {"id": 2, "pin": "v2", "label": "Humidity", "type": "integer"},
                        ],
                    }
                ],
                "devices": [
                    {"id": i, "name": f"meter-{i}", "product": 1} for i in range(1, DEVICES + 1)
                ],
            }
        ]
    }


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def timed(fn: Callable[[], object], repeats: int = REPEATS) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
    }


def log_problems(log: Path) -> list[str]:
    """The first warnings, errors and tracebacks a server wrote to `log`."""
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback"))
    ][:20]


@contextlib.contextmanager
def workdir(prefix: str, results: dict[str, Any]) -> Iterator[tuple[Path, Path]]:
    """A temporary directory for one benchmark and its servers' log (`work/server.log`): should
    the benchmark fail, the log's tail is printed; once it is done, the log's problems go into
    `results`; the directory is removed either way."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # the postgres user owns a cluster directory inside
    log = work / "server.log"
    try:
        yield work, log
        results["server_log_problems"] = log_problems(log)
    except BaseException:
        if log.exists():
            print(log.read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_results(name: str, results: dict[str, Any], started: float) -> None:
    """Add the run time and the load average at the end; write `results/<name>.json`."""
    results["runtime_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Server:
    """A real `pinbase serve` process on a loopback port; `store` selects the database."""

    def __init__(self, port: int, *store: str, log: Path | None = None) -> None:
        """`log`: a file to append the server's output to (default: this process's)."""
        self.url = f"http://127.0.0.1:{port}"
        with contextlib.ExitStack() as files:
            output = None if log is None else files.enter_context(log.open("ab"))
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "pinbase", "serve", "--port", str(port), *store,
                    "--log-level", "warning",
                    "--org-rate-limit", "1000000000", "--import-rate", "1000000",
                    "--import-burst", "1000000", "--hardware-port", "0", "--mqtt-port", "0",
                ],
                stdout=output,
                stderr=output,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with status {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def wrk_command(
    url: str,
    script: Path | None,
    connections: int = WRK_CONNECTIONS,
    threads: int = 2,
    seconds: int = WRK_SECONDS,
) -> list[str]:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    return [*command, url]


def requests_per_second(output: str) -> float:
    """The Requests/sec figure of a wrk report."""
    for line in output.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(output)


def wrk(url: str, script: Path | None) -> float:
    """Requests per second reported by wrk over keep-alive connections."""
    output = subprocess.run(
        wrk_command(url, script), capture_output=True, text=True, check=True
    ).stdout
    return requests_per_second(output)


def batch_rows(count: int) -> list[list[Any]]:
    """Rows of a batch update over devices 1..count: [deviceId, Temperature, Humidity]."""
    return [[d, 20 + d % 10 + 0.5, d % 100] for d in range(1, count + 1)]


def batch_update(http: httpx.Client, rows: list[list[Any]]) -> Callable[[], None]:
    """One Organization API batch update of `rows`, the body encoded once, ready to time."""
    body = json.dumps({"fields": ["deviceId", "Temperature", "Humidity"], "updates": rows})

    def send() -> None:
        response = http.post(
            "/api/v1/organization/product/devices/batch-update",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 204, response.text

    return send
