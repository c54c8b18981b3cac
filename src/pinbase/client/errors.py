"""The client's exceptions: an answer the server refused, and a request that got no answer."""

from __future__ import annotations

from collections.abc import Mapping


class PinbaseError(Exception):
    """Everything the client raises."""


class ApiError(PinbaseError):
    """The server answered with an error status.

    `message` is Blynk's `{"error": {"message": ...}}` text, or OAuth's `error_description`
    for the token endpoint (whose `error` code is in `code`)."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str], code: str | None = None
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.headers = dict(headers)
        self.code = code


class BadRequest(ApiError):
    """400: the request was malformed or its values do not fit."""


class Unauthorized(ApiError):
    """401: the access token was refused again after a new one was obtained."""


class Forbidden(ApiError):
    """403: the token lacks the permission."""


class NotFound(ApiError):
    """404: absent, or not visible to the token (the same thing, by design)."""


class RateLimited(ApiError):
    """429 once the retries are spent (or when the wait asked for is beyond the cap)."""


class Unavailable(ApiError):
    """503 (the database) or 507 (a full disk), once the retries are spent."""


class TokenError(ApiError):
    """The token endpoint refused the client's credentials or refresh token."""


class TransportError(PinbaseError):
    """No answer came (connection refused or cut, a timeout). `sent` tells whether the request
    may have reached the server, which is why a write was not sent again."""

    def __init__(self, detail: str, sent: bool) -> None:
        super().__init__(detail)
        self.sent = sent


class UnexpectedAnswer(PinbaseError):
    """A success status whose body is not what the operation answers."""


BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    429: RateLimited,
    503: Unavailable,
    507: Unavailable,
}
