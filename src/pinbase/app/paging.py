"""Blynk's pages: `{"totalElements": n, "content": [...]}`, `page` 0-based, `size` 1..1000."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pinbase.domain.errors import Invalid
from pinbase.domain.model import INT32_MAX

T = TypeVar("T")
MAX_SIZE = 1000
DEFAULT_SIZE = 50


@dataclass(frozen=True, slots=True)
class Page:
    number: int = 0
    size: int = DEFAULT_SIZE
    max_size: int = MAX_SIZE

    def __post_init__(self) -> None:
        if not 0 <= self.number <= INT32_MAX:
            raise Invalid(f"'page' must be between 0 and {INT32_MAX}.")
        if not 1 <= self.size <= self.max_size:
            raise Invalid(f"'size' must be between 1 and {self.max_size}.")

    @property
    def offset(self) -> int:
        return self.number * self.size


def page_of(items: Sequence[T], page: Page, shown: Callable[[T], Any]) -> dict[str, Any]:
    """The page of `items` (already in order), each shown by `shown`."""
    chosen = items[page.offset : page.offset + page.size]
    return {"totalElements": len(items), "content": [shown(item) for item in chosen]}
