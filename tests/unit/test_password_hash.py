"""The cost of new password hashes is a setting; a stored hash keeps verifying at its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pinbase.app.auth.secrets import hash_password, use_password_hash_memory, verify_password
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
