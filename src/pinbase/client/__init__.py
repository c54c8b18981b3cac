"""A typed Python client for pinbase's Organization and Platform API (docs/client.md).

    from pinbase.client import Client, ClientCredentials

    with Client("http://127.0.0.1:8080", ClientCredentials("acme-backend", "secret")) as api:
        api.write_value(101, 1, 22.5)
        print(api.current_values(101))

`AsyncClient` has the same operations, awaited. The client is a part of its own: it imports
nothing of the server.
"""

from pinbase.client.aio import AsyncClient
from pinbase.client.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    NotFound,
    PinbaseError,
    RateLimited,
    TokenError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnexpectedAnswer,
)
from pinbase.client.exchange import Retries
from pinbase.client.models import *  # noqa: F403
from pinbase.client.operations import password_hash
from pinbase.client.sync import Client
from pinbase.client.tokens import ClientCredentials, Password

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientCredentials",
    "Forbidden",
    "NotFound",
    "Password",
    "PinbaseError",
    "RateLimited",
    "Retries",
    "TokenError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnexpectedAnswer",
    "password_hash",
]
