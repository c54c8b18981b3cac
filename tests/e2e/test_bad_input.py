"""Hostile input on every endpoint: a clear 4xx with the error body, never 500/422, no write.

Every rejected write is aimed at device 110 (and, for imports, at a timestamp window no accepted
request ever uses); after it, the device's current values, properties and that window's
history must be exactly as before. Each hostile request goes over a fresh connection so that a
server that drops the connection after an error cannot spoil the next case.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from helpers import ACME, Api, Server, assert_error

VALUES = "/api/v2/organization/device/datastreams"
BATCH = "/api/v1/organization/device/datastreams/batch"
HISTORY = "/api/v1/organization/device/datastream/history"
PROPERTIES = "/api/v1/organization/device/datastream/properties"
UPDATE = "/api/v1/organization/device/datastream"
UPDATES = "/api/v1/organization/device/datastreams"
BATCH_UPDATE = "/api/v1/organization/product/devices/batch-update"
IMPORT = "/api/v1/organization/device/import/batch"
PROPERTY = "/api/v1/organization/device/datastream/property"

TARGET = 110
TS = 1_250_000_000_000  # the import window of rejected requests: must stay empty
DAY_MS = 86_400_000
LIMIT = 2 * 1024 * 1024
CHALLENGE = 'Bearer error="invalid_token"'
DEVICE_101_TOKEN = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"

NESTED_ARRAYS = "[" * 100_000 + "]" * 100_000
NESTED_OBJECTS = '{"a":' * 100_000 + "1" + "}" * 100_000
HUGE = str(10**30)
BIG_DIGITS = "9" * 5000  # beyond Python's default int-parsing limit of 4300 digits

POINTS = f'[{{"ts": {TS}, "value": 20.5}}]'
TS_KEY = f'"ts": {TS}'
# Valid bodies of every POST endpoint, all aimed at TARGET; each hostile case breaks one thing.
VALID: dict[str, str] = {
    UPDATE: '{"deviceId": 110, "dataStreamId": 1, "value": 20.5}',
    UPDATES: '{"deviceId": 110, "values": {"1": 20.5}}',
    BATCH_UPDATE: '{"fields": ["deviceId", "Temperature"], "updates": [[110, 20.5]]}',
    IMPORT: f'{{"deviceId": 110, "dataStreamId": 1, "values": {POINTS}}}',
    PROPERTY: '{"deviceId": 110, "dataStreamId": 1, "property": "label", "value": "hostile"}',
}
SHORT = {
    UPDATE: "update",
    UPDATES: "updates",
    BATCH_UPDATE: "batch-update",
    IMPORT: "import",
    PROPERTY: "property",
    VALUES: "values",
    BATCH: "batch",
    HISTORY: "history",
    PROPERTIES: "properties",
}


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(server: Server, tokens: dict[str, str]) -> Iterator[Api]:
    client = Api(server.url, tokens["org"])
    yield client
    client.http.close()


def send(
    server: Server,
    method: str,
    path: str,
    *,
    token: str | None = None,
    content: bytes | Iterator[bytes] | None = None,
    params: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request over a fresh connection."""
    merged = {"Content-Type": "application/json"} if content is not None else {}
    if token is not None:
        merged["Authorization"] = f"Bearer {token}"
    merged.update(headers or {})
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return client.request(method, path, content=content, params=params, headers=merged)  # type: ignore[arg-type]


def snapshot(api: Api) -> tuple[object, ...]:
    """Everything a rejected request aimed at TARGET could have changed."""
    values = api.get(VALUES, deviceId=TARGET).json()
    properties = api.get(PROPERTIES, deviceId=TARGET).json()
    imported = [
        api.get(
            HISTORY, deviceId=TARGET, dataStreamId=ds, **{"from": TS - DAY_MS, "to": TS + DAY_MS}
        ).json()
        for ds in (1, 2, 3)
    ]
    assert all(page["totalElements"] == 0 for page in imported), imported
    return values, properties, imported


@dataclass(frozen=True)
class Case:
    path: str
    body: str | bytes
    status: int = 400


def encoded(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode()


def swap(path: str, old: str, new: str) -> Case:
    """The valid body of `path` with one fragment replaced."""
    body = VALID[path]
    assert old in body, (path, old)
    return Case(path, body.replace(old, new, 1))


UPDATE_TAIL = '"dataStreamId": 1, "value": 20.5'


def on(old: str, new: str) -> Case:
    """The valid op 4 body with its datastream and value replaced."""
    return swap(UPDATE, old, new)


def params_for(cases: dict[str, Case | object]) -> list[object]:
    result = []
    for name, case in cases.items():
        if isinstance(case, Case):
            result.append(pytest.param(case, id=f"{SHORT[case.path]}-{name}"))
        else:
            result.append(case)
    return result


# --- the table of hostile bodies -------------------------------------------------------------


def structural_cases() -> dict[str, object]:
    """Broken JSON and wrong top-level shapes, on every POST endpoint."""
    cases: dict[str, object] = {}
    for path, valid in VALID.items():
        short = SHORT[path]
        shapes: dict[str, str | bytes] = {
            "malformed": valid[: len(valid) // 2],
            "empty": b"",
            "whitespace": b"   \n",
            "array": b"[]",
            "array-of-the-body": f"[{valid}]",
            "string": b'"hello"',
            "null": b"null",
            "number": b"42",
            "true": b"true",
            "not-utf8": b"\xff\xfe\x00{",
            "trailing-garbage": valid + " x",
            "two-objects": valid + valid,
            "single-quotes": valid.replace('"', "'"),
            "unknown-field": valid[:-1] + ', "unexpected": 1}',
            "unknown-field-null": valid[:-1] + ', "admin": null}',
            "nested-extra-field": valid[:-1] + f', "extra": {NESTED_ARRAYS}}}',
        }
        for name, body in shapes.items():
            cases[f"{short}-{name}"] = pytest.param(Case(path, body), id=f"{short}-{name}")
    return cases


def id_cases() -> list[object]:
    """deviceId and dataStreamId of the wrong type or out of int32 range. (A whole number
    written as a float, 110.0, is the integer 110: see test_api_writes.)"""
    bad_ids = {
        "string": '"110"',
        "true": "true",
        "null": "null",
        "fraction": "110.5",
        "int32-max-plus-1": "2147483648",
        "int32-min-minus-1": "-2147483649",
        "huge-int": HUGE,
        "huge-float": "1e400",
        "nan": "NaN",
        "infinity": "Infinity",
        "minus-infinity": "-Infinity",
        "array": "[110]",
        "object": '{"id": 110}',
    }
    cases = []
    for path in (UPDATE, UPDATES, IMPORT, PROPERTY):
        for name, raw in bad_ids.items():
            case = swap(path, '"deviceId": 110', f'"deviceId": {raw}')
            cases.append(pytest.param(case, id=f"{SHORT[path]}-deviceId-{name}"))
        cases.append(
            pytest.param(swap(path, '"deviceId": 110, ', ""), id=f"{SHORT[path]}-deviceId-missing")
        )
    for path in (UPDATE, IMPORT, PROPERTY):
        for name in ("string", "null", "fraction", "int32-max-plus-1", "int32-min-minus-1", "nan"):
            case = swap(path, '"dataStreamId": 1', f'"dataStreamId": {bad_ids[name]}')
            cases.append(pytest.param(case, id=f"{SHORT[path]}-dataStreamId-{name}"))
    return cases


def value_cases() -> list[object]:
    """Non-JSON number literals, out-of-range numbers and deeply nested values."""
    literals = {
        "nan": "NaN",
        "infinity": "Infinity",
        "minus-infinity": "-Infinity",
        "huge-float": "1e400",
        "huge-negative-float": "-1e400",
        "huge-digits": BIG_DIGITS,
        "hex": "0x10",
        "leading-plus": "+1",
        "undefined": "undefined",
    }
    targets = {
        UPDATE: ('"value": 20.5', '"value": {}'),
        UPDATES: ('"1": 20.5', '"1": {}'),
        BATCH_UPDATE: ("[110, 20.5]", "[110, {}]"),
        IMPORT: ('"value": 20.5', '"value": {}'),
    }
    cases: list[object] = []
    for path, (old, template) in targets.items():
        short = SHORT[path]
        for name, raw in literals.items():
            case = swap(path, old, template.format(raw))
            cases.append(pytest.param(case, id=f"{short}-value-{name}"))
        for name, raw in (("nested-arrays", NESTED_ARRAYS), ("nested-objects", NESTED_OBJECTS)):
            case = swap(path, old, template.replace("{}", raw))
            cases.append(pytest.param(case, id=f"{short}-value-{name}"))
    return cases


SPECIFIC: dict[str, Case] = {
    # op 4
    "update-value-missing": swap(UPDATE, ', "value": 20.5', ""),
    "update-integer-fraction": on(UPDATE_TAIL, '"dataStreamId": 2, "value": 22.7'),
    "update-integer-10e30": on(UPDATE_TAIL, f'"dataStreamId": 2, "value": {HUGE}'),
    "update-string-too-long": on(UPDATE_TAIL, f'"dataStreamId": 3, "value": "{"x" * 1025}"'),
    "update-lone-surrogate": on(UPDATE_TAIL, '"dataStreamId": 3, "value": "\\ud800"'),
    "update-enum-not-an-option": on(UPDATE_TAIL, '"dataStreamId": 5, "value": 7'),
    "update-location-out-of-range": on(UPDATE_TAIL, '"dataStreamId": 4, "value": [500, 500]'),
    # op 5
    "updates-values-missing": swap(UPDATES, ', "values": {"1": 20.5}', ""),
    "updates-values-null": swap(UPDATES, '{"1": 20.5}', "null"),
    "updates-values-array": swap(UPDATES, '{"1": 20.5}', "[20.5]"),
    "updates-values-string": swap(UPDATES, '{"1": 20.5}', '"1=20.5"'),
    "updates-values-number": swap(UPDATES, '{"1": 20.5}', "20.5"),
    # op 6
    "batch-fields-missing": swap(BATCH_UPDATE, '"fields": ["deviceId", "Temperature"], ', ""),
    "batch-updates-missing": swap(BATCH_UPDATE, ', "updates": [[110, 20.5]]', ""),
    "batch-fields-string": swap(
        BATCH_UPDATE, '["deviceId", "Temperature"]', '"deviceId,Temperature"'
    ),
    "batch-fields-number": swap(BATCH_UPDATE, '"Temperature"]', "1]"),
    "batch-fields-null-label": swap(BATCH_UPDATE, '"Temperature"]', "null]"),
    "batch-fields-one": swap(BATCH_UPDATE, '["deviceId", "Temperature"]', '["deviceId"]'),
    "batch-fields-device-id-not-first": swap(
        BATCH_UPDATE, '["deviceId", "Temperature"]', '["Temperature", "deviceId"]'
    ),
    "batch-fields-duplicated": swap(
        BATCH_UPDATE,
        '["deviceId", "Temperature"], "updates": [[110, 20.5]]',
        '["deviceId", "Temperature", "Temperature"], "updates": [[110, 20.5, 20.5]]',
    ),
    "batch-fields-unknown-label": swap(BATCH_UPDATE, '"Temperature"]', '"Temperatur"]'),
    "batch-updates-object": swap(BATCH_UPDATE, "[[110, 20.5]]", '{"110": 20.5}'),
    "batch-updates-null": swap(BATCH_UPDATE, "[[110, 20.5]]", "null"),
    "batch-debug-string": swap(BATCH_UPDATE, "]]}", ']], "debug": "yes"}'),
    "batch-debug-null": swap(BATCH_UPDATE, "]]}", ']], "debug": null}'),
    "batch-no-valid-device": swap(
        BATCH_UPDATE, "[[110, 20.5]]", '[[999, 20.5], [null, 1], ["x", 2], [110]]'
    ),
    "batch-device-id-huge": swap(BATCH_UPDATE, "[[110, 20.5]]", f"[[{HUGE}, 20.5]]"),
    "batch-device-id-huge-text": swap(BATCH_UPDATE, "[[110, 20.5]]", f'[["{BIG_DIGITS}", 20.5]]'),
    "batch-device-id-double-minus": swap(BATCH_UPDATE, "[[110, 20.5]]", '[["--110", 20.5]]'),
    "batch-10001-rows": swap(BATCH_UPDATE, "[[110, 20.5]]", json.dumps([[110, 20.5]] * 10_001)),
    # op 7
    "import-values-missing": swap(IMPORT, f', "values": {POINTS}', ""),
    "import-values-object": swap(IMPORT, POINTS, POINTS[1:-1]),
    "import-no-points": swap(IMPORT, POINTS, "[]"),
    "import-point-not-object": swap(IMPORT, POINTS, f"[[{TS}, 20.5]]"),
    "import-point-extra-field": swap(IMPORT, '"value": 20.5}', '"value": 20.5, "unit": "C"}'),
    "import-ts-missing": swap(IMPORT, f"{TS_KEY}, ", ""),
    "import-value-missing": swap(IMPORT, ', "value": 20.5', ""),
    "import-ts-float": swap(IMPORT, TS_KEY, f"{TS_KEY}.5"),
    "import-ts-string": swap(IMPORT, TS_KEY, f'"ts": "{TS}"'),
    "import-ts-null": swap(IMPORT, TS_KEY, '"ts": null'),
    "import-ts-beyond-int64": swap(IMPORT, TS_KEY, '"ts": 9223372036854775808'),
    "import-ts-below-int64": swap(IMPORT, TS_KEY, '"ts": -9223372036854775809'),
    "import-mismatched-value": swap(IMPORT, '"value": 20.5', '"value": "warm"'),
    "import-integer-10e30": Case(
        IMPORT,
        VALID[IMPORT].replace('"dataStreamId": 1', '"dataStreamId": 2').replace("20.5", HUGE),
    ),
    "import-10001-points": swap(
        IMPORT, POINTS, json.dumps([{"ts": TS + i, "value": 1} for i in range(10_001)])
    ),
    # op 8
    "property-unknown": swap(PROPERTY, '"label"', '"sparkle"'),
    "property-number": swap(PROPERTY, '"label"', "7"),
    "property-null": swap(PROPERTY, '"label"', "null"),
    "property-missing": swap(PROPERTY, '"property": "label", ', ""),
    "property-value-201-chars": swap(PROPERTY, '"hostile"', json.dumps("x" * 201)),
    "property-value-number": swap(PROPERTY, '"hostile"', "5"),
    "property-value-null": swap(PROPERTY, '"hostile"', "null"),
    "property-value-missing": swap(PROPERTY, ', "value": "hostile"', ""),
    "property-bad-colour": swap(PROPERTY, '"label", "value": "hostile"', '"color", "value": "#12"'),
    "property-bad-boolean": swap(
        PROPERTY, '"label", "value": "hostile"', '"isHidden", "value": "2"'
    ),
    "property-number-nan": swap(PROPERTY, '"label", "value": "hostile"', '"min", "value": "NaN"'),
}
# Mismatched values are skipped silently by ops 5 and 6 (a 204), but still never written.
SKIPPED_SILENTLY: dict[str, Case] = {
    "updates-integer-10e30": swap(UPDATES, '"1": 20.5', f'"2": {HUGE}'),
    "updates-unknown-datastream": swap(UPDATES, '"1": 20.5', '"99": 20.5'),
    "updates-negative-key": swap(UPDATES, '"1": 20.5', '"-1": 20.5'),
    "updates-non-numeric-key": swap(UPDATES, '"1": 20.5', '"one": 20.5'),
    "batch-integer-10e30": swap(
        BATCH_UPDATE,
        '"Temperature"], "updates": [[110, 20.5]]',
        f'"Humidity"], "updates": [[110, {HUGE}]]',
    ),
    "batch-all-cells-null": swap(BATCH_UPDATE, "[[110, 20.5]]", "[[110, null]]"),
}


@pytest.mark.parametrize(
    "case", [*structural_cases().values(), *id_cases(), *value_cases(), *params_for(SPECIFIC)]
)
def test_hostile_body_is_rejected_and_writes_nothing(
    server: Server, tokens: dict[str, str], api: Api, case: Case
) -> None:
    before = snapshot(api)
    response = send(server, "POST", case.path, token=tokens["org"], content=encoded(case.body))
    assert_error(response, case.status)
    assert snapshot(api) == before


@pytest.mark.parametrize("case", params_for(SKIPPED_SILENTLY))  # type: ignore[arg-type]
def test_unusable_values_are_skipped_and_write_nothing(
    server: Server, tokens: dict[str, str], api: Api, case: Case
) -> None:
    before = snapshot(api)
    response = send(server, "POST", case.path, token=tokens["org"], content=encoded(case.body))
    assert response.status_code == 204, response.text
    assert snapshot(api) == before


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            swap(UPDATES, '"1": 20.5', f'"{BIG_DIGITS}": 20.5'),
            id="updates-huge-key",
        )
    ],
)
def test_huge_datastream_key_is_skipped_or_rejected(
    server: Server, tokens: dict[str, str], api: Api, case: Case
) -> None:
    before = snapshot(api)
    response = send(server, "POST", case.path, token=tokens["org"], content=encoded(case.body))
    assert response.status_code in (204, 400), response.text
    if response.status_code == 400:
        assert_error(response, 400)
    assert snapshot(api) == before


# --- query parameters ------------------------------------------------------------------------

QUERY_CASES: list[object] = []


def _query(path: str, name: str, params: dict[str, object], *marks: pytest.MarkDecorator) -> None:
    QUERY_CASES.append(pytest.param(path, params, id=f"{SHORT[path]}-{name}", marks=marks))


for _name, _raw in {
    "missing": None,
    "empty": "",
    "text": "abc",
    "fraction": "1.5",
    "exponent": "1e2",
    "int32-max-plus-1": "2147483648",
    "int32-min-minus-1": "-2147483649",
    "nan": "NaN",
    "infinity": "Infinity",
    "huge-digits": BIG_DIGITS,
    "nul-byte": "110\x00",
    "underscore": "1_10",
    "plus-sign": "+110",
    "point-zero": "110.0",
}.items():
    for _path in (VALUES, PROPERTIES):
        _query(_path, f"deviceId-{_name}", {} if _raw is None else {"deviceId": _raw})
    _history = {"deviceId": TARGET, "dataStreamId": 1, "from": 0, "to": 1}
    if _raw is None:
        del _history["deviceId"]
    else:
        _history["deviceId"] = _raw
    _query(HISTORY, f"deviceId-{_name}", _history)

for _name, _raw, _marks in [
    ("text", "x", ()),
    ("fraction", "1.5", ()),
    ("nan", "NaN", ()),
    ("int32-max-plus-1", "2147483648", ()),
    ("int32-min-minus-1", "-2147483649", ()),
    ("double-minus", "--1", ()),
    ("huge-digits", BIG_DIGITS, ()),
]:
    for _path in (VALUES, PROPERTIES):
        _query(
            _path, f"dataStreamIds-{_name}", {"deviceId": TARGET, "dataStreamIds": _raw}, *_marks
        )
    _query(BATCH, f"deviceIds-{_name}", {"deviceIds": _raw}, *_marks)
    _query(BATCH, f"dataStreamIds-{_name}", {"deviceIds": "110", "dataStreamIds": _raw}, *_marks)

for _name, _params in {
    "deviceIds-missing": {},
    "deviceIds-empty": {"deviceIds": ""},
    "deviceIds-commas": {"deviceIds": ",,"},
    "deviceIds-eleven": {"deviceIds": ",".join(str(i) for i in range(100, 111))},
    "deviceIds-eleven-repeated": {"deviceIds": [str(i) for i in range(100, 111)]},
    "deviceIds-thousand": {"deviceIds": ",".join(str(i) for i in range(1000))},
}.items():
    _query(BATCH, _name, _params)

_WINDOW = {"deviceId": TARGET, "dataStreamId": 1, "from": 0, "to": 1}
for _name, _changes in {
    "size-0": {"size": 0},
    "size-negative": {"size": -5},
    "size-1001": {"size": 1001},
    "size-huge": {"size": 10**12},
    "size-huge-digits": {"size": BIG_DIGITS},
    "size-fraction": {"size": "2.5"},
    "size-nan": {"size": "NaN"},
    "page-negative": {"page": -1},
    "page-beyond-int32": {"page": 2**31},
    "page-huge": {"page": 10**30},
    "page-text": {"page": "last"},
    "from-after-to": {"from": 2, "to": 1},
    "from-missing": {"from": None},
    "to-missing": {"to": None},
    "from-nan": {"from": "NaN"},
    "to-infinity": {"to": "Infinity"},
    "to-beyond-int64": {"to": 2**63},
    "from-below-int64": {"from": -(2**63) - 1},
    "from-fraction": {"from": "0.5"},
    "datastream-missing": {"dataStreamId": None},
    "datastream-beyond-int32": {"dataStreamId": 2**31},
    "datastream-text": {"dataStreamId": "v1"},
    "order-unknown": {"order": "random"},
}.items():
    _params = {**_WINDOW, **_changes}
    _query(HISTORY, _name, {k: v for k, v in _params.items() if v is not None})


@pytest.mark.parametrize(("path", "params"), QUERY_CASES)
def test_hostile_query_is_400(
    server: Server, tokens: dict[str, str], path: str, params: dict[str, object]
) -> None:
    assert_error(send(server, "GET", path, token=tokens["org"], params=params), 400)


def test_large_page_number_is_an_empty_page(api: Api) -> None:
    response = api.get(HISTORY, **{**_WINDOW, "page": 2**31 - 1, "size": 1000})
    assert response.status_code == 200, response.text
    assert response.json()["content"] == []


# --- authentication --------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", VALUES, {"deviceId": TARGET}),
    ("GET", BATCH, {"deviceIds": str(TARGET)}),
    ("GET", HISTORY, {"deviceId": TARGET, "dataStreamId": 1, "from": 0, "to": 1}),
    ("GET", PROPERTIES, {"deviceId": TARGET}),
    *[("POST", path, None) for path in VALID],
]


def bad_credentials(server: Server, tokens: dict[str, str]) -> dict[str, dict[str, str]]:
    real = tokens["org"]
    tampered = real[:-1] + ("A" if real[-1] != "A" else "B")
    basic = "Basic " + base64.b64encode(":".join(ACME).encode()).decode()
    refresh = httpx.post(
        f"{server.url}/oauth2/token", params={"grant_type": "client_credentials"}, auth=ACME
    ).json()["refresh_token"]
    return {
        "missing": {},
        "empty-bearer": {"Authorization": "Bearer"},
        "garbage": {"Authorization": "Bearer garbage"},
        "forged": {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
        "tampered": {"Authorization": f"Bearer {tampered}"},
        "truncated": {"Authorization": f"Bearer {real[:-4]}"},
        "very-long": {"Authorization": f"Bearer {'a' * 8000}"},
        "device-token": {"Authorization": f"Bearer {DEVICE_101_TOKEN}"},
        "refresh-token": {"Authorization": f"Bearer {refresh}"},
        "basic-client-credentials": {"Authorization": basic},
        "other-scheme": {"Authorization": f"Token {real}"},
        "token-in-query-only": {},
    }


CREDENTIAL_CASES = [
    "missing",
    "empty-bearer",
    "garbage",
    "forged",
    "tampered",
    "truncated",
    "very-long",
    "device-token",
    "refresh-token",
    "basic-client-credentials",
    "other-scheme",
    "token-in-query-only",
]


@pytest.fixture(scope="module")
def credentials(server: Server, tokens: dict[str, str]) -> dict[str, dict[str, str]]:
    return bad_credentials(server, tokens)


@pytest.mark.parametrize("credential", CREDENTIAL_CASES)
@pytest.mark.parametrize(
    ("method", "path", "params"), ENDPOINTS, ids=[f"{m}-{SHORT[p]}" for m, p, _ in ENDPOINTS]
)
def test_bad_credentials_are_401(
    server: Server,
    tokens: dict[str, str],
    api: Api,
    credentials: dict[str, dict[str, str]],
    credential: str,
    method: str,
    path: str,
    params: dict[str, object] | None,
) -> None:
    before = snapshot(api)
    query = dict(params or {})
    if credential == "token-in-query-only":
        query["access_token"] = tokens["org"]
    response = send(
        server,
        method,
        path,
        content=VALID[path].encode() if method == "POST" else None,
        params=query,
        headers=credentials[credential],
    )
    assert_error(response, 401)
    assert response.headers["www-authenticate"] == CHALLENGE
    assert snapshot(api) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", UPDATE), ("GET", UPDATE), ("DELETE", VALUES), ("POST", VALUES), ("PATCH", PROPERTY)],
    ids=["put-update", "get-update", "delete-values", "post-values", "patch-property"],
)
def test_wrong_method_is_405_with_the_error_body(
    server: Server, tokens: dict[str, str], api: Api, method: str, path: str
) -> None:
    before = snapshot(api)
    content = VALID[path].encode() if path in VALID else None
    assert_error(send(server, method, path, token=tokens["org"], content=content), 405)
    assert snapshot(api) == before


# --- body size -------------------------------------------------------------------------------


def oversized(path: str) -> bytes:
    """A syntactically valid body of `path`, just over the 2 MiB limit."""
    if path == UPDATE:
        head, tail = b'{"deviceId": 110, "dataStreamId": 3, "value": "', b'"}'
    elif path == BATCH_UPDATE:
        head, tail = b'{"fields": ["deviceId", "Status"], "updates": [[110, "', b'"]]}'
    else:
        head, tail = (
            f'{{"deviceId": 110, "dataStreamId": 3, "values": [{{"ts": {TS}, "value": "'.encode(),
            b'"}]}',
        )
    return head + b"x" * (LIMIT + 1 - len(head) - len(tail)) + tail


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", [UPDATE, BATCH_UPDATE, IMPORT], ids=["update", "batch", "import"])
def test_body_over_2_mib_is_413(
    server: Server, tokens: dict[str, str], api: Api, path: str, streamed: bool
) -> None:
    body = oversized(path)
    assert len(body) == LIMIT + 1
    before = snapshot(api)
    response = send(
        server, "POST", path, token=tokens["org"], content=chunks(body) if streamed else body
    )
    if streamed:
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413)
    assert snapshot(api) == before


def test_body_of_exactly_2_mib_is_not_413(server: Server, tokens: dict[str, str], api: Api) -> None:
    body = oversized(UPDATE)[1:]  # one byte less: exactly the limit (and no longer valid JSON)
    assert len(body) == LIMIT
    before = snapshot(api)
    response = send(server, "POST", UPDATE, token=tokens["org"], content=body)
    assert_error(response, 400)
    assert snapshot(api) == before


# --- another organization's devices ------------------------------------------------------------

FOREIGN = 201
FOREIGN_MESSAGE = (
    f"Device with identifier {FOREIGN} is not found or belong to another organization."
)
FOREIGN_CASES = [
    pytest.param("GET", VALUES, {"deviceId": FOREIGN}, None, id="values"),
    pytest.param("GET", PROPERTIES, {"deviceId": FOREIGN}, None, id="properties"),
    pytest.param(
        "GET",
        HISTORY,
        {"deviceId": FOREIGN, "dataStreamId": 1, "from": 0, "to": 1},
        None,
        id="history",
    ),
    *[
        pytest.param("POST", path, None, VALID[path].replace("110", str(FOREIGN)), id=SHORT[path])
        for path in (UPDATE, UPDATES, IMPORT, PROPERTY)
    ],
]


@pytest.mark.parametrize(("method", "path", "params", "body"), FOREIGN_CASES)
def test_another_organizations_device_is_404(
    server: Server,
    tokens: dict[str, str],
    method: str,
    path: str,
    params: dict[str, object] | None,
    body: str | None,
) -> None:
    globex = Api(server.url, tokens["globex"])
    try:
        before = (
            globex.get(VALUES, deviceId=FOREIGN).json(),
            globex.get(PROPERTIES, deviceId=FOREIGN).json(),
        )
        response = send(
            server,
            method,
            path,
            token=tokens["org"],
            params=params,
            content=body.encode() if body is not None else None,
        )
        assert assert_error(response, 404) == FOREIGN_MESSAGE
        after = (
            globex.get(VALUES, deviceId=FOREIGN).json(),
            globex.get(PROPERTIES, deviceId=FOREIGN).json(),
        )
        assert after == before
    finally:
        globex.http.close()


def test_another_organizations_device_is_left_out_of_batch_reads(api: Api) -> None:
    response = api.get(BATCH, deviceIds=f"{FOREIGN},{TARGET}")
    assert response.status_code == 200, response.text
    assert [entry["deviceId"] for entry in response.json()] == [TARGET]


def test_batch_update_of_another_organizations_device_is_400(
    server: Server, tokens: dict[str, str], api: Api
) -> None:
    body = VALID[BATCH_UPDATE].replace("110", str(FOREIGN))
    response = send(server, "POST", BATCH_UPDATE, token=tokens["org"], content=body.encode())
    assert_error(response, 400)


# --- NUL characters (PostgreSQL text cannot hold them) ------------------------------------------


def test_nul_characters_are_refused_wherever_they_would_be_stored_or_looked_up(
    server: Server, tokens: dict[str, str], api: Api
) -> None:
    before = snapshot(api)
    body = swap(PROPERTY, '"hostile"', '"a\\u0000b"').body
    response = send(server, "POST", PROPERTY, token=tokens["org"], content=encoded(body))
    assert_error(response, 400)
    device = send(
        server,
        "GET",
        "/external/api/update/property",
        params={"token": DEVICE_101_TOKEN, "pin": "v1", "label": "a\x00b"},
    )
    assert_error(device, 400)
    assert snapshot(api) == before
    for params, auth in [
        ({"grant_type": "client_credentials", "client_id": "a\x00b", "client_secret": "x"}, None),
        ({"grant_type": "password", "username": "a\x00b", "password": "x"}, ACME),
    ]:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.post("/oauth2/token", params=params, auth=auth)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
