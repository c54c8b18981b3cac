"""Secrets: random tokens, their SHA-256 digests, and slow password hashes.

A stored password hash is argon2id of the password itself, or, for a user created with Blynk's
`passwordHash` (the password is never seen), `BLYNK_SCHEME` followed by argon2id of that
pre-hash. Blynk's pre-hash (`blynk_prehash`) is what Blynk's own server computes:
Base64(SHA-256(password ‖ SHA-256(lower-cased e-mail))), the password's UTF-8 bytes first and
the e-mail's digest after them (its `SHA256Util.makeHash`). `verify_user_password` computes the
pre-hash first for such a hash, so the password grant takes the user's plain password either
way.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_ALPHABET = string.ascii_letters + string.digits
DEVICE_TOKEN_LENGTH = 32
BLYNK_SCHEME = "blynk-sha256$"
"""Marks a stored hash of Blynk's pre-hash rather than of the password."""


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


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user is unknown, so both failures take as long."""
    return hash_password(secrets.token_hex(8))


def verify_password(password: str, stored: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def blynk_prehash(email: str, password: str) -> str:
    """Blynk's `passwordHash` of a password (see the module docstring)."""
    salt = hashlib.sha256(email.lower().encode()).digest()
    return base64.b64encode(hashlib.sha256(password.encode() + salt).digest()).decode()


def hash_blynk_prehash(prehash: str) -> str:
    """The stored form of a user's password known only by its Blynk pre-hash."""
    return BLYNK_SCHEME + hash_password(prehash)


def verify_user_password(email: str, password: str, stored: str) -> bool:
    """Whether `password` is the password of the user `email` whose stored hash is `stored`."""
    if stored.startswith(BLYNK_SCHEME):
        return verify_password(blynk_prehash(email, password), stored[len(BLYNK_SCHEME) :])
    return verify_password(password, stored)
