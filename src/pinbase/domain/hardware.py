"""What a device tells of itself: the INTERNAL info of Blynk's hardware protocol, kept as the
Platform API's `hardwareInfo` object.

After login a Blynk library sends `ver`, `h-beat`, `buff-in`, `dev`, `cpu`, `con`, `fw-type`,
`fw`, `build`, `tmpl` (some of them). Only these known keys are kept, under Blynk's names, each
value cut to `MAX_VALUE` characters: the device chooses the text, so what is stored is bounded.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_VALUE = 64
"""Characters kept of each reported value."""

BLYNK_KEYS: Mapping[str, str] = {
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
"""INTERNAL key → `hardwareInfo` field."""


def hardware_info(reported: Mapping[str, str]) -> dict[str, str]:
    """The `hardwareInfo` object of a device's INTERNAL info (empty: nothing worth keeping)."""
    return {name: reported[key][:MAX_VALUE] for key, name in BLYNK_KEYS.items() if key in reported}
