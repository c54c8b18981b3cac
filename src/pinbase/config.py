"""Server settings. The CLI fills them from flags, which fall back to `PINBASE_*` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("./pinbase-data")


def database_url(data_dir: Path | None, database: str | None) -> str:
    """`database` if given, else `sqlite:///<data_dir>/pinbase.db` (data_dir: ./pinbase-data)."""
    if database:
        return database
    directory = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    return f"sqlite:///{(directory / 'pinbase.db').resolve()}"


def env_default(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to run."""

    database: str
    body_limit: int = 2 * 1024 * 1024
    """Largest accepted request body in bytes (Blynk's limit: 2 MiB)."""
    org_rate_limit: int = 10_000
    """Organization API requests per minute per organization."""
    import_rate: float = 10.0
    """Import requests per second per device, sustained."""
    import_burst: int = 20
    """Import requests per device allowed at once."""
    access_token_ttl: int = 86_400
    """Access token lifetime in seconds."""
    refresh_token_ttl: int = 30 * 86_400
    """Refresh token lifetime in seconds."""
    host: str = "127.0.0.1"
    """Address the device servers bind (the HTTP server's address)."""
    hardware_port: int | None = None
    """Blynk hardware protocol over plain TCP (None: off)."""
    hardware_tls_port: int | None = None
    """Blynk hardware protocol over TLS (needs tls_cert and tls_key)."""
    mqtt_port: int | None = None
    """MQTT device API over plain TCP (None: off)."""
    mqtt_tls_port: int | None = None
    """MQTT device API over TLS (needs tls_cert and tls_key)."""
    tls_cert: str | None = None
    tls_key: str | None = None
    device_rate: float = 100.0
    """Values per second each device may write (sustained) through the device interfaces."""
    device_burst: int = 1000
    """Values a device may write at once before its rate applies."""
    history_retention_days: int | None = None
    """Drop history older than this many days (checked at start-up and hourly); None: keep."""
    heartbeat: int = 10
    """Seconds between heartbeats a device is assumed to send unless it announces its own."""
