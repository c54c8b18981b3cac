"""Starting and stopping the device-facing listeners configured in `Settings`.

Every listener draws its connections from the process's connection budget (`Budget`, shared
with the HTTP listener) and has an `Admission` of its own, with the per-address cap of the
device ports, and a rate-limited log of what it refuses and cuts off. A plain and a TLS port of
one protocol are two listeners (`hardware`, `hardware-tls`, `mqtt`, `mqtt-tls`): each has its
own per-address count.
"""

from __future__ import annotations

import logging
import ssl
from typing import Protocol

from pinbase.app.services import Services
from pinbase.net.admission import Admission, Budget
from pinbase.net.eventlog import EventLog
from pinbase.net.gate import Gate
from pinbase.net.startup import tls_context


class DeviceServer(Protocol):
    """A listener for one device protocol on one port."""

    @property
    def port(self) -> int: ...

    async def close(self) -> None:
        """Stop accepting, close every device connection, and return once they are gone."""


def device_gate(services: Services, budget: Budget, listener: str) -> Gate:
    """Admission to one device listener within `budget`, logging to `pinbase.<listener>`."""
    admission = Admission(
        listener,
        budget,
        services.settings.device_connections_per_address,
        EventLog.to_logger(logging.getLogger(f"pinbase.{listener}")),
    )
    return Gate(admission)


async def start_device_listeners(services: Services, budget: Budget) -> list[DeviceServer]:
    settings = services.settings
    servers: list[DeviceServer] = []
    listeners: list[tuple[str, int, ssl.SSLContext | None]] = []
    if settings.hardware_port:
        listeners.append(("hardware", settings.hardware_port, None))
    if settings.hardware_tls_port:
        listeners.append(
            (
                "hardware",
                settings.hardware_tls_port,
                tls_context(settings.tls_cert, settings.tls_key),
            )
        )
    if settings.mqtt_port:
        listeners.append(("mqtt", settings.mqtt_port, None))
    if settings.mqtt_tls_port:
        listeners.append(
            ("mqtt", settings.mqtt_tls_port, tls_context(settings.tls_cert, settings.tls_key))
        )
    try:
        for kind, port, context in listeners:
            gate = device_gate(services, budget, kind if context is None else f"{kind}-tls")
            if kind == "hardware":
                from pinbase.devices.hardware.transport import serve_hardware

                servers.append(await serve_hardware(services, settings.host, port, gate, context))
            else:
                from pinbase.devices.mqtt.transport import serve_mqtt

                servers.append(await serve_mqtt(services, settings.host, port, gate, context))
    except BaseException:
        await stop_device_listeners(servers)
        raise
    return servers


async def stop_device_listeners(servers: list[DeviceServer]) -> None:
    for server in servers:
        await server.close()
