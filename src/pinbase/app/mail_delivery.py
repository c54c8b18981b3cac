"""Sending an e-mail notification: one outbox row (`pinbase.app.notifications`) to the SMTP
server of `--smtp-url`, with the standard library's smtplib in a worker thread.

`smtp://host[:port]` (port 25 by default) upgrades with STARTTLS when the server offers it;
`smtps://host[:port]` (465) speaks TLS from the start; certificates are verified (against
`--smtp-ca` when given). A user and
password in the URL log in, and only over TLS: a server without STARTTLS is never sent them
(the attempt fails and is retried). The log and the delivery log name the host and what
happened, never the credentials or the mail.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal
from urllib.parse import unquote, urlsplit

import orjson

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


@dataclass(frozen=True, slots=True)
class SmtpServer:
    implicit_tls: bool
    host: str
    port: int
    username: str | None
    password: str | None
    sender: str
    tls: ssl.SSLContext
    """Checks the server's certificate: against `--smtp-ca` when given, else the system's CAs."""

    def __repr__(self) -> str:  # never the password
        return f"SmtpServer({'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port})"


def parse_smtp_url(url: str, sender: str, ca_file: str | None = None) -> SmtpServer:
    """The server of an smtp:// or smtps:// URL; ValueError (without the URL) when malformed,
    or when `ca_file` is not a readable PEM file of certificates."""
    problem = "--smtp-url must be smtp://[user:password@]host[:port] or smtps://…"
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(problem)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    try:
        tls = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        problem = f"--smtp-ca {ca_file}: not a readable PEM file of certificates ({exc})"
        raise ValueError(problem) from None
    return SmtpServer(
        parts.scheme == "smtps", parts.hostname, port, username, password, sender, tls
    )


def message(server: SmtpServer, context: str) -> EmailMessage:
    """The mail of an outbox row's context; KeyError, TypeError or ValueError when unusable."""
    fields = orjson.loads(context)
    to = fields["to"]
    if not isinstance(to, list) or not to or not all(isinstance(a, str) for a in to):
        raise ValueError("no recipients")
    mail = EmailMessage()
    mail["From"] = server.sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = str(fields["subject"])
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain=server.sender.rpartition("@")[2] or None)
    mail.set_content(str(fields["body"]))
    return mail


def _send(server: SmtpServer, mail: EmailMessage, timeout: float) -> str:
    tls = server.tls
    client: smtplib.SMTP
    if server.implicit_tls:
        client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=tls)
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    with client:
        client.ehlo()
        secure = server.implicit_tls
        if not secure and client.has_extn("starttls"):
            client.starttls(context=tls)
            client.ehlo()
            secure = True
        if server.username is not None:
            if not secure:
                return "refused: the server offers no STARTTLS, credentials not sent"
            client.login(server.username, server.password or "")
        refused = client.send_message(mail)
    if refused:
        return f"sent, {len(refused)} recipient(s) refused"
    return ""


Outcome = Literal["sent", "retry", "failed"]
"""Sent; not sent, to be tried again; never to be sent (the row is unusable)."""


async def send_mail(server: SmtpServer, context: str, timeout: float) -> tuple[Outcome, str]:
    """Send one notification: (outcome, what happened in a few words, without secrets)."""
    try:
        mail = message(server, context)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return "failed", f"unrenderable ({type(exc).__name__})"
    try:
        async with asyncio.timeout(timeout * 4):  # connect, TLS, login, send: each bounded
            problem = await asyncio.to_thread(_send, server, mail, timeout)
    except TimeoutError:
        return "retry", f"no answer within {timeout * 4:g} s"
    except smtplib.SMTPResponseException as exc:
        return "retry", f"SMTP {exc.smtp_code}"
    except (smtplib.SMTPException, OSError) as exc:
        return "retry", f"mail failed ({type(exc).__name__})"
    if problem.startswith("refused"):
        return "retry", problem
    return "sent", problem or "sent"
