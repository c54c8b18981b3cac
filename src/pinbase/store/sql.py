"""The SQL both backends share: table specs, and every statement that only differs in how
parameters are written.

Both schemas hold the same tables with the same columns, so statements are generated here once
from the table specs and a `Dialect` (SQLite numbers parameters `?1`, PostgreSQL `$1`); each
backend keeps only what is genuinely its own (SQLite's group-commit writer, PostgreSQL's `unnest`
array writes, partitions and notifications). Decisions:

- The history bucket width, `2**BUCKET_SHIFT` ms (about 70 minutes), is defined here and nowhere
  else: both schemas' counting triggers and the paging statement are generated from it. It is
  baked into every stored `history_counts` row, so changing it needs a migration that rebuilds
  that table.
- An entity's columns are its record's fields (`records.py`), in order; the stored form differs
  only for role permissions (comma-joined text) and a datastream's history flag (0/1 in SQLite).
- `upsert_entities` applies its rows as one set: a unique value (a device's token, a user's
  e-mail) may move from one row of the set to another, as in a swap of two devices' tokens. The
  rows that change such a value first take a placeholder (`moving:<id>`, never a real SHA-256
  hex digest or e-mail), then the upsert gives every row its final value, all in one transaction.
- A history range is counted in one statement (see `paging`): the partial buckets at both ends
  from the points, the whole buckets between them from `history_counts`.
- A history point is keyed by (device_id, ds_id, ts, seq): `ts` is the epoch millisecond every
  reader sees (`createdAt`), `seq` tells apart points of one millisecond. Imported points carry
  seq 0, so importing the same point again replaces it; every live write carries a seq of its
  own, built on its process's writer id (`IMPORTED_SEQ`, `Statements.allocate_writer` and
  `pinbase.app.ingest`). Pages order points by (ts, seq), so points of one millisecond come in
  one order, imported ones first; the bucket counts and the paging pieces go by ts alone, and a
  millisecond is never split between pieces, so totals and offsets stay exact.
- Aggregated reads in 15-minute slots go through the history rollup (`ROLLUP_SLOT`, planned in
  `rollup.py`): stored slot aggregates, valid for the days of a series marked in `rollup_days`,
  filled lazily by reads of settled days, and unmarked by triggers on every change to a day's
  points (so a write of "now" costs a key lookup, not an aggregate update: a minimum or a last
  value cannot be taken back when a point goes). The day width is baked into the schemas'
  triggers like the bucket width. See `_rollup_fill` for why a fill never marks a stale day.
- The schemas themselves stay written out per backend (`sqlite/schema.py`, `postgres/schema.py`):
  a migration records what was applied and must not change when a spec here does. Only the
  bucket width and the rollup's day (and PostgreSQL's recent-write bound) are substituted into
  them. The column lists here must match those schemas; the store contract tests round-trip
  every column on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from pinbase.store.records import (
    ClientRow,
    DatastreamRow,
    DeviceRow,
    Entities,
    EventDefRow,
    MetafieldRow,
    MetaValueRow,
    OrgRow,
    ProductRow,
    Revocation,
    RoleRow,
    TokenRow,
    UserRow,
    WebhookRow,
)

BUCKET_SHIFT = 22
"""History points are counted per series in buckets of 2**BUCKET_SHIFT ms."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a backend writes statement parameters: `?1` (SQLite) or `$1` (PostgreSQL)."""

    mark: str

    def param(self, number: int) -> str:
        return f"{self.mark}{number}"

    def params(self, count: int) -> str:
        return ", ".join(self.param(n) for n in range(1, count + 1))

    def among(self, column: str, number: int, sql_type: str) -> str:
        """`column` is one of the values of list parameter `number` (see `values`)."""
        if self.mark == "?":
            return f"{column} IN (SELECT value FROM json_each({self.param(number)}))"
        return f"{column} = ANY({self.param(number)}::{sql_type}[])"

    def values(self, items: Sequence[Any]) -> Any:
        """A list parameter: JSON text for SQLite's `json_each`, an array for PostgreSQL."""
        return json.dumps(list(items)) if self.mark == "?" else list(items)

    def number(self, column: str) -> str:
        """The number a JSON text column holds."""
        return f"CAST({column} AS {'REAL' if self.mark == '?' else 'double precision'})"


SQLITE = Dialect("?")
POSTGRES = Dialect("$")


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    """Every column, key columns included, in the order of the rows exchanged with callers."""


@dataclass(frozen=True, slots=True)
class EntityTable(Table):
    """A catalog table: its rows are `row_type` records."""

    row_type: type[Any]
    movable: str | None = None
    """A unique column whose values may move between the rows of one upsert."""

    def values(self, row: Any) -> tuple[Any, ...]:
        """The stored form of a record."""
        if isinstance(row, RoleRow):
            return (row.org_id, row.name, ",".join(row.permissions), row.id)
        return astuple(row)

    def row(self, values: Any) -> Any:
        """The record of a stored row."""
        if self.row_type is RoleRow:
            permissions = tuple(p for p in values[2].split(",") if p)
            return RoleRow(values[0], values[1], permissions, values[3])
        if self.row_type is DatastreamRow:
            stored = list(values)
            stored[-1] = bool(stored[-1])  # history: 0/1 in SQLite
            return DatastreamRow(*stored)
        if self.row_type is EventDefRow:
            stored = list(values)
            stored[6] = bool(stored[6])  # timeline: 0/1 in SQLite
            return EventDefRow(*stored)
        return self.row_type(*values)


def _entity(
    name: str, key: tuple[str, ...], row_type: type[Any], movable: str | None = None
) -> EntityTable:
    return EntityTable(name, key, tuple(f.name for f in fields(row_type)), row_type, movable)


ENTITIES: tuple[EntityTable, ...] = (
    # in an order that keeps foreign keys satisfied row by row
    _entity("organizations", ("id",), OrgRow),
    _entity("roles", ("org_id", "name"), RoleRow),
    _entity("clients", ("client_id",), ClientRow),
    _entity("users", ("id",), UserRow, movable="email"),
    _entity("products", ("id",), ProductRow),
    _entity("datastreams", ("product_id", "id"), DatastreamRow),
    _entity("devices", ("id",), DeviceRow, movable="token_hash"),
    # metadata
    _entity("metafields", ("product_id", "id"), MetafieldRow),
    _entity("meta_values", ("device_id", "field_id"), MetaValueRow),
    _entity("webhooks", ("id",), WebhookRow),
    _entity("events", ("product_id", "id"), EventDefRow),
)
META_VALUES = ENTITIES[-1]
CURRENT = Table(
    "current_values", ("device_id", "ds_id"), ("device_id", "ds_id", "value", "updated_at")
)
HISTORY = Table(
    "history", ("device_id", "ds_id", "ts", "seq"), ("device_id", "ds_id", "ts", "seq", "value")
)
IMPORTED_SEQ = 0
"""The seq of every imported history point: a point imported again replaces itself."""
PROPERTIES = Table(
    "properties", ("device_id", "ds_id", "name"), ("device_id", "ds_id", "name", "value")
)
DEVICE_EVENTS = Table(
    "device_events",
    ("id",),
    (
        "id",
        "device_id",
        "event_id",
        "code",
        "type",
        "description",
        "ts",
        "shown",
        "resolved_at",
        "resolved_comment",
    ),
)
"""The event log (the timelines); `shown` is 0/1 in SQLite."""
HARDWARE = Table("device_hardware", ("device_id",), ("device_id", "info", "updated_at"))
"""What devices reported of their hardware (JSON object text), and when."""
EXPORTED = (CURRENT, HISTORY, PROPERTIES, DEVICE_EVENTS, HARDWARE)
"""The value tables `pinbase migrate` streams (`Store.export`)."""
TOKENS = Table("oauth_tokens", ("hash",), tuple(f.name for f in fields(TokenRow)))

ENTITY = {table.name: table for table in ENTITIES}
ENTITY_TABLES = tuple(ENTITY)
COUNTED_TABLES = (
    *ENTITY_TABLES,
    CURRENT.name,
    HISTORY.name,
    PROPERTIES.name,
    DEVICE_EVENTS.name,
    HARDWARE.name,
)
EVENT_COLUMNS = (
    "id, device_id, event_id, code, type, description, ts, resolved_at, resolved_comment"
)
"""The columns of a `LoggedEvent`, in its fields' order."""
SYSTEM_TYPES = "('ONLINE', 'OFFLINE')"
RESOLVABLE_TYPES = "('WARNING', 'CRITICAL')"
LAST_UPDATES = "SELECT device_id, MAX(updated_at) FROM current_values GROUP BY device_id"
"""What `Store.counts()` reports, in copying order."""


def upsert(table: Table, source: str) -> str:
    """Insert the rows of `source` (VALUES or a SELECT) into `table`, updating rows by key."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c not in table.key)
    return (
        f"INSERT INTO {table.name} ({', '.join(table.columns)}) {source} "
        f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"
    )


ONLY_NEWER = " WHERE excluded.updated_at >= current_values.updated_at"
"""Appended to the current values' upsert: an older value does not replace a newer one."""


def _select(table: Table, where: str = "") -> str:
    return f"SELECT {', '.join(table.columns)} FROM {table.name}{where}"


SLOT_FUNCTIONS = ("count", "sum", "min", "max", "first", "last")
"""What a grouped history read computes per slot (`Statements.slots`)."""

ROLLUP_SLOT = 15 * 60_000
"""The slot of the history rollup (`rollup_slots`): per series and 15-minute UTC slot, the
count, sum, minimum and maximum of the points' numbers and the first and last point's value."""
ROLLUP_DAY = 86_400_000
"""The rollup is kept true by UTC day (`rollup_days`): a day of a series is marked when the rows
of its slots are exact, and any change to the day's points removes the mark."""
ROLLUP_SETTLED = 2 * 3_600_000
"""Only days that ended at least this long ago (ms) are rolled up."""
ROLLUP_RECENT = 3_600_000
"""On PostgreSQL a write whose points are all stamped later than this long before now (ms)
cannot touch a rolled-up day, so it skips the invalidation (`postgres/schema.py`)."""
ROLLUP_COLUMNS = {
    "count": "n",
    "sum": "total",
    "min": "low",
    "max": "high",
    "first": "first_value",
    "last": "last_value",
}
"""The rollup column of each slot function."""


def _grouped(
    d: Dialect,
    functions: Sequence[str],
    bounds: tuple[str, str, str, str],
    number: str | None = None,
) -> str:
    """A grouped history read of the series (parameters 1 and 2) from the first to the last ts
    of `bounds` (both included) in slots of its width from its base (`bounds`: SQL expressions
    of first, last, base and width): the slot number `slot`, the count of its points `n`, then
    each of `functions` (`SLOT_FUNCTIONS`) of them, as `f_<function>`; `number` is the SQL of
    the number a point's value holds.

    PostgreSQL groups the range's points (a hash aggregate). SQLite would sort them to group by
    an expression (a temporary B-tree: most of the time of a 259,200-point read), so it walks
    the primary key instead: a recursive query finds each slot holding points by seeking the
    first point after the slot before (empty stretches cost one seek), then reads each slot's
    points by their key range."""
    p = d.param
    first, last, base, width = bounds
    number = number or d.number("value")
    if d.mark == "$":
        computed = {
            "count": "count(*)",
            "sum": f"sum({number})",
            "min": f"min({number})",
            "max": f"max({number})",
            "first": "(array_agg(value ORDER BY ts ASC, seq ASC))[1]",
            "last": "(array_agg(value ORDER BY ts DESC, seq DESC))[1]",
        }
        columns = ", ".join(f"{computed[f]} AS f_{f}" for f in functions)
        return (
            f"SELECT (ts - {base}) / {width} AS slot, count(*) AS n, {columns} FROM history "
            f"WHERE device_id = {p(1)} AND ds_id = {p(2)} AND ts BETWEEN {first} AND {last} "
            "GROUP BY slot ORDER BY slot"
        )
    series = f"FROM history WHERE device_id = {p(1)} AND ds_id = {p(2)} AND ts BETWEEN"
    own = f"{series} max(s, {first}) AND min(s + {width} - 1, {last})"
    computed = {
        "count": f"SELECT count(*) {own}",
        "sum": f"SELECT total({number}) {own}",
        "min": f"SELECT min({number}) {own}",
        "max": f"SELECT max({number}) {own}",
        "first": f"SELECT value {own} ORDER BY ts, seq LIMIT 1",
        "last": f"SELECT value {own} ORDER BY ts DESC, seq DESC LIMIT 1",
    }
    columns = ", ".join(f"({computed[f]}) AS f_{f}" for f in functions)

    def slot_of(low: str) -> str:
        return f"{base} + ((SELECT min(ts) {series} {low} AND {last}) - {base}) / {width} * {width}"

    return (
        f"WITH RECURSIVE slots(s) AS (SELECT {slot_of(first)} "
        f"UNION ALL SELECT {slot_of(f's + {width}')} FROM slots WHERE s IS NOT NULL) "
        f"SELECT (s - {base}) / {width} AS slot, (SELECT count(*) {own}) AS n, {columns} "
        "FROM slots WHERE s IS NOT NULL"
    )


def _slots(d: Dialect, function: str) -> str:
    """A grouped history read (`Store.history_slots`): parameters device, datastream, first
    and last ts, the first slot's start, the slot width."""
    p = d.param
    return _grouped(d, (function,), (p(3), p(4), p(5), p(6)))


def _rollup(d: Dialect, function: str) -> str:
    """The rollup of a series (parameters 1 and 2): its marked days from day 3 to day 4 as
    (0, day, 0, NULL), and its slot rows from slot start 5 to slot start 6 as (1, slot start,
    count, `function` of the slot), in one statement, so in one snapshot."""
    p = d.param
    series = f"WHERE device_id = {p(1)} AND ds_id = {p(2)}"
    return (
        f"SELECT 0, day, 0, NULL FROM rollup_days {series} AND day BETWEEN {p(3)} AND {p(4)} "
        f"UNION ALL SELECT 1, slot, n, {ROLLUP_COLUMNS[function]} FROM rollup_slots "
        f"{series} AND slot BETWEEN {p(5)} AND {p(6)}"
    )


def _rollup_fill(d: Dialect) -> list[str]:
    """Rolling up the days 3 to 4 of a series (parameters 1 and 2), in one transaction: their
    slot rows computed again from the points, and the days marked.

    A day is marked only when the fill saw every point of it: on SQLite the fill runs in the
    one writer's transaction, after every write before it and before every write after it; on
    PostgreSQL it first locks the history (shared) and then `rollup_days` against the writes
    that unmark (`Statements.rollup_locks`, `postgres/schema.py`), so it reads only after those
    writes committed, and those that come later wait for it and remove its marks. The
    database's clock decides there which days are settled, the clock the unmarking trigger
    reads."""
    p = d.param
    series = f"device_id = {p(1)} AND ds_id = {p(2)}"
    first = f"CAST({p(3)} AS BIGINT) * {ROLLUP_DAY}"
    last = f"(CAST({p(4)} AS BIGINT) + 1) * {ROLLUP_DAY} - 1"
    postgres = d.mark == "$"
    # on PostgreSQL a JSON number starts with a digit or a minus; other values have no number
    number = f"CASE WHEN value ~ '^-?[0-9]' THEN {d.number('value')} END" if postgres else None
    functions = SLOT_FUNCTIONS[1:]
    grouped = _grouped(d, functions, (first, last, first, str(ROLLUP_SLOT)), number)
    if postgres:
        days = f"generate_series(CAST({p(3)} AS BIGINT), {p(4)}) AS day"
        now = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)"
        settled = f" WHERE (day + 1) * {ROLLUP_DAY} <= {now} - {ROLLUP_SETTLED}"
    else:
        days = (
            f"(WITH RECURSIVE days(day) AS (SELECT {p(3)} UNION ALL "
            f"SELECT day + 1 FROM days WHERE day < {p(4)}) SELECT day FROM days)"
        )
        settled = " WHERE true"  # the upsert parsing rule of SQLite
    columns = ", ".join(ROLLUP_COLUMNS[f] for f in SLOT_FUNCTIONS)
    computed = ", ".join(f"g.f_{f}" for f in functions)
    return [
        f"DELETE FROM rollup_slots WHERE {series} AND slot BETWEEN {first} AND {last}",
        f"INSERT INTO rollup_slots (device_id, ds_id, slot, {columns}) "
        f"SELECT {p(1)}, {p(2)}, {first} + g.slot * {ROLLUP_SLOT}, g.n, {computed} "
        f"FROM ({grouped}) AS g",
        f"INSERT INTO rollup_days (device_id, ds_id, day) SELECT {p(1)}, {p(2)}, day "
        f"FROM {days}{settled} ON CONFLICT DO NOTHING",
    ]


def _history_pieces(d: Dialect) -> str:
    p = d.param

    def count(low: str, high: str) -> str:
        return (
            f"(SELECT count(*) FROM history WHERE device_id = {p(1)} AND ds_id = {p(2)} "
            f"AND ts BETWEEN {low} AND {high})"
        )

    return (
        "SELECT lo, hi, n FROM ("
        f"SELECT CAST({p(3)} AS BIGINT) AS lo, CAST({p(4)} AS BIGINT) AS hi, "
        f"{count(p(3), p(4))} AS n "
        f"UNION ALL SELECT bucket << {BUCKET_SHIFT}, ((bucket + 1) << {BUCKET_SHIFT}) - 1, n "
        f"FROM history_counts WHERE device_id = {p(1)} AND ds_id = {p(2)} "
        f"AND bucket > {p(5)} AND bucket < {p(6)} "
        f"UNION ALL SELECT CAST({p(7)} AS BIGINT), CAST({p(8)} AS BIGINT), {count(p(7), p(8))}"
        ") AS pieces WHERE n > 0 ORDER BY lo"
    )


class Statements:
    """Every shared statement, written for one dialect (built once per backend)."""

    def __init__(self, d: Dialect) -> None:
        self.dialect = d
        p = d.param
        self.upsert_entities = {
            t.name: upsert(t, f"VALUES ({d.params(len(t.columns))})") for t in ENTITIES
        }
        self.select_entities = {t.name: _select(t) for t in ENTITIES}
        # a changing unique value first takes a placeholder (see the module docstring)
        self.release = {
            t.name: f"UPDATE {t.name} SET {t.movable} = 'moving:' || {t.key[0]} "
            f"WHERE {t.key[0]} = {p(1)} AND {t.movable} <> {p(2)}"
            for t in ENTITIES
            if t.movable is not None
        }
        self.generation = "SELECT value FROM meta WHERE key = 'catalog_generation'"
        self.bump_generation = "UPDATE meta SET value = value + 1 WHERE key = 'catalog_generation'"
        self.counts = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in COUNTED_TABLES)

        values = f"VALUES ({d.params(4)})"
        self.set_current = upsert(CURRENT, values)
        self.set_current_if_newer = self.set_current + ONLY_NEWER
        self.add_history = upsert(HISTORY, f"VALUES ({d.params(5)})")
        self.set_property = upsert(PROPERTIES, values)
        self.erase_current = (
            f"DELETE FROM current_values WHERE device_id = {p(1)} AND ds_id = {p(2)}"
        )
        self.delete_property = (
            f"DELETE FROM properties WHERE device_id = {p(1)} AND ds_id = {p(2)} AND name = {p(3)}"
        )
        # a writer id above every one handed out so far, and above the parameter
        self.allocate_writer = (
            f"UPDATE meta SET value = CASE WHEN value > {p(1)} THEN value ELSE {p(1)} END + 1 "
            "WHERE key = 'history_writers' RETURNING value"
        )
        self.writers = "SELECT value FROM meta WHERE key = 'history_writers'"
        self.properties = (
            f"SELECT ds_id, name, value FROM properties WHERE device_id = {p(1)} "
            "ORDER BY ds_id, name"
        )
        self.history_pieces = _history_pieces(d)
        self.slots = {function: _slots(d, function) for function in SLOT_FUNCTIONS}
        self.rollup = {function: _rollup(d, function) for function in SLOT_FUNCTIONS}
        self.rollup_fill = _rollup_fill(d)
        # PostgreSQL: what a fill locks first (the history, then the marks: see `_rollup_fill`)
        self.rollup_locks = (
            [
                "LOCK TABLE history IN ACCESS SHARE MODE",
                "LOCK TABLE rollup_days IN SHARE ROW EXCLUSIVE MODE",
            ]
            if d.mark == "$"
            else []
        )
        # retention: the rollup of the days before day 1 (their points are gone)
        self.forget_rollup_before = [
            f"DELETE FROM rollup_slots WHERE slot < CAST({p(1)} AS BIGINT) * {ROLLUP_DAY}",
            f"DELETE FROM rollup_days WHERE day < {p(1)}",
        ]
        # metadata values written by devices and the API: no catalog change
        self.set_meta_value = self.upsert_entities["meta_values"]
        self.meta_values = f"SELECT field_id, value FROM meta_values WHERE device_id = {p(1)}"
        self.clear_meta_values = f"DELETE FROM meta_values WHERE device_id = {p(1)}"
        self.history_page = {
            ascending: "SELECT ts, value FROM history "
            f"WHERE device_id = {p(1)} AND ds_id = {p(2)} AND ts BETWEEN {p(3)} AND {p(4)} "
            f"ORDER BY ts {direction}, seq {direction} LIMIT {p(5)} OFFSET {p(6)}"
            for ascending, direction in ((True, "ASC"), (False, "DESC"))
        }

        # one series over [from, to] in (ts, seq) order, keyset-paginated (`Store.history_rows`):
        # (first batch, the batch after a (ts, seq))
        series = f"SELECT ts, seq, value FROM history WHERE device_id = {p(1)} AND ds_id = {p(2)}"
        self.series_rows = (
            f"{series} AND ts BETWEEN {p(3)} AND {p(4)} ORDER BY ts, seq LIMIT {p(5)}",
            f"{series} AND (ts, seq) > ({p(3)}, {p(4)}) AND ts <= {p(5)} "
            f"ORDER BY ts, seq LIMIT {p(6)}",
        )

        self.client = _select(ENTITY["clients"], f" WHERE client_id = {p(1)}")
        self.user_by_email = _select(ENTITY["users"], f" WHERE org_id = {p(1)} AND email = {p(2)}")
        tokens = ", ".join(TOKENS.columns)
        self.insert_token = (
            f"INSERT INTO oauth_tokens ({tokens}) VALUES ({d.params(len(TOKENS.columns))})"
        )
        self.access_token = _select(
            TOKENS,
            f" WHERE hash = {p(1)} AND kind = 'access' AND NOT revoked AND expires_at > {p(2)}",
        )
        self.refresh_token = (
            f"SELECT {tokens}, used, revoked FROM oauth_tokens "
            f"WHERE hash = {p(1)} AND kind = 'refresh'"
        )
        self.consume_refresh = (
            f"UPDATE oauth_tokens SET used = TRUE WHERE hash = {p(1)} AND kind = 'refresh' "
            f"AND NOT used AND NOT revoked AND expires_at > {p(2)}"
        )
        self.revoke_family = f"UPDATE oauth_tokens SET revoked = TRUE WHERE family = {p(1)}"
        # one scan of the table for every user and client of a revocation
        self.revoke_tokens = (
            "UPDATE oauth_tokens SET revoked = TRUE WHERE NOT revoked AND "
            f"({d.among('user_id', 1, 'integer')} OR {d.among('client_id', 2, 'text')})"
        )
        self.delete_user = f"DELETE FROM users WHERE id = {p(1)}"
        # users of the Platform API (`Store.add_user`, `set_user_role`, `accept_invitation`)
        users = ENTITY["users"]
        self.next_user_id = "SELECT COALESCE(max(id), 0) + 1 FROM users"
        columns = ", ".join(users.columns)
        self.insert_user = f"INSERT INTO users ({columns}) VALUES ({d.params(len(users.columns))})"
        self.user_by_id = _select(users, f" WHERE id = {p(1)}")
        self.user_by_invitation = _select(users, f" WHERE invitation_hash = {p(1)}")
        self.set_user_role = (
            f"UPDATE users SET role = {p(2)}, last_modified = {p(3)} WHERE id = {p(1)}"
        )
        self.accept_invitation = (
            f"UPDATE users SET password_hash = {p(3)}, status = 'Active', invitation_hash = NULL, "
            f"invitation_expires = NULL, last_modified = {p(4)} WHERE id = {p(1)} "
            f"AND invitation_hash = {p(2)} AND invitation_expires > {p(4)}"
        )
        self.delete_client = f"DELETE FROM clients WHERE client_id = {p(1)}"
        self.drop_tokens = f"DELETE FROM oauth_tokens WHERE expires_at < {p(1)}"

        # webhooks: the outbox and the delivery log (`pinbase.app.webhooks`)
        self.enqueue = (
            "INSERT INTO webhook_outbox (webhook_id, context, due_at, attempts, claimed_until) "
            f"VALUES ({d.params(3)}, 0, 0)"
        )
        self.outbox_settled = f"DELETE FROM webhook_outbox WHERE id = {p(1)}"
        self.outbox_retry = (
            f"UPDATE webhook_outbox SET due_at = {p(2)}, attempts = {p(3)}, claimed_until = 0 "
            f"WHERE id = {p(1)}"
        )
        self.log_delivery = (
            "INSERT INTO webhook_deliveries "
            "(webhook_id, outbox_id, attempt, attempted_at, status, outcome, detail) "
            f"VALUES ({d.params(7)})"
        )
        self.delivery_log = (
            "SELECT id, webhook_id, outbox_id, attempt, attempted_at, status, outcome, detail "
            f"FROM webhook_deliveries WHERE webhook_id = {p(1)} ORDER BY id DESC LIMIT {p(2)}"
        )
        self.delete_webhook = f"DELETE FROM webhooks WHERE id = {p(1)}"
        self.forget_outbox = f"DELETE FROM webhook_outbox WHERE webhook_id = {p(1)}"
        self.any_due = (
            f"SELECT 1 FROM webhook_outbox WHERE due_at <= {p(1)} AND claimed_until <= {p(1)} "
            "LIMIT 1"
        )
        self.pending = f"SELECT count(*) FROM webhook_outbox WHERE webhook_id = {p(1)}"
        self.drop_deliveries = f"DELETE FROM webhook_deliveries WHERE attempted_at < {p(1)}"
        # due rows, each claimed by one process until `claimed_until` (a lease: a process that
        # dies holding it leaves the row to be claimed again once it ran out)
        skip = "" if d.mark == "?" else " FOR UPDATE SKIP LOCKED"
        self.claim = (
            f"UPDATE webhook_outbox SET claimed_until = {p(1)} WHERE id IN ("
            f"SELECT id FROM webhook_outbox WHERE due_at <= {p(2)} AND claimed_until <= {p(2)} "
            f"ORDER BY due_at, id LIMIT {p(3)}{skip}) RETURNING id, webhook_id, context, attempts"
        )
        # device events (the timeline): the limits are read in the transaction of the insert
        self.events_since = (
            f"SELECT count(*) FROM device_events WHERE device_id = {p(1)} AND ts >= {p(2)} "
            f"AND type NOT IN {SYSTEM_TYPES}"
        )
        self.event_code_since = (
            f"SELECT 1 FROM device_events WHERE device_id = {p(1)} AND code = {p(2)} "
            f"AND ts > {p(3)} LIMIT 1"
        )
        self.notified_at = (
            f"SELECT sent_at FROM notifications_sent WHERE device_id = {p(1)} AND code = {p(2)}"
        )
        self.set_notified = (
            f"INSERT INTO notifications_sent (device_id, code, sent_at) VALUES ({d.params(3)}) "
            "ON CONFLICT (device_id, code) DO UPDATE SET sent_at = excluded.sent_at"
        )
        self.insert_event = (
            "INSERT INTO device_events (device_id, event_id, code, type, description, ts, shown) "
            f"VALUES ({d.params(7)}) RETURNING id"
        )
        timeline = (
            f"FROM device_events WHERE device_id = {p(1)} AND shown "
            f"AND ts BETWEEN {p(2)} AND {p(3)} AND (CAST({p(4)} AS TEXT) IS NULL OR type = {p(4)})"
        )
        self.timeline_count = f"SELECT count(*) {timeline}"
        self.timeline_page = (
            f"SELECT {EVENT_COLUMNS} {timeline} ORDER BY ts DESC, id DESC "
            f"LIMIT {p(5)} OFFSET {p(6)}"
        )
        self.device_event = (
            f"SELECT {EVENT_COLUMNS} FROM device_events WHERE device_id = {p(1)} AND id = {p(2)}"
        )
        resolve = (
            f"UPDATE device_events SET resolved_at = {p(3)}, resolved_comment = {p(4)} "
            f"WHERE device_id = {p(1)} AND resolved_at IS NULL AND type IN {RESOLVABLE_TYPES} AND "
        )
        self.import_events = upsert(
            DEVICE_EVENTS, f"VALUES ({d.params(len(DEVICE_EVENTS.columns))})"
        )
        self.resolve_event = {
            by: f"{resolve}{by} = {p(2)} RETURNING {EVENT_COLUMNS}" for by in ("id", "code")
        }

        # devices of the Platform API (`pinbase.app.devices`); `device_data` is what a clear
        # erases, `device_rows` everything a deletion erases (the device row last)
        devices = ENTITY["devices"]
        self.insert_device = (
            f"INSERT INTO devices ({', '.join(devices.columns)}) "
            f"VALUES ({d.params(len(devices.columns))})"
        )
        self.max_device_id = "SELECT COALESCE(MAX(id), 0) FROM devices"
        self.update_device = {
            column: f"UPDATE devices SET {column} = {p(2)} WHERE id = {p(1)}"
            for column in ("name", "token_hash")
        }
        self.device_data = [
            f"DELETE FROM {table} WHERE device_id = {p(1)}"
            for table in (
                "current_values",
                "history",
                "history_counts",
                "rollup_slots",
                "rollup_days",
                "properties",
            )
        ]
        self.device_rows = [
            *self.device_data,
            *(
                f"DELETE FROM {table} WHERE device_id = {p(1)}"
                for table in (
                    "meta_values",
                    "device_events",
                    "notifications_sent",
                    "device_hardware",
                )
            ),
            f"DELETE FROM devices WHERE id = {p(1)}",
        ]
        # an outbox row names its device only in its context (`app.webhooks`: compact JSON)
        self.forget_device_outbox = f"DELETE FROM webhook_outbox WHERE context LIKE {p(1)}"
        self.set_hardware = (
            f"INSERT INTO device_hardware (device_id, info, updated_at) VALUES ({d.params(3)}) "
            "ON CONFLICT (device_id) DO UPDATE SET info = excluded.info, "
            "updated_at = excluded.updated_at"
        )
        self.hardware = (
            "SELECT device_id, info FROM device_hardware "
            f"WHERE {d.among('device_id', 1, 'integer')}"
        )
        self.last_updates_of = (
            "SELECT device_id, MAX(updated_at) FROM current_values "
            f"WHERE {d.among('device_id', 1, 'integer')} GROUP BY device_id"
        )

        # keyset pagination in key order: (first batch, the batch after a key)
        self.export: dict[str, tuple[str, str]] = {}
        for table in EXPORTED:
            order = ", ".join(table.key)
            self.export[table.name] = (
                f"{_select(table)} ORDER BY {order} LIMIT {p(1)}",
                f"{_select(table)} WHERE ({order}) > ({d.params(len(table.key))}) "
                f"ORDER BY {order} LIMIT {p(len(table.key) + 1)}",
            )

    def entity_writes(
        self, rows: Entities, revoke: Revocation = Revocation(), clear_meta: Sequence[int] = ()
    ) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statements of one `upsert_entities`, each with its parameter rows, in order:
        the metadata values of the `clear_meta` devices deleted, changing unique values
        released, every table upserted, the tokens of `revoke` revoked, the catalog generation
        bumped."""
        writes: list[tuple[str, list[tuple[Any, ...]]]] = []
        if clear_meta:
            writes.append((self.clear_meta_values, [(device_id,) for device_id in clear_meta]))
        for table in ENTITIES:
            items = getattr(rows, table.name)
            if items and table.movable is not None:
                key, movable = table.key[0], table.movable
                params = [(getattr(r, key), getattr(r, movable)) for r in items]
                writes.append((self.release[table.name], params))
        for table in ENTITIES:
            items = getattr(rows, table.name)
            if items:
                writes.append((self.upsert_entities[table.name], [table.values(r) for r in items]))
        writes += self.revocation_writes(revoke)
        writes.append((self.bump_generation, [()]))
        return writes

    def revocation_writes(self, revoke: Revocation) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statement that revokes every token of `revoke`'s users and clients, if any."""
        if revoke.is_empty():
            return []
        d = self.dialect
        params = (d.values(revoke.user_ids), d.values(revoke.client_ids))
        return [(self.revoke_tokens, [params])]

    def deletion_writes(
        self, user_ids: Sequence[int], client_ids: Sequence[str]
    ) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The statements of one `delete_entities`: their tokens revoked, the rows deleted, the
        catalog generation bumped."""
        writes = self.revocation_writes(Revocation(tuple(user_ids), tuple(client_ids)))
        if user_ids:
            writes.append((self.delete_user, [(u,) for u in user_ids]))
        if client_ids:
            writes.append((self.delete_client, [(c,) for c in client_ids]))
        writes.append((self.bump_generation, [()]))
        return writes
