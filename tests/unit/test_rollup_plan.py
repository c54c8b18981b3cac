"""How a read in rollup slots splits a range (`store/rollup.py`): the marked days' slots from the
rollup, the rest from the points, and which settled days get rolled up afterwards."""

from __future__ import annotations

from pinbase.store.rollup import FILL_DAYS, FILLS_PER_READ, MAX_GAPS, Plan
from pinbase.store.sql import ROLLUP_DAY, ROLLUP_SETTLED, ROLLUP_SLOT

D, S = ROLLUP_DAY, ROLLUP_SLOT
NOW = 20_000 * D + ROLLUP_SETTLED  # day 19,999 is the last settled one


def marks(*days: int) -> list[tuple[int, int, int, object]]:
    return [(0, day, 0, None) for day in days]


def test_marked_days_come_from_the_rollup_and_the_rest_from_the_points() -> None:
    start, end = 10 * D + 7, 14 * D + 3 * S + 5  # both ends inside slots
    plan = Plan(start, end)
    assert (plan.first_slot, plan.last_slot) == (10 * D + S, 14 * D + 2 * S)
    assert plan.whole_days == (10, 14)
    rows = [
        *marks(11, 12, 14),
        (1, 11 * D, 3, 1.5),
        (1, 12 * D + 4 * S, 2, 2.5),
        (1, 13 * D, 9, 9.9),  # day 13 is not marked: its rows are stale
        (1, 14 * D + S, 1, 0.5),
    ]
    slots, gaps = plan.split(rows)
    assert slots == [(11 * D, 3, 1.5), (12 * D + 4 * S, 2, 2.5), (14 * D + S, 1, 0.5)]
    # the partial slot at the start with day 10, day 13, the partial slot at the end
    assert gaps == [(start, 11 * D - 1), (13 * D, 14 * D - 1), (14 * D + 3 * S, end)]


def test_a_range_inside_one_slot_has_no_whole_days() -> None:
    plan = Plan(5 * D + 7, 5 * D + S - 2)
    assert plan.whole_days is None
    assert plan.to_fill([(5 * D, 1, 1)], NOW) == []


def test_the_settled_days_read_from_the_points_are_rolled_up() -> None:
    plan = Plan(100 * D, 200 * D - 1)
    plan.split(marks(150))
    read = [(day * D + S, 1, 1.0) for day in (103, 120, 149, 160)]
    # from the first read day to the last, but the marked day; spans of at most FILL_DAYS
    assert plan.to_fill(read, NOW) == [(103, 103 + FILL_DAYS - 1), (134, 149), (151, 160)]
    # days not yet settled wait
    assert plan.to_fill(read, 150 * D + ROLLUP_SETTLED) == [(103, 133), (134, 149)]
    assert plan.to_fill([], NOW) == []


def test_a_read_fills_a_bounded_number_of_spans() -> None:
    plan = Plan(0, 10_000 * D - 1)
    plan.split([])
    spans = plan.to_fill([(0, 1, 1), (9_000 * D, 1, 1)], NOW)
    assert len(spans) == FILLS_PER_READ
    assert spans[0] == (0, FILL_DAYS - 1)


def test_too_many_gaps_read_the_whole_range_from_the_points() -> None:
    plan = Plan(0, 1_000 * D - 1)
    slots, gaps = plan.split([*marks(*range(1, 2 * MAX_GAPS + 4, 2)), (1, D, 1, 1.0)])
    assert (slots, gaps) == ([], [(0, 1_000 * D - 1)])
