"""Server-sent events without I/O: lines in, `LiveEvent`s out."""

from __future__ import annotations

from typing import Any

import msgspec

from pinbase.client.models import LiveEvent


class EventParser:
    """Reads the live stream line by line (without line ends); comments are skipped."""

    def __init__(self) -> None:
        self.kind = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> LiveEvent | None:
        """The event that `line` completes, if it is the blank line ending one."""
        if not line:
            kind, data = self.kind, self.data
            self.kind, self.data = "message", []
            if not data:
                return None
            decoded: Any = msgspec.json.decode("\n".join(data))
            return LiveEvent(kind=kind, data=decoded if isinstance(decoded, dict) else {})
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self.kind = value
        elif name == "data":
            self.data.append(value)
        return None
