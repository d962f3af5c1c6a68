"""Route finder figures on a generated graph, one line each (``name: value unit``).

* graph build time from 50,000 transport entries (10,000 visors);
* latency-weighted query time p50/p90 over 50 random (source, destination) pairs
  (MinHops 1, MaxHops 50, 5 paths — what a [2024] visor asks for);
* the same for the hop-count order, and through the HTTP API (``POST /routes``, both directions).

The graph is random: each transport joins two random visors, 80 % of transports carry a
measured latency (5–300 ms), types are mostly stcpr with some sudph, stcp and dmsg.

Usage: ``python bench/route_finder.py [--visors 10000] [--transports 50000] [--queries 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time
import uuid

from skywire.cipher import PubKey, SecKey
from skywire.services.rf import (
    RFClient,
    RouteFinder,
    RouteFinderServer,
    StaticTransportSource,
    TransportInfo,
)
from skywire.services.rf.graph import Graph, RouteFinderError

TYPES = ["stcpr"] * 6 + ["sudph"] * 2 + ["stcp", "dmsg"]


def generate(visors: int, transports: int, seed: int) -> tuple[list[PubKey], list[TransportInfo]]:
    rng = random.Random(seed)
    pks = [SecKey((i + 1).to_bytes(32, "big")).pubkey() for i in range(visors)]
    pairs: set[tuple[int, int]] = set()
    out: list[TransportInfo] = []
    while len(out) < transports:
        a, b = rng.randrange(visors), rng.randrange(visors)
        key = (min(a, b), max(a, b))
        if a == b or key in pairs:
            continue
        pairs.add(key)
        latency = round(rng.uniform(5, 300), 1) if rng.random() < 0.8 else None
        tp_id = uuid.UUID(int=rng.getrandbits(128))
        out.append(TransportInfo(tp_id, (pks[a], pks[b]), rng.choice(TYPES), latency))
    return pks, out


def percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=10, method="inclusive")
    return statistics.median(samples), q[8]


def bench_queries(
    graph: Graph, pks: list[PubKey], queries: int, weighted: bool, seed: int
) -> tuple[list[float], int]:
    rng = random.Random(seed)
    times: list[float] = []
    found = 0
    for _ in range(queries):
        src, dst = rng.sample(pks, 2)
        started = time.perf_counter()
        with contextlib.suppress(RouteFinderError):
            found += len(graph.find_routes(src, dst, min_hops=1, max_hops=50, weighted=weighted))
        times.append((time.perf_counter() - started) * 1000)
    return times, found


async def bench_http(
    transports: list[TransportInfo], pks: list[PubKey], queries: int, seed: int
) -> list[float]:
    rng = random.Random(seed)
    finder = RouteFinder(StaticTransportSource(transports), refresh_interval=None)
    times: list[float] = []
    async with RouteFinderServer(finder, run_refresh=False) as server:
        await finder.refresh()
        async with RFClient(server.url) as client:
            await client.health()  # open the connection
            for _ in range(queries):
                src, dst = rng.sample(pks, 2)
                started = time.perf_counter()
                await client.find_routes([(src, dst), (dst, src)], min_hops=1, max_hops=50)
                times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visors", type=int, default=10_000)
    parser.add_argument("--transports", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    pks, transports = generate(args.visors, args.transports, args.seed)
    started = time.perf_counter()
    graph = Graph.build(transports)
    build_ms = (time.perf_counter() - started) * 1000
    print(
        f"graph build ({graph.node_count} visors, {graph.transport_count} transports): "
        f"{build_ms:.1f} ms"
    )

    for weighted, name in ((True, "latency-weighted"), (False, "hop-count")):
        times, found = bench_queries(graph, pks, args.queries, weighted, args.seed + 1)
        p50, p90 = percentiles(times)
        print(f"{name} query p50: {p50:.2f} ms")
        print(f"{name} query p90: {p90:.2f} ms")
        print(f"{name} query max: {max(times):.2f} ms")
        print(f"{name} paths found: {found / args.queries:.1f} per query")

    http = asyncio.run(bench_http(transports, pks, args.queries, args.seed + 2))
    p50, p90 = percentiles(http)
    print(f"HTTP POST /routes (2 directions) p50: {p50:.2f} ms")
    print(f"HTTP POST /routes (2 directions) p90: {p90:.2f} ms")


if __name__ == "__main__":
    main()
