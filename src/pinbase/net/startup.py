"""What a listener needs before the server starts, checked up front so that a mistake is one
line naming the flag or file (`StartupError`), not a traceback after half the server started:
ports that can be bound, TLS files that can be read and hold a matching certificate and key.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Mapping


class StartupError(Exception):
    """The server cannot start; `str(err)` is one line naming the flag or file to change."""


def port_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on now (None: it can), binding it the way the
    listeners do (SO_REUSEADDR, so a port in TIME_WAIT counts as free)."""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{host}:{port} is already in use"
        if exc.errno == errno.EACCES:
            return f"{host}:{port} needs privileges to bind (use a port above 1023)"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def check_ports(host: str, ports: Mapping[str, int]) -> None:
    """Raise `StartupError` naming the first flag (e.g. `--port`) whose port cannot be bound;
    a port of 0 is off and not checked."""
    for flag, port in ports.items():
        if port:
            problem = port_problem(host, port)
            if problem is not None:
                raise StartupError(f"{flag} {port}: {problem}")


def free_port(host: str) -> int:
    """A port the system considers free on `host` now."""
    with socket.create_server((host, 0)) as sock:
        port: int = sock.getsockname()[1]
        return port


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext:
    """The server context of the TLS ports; `StartupError` names the flag and file at fault."""
    if not cert or not key:
        raise StartupError("a TLS port needs both --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise StartupError(f"{flag} {path}: cannot read the file: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise StartupError(
            f"--tls-cert {cert} / --tls-key {key}: not a PEM certificate chain and its matching "
            f"private key ({exc.reason or exc})"
        ) from None
    return context
