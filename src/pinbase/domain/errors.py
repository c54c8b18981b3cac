"""Errors raised by domain rules; the API layer maps them to HTTP answers."""


class DomainError(Exception):
    """Base of every rule violation; `str(err)` is one human sentence."""


class Invalid(DomainError):
    """The request is malformed or a value is unacceptable (HTTP 400)."""


class Forbidden(DomainError):
    """The principal lacks a permission (HTTP 403)."""


class NotFound(DomainError):
    """An entity does not exist or is not visible to the principal (HTTP 404)."""


class Mismatch(Invalid):
    """A value does not match its datastream's type."""

    def __init__(self, message: str = "Value doesn't match the Datastream data type.") -> None:
        super().__init__(message)
