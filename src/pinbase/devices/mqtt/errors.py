"""What the MQTT codec raises for bytes it does not accept, with the MQTT 5 reason code that
names the fault (a 3.1.1 connection is closed without one)."""

from __future__ import annotations

from pinbase.devices.mqtt import reasons


class CodecError(Exception):
    """The bytes are not a packet this server accepts; the connection must be closed.
    `reason` is the MQTT 5 reason code of the DISCONNECT (or CONNACK) a v5 client is sent."""

    def __init__(self, message: str, reason: int = reasons.MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason = reason
