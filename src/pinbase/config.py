"""Server settings, each declared once: type, default, flag, environment variable and help.

The `serve` command's options and the configuration table of docs/operations.md are generated
from these declarations (a test holds the document to them); flags win over `PINBASE_*`
variables, which win over the defaults here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

DEFAULT_DATA_DIR = Path("./pinbase-data")
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True)
class Option:
    """How one setting is given on the command line and in the environment."""

    help: str
    shown_default: str | None = None
    """The default as the documentation shows it, when the value itself does not say it well."""
    minimum: int | None = None
    """The smallest value accepted; a smaller one is refused on the command line."""

    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @staticmethod
    def env(name: str) -> str:
        return "PINBASE_" + name.upper()


def setting(
    default: Any, help: str, shown_default: str | None = None, minimum: int | None = None
) -> Any:
    return field(default=default, metadata={"option": Option(help, shown_default, minimum)})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a server needs to run. A port of 0 (or a retention of 0 days) means off."""

    host: str = setting("127.0.0.1", "Address the HTTP and device listeners bind.")
    port: int = setting(8080, "HTTP port (Organization API, device HTTP API, docs).")
    https_port: int = setting(
        0,
        "HTTPS port serving the same API over TLS (needs --tls-cert and --tls-key); the routes "
        "that take passwords answer only here. 0: off.",
    )
    data_dir: Path = setting(DEFAULT_DATA_DIR, "Directory of the embedded SQLite database.")
    database: str | None = setting(
        None, "Database URL: sqlite:///FILE or postgresql://…", "sqlite:///<data-dir>/pinbase.db"
    )
    body_limit: int = setting(
        2 * 1024 * 1024, "Largest request body in bytes; a larger one is answered 413."
    )
    max_connections: int = setting(
        0,
        "Open connections in all, HTTP and device ports together, before new ones are closed "
        "at once; 0: the fd limit less a tenth, which is also the most allowed.",
    )
    max_connections_per_address: int = setting(
        256,
        "Open HTTP connections per client address (IPv6: per /64); 0: no per-address cap "
        "(behind a reverse proxy).",
    )
    max_header_bytes: int = setting(
        16 * 1024, "Largest request line and headers in bytes; a larger head is answered 431."
    )
    header_timeout: float = setting(
        10.0, "Seconds for a request's head to arrive, from its first byte (then 408, closed)."
    )
    idle_timeout: float = setting(
        15.0, "Seconds an HTTP connection may wait for its first or next request before closing."
    )
    org_rate_limit: int = setting(
        10_000, "Organization API requests per minute per organization (then 429)."
    )
    import_rate: float = setting(10.0, "Import requests per second per device, sustained.")
    import_burst: int = setting(20, "Import requests per device allowed at once.")
    access_token_ttl: int = setting(86_400, "Access token lifetime in seconds.")
    refresh_token_ttl: int = setting(30 * 86_400, "Refresh token lifetime in seconds.")
    session_ttl: int = setting(
        7 * 86_400, "Console session lifetime in seconds, from sign-in.", minimum=60
    )
    secure_cookies: bool = setting(
        False,
        "Mark the console's session cookie Secure on plain HTTP too: behind a reverse proxy "
        "that terminates TLS. Over the HTTPS port it always is.",
    )
    auth_failure_window: float = setting(
        600.0,
        "Seconds in which a spent budget of failed token requests (below) is regained; "
        "0: never (until restart).",
    )
    auth_client_failures: int = setting(
        20,
        "Failed authentications of one client allowed at once and per --auth-failure-window; "
        "then /oauth2/token answers 429 for that client. 0: no limit.",
    )
    auth_user_failures: int = setting(
        10,
        "Failed password logins of one user (an e-mail within an organization) allowed at once "
        "and per --auth-failure-window; then 429 for that user. 0: no limit.",
    )
    auth_address_failures: int = setting(
        50,
        "Failed token requests from one address (IPv6: one /64) allowed at once and per "
        "--auth-failure-window; then 429 for that address. 0: no limit.",
    )
    auth_failure_logs: int = setting(
        60, "Failed token requests logged per minute at most, the rest counted; 0: none."
    )
    password_hash_slots: int = setting(
        0,
        "Password hashes computed at once (each holds --password-hash-memory while it runs); "
        "0: one per CPU.",
    )
    password_hash_memory: int = setting(
        64 * 1024,
        "KiB of memory each new password hash (argon2id) takes, at least 1024; a stored hash "
        "keeps the cost it was made with. Lower it on small machines.",
        minimum=1024,
    )
    password_hash_queue: int = setting(
        32, "Password logins that may wait for a hash slot; more are answered 503 at once."
    )
    hardware_port: int = setting(8442, "Blynk hardware protocol over TCP; 0: off.")
    hardware_tls_port: int = setting(
        0, "Blynk hardware protocol over TLS (needs --tls-cert and --tls-key); 0: off."
    )
    mqtt_port: int = setting(1883, "MQTT device API over TCP; 0: off.")
    mqtt_tls_port: int = setting(
        0, "MQTT device API over TLS (needs --tls-cert and --tls-key); 0: off."
    )
    tls_cert: str | None = setting(
        None, "PEM certificate chain for the TLS ports (HTTPS and devices)."
    )
    tls_key: str | None = setting(None, "PEM private key for the TLS ports.")
    device_connections_per_address: int = setting(
        256,
        "Open connections per client address (IPv6: per /64) on each device port; 0: no "
        "per-address cap (many devices behind one NAT address).",
    )
    device_login_timeout: float = setting(
        10.0,
        "Seconds a device connection has to log in (hardware LOGIN, MQTT CONNECT) before it is "
        "closed; on a TLS port as long again for the TLS handshake.",
    )
    device_login_bytes: int = setting(
        4096,
        "Bytes a device connection may send until its login is accepted, the login included; "
        "more, or a larger LOGIN or CONNECT, closes it.",
    )
    device_rate: float = setting(
        100.0, "Values per second each device may write through the device interfaces."
    )
    device_burst: int = setting(1000, "Values a device may write at once before its rate applies.")
    heartbeat: int = setting(
        10, "Seconds between heartbeats a device is assumed to send until it announces its own."
    )
    history_retention_days: int = setting(
        0, "Drop history older than this many days, at start-up and hourly; 0: keep all."
    )
    webhook_poll: float = setting(
        1.0, "Seconds between looks at the webhook outbox for due deliveries."
    )
    webhook_timeout: float = setting(
        10.0, "Seconds a webhook delivery may take, connecting and answering, before it fails."
    )
    webhook_retry_first: float = setting(
        10.0, "Seconds before a failed webhook delivery is tried again; doubles per failure."
    )
    webhook_retry_longest: float = setting(
        3600.0, "Longest wait in seconds between two attempts of a webhook delivery."
    )
    webhook_attempts: int = setting(
        10, "Attempts of a webhook delivery before it is given up (logged as failed).", minimum=1
    )
    webhook_rate: int = setting(
        10, "Deliveries per minute per webhook (Blynk: 10); more wait in the outbox.", minimum=1
    )
    webhook_log_days: int = setting(7, "Days the webhook delivery log is kept; 0: forever.")
    invitation_days: int = setting(
        7, "Days an invitation to an organization may be accepted.", minimum=1
    )
    smtp_url: str | None = setting(
        None,
        "SMTP server for e-mail notifications: smtp://[user:password@]host[:port] (STARTTLS "
        "when offered; credentials only over TLS) or smtps://… (TLS from the start); unset: "
        "no mails.",
    )
    smtp_from: str = setting("pinbase@localhost", "Sender address of notification mails.")
    smtp_ca: str | None = setting(
        None,
        "PEM file of the CA certificates the SMTP server's certificate is checked against (a "
        "private mail relay); unset: the system's.",
    )
    log_level: LogLevel = setting("info", "Log level: " + ", ".join(get_args(LogLevel)) + ".")
    log_format: LogFormat = setting(
        "text",
        "Log lines as text (timestamp, level, logger, message) or json (one object per line); "
        "docs/cli.md describes both.",
    )

    @property
    def database_url(self) -> str:
        """`database` if given, else the SQLite file in `data_dir`."""
        return database_url(self.data_dir, self.database)


def database_url(data_dir: Path | None, database: str | None) -> str:
    """`database` if given, else `sqlite:///<data_dir>/pinbase.db` (data_dir: ./pinbase-data)."""
    if database:
        return database
    directory = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    return f"sqlite:///{(directory / 'pinbase.db').resolve()}"


@dataclass(frozen=True, slots=True)
class Declared:
    """One setting as the command line and the documentation present it."""

    name: str
    type: Any
    default: Any
    option: Option

    @property
    def flag(self) -> str:
        return Option.flag(self.name)

    @property
    def env(self) -> str:
        return Option.env(self.name)

    @property
    def shown_default(self) -> str:
        if self.option.shown_default is not None:
            return f"`{self.option.shown_default}`"
        if self.default is None:
            return "none"
        return f"`{self.default}`"


def declared() -> list[Declared]:
    """Every setting, in declaration order."""
    hints = {f.name: f.type for f in dataclasses.fields(Settings)}
    return [
        Declared(f.name, hints[f.name], f.default, f.metadata["option"])
        for f in dataclasses.fields(Settings)
    ]


def markdown_table() -> str:
    """The configuration table of docs/operations.md."""
    lines = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for item in declared():
        lines.append(
            f"| `{item.flag}` | `{item.env}` | {item.shown_default} | {item.option.help} |"
        )
    return "\n".join(lines) + "\n"
