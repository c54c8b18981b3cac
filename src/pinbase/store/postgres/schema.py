"""PostgreSQL schema migrations and history partitions.

History is range-partitioned by timestamp, one partition per calendar month (UTC), created
ahead of time at start-up and on demand when a write reaches a month that has none. Timestamps
outside [2000, 2100) land in the default partition, which therefore never conflicts with a new
monthly partition. Every table is keyed by `device_id` first, so with Citus the value tables
can be distributed by device (see docs/operations.md).

History points are keyed by (device_id, ds_id, ts, seq) since migration 2 (see `sql` and
`pinbase.app.ingest`): `ts` stays the epoch millisecond every reader sees, `seq` tells apart
the points of one series and millisecond: 0 for imported points, and for a live point the
writer id of its server process (counted in the `history_writers` row of `meta`, so the
processes sharing a database never replace each other's points) plus, for a process's second
and later points of the series and millisecond, their number << 32. Migration 2 adds the column
with a constant default (no table rewrite: the points so far become seq 0) and rebuilds the
primary key of every partition, under the migration lock, in the one transaction of the
migration (history is locked meanwhile: a large history makes a slow first start).

The history rollup (migration 10, `sql.ROLLUP_SLOT`) is unmarked by statement triggers on
history's inserts, updates and deletes (for inserts and deletes, in the counting triggers: one
trigger call a statement, not two). A statement whose points are all stamped within
`sql.ROLLUP_RECENT` of the database's clock skips it (a day is marked only `sql.ROLLUP_SETTLED`
after it ended, so a write of "now" costs one scan of its new rows); any other first locks
`rollup_days` in ROW EXCLUSIVE mode, then deletes the marks of its points' days. A fill locks
history, then `rollup_days` in SHARE ROW EXCLUSIVE mode (`sql._rollup_fill`), so it waits for
the writes that unmarked and sees their points, and later writes wait for it. Dropping a month
deletes the month's rollup rows itself (no trigger sees a dropped partition's points go).
"""

from __future__ import annotations

import contextlib
import datetime as dt

import asyncpg

from pinbase.store.errors import SchemaTooNew
from pinbase.store.sql import BUCKET_SHIFT, ROLLUP_DAY, ROLLUP_RECENT


def _unmark(rows: str) -> str:
    """The PL/pgSQL removing the rollup marks of the days of the points of transition table
    `rows`, unless all are recent (see the module docstring); the day by floor division."""
    day = f"(ts - ((ts % {ROLLUP_DAY}) + {ROLLUP_DAY}) % {ROLLUP_DAY}) / {ROLLUP_DAY}"
    now = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS bigint)"
    return (
        f"IF EXISTS (SELECT 1 FROM {rows} WHERE ts < {now} - {ROLLUP_RECENT}) THEN "
        "LOCK TABLE rollup_days IN ROW EXCLUSIVE MODE; "
        f"DELETE FROM rollup_days r USING (SELECT DISTINCT device_id, ds_id, {day} AS day "
        f"FROM {rows}) c WHERE r.device_id = c.device_id AND r.ds_id = c.ds_id AND r.day = c.day; "
        "END IF;"
    )


MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
    INSERT INTO meta VALUES ('catalog_generation', 0);

    CREATE TABLE organizations (id integer PRIMARY KEY, name text NOT NULL);
    CREATE TABLE roles (
        org_id integer NOT NULL REFERENCES organizations(id),
        name text NOT NULL,
        permissions text NOT NULL,
        PRIMARY KEY (org_id, name)
    );
    CREATE TABLE clients (
        client_id text PRIMARY KEY,
        org_id integer NOT NULL REFERENCES organizations(id),
        secret_hash text NOT NULL
    );
    CREATE TABLE users (
        id integer PRIMARY KEY,
        org_id integer NOT NULL REFERENCES organizations(id),
        email text NOT NULL,
        password_hash text NOT NULL,
        role text NOT NULL,
        UNIQUE (org_id, email)
    );
    CREATE TABLE products (
        id integer PRIMARY KEY,
        org_id integer NOT NULL REFERENCES organizations(id),
        name text NOT NULL,
        parent_id integer REFERENCES products(id)
    );
    CREATE TABLE datastreams (
        product_id integer NOT NULL REFERENCES products(id),
        id integer NOT NULL,
        pin text NOT NULL,
        label text NOT NULL,
        alias text NOT NULL,
        type text NOT NULL,
        min double precision,
        max double precision,
        decimals integer,
        units text,
        options text,
        history boolean NOT NULL,
        PRIMARY KEY (product_id, id)
    );
    CREATE TABLE devices (
        id integer PRIMARY KEY,
        org_id integer NOT NULL REFERENCES organizations(id),
        product_id integer NOT NULL REFERENCES products(id),
        name text NOT NULL,
        owner_id integer REFERENCES users(id),
        token_hash text NOT NULL UNIQUE
    );

    CREATE TABLE current_values (
        device_id integer NOT NULL,
        ds_id integer NOT NULL,
        value text NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (device_id, ds_id)
    );
    CREATE TABLE history (
        device_id integer NOT NULL,
        ds_id integer NOT NULL,
        ts bigint NOT NULL,
        value text NOT NULL,
        PRIMARY KEY (device_id, ds_id, ts)
    ) PARTITION BY RANGE (ts);
    CREATE TABLE history_default PARTITION OF history DEFAULT;

    CREATE TABLE history_counts (
        device_id integer NOT NULL,
        ds_id integer NOT NULL,
        bucket bigint NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (device_id, ds_id, bucket)
    );
    CREATE FUNCTION history_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO history_counts (device_id, ds_id, bucket, n)
        SELECT device_id, ds_id, ts >> {BUCKET_SHIFT}, count(*) FROM inserted
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (device_id, ds_id, bucket) DO UPDATE SET n = history_counts.n + EXCLUDED.n;
        RETURN NULL;
    END $$;
    CREATE FUNCTION history_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE history_counts c SET n = c.n - d.n
        FROM (SELECT device_id, ds_id, ts >> {BUCKET_SHIFT} AS bucket, count(*) AS n FROM deleted
              GROUP BY 1, 2, 3) d
        WHERE c.device_id = d.device_id AND c.ds_id = d.ds_id AND c.bucket = d.bucket;
        RETURN NULL;
    END $$;
    CREATE TRIGGER history_counted AFTER INSERT ON history
        REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION history_counted();
    CREATE TRIGGER history_uncounted AFTER DELETE ON history
        REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT EXECUTE FUNCTION history_uncounted();

    CREATE TABLE properties (
        device_id integer NOT NULL,
        ds_id integer NOT NULL,
        name text NOT NULL,
        value text NOT NULL,
        PRIMARY KEY (device_id, ds_id, name)
    );

    CREATE TABLE oauth_tokens (
        hash text PRIMARY KEY,
        kind text NOT NULL,
        client_id text NOT NULL,
        org_id integer NOT NULL,
        user_id integer,
        family text NOT NULL,
        expires_at bigint NOT NULL,
        used boolean NOT NULL DEFAULT false,
        revoked boolean NOT NULL DEFAULT false
    );
    CREATE INDEX oauth_tokens_family ON oauth_tokens (family);
    CREATE INDEX oauth_tokens_expiry ON oauth_tokens (expires_at);

    CREATE UNLOGGED TABLE rate_buckets (
        key text PRIMARY KEY,
        tokens double precision NOT NULL,
        stamp double precision NOT NULL
    );
    -- one token bucket shared by every server process; the database's clock is the clock
    CREATE FUNCTION take_token(k text, rate double precision, burst double precision)
    RETURNS double precision LANGUAGE plpgsql AS $$
    DECLARE
        now_s double precision := extract(epoch FROM clock_timestamp());
        have double precision;
        stamp_s double precision;
    BEGIN
        INSERT INTO rate_buckets VALUES (k, burst, now_s) ON CONFLICT (key) DO NOTHING;
        SELECT tokens, stamp INTO have, stamp_s FROM rate_buckets WHERE key = k FOR UPDATE;
        have := least(burst, have + greatest(0, now_s - stamp_s) * rate);
        IF have >= 1 THEN
            UPDATE rate_buckets SET tokens = have - 1, stamp = now_s WHERE key = k;
            RETURN 0;
        END IF;
        UPDATE rate_buckets SET tokens = have, stamp = now_s WHERE key = k;
        IF rate <= 0 THEN
            RETURN 'Infinity';
        END IF;
        RETURN (1 - have) / rate;
    END $$;
    """,
    # 2: history keyed by (device_id, ds_id, ts, seq); the points so far become seq 0
    """
    ALTER TABLE history ADD COLUMN seq bigint NOT NULL DEFAULT 0;
    ALTER TABLE history DROP CONSTRAINT history_pkey;
    ALTER TABLE history ADD PRIMARY KEY (device_id, ds_id, ts, seq);
    INSERT INTO meta VALUES ('history_writers', 0);
    """,
    # 3: timezones (IANA names) of organizations and devices; NULL: the default
    """
    ALTER TABLE organizations ADD COLUMN timezone text;
    ALTER TABLE devices ADD COLUMN timezone text;
    """,
    # 4: metadata: product metafields, devices' own values
    """
    CREATE TABLE metafields (
        product_id integer NOT NULL REFERENCES products(id),
        id integer NOT NULL,
        name text NOT NULL,
        type text NOT NULL,
        default_value text,
        options text,
        min double precision,
        max double precision,
        PRIMARY KEY (product_id, id)
    );
    CREATE TABLE meta_values (
        device_id integer NOT NULL REFERENCES devices(id),
        field_id integer NOT NULL,
        value text NOT NULL,
        PRIMARY KEY (device_id, field_id)
    );
    """,
    # 5: webhooks, their outbox of pending deliveries and the delivery log
    """
    CREATE TABLE webhooks (
        id integer PRIMARY KEY,
        org_id integer NOT NULL REFERENCES organizations(id),
        name text NOT NULL,
        trigger_type text NOT NULL,
        url text NOT NULL,
        method text NOT NULL,
        content_type text NOT NULL,
        body text,
        secret text,
        username text,
        password text,
        fires_for text
    );
    CREATE TABLE webhook_outbox (
        id bigserial PRIMARY KEY,
        webhook_id bigint NOT NULL,
        context text NOT NULL,
        due_at bigint NOT NULL,
        attempts bigint NOT NULL,
        claimed_until bigint NOT NULL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (due_at);
    CREATE TABLE webhook_deliveries (
        id bigserial PRIMARY KEY,
        webhook_id bigint NOT NULL,
        outbox_id bigint NOT NULL,
        attempt bigint NOT NULL,
        attempted_at bigint NOT NULL,
        status bigint NOT NULL,
        outcome text NOT NULL,
        detail text NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
    CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (attempted_at);
    """,
    # 6: event definitions per product, and the events devices logged (their timeline)
    """
    CREATE TABLE events (
        product_id integer NOT NULL REFERENCES products(id),
        id integer NOT NULL,
        code text NOT NULL,
        name text NOT NULL,
        type text NOT NULL,
        description text,
        timeline boolean NOT NULL,
        notify text,
        PRIMARY KEY (product_id, id),
        UNIQUE (product_id, code)
    );
    CREATE TABLE device_events (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        device_id integer NOT NULL,
        event_id integer NOT NULL,
        code text NOT NULL,
        type text NOT NULL,
        description text,
        ts bigint NOT NULL,
        shown boolean NOT NULL,
        resolved_at bigint,
        resolved_comment text
    );
    CREATE INDEX device_events_by_time ON device_events (device_id, ts);
    CREATE INDEX device_events_by_code ON device_events (device_id, code, ts);
    """,
    # 7: when each device last mailed a notification of each event code (the period's limit)
    """
    CREATE TABLE notifications_sent (
        device_id bigint NOT NULL,
        code TEXT NOT NULL,
        sent_at bigint NOT NULL,
        PRIMARY KEY (device_id, code)
    );
    """,
    # 8: when a device was created, and what its hardware last reported about itself
    """
    ALTER TABLE devices ADD COLUMN activated_at bigint;
    CREATE TABLE device_hardware (
        device_id integer PRIMARY KEY,
        info text NOT NULL,
        updated_at bigint NOT NULL
    );
    """,
    # 9: Blynk's user object (name, status, timestamps), one-time invitations, role ids
    """
    ALTER TABLE roles ADD COLUMN id integer NOT NULL DEFAULT 0;
    UPDATE roles SET id = CASE name WHEN 'Admin' THEN 1 WHEN 'Staff' THEN 2 WHEN 'User' THEN 3
        ELSE 3 + (SELECT count(*) FROM roles r WHERE r.org_id = roles.org_id
                  AND r.name NOT IN ('Admin', 'Staff', 'User') AND r.name <= roles.name) END;
    CREATE UNIQUE INDEX roles_by_id ON roles (org_id, id);
    ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'Active';
    ALTER TABLE users ADD COLUMN registered_at bigint NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN last_modified bigint NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN invitation_hash TEXT;
    ALTER TABLE users ADD COLUMN invitation_expires bigint;
    UPDATE users SET name = email;
    CREATE UNIQUE INDEX users_by_invitation ON users (invitation_hash);
    """,
    # 10: the history rollup (see `sql.ROLLUP_SLOT` and this module's docstring)
    f"""
    CREATE TABLE rollup_slots (
        device_id integer NOT NULL,
        ds_id integer NOT NULL,
        slot bigint NOT NULL,
        n bigint NOT NULL,
        total double precision,
        low double precision,
        high double precision,
        first_value text NOT NULL,
        last_value text NOT NULL,
        PRIMARY KEY (device_id, ds_id, slot)
    );
    CREATE TABLE rollup_days (
        device_id integer NOT NULL,
        ds_id integer NOT NULL,
        day bigint NOT NULL,
        PRIMARY KEY (device_id, ds_id, day)
    );
    CREATE OR REPLACE FUNCTION history_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO history_counts (device_id, ds_id, bucket, n)
        SELECT device_id, ds_id, ts >> {BUCKET_SHIFT}, count(*) FROM inserted
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (device_id, ds_id, bucket) DO UPDATE SET n = history_counts.n + EXCLUDED.n;
        {_unmark("inserted")}
        RETURN NULL;
    END $$;
    CREATE OR REPLACE FUNCTION history_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE history_counts c SET n = c.n - d.n
        FROM (SELECT device_id, ds_id, ts >> {BUCKET_SHIFT} AS bucket, count(*) AS n FROM deleted
              GROUP BY 1, 2, 3) d
        WHERE c.device_id = d.device_id AND c.ds_id = d.ds_id AND c.bucket = d.bucket;
        {_unmark("deleted")}
        RETURN NULL;
    END $$;
    CREATE FUNCTION history_rollup_unmarked() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_unmark("changed")}
        RETURN NULL;
    END $$;
    CREATE TRIGGER history_rollup_update AFTER UPDATE ON history
        REFERENCING NEW TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION history_rollup_unmarked();
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
_LOCK = 0x70696E62  # advisory lock serialising migrations of several starting servers

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FIRST_YEAR, END_YEAR = 2000, 2100  # monthly partitions exist only inside [2000, 2100)


async def migrate(conn: asyncpg.Connection) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database schema version {version} is newer than this pinbase ({SCHEMA_VERSION})"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[number - 1])
            await conn.execute("INSERT INTO schema_version VALUES ($1)", number)
    return SCHEMA_VERSION


def _ms(moment: dt.datetime) -> int:
    return int((moment - EPOCH).total_seconds() * 1000)


def month_of(ts: int) -> tuple[int, int] | None:
    """(year, month) of a timestamp that has a monthly partition, else None."""
    if (
        not _ms(dt.datetime(FIRST_YEAR, 1, 1, tzinfo=dt.UTC))
        <= ts
        < _ms(dt.datetime(END_YEAR, 1, 1, tzinfo=dt.UTC))
    ):
        return None
    moment = EPOCH + dt.timedelta(milliseconds=ts)
    return moment.year, moment.month


def month_bounds(year: int, month: int) -> tuple[int, int]:
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    following = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return _ms(start), _ms(following)


def partition_name(year: int, month: int) -> str:
    return f"history_y{year:04d}m{month:02d}"


async def ensure_partition(conn: asyncpg.Connection, year: int, month: int) -> None:
    low, high = month_bounds(year, month)
    # another server may create it at the same moment
    with contextlib.suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {partition_name(year, month)} "
            f"PARTITION OF history FOR VALUES FROM ({low}) TO ({high})"
        )


async def drop_partitions_before(conn: asyncpg.Connection, cutoff: int) -> list[str]:
    """Drop every monthly partition wholly older than `cutoff` (epoch ms); return their names."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'history' "
        "AND c.relname LIKE 'history\\_y%'"
    )
    dropped = []
    for name in sorted(row["relname"] for row in rows):
        year, month = int(name[9:13]), int(name[14:16])
        low, high = month_bounds(year, month)
        if high > cutoff:
            continue
        async with conn.transaction():
            await conn.execute(f"DROP TABLE {name}")
            # a month holds whole days: their rollup goes with them (no trigger saw them go)
            days = low // ROLLUP_DAY, high // ROLLUP_DAY
            await conn.execute("DELETE FROM rollup_slots WHERE slot >= $1 AND slot < $2", low, high)
            await conn.execute("DELETE FROM rollup_days WHERE day >= $1 AND day < $2", *days)
            # buckets wholly inside the month go; the two it shares with its neighbours
            # are recounted from the points that remain
            edges = low >> BUCKET_SHIFT, (high - 1) >> BUCKET_SHIFT
            await conn.execute(
                "DELETE FROM history_counts WHERE bucket > $1 AND bucket < $2", *edges
            )
            await conn.execute(
                "UPDATE history_counts c SET n = (SELECT count(*) FROM history h "
                "WHERE h.device_id = c.device_id AND h.ds_id = c.ds_id "
                f"AND h.ts >= c.bucket << {BUCKET_SHIFT} "
                f"AND h.ts < (c.bucket + 1) << {BUCKET_SHIFT}) "
                "WHERE c.bucket IN ($1, $2)",
                *edges,
            )
        dropped.append(name)
    return dropped
