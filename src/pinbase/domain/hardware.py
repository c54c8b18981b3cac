"""What a device tells of itself, kept as the Platform API's `hardwareInfo` object.

Over the hardware protocol a Blynk library sends its INTERNAL info after login: `ver` (the
library's version), `h-beat`, `buff-in`, `dev`, `cpu`, `con`, `fw-type`, `fw`, `build`, `tmpl`
(some of them). Over MQTT it publishes `info/mcu`, a JSON object: `ver` (the firmware's
version), `build`, `tmpl`, `type`, `rxbuff`. Only these known keys are kept, under Blynk's
names, each value cut to `MAX_VALUE` characters: the device chooses the text, so what is stored
is bounded.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_VALUE = 64
"""Characters kept of each reported value."""

HARDWARE_KEYS: Mapping[str, str] = {
    "fw": "version",
    "fw-type": "fwType",
    "ver": "blynkVersion",
    "dev": "boardType",
    "build": "build",
    "tmpl": "templateId",
    "cpu": "cpuType",
    "con": "connectionType",
    "h-beat": "heartbeatInterval",
    "buff-in": "buffIn",
}
"""INTERNAL key (hardware protocol) → `hardwareInfo` field."""

MQTT_KEYS: Mapping[str, str] = {
    "ver": "version",
    "build": "build",
    "tmpl": "templateId",
    "type": "boardType",
    "rxbuff": "buffIn",
}
"""`info/mcu` key (MQTT) → `hardwareInfo` field."""


def hardware_info(reported: Mapping[str, object], keys: Mapping[str, str]) -> dict[str, str]:
    """The `hardwareInfo` object of what a device reported (empty: nothing worth keeping):
    the known keys whose value is text or a number."""
    found = {}
    for key, name in keys.items():
        value = reported.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            found[name] = str(value)[:MAX_VALUE]
    return found
