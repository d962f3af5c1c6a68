"""The change log of the PostgreSQL transport table, for readers that follow it.

A trigger on ``tpd_transports`` records the ID of every inserted, updated or deleted row in
``tpd_changes`` (``seq``, ``t_id``, ``at`` = the database clock when the row changed), so a
route finder can re-read only what changed since its last read instead of every transport.
The trigger also prunes rows older than :data:`RETENTION_SECONDS` on every
:data:`PRUNE_EVERY`-th change, so the log stays small without a task of its own; a reader that
falls further behind than that reads everything again.

The log is written by the database itself, so it is complete whichever transport discovery
replica (or a direct SQL write) changed the table. ``at`` is taken when the row changes, not
when its transaction commits: a reader asks for the changes since its last mark less
:data:`OVERLAP_SECONDS`, which covers any transaction shorter than that (the transport
discovery's are single statements, done in milliseconds).
"""

from __future__ import annotations

from typing import Any

from skywire.services.httpauth import pg_qualified

__all__ = [
    "OVERLAP_SECONDS",
    "PRUNE_EVERY",
    "RETENTION_SECONDS",
    "changes_table",
    "create_change_log",
]

RETENTION_SECONDS = 600
"""Age past which the trigger prunes log rows."""
OVERLAP_SECONDS = 5
PRUNE_EVERY = 1000
"""The trigger prunes old log rows when it logs a change whose ``seq`` is a multiple of this."""
"""How far before its last mark a reader asks again (changes committed late)."""


def changes_table(schema: str | None) -> str:
    return pg_qualified(schema, "tpd_changes")


async def create_change_log(conn: Any, schema: str | None) -> None:
    """Create the log, its index, the trigger function and the trigger (idempotent; run inside
    the schema lock of :meth:`PostgresStore.create_schema`)."""
    table = pg_qualified(schema, "tpd_transports")
    changes = changes_table(schema)
    function = pg_qualified(schema, "tpd_log_change")
    index_prefix = f"{schema}_" if schema else ""
    await conn.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {changes} (
            seq  BIGSERIAL PRIMARY KEY,
            t_id UUID NOT NULL,
            at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {index_prefix}tpd_changes_at ON {changes} (at)")
    await conn.execute(
        f"""
        CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            logged bigint;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                INSERT INTO {changes} (t_id) VALUES (OLD.t_id) RETURNING seq INTO logged;
            ELSE
                INSERT INTO {changes} (t_id) VALUES (NEW.t_id) RETURNING seq INTO logged;
            END IF;
            IF logged % {PRUNE_EVERY} = 0 THEN
                DELETE FROM {changes}
                WHERE at < clock_timestamp() - interval '{RETENTION_SECONDS} seconds';
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    await conn.execute(f"DROP TRIGGER IF EXISTS tpd_transports_changes ON {table}")
    await conn.execute(
        f"CREATE TRIGGER tpd_transports_changes AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )
