"""SQLite schema migrations; `PRAGMA user_version` records how many have been applied.

History points are keyed by (device_id, ds_id, ts, seq) since migration 2 (see `sql` and
`pinbase.app.ingest`): `ts` stays the epoch millisecond every reader sees, `seq` tells apart
the points of one series and millisecond: 0 for imported points, and for a live point the
writer id of its process (counted in the `history_writers` row of `meta`) plus, for a process's
second and later points of the series and millisecond, their number << 32. A seq is thus nearly
always a small integer, a byte or two in the record and the index (a process-wide counter would
take six, and grew the history file by 32 %). A WITHOUT ROWID table cannot change its primary key,
so migration 2 copies the history into a new table in key order (the points written before it
become seq 0); the bucket counts stay valid, the same points being there, and the counting
triggers are recreated on the new table. seq comes before value, with the other key columns:
SQLite 3.40's integrity check wrongly reports "NULL value" for a WITHOUT ROWID table whose
non-key column precedes a key column, and the start-up check would then refuse a sound file.
Every statement names its columns, so the order differs from PostgreSQL's harmlessly.

The history rollup (migration 10, `sql.ROLLUP_SLOT`) is unmarked by row triggers: each point
inserted, updated or deleted deletes the mark of its day (one primary-key lookup in the small
`rollup_days`, in the counting triggers for inserts and deletes). A fill runs in the one
writer's transaction, so no write interleaves with it.
"""

from __future__ import annotations

import sqlite3

from pinbase.store.errors import SchemaTooNew
from pinbase.store.sql import BUCKET_SHIFT, ROLLUP_DAY


def _unmark(row: str) -> str:
    """The statement removing the rollup mark of the day of a point (`row`: NEW or OLD; the
    day by floor division, for points before 1970 too)."""
    ts = f"{row}.ts"
    day = f"({ts} - (({ts} % {ROLLUP_DAY}) + {ROLLUP_DAY}) % {ROLLUP_DAY}) / {ROLLUP_DAY}"
    return (
        f"DELETE FROM rollup_days WHERE device_id = {row}.device_id AND ds_id = {row}.ds_id "
        f"AND day = {day};"
    )


MIGRATIONS: tuple[str, ...] = (
    # 1: the whole initial schema
    f"""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO meta VALUES ('catalog_generation', 0);

    CREATE TABLE organizations (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE roles (
        org_id INTEGER NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        permissions TEXT NOT NULL,
        PRIMARY KEY (org_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id),
        secret_hash TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id),
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        UNIQUE (org_id, email)
    );
    CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        parent_id INTEGER REFERENCES products(id)
    );
    CREATE TABLE datastreams (
        product_id INTEGER NOT NULL REFERENCES products(id),
        id INTEGER NOT NULL,
        pin TEXT NOT NULL,
        label TEXT NOT NULL,
        alias TEXT NOT NULL,
        type TEXT NOT NULL,
        min REAL,
        max REAL,
        decimals INTEGER,
        units TEXT,
        options TEXT,
        history INTEGER NOT NULL,
        PRIMARY KEY (product_id, id)
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id),
        product_id INTEGER NOT NULL REFERENCES products(id),
        name TEXT NOT NULL,
        owner_id INTEGER REFERENCES users(id),
        token_hash TEXT NOT NULL UNIQUE
    );

    CREATE TABLE current_values (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (device_id, ds_id)
    ) WITHOUT ROWID;
    CREATE TABLE history (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device_id, ds_id, ts)
    ) WITHOUT ROWID;
    -- Points per series and bucket of 2^BUCKET_SHIFT ms (see sql.py), kept by triggers, so
    -- that totalElements of a history page sums buckets instead of scanning a long range.
    CREATE TABLE history_counts (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        bucket INTEGER NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (device_id, ds_id, bucket)
    ) WITHOUT ROWID;
    CREATE TRIGGER history_counted AFTER INSERT ON history BEGIN
        INSERT INTO history_counts (device_id, ds_id, bucket, n)
        VALUES (NEW.device_id, NEW.ds_id, NEW.ts >> {BUCKET_SHIFT}, 1)
        ON CONFLICT (device_id, ds_id, bucket) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER history_uncounted AFTER DELETE ON history BEGIN
        UPDATE history_counts SET n = n - 1
        WHERE device_id = OLD.device_id AND ds_id = OLD.ds_id AND bucket = OLD.ts >> {BUCKET_SHIFT};
    END;
    CREATE TABLE properties (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device_id, ds_id, name)
    ) WITHOUT ROWID;

    CREATE TABLE oauth_tokens (
        hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        client_id TEXT NOT NULL,
        org_id INTEGER NOT NULL,
        user_id INTEGER,
        family TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        revoked INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX oauth_tokens_family ON oauth_tokens (family);
    CREATE INDEX oauth_tokens_expiry ON oauth_tokens (expires_at);
    """,
    # 2: history keyed by (device_id, ds_id, ts, seq); the points so far become seq 0
    f"""
    CREATE TABLE history_by_seq (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0,
        value TEXT NOT NULL,
        PRIMARY KEY (device_id, ds_id, ts, seq)
    ) WITHOUT ROWID;
    INSERT INTO history_by_seq (device_id, ds_id, ts, value)
        SELECT device_id, ds_id, ts, value FROM history ORDER BY device_id, ds_id, ts;
    DROP TABLE history;
    ALTER TABLE history_by_seq RENAME TO history;
    CREATE TRIGGER history_counted AFTER INSERT ON history BEGIN
        INSERT INTO history_counts (device_id, ds_id, bucket, n)
        VALUES (NEW.device_id, NEW.ds_id, NEW.ts >> {BUCKET_SHIFT}, 1)
        ON CONFLICT (device_id, ds_id, bucket) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER history_uncounted AFTER DELETE ON history BEGIN
        UPDATE history_counts SET n = n - 1
        WHERE device_id = OLD.device_id AND ds_id = OLD.ds_id AND bucket = OLD.ts >> {BUCKET_SHIFT};
    END;
    INSERT INTO meta VALUES ('history_writers', 0);
    """,
    # 3: timezones (IANA names) of organizations and devices; NULL: the default
    """
    ALTER TABLE organizations ADD COLUMN timezone TEXT;
    ALTER TABLE devices ADD COLUMN timezone TEXT;
    """,
    # 4: metadata: product metafields, devices' own values
    """
    CREATE TABLE metafields (
        product_id INTEGER NOT NULL REFERENCES products(id),
        id INTEGER NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        default_value TEXT,
        options TEXT,
        min REAL,
        max REAL,
        PRIMARY KEY (product_id, id)
    ) WITHOUT ROWID;
    CREATE TABLE meta_values (
        device_id INTEGER NOT NULL REFERENCES devices(id),
        field_id INTEGER NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (device_id, field_id)
    ) WITHOUT ROWID;
    """,
    # 5: webhooks, their outbox of pending deliveries and the delivery log
    """
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        trigger_type TEXT NOT NULL,
        url TEXT NOT NULL,
        method TEXT NOT NULL,
        content_type TEXT NOT NULL,
        body TEXT,
        secret TEXT,
        username TEXT,
        password TEXT,
        fires_for TEXT
    );
    CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL,
        context TEXT NOT NULL,
        due_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        claimed_until INTEGER NOT NULL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox (due_at);
    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL,
        outbox_id INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        attempted_at INTEGER NOT NULL,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
    CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (attempted_at);
    """,
    # 6: event definitions per product, and the events devices logged (their timeline)
    """
    CREATE TABLE events (
        product_id INTEGER NOT NULL REFERENCES products(id),
        id INTEGER NOT NULL,
        code TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        description TEXT,
        timeline INTEGER NOT NULL,
        notify TEXT,
        PRIMARY KEY (product_id, id),
        UNIQUE (product_id, code)
    ) WITHOUT ROWID;
    CREATE TABLE device_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id INTEGER NOT NULL,
        event_id INTEGER NOT NULL,
        code TEXT NOT NULL,
        type TEXT NOT NULL,
        description TEXT,
        ts INTEGER NOT NULL,
        shown INTEGER NOT NULL,
        resolved_at INTEGER,
        resolved_comment TEXT
    );
    CREATE INDEX device_events_by_time ON device_events (device_id, ts);
    CREATE INDEX device_events_by_code ON device_events (device_id, code, ts);
    """,
    # 7: when each device last mailed a notification of each event code (the period's limit)
    """
    CREATE TABLE notifications_sent (
        device_id INTEGER NOT NULL,
        code TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (device_id, code)
    ) WITHOUT ROWID;
    """,
    # 8: when a device was created, and what its hardware last reported about itself
    """
    ALTER TABLE devices ADD COLUMN activated_at INTEGER;
    CREATE TABLE device_hardware (
        device_id INTEGER PRIMARY KEY,
        info TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 9: Blynk's user object (name, status, timestamps), one-time invitations, role ids
    """
    ALTER TABLE roles ADD COLUMN id INTEGER NOT NULL DEFAULT 0;
    UPDATE roles SET id = CASE name WHEN 'Admin' THEN 1 WHEN 'Staff' THEN 2 WHEN 'User' THEN 3
        ELSE 3 + (SELECT count(*) FROM roles r WHERE r.org_id = roles.org_id
                  AND r.name NOT IN ('Admin', 'Staff', 'User') AND r.name <= roles.name) END;
    CREATE UNIQUE INDEX roles_by_id ON roles (org_id, id);
    ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'Active';
    ALTER TABLE users ADD COLUMN registered_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN last_modified INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN invitation_hash TEXT;
    ALTER TABLE users ADD COLUMN invitation_expires INTEGER;
    UPDATE users SET name = email;
    CREATE UNIQUE INDEX users_by_invitation ON users (invitation_hash);
    """,
    # 10: the history rollup (see `sql.ROLLUP_SLOT`): per series, the aggregates of each
    # 15-minute slot, valid for the days marked in rollup_days; any change to a day's points
    # removes its mark, in the counting triggers (one trigger a point, not two: measured
    # +4 % on a bare insert of 20,000 points where a trigger of its own cost +10 %). Built
    # lazily, on reading (`Store.history_slots`).
    f"""
    CREATE TABLE rollup_slots (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        n INTEGER NOT NULL,
        total REAL,
        low REAL,
        high REAL,
        first_value TEXT NOT NULL,
        last_value TEXT NOT NULL,
        PRIMARY KEY (device_id, ds_id, slot)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_days (
        device_id INTEGER NOT NULL,
        ds_id INTEGER NOT NULL,
        day INTEGER NOT NULL,
        PRIMARY KEY (device_id, ds_id, day)
    ) WITHOUT ROWID;
    DROP TRIGGER history_counted;
    DROP TRIGGER history_uncounted;
    CREATE TRIGGER history_counted AFTER INSERT ON history BEGIN
        INSERT INTO history_counts (device_id, ds_id, bucket, n)
        VALUES (NEW.device_id, NEW.ds_id, NEW.ts >> {BUCKET_SHIFT}, 1)
        ON CONFLICT (device_id, ds_id, bucket) DO UPDATE SET n = n + 1;
        {_unmark("NEW")}
    END;
    CREATE TRIGGER history_uncounted AFTER DELETE ON history BEGIN
        UPDATE history_counts SET n = n - 1
        WHERE device_id = OLD.device_id AND ds_id = OLD.ds_id AND bucket = OLD.ts >> {BUCKET_SHIFT};
        {_unmark("OLD")}
    END;
    CREATE TRIGGER history_rollup_update AFTER UPDATE ON history BEGIN
        {_unmark("NEW")}
    END;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a script into complete statements (trigger bodies hold semicolons)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the file's version, each in its own transaction."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this pinbase ({SCHEMA_VERSION})"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
