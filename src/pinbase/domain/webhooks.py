"""Webhooks without I/O: triggers, placeholders, request bodies, the signature, the backoff.

A webhook is an organization's outbound HTTP request, made when something happens to one of
its devices (its trigger). What happened is kept as a `context` (placeholder name to text);
the request is rendered from the webhook's definition and that context when it is delivered
(`render`), so the outbox holds only the context.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode

import orjson

TRIGGERS: Final = (
    "DEVICE_DATASTREAM_UPDATE",
    "DEVICE_ADDED",
    "DEVICE_DELETED",
    "DEVICE_LOG_EVENT",
)
"""The triggers pinbase fires (Blynk's names); Blynk's others are refused."""
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
CONTENT_TYPES: Final = {
    "JSON": "application/json",
    "PLAIN_TEXT": "text/plain; charset=utf-8",
    "URL_ENCODED_FORM": "application/x-www-form-urlencoded",
}
PLACEHOLDERS: Final = (
    "trigger",
    "org_id",
    "device_id",
    "device_name",
    "datastream_id",
    "pin",
    "value",
    "ts",
    "event_code",
    "event_description",
)
"""Every placeholder name; absent from a context, a placeholder renders as the empty string."""
ALIASES: Final = {"datastream_pin": "pin", "datastream_value": "value"}
"""Other spellings accepted for a placeholder."""
SIGNATURE_HEADER: Final = "X-Pinbase-Signature"
MAX_URL: Final = 512
MAX_BODY: Final = 5 * 1024
"""Limits of a definition (Blynk's): the URL template and the body template, in characters."""

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def unknown_placeholders(template: str) -> list[str]:
    """The placeholders of `template` that are not known names (empty: all are known)."""
    return [
        name
        for name in _PLACEHOLDER.findall(template)
        if name not in PLACEHOLDERS and name not in ALIASES
    ]


def fill(template: str, context: Mapping[str, str], escape: str = "") -> str:
    """`template` with each known `{name}` replaced by its context value; `escape` is how the
    value is quoted: "" as is, "url" percent-encoded (URLs), "json" a JSON string's inside."""

    def value(match: re.Match[str]) -> str:
        name = ALIASES.get(match.group(1), match.group(1))
        if name not in PLACEHOLDERS:
            return match.group(0)
        text = context.get(name, "")
        if escape == "url":
            return quote(text, safe="")
        if escape == "json":
            return orjson.dumps(text).decode()[1:-1]
        return text

    return _PLACEHOLDER.sub(value, template)


@dataclass(frozen=True, slots=True)
class Request:
    """One rendered delivery: what is sent."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def default_body(content_type: str, context: Mapping[str, str]) -> str:
    """The body of a webhook that gives none: every placeholder of the context."""
    if content_type == "URL_ENCODED_FORM":
        return urlencode(sorted(context.items()))
    if content_type == "PLAIN_TEXT":
        return "\n".join(f"{k}={v}" for k, v in sorted(context.items()))
    return orjson.dumps(dict(sorted(context.items()))).decode()


def render(
    method: str,
    url: str,
    content_type: str,
    body: str | None,
    secret: str | None,
    context: Mapping[str, str],
) -> Request:
    """The request of a webhook for one context: placeholders filled (percent-encoded in the
    URL and in a form body, JSON-escaped in a JSON body), the signature header when the webhook
    has a secret. A GET or DELETE sends no body."""
    if body is None:
        text = default_body(content_type, context)
    elif content_type == "JSON":
        text = fill(body, context, "json")
    elif content_type == "URL_ENCODED_FORM":
        text = fill(body, context, "url")
    else:
        text = fill(body, context)
    payload = b"" if method in ("GET", "DELETE") else text.encode()
    headers = {"User-Agent": "pinbase-webhook"}
    if payload:
        headers["Content-Type"] = CONTENT_TYPES[content_type]
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, payload)
    return Request(method, fill(url, context, "url"), headers, payload)


def signature(secret: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256 of the body under the webhook's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether a received signature header is the body's (in constant time)."""
    return hmac.compare_digest(signature(secret, body), header)


@dataclass(frozen=True, slots=True)
class Backoff:
    """When a failed delivery is tried again: `first` seconds after the first failure, doubling
    with each further one up to `longest`; after `attempts` attempts in all it is given up."""

    first: float
    longest: float
    attempts: int

    def delay(self, failures: int) -> float | None:
        """Seconds until the next attempt after `failures` failed ones; None: give up."""
        if failures >= self.attempts:
            return None
        return float(min(self.longest, self.first * 2 ** (failures - 1)))
