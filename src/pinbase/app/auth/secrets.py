"""Secrets: random tokens, their SHA-256 digests, and slow password hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ALPHABET = string.ascii_letters + string.digits
DEVICE_TOKEN_LENGTH = 32


def new_token() -> str:
    """A bearer secret with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


def new_device_token() -> str:
    """A 32-character device auth token, as Blynk devices expect."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(DEVICE_TOKEN_LENGTH))


def digest(secret: str) -> str:
    """How tokens and client secrets are stored: high-entropy secrets need no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(secret: str, stored: str) -> bool:
    return hmac.compare_digest(digest(secret), stored)


def use_password_hash_memory(kib: int) -> None:
    """Make new password hashes take `kib` KiB (argon2id, at least 1024). A stored hash names
    its own cost, so hashes made before keep verifying."""
    global _hasher
    if kib < 1024:
        raise ValueError(f"a password hash needs at least 1024 KiB, not {kib}")
    _hasher = PasswordHasher(memory_cost=kib)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
