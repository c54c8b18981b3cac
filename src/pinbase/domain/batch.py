"""Batch update across the devices of one product family: row classification.

Rows are classified in `updates` order. The product family is derived from the first row whose
device exists and is covered; a row whose device belongs to another family is skipped, as is
every row whose shape or device is wrong, each counted under Blynk's counter names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pinbase.domain.errors import Invalid, Mismatch
from pinbase.domain.model import INT32_MAX, INT32_MIN, Catalog, Datastream, Device, Schema
from pinbase.domain.permissions import Principal
from pinbase.domain.values import Value, parse_json_value

_INTEGER = re.compile(r"-?[0-9]{1,19}")
MAX_ROWS = 10_000
MAX_REASONS = 100
COUNTERS = (
    "invalidRowSize",
    "nullDeviceId",
    "nonNumericDeviceId",
    "deviceNotFound",
    "noAccessToDevice",
    "wrongProduct",
)


@dataclass(slots=True)
class BatchOutcome:
    """What a batch update applies and what it skipped."""

    cells: list[tuple[Device, Datastream, Value]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    reasons: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return sum(self.counters.values())

    def skip(self, counter: str, reason: str) -> None:
        self.counters[counter] += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)


def check_fields(fields: Sequence[str]) -> None:
    if len(fields) < 2:
        raise Invalid("'fields' must list 'deviceId' and at least one datastream label.")
    if fields[0] != "deviceId":
        raise Invalid("The first element of 'fields' must be 'deviceId'.")
    seen: set[str] = set()
    for name in fields:
        if name in seen:
            raise Invalid(f"'fields' names '{name}' more than once.")
        seen.add(name)


def _device_id(cell: Any) -> int | None:
    """The integer in a deviceId cell, or None when it is not numeric."""
    if isinstance(cell, bool):
        return None
    if isinstance(cell, int):
        return cell
    if isinstance(cell, float) and cell.is_integer():
        return int(cell)
    if isinstance(cell, str) and _INTEGER.fullmatch(cell.strip()):
        return int(cell)
    return None


def _columns(schema: Schema, labels: Sequence[str]) -> list[Datastream]:
    columns = []
    for label in labels:
        ds = schema.by_label.get(label)
        if ds is None:
            raise Invalid(f"The product has no datastream with label '{label}'.")
        columns.append(ds)
    return columns


def classify(
    catalog: Catalog, principal: Principal, fields: Sequence[str], updates: Sequence[Any]
) -> BatchOutcome:
    """Classify every row; raise `Invalid` when the batch as a whole is unacceptable."""
    check_fields(fields)
    if len(updates) > MAX_ROWS:
        raise Invalid(f"'updates' holds more than {MAX_ROWS} rows.")
    width = len(fields)
    outcome = BatchOutcome()
    cells = outcome.cells
    devices = catalog.devices
    root: int | None = None
    columns: list[Datastream] = []
    for index, row in enumerate(updates):
        if not isinstance(row, list) or len(row) != width:
            outcome.skip("invalidRowSize", f"row {index}: expected {width} cells")
            continue
        cell = row[0]
        if cell is None:
            outcome.skip("nullDeviceId", f"row {index}: deviceId is null")
            continue
        device_id = _device_id(cell)
        if device_id is None:
            outcome.skip("nonNumericDeviceId", f"row {index}: deviceId is not a number")
            continue
        device = devices.get(device_id) if INT32_MIN <= device_id <= INT32_MAX else None
        if device is None or device.org_id != principal.org_id:
            outcome.skip("deviceNotFound", f"row {index}: device {device_id} not found")
            continue
        if not principal.covers(device):
            outcome.skip("noAccessToDevice", f"row {index}: no access to device {device_id}")
            continue
        if root is None:
            root = device.root_product_id
            columns = _columns(catalog.products[root].schema, fields[1:])
        elif device.root_product_id != root:
            outcome.skip(
                "wrongProduct", f"row {index}: device {device_id} belongs to another product"
            )
            continue
        for ds, raw in zip(columns, row[1:], strict=True):
            if raw is None:
                continue
            try:
                cells.append((device, ds, parse_json_value(ds, raw)))
            except Mismatch:
                continue
    if root is None:
        raise Invalid("No valid device found in the batch to derive the product from.")
    return outcome
