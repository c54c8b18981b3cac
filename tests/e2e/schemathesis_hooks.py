"""A schemathesis check for `test_schemathesis.py` (loaded through `schemathesis.toml`).

Schemathesis's `positive_data_acceptance` expects no 400 for a request its schemas admit. Some
pinbase operations keep Blynk's 400 for refusals that no schema can state: a value that does not
fit its datastream's type, a pin or label the device's product lacks, an unknown device token,
`from` after `to`. Those operations are allowed a 400 for valid data in `schemathesis.toml`, and
this check makes sure such a 400 is one of those refusals and never the server finding fault
with the request's shape, which would mean the document admits what the server refuses.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis

# Why a request that the document admits may still be refused with 400, by message.
SCHEMA_VALID_REFUSALS = [
    re.compile(pattern)
    for pattern in (
        # a value that does not fit the datastream's type (values.py), in a body or a query
        r"Value doesn't match the Datastream data type\.",
        r"values\[\d+\]: Value doesn't match the Datastream data type\.",
        # history: the datastream is named by one of two parameters; the window's order
        r"Query parameter 'dataStreamId' or 'pin' is required\.",
        r"Query parameter 'from' must not be after 'to'\.",
        # the history export's timezone: any IANA name the server's system knows
        r"(?s)Query parameter 'tz': '.*' is not an IANA timezone name \(such as Europe/Kyiv\)\.",
        # aggregated history: known zones, the datastream's type, the number of buckets
        r"Query parameter 'fn' \w+ needs a numeric datastream; .*",
        r"The range from 'from' to 'to' spans more than \d+ buckets of '\w+'\.",
        # batch update: the first row's product decides which labels exist
        r"The product has no datastream with label '.*'\.",
        r"No valid device found in the batch to derive the product from\.",
        # widget properties: each property takes its own format
        r"Invalid value for property '\w+': expected .*\.",
        # the device HTTP API (Blynk's messages): the token and the product's pins
        r"Invalid token\.",
        r"No datastream setup for that pin\.",
        r"No datastream setup for that dataStreamId\.",
        r"No value stored for that pin\.",
        r"Give either 'dataStreamId' or 'pin', not both\.",
        r"Parameter 'value' needs 'dataStreamId' or 'pin'\.",
        r"No value given: .*",
        r"No pin given: .*",
        r"No property given, .*",
        # metadata: one of two parameters, and the product's metafields
        r"Give either 'metaFieldId' or 'metaFieldName', not both\.",
        r"MetaField doesn't exist\.",
        r"Wrong value: .*",
        # webhooks: the fleet file's rules of a definition (provisioning.py)
        r"(url|body): unknown placeholder \{\w+\}\.?",
        r"url: (expected an http:// or https:// URL with a fixed host|not a URL)",
        r"url: must not hold spaces or control characters",
        r"[\w.\[\]]+: (must not be empty|expected at most 256 printable characters)",
        r"auth\.username: must not hold a colon",
        r"(datastreams|events): only for trigger \w+",
        r"id: webhook \d+ (exists already|belongs to another organization)",
        # device events: the product's event codes, and what a logged event allows
        r"Can't find Event with this code in Product template",
        r"Only WARNING and CRITICAL events can be resolved\.",
        r"The event is already resolved\.",
        # users: passwords only over TLS (the suite's server has no HTTPS port), one of two
        # password fields, an e-mail in use
        r"Passwords are accepted only over HTTPS .*",
        r"Give exactly one of 'password' and 'passwordHash'\.",
        r".+ is already in use\.",
    )
]


def _message(body: bytes) -> str | None:
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        message = decoded["error"].get("message")
        return message if isinstance(message, str) else None
    return None


@schemathesis.check
def valid_data_is_refused_only_for_its_meaning(ctx: Any, response: Any, case: Any) -> None:
    """A 400 to schema-valid data names a refusal no schema can state, never a malformed part."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    if case.operation.path == "/oauth2/token":
        return  # OAuth's own errors; schemathesis exempts the token URL itself
    message = _message(response.content)
    if message is None or not any(p.fullmatch(message) for p in SCHEMA_VALID_REFUSALS):
        raise AssertionError(f"Schema-valid request refused as malformed: {message!r}")
