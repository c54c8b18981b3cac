"""The console end to end: Debian's chromium, driven by Playwright, against a real `pinbase serve`
with its hardware listener on, a real `blynklib` device, and the Organization API beside them.

Each test opens its own browser context (its own cookies) on one shared server per store. Waits
are Playwright's, bounded by generous deadlines; none decides a result by its length.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import shutil
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from test_hardware import BlynkDevice  # e2e/test_hardware.py: the real blynklib in a thread

from helpers import (
    Api,
    Server,
    apply_fleet_text,
    assert_error,
    client_token,
    free_port,
    wait_for,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000  # bounds a wait, never decides a result
expect.set_options(timeout=WAIT_MS)
CLIENT = ("console-backend", "console-secret-0123456789abcdef")
ADMIN = ("admin@console.test", "console-admin-password-1")
USER = ("user@console.test", "console-user-password-1")
TEMP = ("temp@console.test", "console-temp-password-1")
GUESSED = "guessed@console.test"
NEIGHBOUR = ("admin@other.test", "other-admin-password-1")
SESSION = "/console/session"
OWNED, OTHER, SLIDER_DEVICE, CHARTED = 101, 102, 103, 104
DEVICES = 62  # two pages of 50
TEMPERATURE, RELAY, STATUS, MODE, SETPOINT = 1, 2, 3, 4, 5
HOUR_MS = 3_600_000
UPDATE = "/api/v1/organization/device/datastream"


def token_of(device_id: int) -> str:
    return f"ConsoleTestToken{device_id:016d}"


def fleet() -> str:
    devices: list[dict[str, Any]] = [
        {"id": 100 + n, "name": f"Pump {n:02d}", "product": 10, "token": token_of(100 + n)}
        for n in range(1, DEVICES + 1)
    ]
    devices[0]["owner"] = USER[0]
    document = {
        "organizations": [
            {
                "id": 1,
                "name": "Console Farms",
                "clients": [{"client_id": CLIENT[0], "client_secret": CLIENT[1]}],
                "users": [
                    {"email": ADMIN[0], "password": ADMIN[1], "role": "Admin"},
                    {"email": USER[0], "password": USER[1], "role": "User"},
                    {"email": TEMP[0], "password": TEMP[1], "role": "Staff"},
                    {"email": GUESSED, "password": "guessed-password-12345", "role": "Staff"},
                ],
                "products": [
                    {
                        "id": 10,
                        "name": "Pump Station",
                        "datastreams": [
                            {"id": TEMPERATURE, "pin": "v1", "label": "Temperature",
                             "type": "double", "min": -40, "max": 85, "decimals": 1,
                             "units": "°C"},
                            {"id": RELAY, "pin": "v2", "label": "Relay", "type": "integer",
                             "min": 0, "max": 1},
                            {"id": STATUS, "pin": "v3", "label": "Status", "type": "string"},
                            {"id": MODE, "pin": "v4", "label": "Mode", "type": "enum",
                             "options": {0: "Off", 1: "Eco", 2: "Boost"}},
                            {"id": SETPOINT, "pin": "v5", "label": "Setpoint",
                             "type": "integer"},
                        ],
                        "events": [
                            {"id": 1, "code": "overheat", "name": "Overheat",
                             "type": "WARNING"},
                        ],
                        "metafields": [
                            {"id": 1, "name": "Site", "type": "list",
                             "options": ["North", "South"], "default": "North"},
                            {"id": 2, "name": "Serial", "type": "text", "max": 40},
                        ],
                    }
                ],
                "devices": devices,
            },
            {
                "id": 2,
                "name": "Other Farms",
                "users": [{"email": NEIGHBOUR[0], "password": NEIGHBOUR[1], "role": "Admin"}],
                "products": [{"id": 20, "name": "Neighbour Station", "datastreams": [
                    {"id": 1, "pin": "v1", "label": "Level", "type": "double"}]}],
                "devices": [{"id": 201, "name": "Well", "product": 20}],
            },
        ]
    }  # fmt: skip
    return yaml.safe_dump(document, allow_unicode=True)


@dataclass
class Env:
    server: Server
    api: Api
    https: str
    """The HTTPS port's base URL."""
    ca: Path


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Browser]:
    """Started after the server (on each store): while Playwright's sync API runs, its event
    loop runs in this thread, and the PostgreSQL helpers' asyncio.run could not."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data_dir = tmp_path_factory.mktemp("console")
    ca = trustme.CA()
    ca_file, key_file = data_dir / "ca.pem", data_dir / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(key_file))
    apply_fleet_text(data_dir, fleet())
    https_port = free_port()
    tls = ("--tls-cert", str(key_file), "--tls-key", str(key_file))
    server = Server(data_dir, "--https-port", str(https_port), *tls)
    server.hardware_port = free_port()
    server.start()
    api = Api(server.url, client_token(server.url, CLIENT))
    try:
        yield Env(server, api, f"https://127.0.0.1:{https_port}", ca_file)
    finally:
        api.close()
        server.stop()


class Console:
    """One browser context signed in (or not) on the console, recording console errors."""

    def __init__(self, env: Env, browser: Browser, width: int = 1280) -> None:
        self.env = env
        self.context: BrowserContext = browser.new_context(
            viewport={"width": width, "height": 900}, accept_downloads=True
        )
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def sign_in(self, who: tuple[str, str] = ADMIN) -> Console:
        self.page.goto(self.env.server.url + "/")
        self.page.fill("#email", who[0])
        self.page.fill("#password", who[1])
        self.page.click("button[type=submit]")
        expect(self.page.locator("#sign-out")).to_be_visible()
        return self

    def device(self, device_id: int) -> Page:
        self.page.goto(f"{self.env.server.url}/#/devices/{device_id}")
        expect(self.page.locator("main")).to_have_attribute("data-live", "open")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def console(env: Env, browser: Browser) -> Iterator[Console]:
    opened = Console(env, browser)
    yield opened
    opened.close()


def test_sign_in_list_search_sort_pages_and_sign_out(env: Env, console: Console) -> None:
    page = console.page
    page.goto(env.server.url + "/")
    page.fill("#email", ADMIN[0])
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".signin [role=alert]")).to_have_text("Wrong e-mail or password.")
    console.errors.clear()  # the refused sign-in's 401 is a failed load, as it should be
    page.fill("#password", ADMIN[1])
    page.click("button[type=submit]")
    # the list: every device, two pages, online state and product
    expect(page.locator("#device-count")).to_have_text(f"{DEVICES} devices")
    expect(page.locator("#page-of")).to_have_text("Page 1 of 2")
    rows = page.locator("table.devices tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_contain_text("Pump 01")
    expect(rows.first).to_contain_text("Pump Station")
    expect(rows.first).to_contain_text("Offline")
    page.click("button[aria-label='Next page']")
    expect(page.locator("#page-of")).to_have_text("Page 2 of 2")
    expect(rows).to_have_count(DEVICES - 50)
    # sorting by name, descending, from the column header
    page.click("th button:has-text('Name')")  # already by name: now descending
    expect(page.locator("th[aria-sort=descending]")).to_have_text("Name ▼")
    expect(rows.first).to_contain_text(f"Pump {DEVICES:02d}")
    # search, with the keyboard
    page.focus("#device-search")
    page.keyboard.type("pump 1")
    expect(page.locator("#device-count")).to_have_text("10 devices")  # Pump 10 … 19
    expect(rows.first).to_contain_text("Pump 19")
    # the session cookie: httpOnly, SameSite, not readable by the page
    cookie = next(c for c in console.context.cookies() if c["name"] == "pinbase_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    assert "pinbase_session" not in page.evaluate("document.cookie")
    # signing out revokes the session: the old cookie no longer opens the API
    page.click("#sign-out")
    expect(page.locator("#email")).to_be_visible()
    old = {"pinbase_session": cookie["value"]}
    gone = httpx.get(f"{env.server.url}/api/v1/organization/devices", cookies=old)
    assert gone.status_code == 401
    assert console.errors == []


def test_a_value_written_by_a_device_arrives_on_the_page(env: Env, console: Console) -> None:
    page = console.sign_in().page
    row = page.locator(f"tr[data-device='{OWNED}']")
    expect(row.locator("td.status")).to_have_text("Offline")
    device = BlynkDevice(env.server.hardware_port, token_of(OWNED)).start()
    try:
        expect(row.locator("td.status")).to_have_text("Online")  # the list follows live too
        console.device(OWNED)
        tile = page.locator(f"#ds-{TEMPERATURE}")
        expect(tile.locator(".value")).to_have_text("—")
        expect(page.locator("#online")).to_have_text("Online")
        device.call(lambda blynk: blynk.virtual_write(1, 21.5))
        expect(tile.locator(".value")).to_have_text("21.5 °C")
        device.call(lambda blynk: blynk.virtual_write(3, "door open"))
        expect(page.locator(f"#ds-{STATUS} .value")).to_have_text("door open")
    finally:
        device.stop()
    expect(page.locator("#online")).to_have_text("Offline")
    expect(page.locator("#presence li").first).to_contain_text("Offline")
    assert console.errors == []


def test_controls_write_through_the_api_and_reach_the_device(env: Env, console: Console) -> None:
    page = console.sign_in().device(SLIDER_DEVICE)
    device = BlynkDevice(env.server.hardware_port, token_of(SLIDER_DEVICE)).start()
    try:
        expect(page.locator("#online")).to_have_text("Online")
        # the slider, moved with the keyboard: it starts at its minimum, with no value yet
        slider = page.locator(f"#ds-{TEMPERATURE} input[type=range]")
        slider.focus()
        page.keyboard.press("ArrowRight")
        assert device.next_write() == (TEMPERATURE, ["-39.9"])
        page.keyboard.press("End")
        assert device.next_write() == (TEMPERATURE, ["85.0"])
        page.keyboard.press("ArrowLeft")
        assert device.next_write() == (TEMPERATURE, ["84.9"])
        expect(slider).to_be_focused()  # the echo of the write keeps the control
        # the switch, with the space bar
        relay = page.locator(f"#ds-{RELAY} [role=switch]")
        relay.focus()
        page.keyboard.press("Space")
        assert device.next_write() == (RELAY, ["1"])
        expect(relay).to_have_attribute("aria-checked", "true")
        # the menu, the number and the text input
        page.locator(f"#ds-{MODE} select").select_option(label="Boost")
        assert device.next_write() == (MODE, ["2"])
        page.fill(f"#ds-{SETPOINT} input", "42")
        page.press(f"#ds-{SETPOINT} input", "Enter")
        assert device.next_write() == (SETPOINT, ["42"])
        page.fill(f"#ds-{STATUS} input", "hello")
        page.click(f"#ds-{STATUS} button")
        assert device.next_write() == (STATUS, ["hello"])
    finally:
        device.stop()
    values = env.api.get("/api/v2/organization/device/datastreams", deviceId=SLIDER_DEVICE).json()
    shown = {v["dataStreamId"]: v.get("value") for v in values}
    assert shown[TEMPERATURE] == 84.9 and shown[RELAY] == 1 and shown[MODE] == 2
    assert console.errors == []


def test_widget_properties_shape_the_tiles_live(env: Env, console: Console) -> None:
    page = console.sign_in().device(105)
    prop = "/api/v1/organization/device/datastream/property"

    def put(ds: int, name: str, value: str) -> None:
        body = {"deviceId": 105, "dataStreamId": ds, "property": name, "value": value}
        assert env.api.post(prop, body).status_code == 204

    put(TEMPERATURE, "label", "Water")
    expect(page.locator(f"#ds-{TEMPERATURE} h3")).to_contain_text("Water")
    put(RELAY, "onLabel", "Pumping")
    put(RELAY, "offLabel", "Idle")
    expect(page.locator(f"#ds-{RELAY} .value")).to_have_text("—")
    assert env.api.post(UPDATE, {"deviceId": 105, "dataStreamId": RELAY, "value": 1}).is_success
    expect(page.locator(f"#ds-{RELAY} .value")).to_have_text("Pumping")
    put(SETPOINT, "isDisabled", "true")
    expect(page.locator(f"#ds-{SETPOINT} input")).to_be_disabled()
    put(STATUS, "isHidden", "true")
    expect(page.locator(f"#ds-{STATUS}")).to_be_hidden()
    put(TEMPERATURE, "max", "30")
    expect(page.locator(f"#ds-{TEMPERATURE} input[type=range]")).to_have_attribute("max", "30")
    assert console.errors == []


def test_chart_ranges_and_csv_download(env: Env, console: Console, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    step = 10 * 60_000  # a point every 10 minutes over 100 days
    points = [{"ts": now - n * step, "value": n % 50} for n in range(1, 100 * 24 * 6)]
    batch = "/api/v1/organization/device/import/batch"
    for start in range(0, len(points), 10_000):
        body = {
            "deviceId": CHARTED,
            "dataStreamId": TEMPERATURE,
            "values": points[start : start + 10_000],
        }
        assert env.api.post(batch, body).status_code == 204
    page = console.sign_in().device(CHARTED)
    charts = page.locator("section[data-range]")
    chart = page.locator(f"figure.chart[data-ds='{TEMPERATURE}']")
    expected = {"1h": "1m", "6h": "5m", "1d": "15m", "1w": "1h", "1mo": "1h", "3mo": "day"}
    for key, interval in expected.items():
        page.click(f"button[data-range='{key}']")
        expect(charts).to_have_attribute("data-range", key)
        expect(charts).to_have_attribute("data-loading", "false")
        expect(chart).to_have_attribute("data-interval", interval)
        assert int(chart.get_attribute("data-points") or 0) > 0
        expect(chart.locator("canvas")).to_have_count(1)
        described = re.compile(r"Temperature: \d+ points from [\d.]+ to [\d.]+ °C")
        expect(chart.locator("[role=img]")).to_have_attribute("aria-label", described)
    # a custom range of two days, a week ago
    page.fill("#custom-from", _local(page, now - 9 * 24 * HOUR_MS))
    page.fill("#custom-to", _local(page, now - 7 * 24 * HOUR_MS))
    page.click("button[data-range=custom]")
    expect(charts).to_have_attribute("data-range", "custom")
    expect(charts).to_have_attribute("data-loading", "false")
    expect(chart).to_have_attribute("data-interval", "5m")
    assert int(chart.get_attribute("data-points") or 0) == pytest.approx(2 * 24 * 6, abs=1)
    # the CSV of the range shown: the same points, in the viewer's time zone
    with page.expect_download() as download:
        page.click("#csv")
    saved = tmp_path / "export.csv"
    download.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert len(rows) == pytest.approx(2 * 24 * 6, abs=1)
    assert {r["dataStreamId"] for r in rows} == {str(TEMPERATURE)}
    stamps = [int(r["ts_ms"]) for r in rows]
    assert stamps == sorted(stamps)
    assert now - 9 * 24 * HOUR_MS - 60_000 <= stamps[0] and stamps[-1] <= now - 7 * 24 * HOUR_MS
    assert console.errors == []


def _local(page: Page, ms: int) -> str:
    """`ms` as a datetime-local input's value in the browser's zone."""
    text: str = page.evaluate(
        "ms => new Date(ms - new Date(ms).getTimezoneOffset() * 60e3).toISOString().slice(0, 16)",
        ms,
    )
    return text


def test_timeline_shows_events_live_and_resolves_them(env: Env, console: Console) -> None:
    page = console.sign_in().device(106)
    body = {"deviceId": 106, "eventCode": "overheat", "eventDescription": "Motor at 95 °C"}
    assert env.api.post("/api/v1/organization/device/trigger-event", body).status_code == 204
    item = page.locator("#timeline li.warning").first
    expect(item).to_contain_text("Motor at 95 °C")
    item.locator("input").fill("Fan replaced")
    item.locator("button:has-text('Resolve')").click()
    expect(page.locator("#timeline li.warning").first).to_contain_text("Fan replaced")
    found = env.api.get("/api/v1/organization/device/timeline", deviceId=106).json()
    assert found["content"][0]["isResolved"] and found["content"][0]["resolvedComment"] == (
        "Fan replaced"
    )
    assert console.errors == []


def test_a_user_sees_only_own_devices(env: Env, console: Console) -> None:
    page = console.sign_in(USER).page
    expect(page.locator("#device-count")).to_have_text("1 device")
    expect(page.locator("table.devices tbody tr")).to_have_count(1)
    expect(page.locator("table.devices tbody")).to_contain_text("Pump 01")
    page.goto(f"{env.server.url}/#/devices/{OTHER}")
    expect(page.locator("main [role=alert]")).to_contain_text(
        f"Device with identifier {OTHER} is not found"
    )
    console.errors.clear()  # that 404 is a failed load, as it should be
    page.goto(f"{env.server.url}/#/devices/{OWNED}")
    expect(page.locator("main")).to_have_attribute("data-live", "open")
    assert console.errors == []


def test_the_pages_fit_a_phone(env: Env, browser: Browser) -> None:
    phone = Console(env, browser, width=390)
    try:
        page = phone.sign_in().page
        expect(page.locator("table.devices tbody tr")).to_have_count(50)
        phone.device(OWNED)
        expect(page.locator("section[data-loading=false]")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert phone.errors == []
    finally:
        phone.close()


def _signed_in(base: str, who: tuple[str, str], **options: Any) -> tuple[httpx.Client, str]:
    """An httpx client holding a session cookie, and the session's CSRF token."""
    client = httpx.Client(base_url=base, timeout=30, **options)
    answer = client.post(SESSION, json={"email": who[0], "password": who[1]})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf"]


def test_the_session_api_refuses_bad_sign_ins(env: Env) -> None:
    url = env.server.url + SESSION
    assert httpx.get(url).json() == {"signedIn": False}
    form = httpx.post(url, data={"email": ADMIN[0], "password": ADMIN[1]})
    assert_error(form, 415)  # a form of another site cannot sign anyone in
    for body in (b"{", b"[]", b'{"email": "a@b.c"}', b'{"email": 1, "password": "x"}'):
        sent = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert_error(sent, 400)
    wrong = "Wrong e-mail or password."
    for email, password in ((ADMIN[0], "nope"), ("nobody@console.test", ADMIN[1]),
                            ("x" * 300, "p"), (ADMIN[0], "")):  # fmt: skip
        assert_error(httpx.post(url, json={"email": email, "password": password}), 401, wrong)
    # the failures of one user are throttled like the password grant's, even the right password
    for _ in range(10):
        assert_error(httpx.post(url, json={"email": GUESSED, "password": "guess"}), 401, wrong)
    throttled = httpx.post(url, json={"email": GUESSED, "password": "guessed-password-12345"})
    assert_error(throttled, 429)
    assert "Retry-After" in throttled.headers
    assert "set-cookie" not in throttled.headers


def test_writes_with_the_cookie_need_the_csrf_token(env: Env) -> None:
    client, csrf = _signed_in(env.server.url, ADMIN)
    with contextlib.closing(client):
        me = client.get(SESSION).json()
        assert me["user"]["email"] == ADMIN[0] and me["csrf"] == csrf
        assert "ORG_DEVICES_CONTROL" in me["permissions"]
        body = {"deviceId": 107, "dataStreamId": RELAY, "value": 1}
        for headers in ({}, {"X-CSRF-Token": "0" * 64}):
            refused = client.post(UPDATE, json=body, headers=headers)
            assert_error(refused, 403, "A write with the console's session needs its "
                                       "X-CSRF-Token header.")  # fmt: skip
        assert_error(client.delete(SESSION), 403)
        values = "/api/v2/organization/device/datastreams"
        assert "value" not in env.api.get(values, deviceId=107).json()[RELAY - 1]
        assert client.post(UPDATE, json=body, headers={"X-CSRF-Token": csrf}).status_code == 204
        assert env.api.get(values, deviceId=107).json()[RELAY - 1]["value"] == 1
        # a bearer token speaks for itself, cookie or not, and needs no CSRF token
        bearer = {"Authorization": f"Bearer {env.api.http.headers['Authorization'][7:]}"}
        assert client.post(UPDATE, json=body, headers=bearer).status_code == 204
        assert client.delete(SESSION, headers={"X-CSRF-Token": csrf}).status_code == 204
        assert client.get(SESSION).json() == {"signedIn": False}
        assert_error(client.get("/api/v1/organization/devices"), 401)


def test_the_cookie_is_secure_over_https_and_dies_with_a_role_change(env: Env) -> None:
    tls = ssl.create_default_context(cafile=str(env.ca))
    client, _ = _signed_in(env.https, TEMP, verify=tls)
    with contextlib.closing(client):
        answer = client.post(SESSION, json={"email": TEMP[0], "password": TEMP[1]})
        cookie = answer.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert client.get("/api/v1/organization/devices").status_code == 200
        me = client.get(SESSION).json()["user"]
        role = "/api/v1/organization/users/role"
        assert env.api.http.put(role, params={"userId": me["id"], "roleId": 3}).is_success
        devices = "/api/v1/organization/devices"
        wait_for(
            "the session revoked by the role change",
            lambda: client.get(devices).status_code == 401 or None,
        )
    plain, _ = _signed_in(env.server.url, ADMIN)
    with contextlib.closing(plain):
        answer = plain.post(SESSION, json={"email": ADMIN[0], "password": ADMIN[1]})
        assert "secure" not in answer.headers["set-cookie"].lower()


def test_metadata_is_shown_edited_and_followed_live(env: Env, console: Console) -> None:
    page = console.sign_in().device(108)
    site = page.locator("#metadata dd[data-meta='1']")
    expect(site).to_contain_text("North")  # the default
    site.locator("button").click()
    site.locator("select").select_option("South")
    site.locator("button[type=submit]").click()
    expect(site.locator("select")).to_have_count(0)  # saved: the editor is gone
    expect(site).to_contain_text("South")
    found = env.api.get("/api/v1/organization/device/metafield", deviceId=108).json()
    assert {f["name"]: f.get("value") for f in found} == {"Site": "South", "Serial": None}
    serial = page.locator("#metadata dd[data-meta='2']")
    serial.locator("button").click()
    serial.locator("input").fill("x" * 41)
    serial.locator("button[type=submit]").click()
    expect(page.locator("#toast")).to_contain_text("Serial: The provided value")
    console.errors.clear()  # the refused value's 400 is a failed load, as it should be
    page.keyboard.press("Escape")  # leaves the field unchanged
    expect(serial.locator("input")).to_have_count(0)
    expect(serial).to_contain_text("—")
    body = {"deviceId": 108, "metaFieldId": 2, "newValue": "SN-0042"}
    assert env.api.post("/api/v1/organization/device/metafield", body).status_code == 204
    expect(serial).to_contain_text("SN-0042")  # from the live stream
    assert console.errors == []


def test_a_relative_chart_range_keeps_up_with_time(env: Env, console: Console) -> None:
    console.page.clock.install()  # the page's timers run when the test says
    page = console.sign_in().device(109)
    chart = page.locator(f"figure.chart[data-ds='{TEMPERATURE}']")
    expect(chart).to_have_attribute("data-points", "0")
    expect(chart).to_contain_text("No data in this range.")
    write = {"deviceId": 109, "dataStreamId": TEMPERATURE, "value": 12.5}
    assert env.api.post(UPDATE, write).status_code == 204
    expect(page.locator(f"#ds-{TEMPERATURE} .value")).to_have_text("12.5 °C")  # live
    expect(chart).to_have_attribute("data-points", "0")  # the chart waits for its next turn
    page.clock.fast_forward("00:31")
    expect(chart).to_have_attribute("data-points", "1")
    expect(chart.locator("canvas")).to_have_count(1)
    assert console.errors == []


def test_the_next_user_sees_only_their_organization(env: Env, console: Console) -> None:
    page = console.sign_in().page
    expect(page.locator("table.devices tbody tr").first).to_contain_text("Pump Station")
    page.click("#sign-out")
    page.fill("#email", NEIGHBOUR[0])
    page.fill("#password", NEIGHBOUR[1])
    page.click("button[type=submit]")
    expect(page.locator("#device-count")).to_have_text("1 device")
    row = page.locator("table.devices tbody tr")
    expect(row).to_contain_text("Well")
    expect(row).to_contain_text("Neighbour Station")  # not the first user's products
    assert console.errors == []
