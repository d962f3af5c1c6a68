"""The route finder's refresh from transport discovery's PostgreSQL table, at scale, one run.

Loads ``--transports`` transports between ``--visors`` visors into a fresh schema made by the
transport discovery store (``COPY``, random pairs, half with a latency), then, with the route
finder's PostgreSQL source:

* the first refresh: the whole table read, the graph built;
* a refresh with nothing changed (the change log says so: no rebuild);
* ``--changes`` changes (latency updates and deletions) read and applied, and the refresh
  with them (the build);
* the cost of the change log on writes: ``--writes`` single-row registrations and latency
  reports through the store with the log's trigger and without it, alternating
  ``--rounds`` rounds.

Prints ``name: value unit`` lines. PostgreSQL at ``--pg-url``; the schemas are dropped at the
end, also on failure.

Usage: ``python bench/rf_refresh_bench.py [--transports 500000] [--visors 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

import asyncpg  # type: ignore[import-untyped]

from skywire.cipher import KeyPair, SecKey
from skywire.services.rf.api import RouteFinder
from skywire.services.rf.pgsource import PostgresTransportSource
from skywire.services.tpd.store.postgres import PostgresStore
from skywire.transport.entry import SignedEntry, make_entry


async def _schema(pool: asyncpg.Pool, name: str) -> None:
    await pool.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")
    await PostgresStore.create_schema(pool, name)


async def _refresh(pool: asyncpg.Pool, args: argparse.Namespace, schema: str) -> None:
    await _schema(pool, schema)
    pks = [SecKey.generate().pubkey().hex() for _ in range(args.visors)]
    rows = []
    for _ in range(args.transports):
        a, b = random.sample(pks, 2)
        latency = random.random() * 50 if random.random() < 0.5 else None
        rows.append((uuid.uuid4(), a, b, "stcpr", "user", "", "", 0, latency, None, None))
    start = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("tpd_transports", schema_name=schema, records=rows)
    print(f"rf_bench_load: {time.perf_counter() - start:.1f} s ({args.transports} rows, COPY)")
    await asyncio.sleep(6)  # the load's changes leave the change log's overlap window

    source = PostgresTransportSource(pool, schema=schema)
    finder = RouteFinder(source, refresh_interval=3.0)
    start = time.perf_counter()
    await finder.refresh()
    print(
        f"rf_first_refresh: {time.perf_counter() - start:.2f} s (whole read"
        f" {finder.last_refresh_seconds - finder.last_build_seconds:.2f} s,"
        f" build {finder.last_build_seconds:.2f} s)"
    )
    start = time.perf_counter()
    await finder.refresh()
    print(
        f"rf_refresh_unchanged: {(time.perf_counter() - start) * 1e3:.1f} ms"
        f" (graph builds {finder.builds}, unchanged refreshes {finder.skipped_builds})"
    )
    ids = [r[0] for r in random.sample(rows, args.changes)]
    half = args.changes // 2
    table = f"{schema}.tpd_transports"
    for tp_id in ids[:half]:
        await pool.execute(
            f"UPDATE {table} SET latency_ms = $1 WHERE t_id = $2", random.random() * 40, tp_id
        )
    await pool.execute(f"DELETE FROM {table} WHERE t_id = ANY($1::uuid[])", ids[half:])
    start = time.perf_counter()
    await source.all_transports()
    took = time.perf_counter() - start
    print(f"rf_changes_read: {took * 1e3:.1f} ms ({args.changes} changes read and applied)")
    for tp_id in ids[:half]:
        await pool.execute(
            f"UPDATE {table} SET latency_ms = $1 WHERE t_id = $2", random.random() * 40, tp_id
        )
    start = time.perf_counter()
    await finder.refresh()
    print(
        f"rf_refresh_with_changes: {time.perf_counter() - start:.2f} s (read"
        f" {(finder.last_refresh_seconds - finder.last_build_seconds) * 1e3:.0f} ms,"
        f" build {finder.last_build_seconds:.2f} s)"
    )


def _signed(a: KeyPair, b: KeyPair) -> SignedEntry:
    return SignedEntry.new(make_entry(a.pk, b.pk, "stcpr"), a.pk, a.sk).sign(b.pk, b.sk)


async def _writes(pool: asyncpg.Pool, args: argparse.Namespace, prefix: str) -> None:
    n = 2
    while n * (n - 1) // 2 < args.writes:
        n += 1
    kps = [KeyPair.generate() for _ in range(n)]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)][: args.writes]
    entries = [_signed(kps[i], kps[j]) for i, j in pairs]
    rates: dict[str, list[float]] = {"with the change log": [], "without": []}
    for r in range(args.rounds):
        for label in rates:
            schema = f"{prefix}_w{r}_{'log' if label != 'without' else 'nolog'}"
            await _schema(pool, schema)
            if label == "without":
                await pool.execute(
                    f"DROP TRIGGER tpd_transports_changes ON {schema}.tpd_transports"
                )
            store = PostgresStore(pool, schema=schema)
            start = time.perf_counter()
            for e in entries:
                await store.register([e])
            for e in entries[: len(entries) // 2]:
                await store.set_latency(e.entry.id, 5.0, kps[0].pk)
            writes = len(entries) + len(entries) // 2
            rates[label].append(writes / (time.perf_counter() - start))
            await pool.execute(f"DROP SCHEMA {schema} CASCADE")
    for label, values in rates.items():
        print(
            f"tpd_single_row_writes ({label}): {statistics.median(values):.0f} writes/s"
            f" (range {min(values):.0f}–{max(values):.0f}, {args.rounds} alternating rounds)"
        )
    ratio = statistics.median(rates["with the change log"]) / statistics.median(rates["without"])
    print(f"tpd_single_row_writes_ratio_log_vs_none: {ratio:.2f}")


async def main(args: argparse.Namespace) -> None:
    prefix = f"rfbench_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(args.pg_url)
    try:
        await _refresh(pool, args, prefix)
        await _writes(pool, args, prefix)
    finally:
        for (name,) in await pool.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{prefix}%"
        ):
            await pool.execute(f"DROP SCHEMA {name} CASCADE")
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transports", type=int, default=500_000)
    parser.add_argument("--visors", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    asyncio.run(main(parser.parse_args()))
