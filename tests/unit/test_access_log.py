"""The access log's redaction of secrets and the JSON log lines."""

from __future__ import annotations

import json
import logging

from pinbase.http.access import redacted_path, redacted_query
from pinbase.net.logformat import JsonFormatter, TextFormatter


def test_secret_parameters_are_redacted_and_the_others_kept() -> None:
    query = "token=abc&v1=3&grant_type=password&password=pw&client_secret=s&Refresh_Token=r"
    assert redacted_query(query) == (
        "token=[redacted]&v1=3&grant_type=password&password=[redacted]"
        "&client_secret=[redacted]&Refresh_Token=[redacted]"
    )


def test_an_encoded_name_or_a_bare_part_is_redacted_whole() -> None:
    assert redacted_query("to%6Ben=abc&x=1") == "[redacted]=[redacted]&x=1"
    assert redacted_query("abc&x=1") == "abc=[redacted]&x=1"


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("pinbase.access", logging.INFO, __file__, 1, message, args, None)
    made.fields = fields
    return made


def test_a_token_shaped_first_path_segment_is_redacted() -> None:
    token = "f3Kp0cQm9Zt1Yx7Lw2Nv5Rb8Hs4Jd6Ga"
    assert redacted_path(f"/{token}/get/V1") == "/[redacted]/get/V1"
    assert redacted_path(f"/{token}") == "/[redacted]"
    assert redacted_path("/a_b-" + token[4:] + "/x") == "/[redacted]/x"
    for kept in (f"/{token}X/get", f"/x/{token}/get", f"/{token[:31]}/get", "/external/api/get"):
        assert redacted_path(kept) == kept


def test_json_lines_carry_the_message_and_the_fields() -> None:
    line = JsonFormatter().format(record("GET %s %d", "/x", 200, method="GET", status=200))
    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["message"] == "GET /x 200" and parsed["status"] == 200
    assert parsed["level"] == "INFO" and parsed["logger"] == "pinbase.access"
    assert parsed["ts"].endswith("Z")


def test_text_lines_start_with_a_utc_timestamp() -> None:
    made = record("hello")
    made.created, made.msecs = 0.0, 5.0
    assert TextFormatter().format(made) == "1970-01-01T00:00:00.005Z INFO pinbase.access: hello"
