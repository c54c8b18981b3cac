"""History paging shared by every backend: counting by bucket and skipping whole buckets.

Backends keep, per series, the number of points in each bucket of 2**BUCKET_SHIFT ms (about 70
minutes). A range [start, end] is cut into pieces: the partial buckets at both ends (counted in
the index) and the whole buckets between them (counted from the bucket table). The total is
their sum, and a deep page skips whole pieces instead of walking an OFFSET through them.
"""

from __future__ import annotations

from collections.abc import Sequence

BUCKET_SHIFT = 22

Piece = tuple[int, int, int]
"""(low ts, high ts, points), inclusive bounds."""


def bucket_bounds(bucket: int) -> tuple[int, int]:
    return bucket << BUCKET_SHIFT, ((bucket + 1) << BUCKET_SHIFT) - 1


def split(start: int, end: int) -> tuple[int, int, tuple[int, int], tuple[int, int]] | None:
    """(first bucket, last bucket, head range, tail range), or None for a short range."""
    first, last = start >> BUCKET_SHIFT, end >> BUCKET_SHIFT
    if last - first < 2:
        return None
    return first, last, (start, bucket_bounds(first)[1]), (bucket_bounds(last)[0], end)


def page_window(
    pieces: Sequence[Piece], start: int, end: int, offset: int, ascending: bool
) -> tuple[int, int, int]:
    """Narrow [start, end] and the offset by skipping whole pieces before the page."""
    remaining = offset
    for low, high, points in pieces if ascending else reversed(pieces):
        if remaining < points:
            return (low, end, remaining) if ascending else (start, high, remaining)
        remaining -= points
    return start, end, offset  # past the last point: an empty page
