"""The console's device page: first render of a device with 20 datastreams, in the browser.

Run with `.venv/bin/python bench/console.py`. For each store (SQLite in a temp dir, then
PostgreSQL in a throwaway cluster unless BENCH_CONSOLE_POSTGRES=0) it applies a fleet with one
product of 20 datastreams (numbers, a switch, an enum, strings), starts one real
`pinbase serve`, gives every datastream a current value and a widget property, a day of
history to each numeric datastream, and signs in to the console in Debian's chromium (driven
by Playwright, as the tests do).

Then it loads the device page `RUNS` times (a fresh navigation each time, the browser's cache
warm as a returning user's is) and reads, from the page's own performance timeline:

- **first render**: from the HTML's last byte (`responseEnd` of the navigation) to the
  `pinbase:device-rendered` mark, set once every tile is in the document (the session, the
  device, its product and its properties read through the API);
- **charts drawn**: to the moment every chart has its data (the section's `data-loading`
  turns false);
- the baseline, in the same run: from the HTML's last byte to `DOMContentLoaded` (the page's
  scripts parsed and run, before any API call).

Last, with the page open, a device writes `LIVE_WRITES` values through the device HTTP API one
after another; **live** is the time from each write sent to its value in the tile (a
MutationObserver's clock and the writer's are the same machine's wall clock).

Every figure is a median in milliseconds with the 90th percentile; the results go to
bench/results/console.json.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from common import CLIENT
from devices import fleet_server, percentile, results_header
from postgres import on_both_stores

RUNS = 40
DATASTREAMS = 20
DEVICE = 1
EMAIL, PASSWORD = "bench@console.test", "bench-console-password-1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
HOUR_MS = 3_600_000
TOKEN = "BenchConsoleDeviceToken000000001"
LIVE_WRITES = 30
LIVE_DS = 5  # a double
WATCH = """() => {
  const el = document.querySelector("#ds-5 .value");
  window.seen = [];
  new MutationObserver(() => window.seen.push([el.textContent, Date.now()]))
    .observe(el, {childList: true, characterData: true, subtree: true});
}"""


def _datastream(n: int) -> dict[str, Any]:
    kinds: list[dict[str, Any]] = [
        {"type": "double", "min": -40, "max": 85, "decimals": 1, "units": "°C"},
        {"type": "integer", "min": 0, "max": 1},
        {"type": "enum", "options": {0: "Off", 1: "Eco", 2: "Boost"}},
        {"type": "string"},
        {"type": "integer"},
    ]
    return {"id": n, "pin": f"v{n}", "label": f"Stream {n}", **kinds[n % len(kinds)]}


def fleet() -> dict[str, Any]:
    return {
        "organizations": [
            {
                "id": 1,
                "name": "Bench",
                "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                "users": [{"email": EMAIL, "password": PASSWORD, "role": "Admin"}],
                "products": [
                    {
                        "id": 1,
                        "name": "Panel",
                        "datastreams": [_datastream(n) for n in range(1, DATASTREAMS + 1)],
                    }
                ],
                "devices": [{"id": DEVICE, "name": "panel-1", "product": 1, "token": TOKEN}],
            }
        ]
    }


def fill(http: httpx.Client) -> None:
    """A value and a colour for every datastream, a day of history every 5 minutes for the
    numeric ones."""
    now = int(time.time() * 1000)
    for ds in (_datastream(n) for n in range(1, DATASTREAMS + 1)):
        numeric = ds["type"] != "string"
        value: object = 1 if numeric else "running"
        body = {"deviceId": DEVICE, "dataStreamId": ds["id"], "value": value}
        http.post("/api/v1/organization/device/datastream", json=body).raise_for_status()
        prop = {"deviceId": DEVICE, "dataStreamId": ds["id"], "property": "color"}
        prop["value"] = "#1F77B4"
        http.post("/api/v1/organization/device/datastream/property", json=prop).raise_for_status()
        if numeric:
            values = [{"ts": now - n * 300_000, "value": n % 2} for n in range(1, 289)]
            batch = {"deviceId": DEVICE, "dataStreamId": ds["id"], "values": values}
            http.post("/api/v1/organization/device/import/batch", json=batch).raise_for_status()


def stats(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(percentile(samples, 0.90), 1),
        "count": len(samples),
    }


TIMES = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const mark = performance.getEntriesByName("pinbase:device-rendered")[0];
  return {html: nav.responseEnd, dom: nav.domContentLoadedEventEnd, rendered: mark.startTime};
}"""


def browse(url: str) -> dict[str, Any]:
    rendered: list[float] = []
    charted: list[float] = []
    baseline: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(url + "/")
        page.fill("#email", EMAIL)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#sign-out")
        page.goto(f"{url}/#/devices/{DEVICE}")
        for run in range(RUNS + 3):  # the first three warm the cache and the server
            page.reload()  # a new navigation of the device page
            page.wait_for_selector("section[data-loading=false]", timeout=60_000)
            charts_done: float = page.evaluate("performance.now()")
            times = page.evaluate(TIMES)
            if run < 3:
                continue
            if page.locator("#tiles .tile").count() != DATASTREAMS:
                raise RuntimeError("the page shows the wrong number of tiles")
            rendered.append(times["rendered"] - times["html"])
            charted.append(charts_done - times["html"])
            baseline.append(times["dom"] - times["html"])
        live = live_latency(url, page)
        browser.close()
    return {
        "baseline_html_to_dom_content_loaded": stats(baseline),
        "first_render": stats(rendered),
        "charts_drawn_at_most": stats(charted),
        "live_value_on_page": stats(live),
    }


def live_latency(url: str, page: Page) -> list[float]:
    """Milliseconds from a device's write sent (the device HTTP API) to its value shown in the
    tile, by the wall clock both processes share."""
    page.wait_for_selector("main[data-live=open]")
    page.evaluate(WATCH)
    samples = []
    with httpx.Client(base_url=url, timeout=30) as device:
        for n in range(LIVE_WRITES):
            value = 10 + n + 0.5
            sent = time.time() * 1000
            params = {"token": TOKEN, f"v{LIVE_DS}": str(value)}
            device.get("/external/api/update", params=params).raise_for_status()
            shown = f"{value} °C"
            page.wait_for_function("t => window.seen.some(([text]) => text === t)", arg=shown)
            at = page.evaluate("t => window.seen.find(([text]) => text === t)[1]", shown)
            samples.append(at - sent)
    return samples


def measure(url: str, work: Path, log: Path, *flags: str) -> dict[str, Any]:
    with fleet_server(url, fleet(), work, log, *flags) as (server, http):
        fill(http)
        results = browse(server.url)
        print(f"  {results}", flush=True)
        return results


def main() -> None:
    results = results_header(datastreams=DATASTREAMS, runs=RUNS)
    on_both_stores("console", results, measure)


if __name__ == "__main__":
    main()
