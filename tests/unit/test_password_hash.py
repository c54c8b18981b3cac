"""The cost of new password hashes is a setting; a stored hash keeps verifying at its own."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest

from pinbase.app.auth.secrets import (
    BLYNK_SCHEME,
    blynk_prehash,
    hash_blynk_prehash,
    hash_password,
    use_password_hash_memory,
    verify_password,
    verify_user_password,
)
from pinbase.config import Settings


@pytest.fixture
def restore_cost() -> Iterator[None]:
    yield
    use_password_hash_memory(1024)  # the suite's cost (conftest)


def test_new_hashes_take_the_configured_memory(restore_cost: None) -> None:
    use_password_hash_memory(2048)
    assert "$m=2048," in hash_password("correct horse")
    use_password_hash_memory(1024)
    assert "$m=1024," in hash_password("correct horse")


def test_a_hash_made_at_another_cost_still_verifies(restore_cost: None) -> None:
    use_password_hash_memory(2048)
    stored = hash_password("correct horse")
    use_password_hash_memory(1024)
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)


def test_the_default_is_argon2s_own_and_less_than_a_mebibyte_is_refused() -> None:
    assert Settings().password_hash_memory == 64 * 1024
    with pytest.raises(ValueError, match="at least 1024 KiB"):
        use_password_hash_memory(512)


def test_a_blynk_prehash_is_stored_so_that_the_plain_password_verifies() -> None:
    email, password = "Ann@Example.com", "ann's passphrase"
    # Blynk's SHA256Util.makeHash: SHA-256 over the password, then the e-mail's digest
    salt = hashlib.sha256(b"ann@example.com").digest()
    expected = base64.b64encode(hashlib.sha256(password.encode() + salt).digest()).decode()
    assert blynk_prehash(email, password) == expected
    stored = hash_blynk_prehash(expected)
    assert stored.startswith(BLYNK_SCHEME)
    assert verify_user_password(email, password, stored)
    assert not verify_user_password(email, "another passphrase", stored)
    assert not verify_user_password("bob@example.com", password, stored)
    assert not verify_password(password, stored)  # never verified as a plain hash
    assert verify_user_password(email, password, hash_password(password))
    assert not verify_user_password(email, password, "")  # an invited user: no password yet
