"""Discovery services at production scale, on their production stores, one figure a line.

* 100,000 signed visor client entries in a dmsg discovery on Redis, 500,000 transports signed by
  both edges in a transport discovery on PostgreSQL (between those visors, ~10 per visor, a
  share of them with a reported latency). Preloading writes through each store's own Python
  API (``RedisStore.set`` one entry at a time, 32 at once; ``PostgresStore.register`` in
  batches of 1,000 and ``set_latency``), not over HTTP.
* Every service runs in its own process (``python -m skywire.cli …``, log level warning): two
  dmsg discoveries on the same Redis key namespace, two transport discoveries on the same
  PostgreSQL schema, and route finders reading the transport discovery (over its HTTP API, and
  straight from PostgreSQL with ``--pg-url``).
* Load comes from separate processes (``--loadgen-procs``), ``--clients`` concurrent keep-alive
  clients for ``--seconds`` each: discovery entry lookups (random loaded keys) against one
  replica and spread over both, transport registrations by visors through the httpauth-signed
  API (one new transport per request, to a fresh peer), route queries (``POST /routes``,
  random pairs, MinHops 1, MaxHops 50).
* Replica checks: what one replica writes or deletes, the other reads.

The Redis namespace and PostgreSQL schema are unique to the run and removed at the end, also
on failure. No figure is asserted.

Usage: ``python bench/scale_bench.py [--visors 100000] [--transports 500000] [--clients 300]
[--seconds 10]``; e.g. ``--visors 2000 --transports 10000 --clients 50 --seconds 3`` for a
quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).parent))
import scale_gen
import scale_replicas
from skywire.dmsg.disc_entry import Entry as DiscEntry
from skywire.services.dmsgdisc.store.redis import RedisStore
from skywire.services.tpd.store.postgres import PostgresStore
from skywire.transport.entry import SignedEntry


def fig(name: str, value: float | str, unit: str = "") -> None:
    text = f"{value:.1f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text} {unit}".rstrip(), flush=True)


def note(text: str) -> None:
    print(f"# {text}", flush=True)


class Progress:
    """Prints ``label: n/total`` each time another 10 % is done."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.next = label, total, 0, 1
        self.started = time.perf_counter()

    def add(self, n: int) -> None:
        self.done += n
        while self.total and self.next <= 10 and self.done * 10 >= self.next * self.total:
            took = time.perf_counter() - self.started
            note(f"{self.label}: {self.next * 10}% ({self.done}/{self.total}, {took:.0f} s)")
            self.next += 1


# -- services ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    proc: asyncio.subprocess.Process
    port: int
    log: Path
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, field: str) -> int:
        """A ``/proc/<pid>/status`` field in KiB (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0


class Services:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.running: list[Service] = []

    async def start(self, name: str, *argv: str) -> Service:
        port = free_port()
        log = self.logdir / f"{name}.log"
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "skywire.cli",
                *argv,
                "--addr",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(out)
        svc = Service(name, proc, port, log, time.perf_counter())
        self.running.append(svc)
        return svc

    async def wait_ready(self, svc: Service, path: str = "/health", timeout: float = 600) -> Any:
        """Poll ``path`` until it answers 200; returns its JSON."""
        deadline = time.perf_counter() + timeout
        async with aiohttp.ClientSession() as http:
            while time.perf_counter() < deadline:
                if svc.proc.returncode is not None:
                    tail = svc.log.read_text()[-2000:]
                    raise RuntimeError(f"{svc.name} exited {svc.proc.returncode}:\n{tail}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(svc.url + path) as resp:
                        if resp.status == 200:
                            return await resp.json(content_type=None)
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{svc.name} not ready after {timeout} s")

    async def stop(self, svc: Service) -> None:
        if svc.proc.returncode is None:
            svc.proc.terminate()
            try:
                await asyncio.wait_for(svc.proc.wait(), 15)
            except TimeoutError:
                svc.proc.kill()
                await svc.proc.wait()
        if svc in self.running:
            self.running.remove(svc)

    async def stop_all(self) -> None:
        for svc in list(self.running):
            await self.stop(svc)


async def metric(url: str, name: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


# -- data ------------------------------------------------------------------------------------


@dataclass
class Data:
    sks: list[bytes]
    pks: list[bytes]
    disc_entries: list[DiscEntry]
    transports: list[SignedEntry]


def transport_pairs(visors: int, count: int, seed: int) -> list[tuple[int, int, str]]:
    rng = random.Random(seed)
    seen: set[tuple[int, int, str]] = set()
    out: list[tuple[int, int, str]] = []
    while len(out) < count:
        a, b = rng.randrange(visors), rng.randrange(visors)
        key = (min(a, b), max(a, b), rng.choice(scale_gen.TP_TYPES))
        if a != b and key not in seen:
            seen.add(key)
            out.append(key)
    return out


def generate(args: argparse.Namespace, seed: int) -> Data:
    ctx = multiprocessing.get_context("spawn")
    procs = os.cpu_count() or 2
    started = time.perf_counter()
    progress = Progress("visor keys", args.visors)
    sks: list[bytes] = []
    pks: list[bytes] = []
    with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        jobs = [
            pool.submit(scale_gen.gen_keys, seed, a, b)
            for a, b in scale_gen.chunks(args.visors, 5000)
        ]
        for job in jobs:
            got = job.result()
            sks.extend(sk for sk, _ in got)
            pks.extend(pk for _, pk in got)
            progress.add(len(got))
    now = time.time_ns()
    pairs = transport_pairs(args.visors, args.transports, seed)
    entries: list[DiscEntry] = []
    transports: list[SignedEntry] = []
    with ProcessPoolExecutor(
        procs, mp_context=ctx, initializer=scale_gen.init_signer, initargs=(sks, pks)
    ) as pool:
        progress = Progress("signed dmsg discovery entries", args.visors)
        for job in [
            pool.submit(scale_gen.sign_disc_entries, a, b, now)
            for a, b in scale_gen.chunks(args.visors, 5000)
        ]:
            entries.extend(job.result())
            progress.add(len(entries) - progress.done)
        progress = Progress("transports signed by both edges", args.transports)
        for job in [
            pool.submit(scale_gen.sign_transports, pairs[a:b])
            for a, b in scale_gen.chunks(args.transports, 10000)
        ]:
            transports.extend(job.result())
            progress.add(len(transports) - progress.done)
    fig("data generation (keys, signatures; all cores)", time.perf_counter() - started, "s")
    return Data(sks, pks, entries, transports)


async def preload_redis(store: RedisStore, entries: list[DiscEntry]) -> None:
    progress = Progress("dmsg entries written to Redis", len(entries))
    it = iter(entries)
    started = time.perf_counter()

    async def worker() -> None:
        for entry in it:
            await store.set(entry)
            progress.add(1)

    await asyncio.gather(*(worker() for _ in range(32)))
    took = time.perf_counter() - started
    fig("preload: RedisStore.set (32 concurrent)", len(entries) / took, "entries/s")


async def preload_pg(store: PostgresStore, data: Data, latency_share: float, seed: int) -> None:
    progress = Progress("transports registered in PostgreSQL", len(data.transports))
    batches = iter(list(scale_gen.chunks(len(data.transports), 1000)))
    started = time.perf_counter()

    async def worker() -> None:
        for a, b in batches:
            await store.register(data.transports[a:b])
            progress.add(b - a)

    await asyncio.gather(*(worker() for _ in range(4)))
    took = time.perf_counter() - started
    fig("preload: PostgresStore.register (batches of 1000)", len(data.transports) / took, "tp/s")
    rng = random.Random(seed)
    measured = [se for se in data.transports if rng.random() < latency_share]
    progress = Progress("latencies reported", len(measured))
    it = iter(measured)
    started = time.perf_counter()

    async def reporter() -> None:
        for se in it:
            lat = round(rng.uniform(5, 300), 1)
            await store.set_latency(se.entry.id, lat, se.entry.edges[0])
            progress.add(1)

    await asyncio.gather(*(reporter() for _ in range(8)))
    if measured:
        took = time.perf_counter() - started
        fig("preload: PostgresStore.set_latency (8 concurrent)", len(measured) / took, "tp/s")


# -- load --------------------------------------------------------------------------------------


async def run_load(
    pool: Executor, procs: int, fn: Callable[..., dict[str, Any]], *per_proc: Any
) -> dict[str, Any]:
    """Run ``fn(*per_proc[p])`` in each load process; merge latencies and statuses."""
    loop = asyncio.get_running_loop()
    got = await asyncio.gather(*(loop.run_in_executor(pool, fn, *a) for a in per_proc[:procs]))
    lat: list[float] = []
    statuses: dict[int, int] = {}
    for g in got:
        lat.extend(g["latencies"])
        for k, v in g["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "lat": lat,
        "statuses": statuses,
        "elapsed": max(g["elapsed"] for g in got),
        "extra": got,
    }


def report(label: str, res: dict[str, Any], ok: Sequence[int], unit: str = "req/s") -> float:
    n_ok = sum(v for k, v in res["statuses"].items() if k in ok)
    rate = n_ok / res["elapsed"] if res["elapsed"] else 0.0
    fig(f"{label} p50", scale_gen.pct(res["lat"], 50), "ms")
    fig(f"{label} p99", scale_gen.pct(res["lat"], 99), "ms")
    fig(f"{label} rate", rate, unit)
    other = {k: v for k, v in res["statuses"].items() if k not in ok}
    if other:
        note(f"{label}: other answers {other} (status -1: connection error or timeout)")
    return rate


# -- measurements ------------------------------------------------------------------------------


async def rf_figures(
    svcs: Services,
    pool: Executor,
    args: argparse.Namespace,
    label: str,
    argv: list[str],
    pk_hex: list[str],
    *,
    queries: bool,
) -> Service:
    rf = await svcs.start(f"rf-{label}", "svc", "rf", "--refresh", str(args.rf_refresh), *argv)
    await svcs.wait_ready(rf)
    while True:
        health = await svcs.wait_ready(rf)
        if "graph" in health:
            break
        if time.perf_counter() - rf.started > args.rf_wait:
            fig(f"rf graph ready after start ({label})", f"none within {args.rf_wait:g} s")
            tail = [ln for ln in rf.log.read_text().splitlines() if "WARNING" in ln][-1:]
            note(f"rf ({label}) last warning: {tail[0][:300] if tail else '-'}")
            return rf
        await asyncio.sleep(0.05)
    ready = time.perf_counter() - rf.started
    graph = health["graph"]
    note(f"route finder ({label}): {graph['visors']} visors, {graph['transports']} transports")
    fig(f"rf graph ready after start ({label}: fetch + parse + build)", ready, "s")
    build = await metric(rf.url, "skywire_rf_graph_build_seconds")
    if build is not None:
        fig(f"rf Graph.build of the fetched list ({label})", build, "s")
    if queries:
        builds0 = await metric(rf.url, "skywire_rf_graph_builds_total") or 0
        procs = args.loadgen_procs
        res = await run_load(
            pool,
            procs,
            scale_gen.load_rf_routes,
            *[
                (rf.url, pk_hex, n, args.seconds, 10 + i)
                for i, n in enumerate(scale_gen.split(args.clients, procs))
            ],
        )
        report(f"rf POST /routes ({label}, {args.clients} clients)", res, (200, 404))
        builds = (await metric(rf.url, "skywire_rf_graph_builds_total") or 0) - builds0
        note(
            f"rf ({label}): {builds:.0f} graph rebuilds during the query window "
            f"(--refresh {args.rf_refresh:g}); 404 = no route within the hop bounds"
        )
    fig(f"rf RSS ({label})", rf.status("VmRSS") / 1024, "MiB")
    return rf


async def bench(args: argparse.Namespace, data: Data, ns: str, schema: str, logdir: Path) -> None:
    svcs = Services(logdir)
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(args.loadgen_procs, mp_context=ctx)
    try:
        await _bench(args, data, ns, schema, svcs, pool)
    finally:
        await svcs.stop_all()
        pool.shutdown(cancel_futures=True)


async def _bench(
    args: argparse.Namespace, data: Data, ns: str, schema: str, svcs: Services, pool: Executor
) -> None:
    procs = args.loadgen_procs
    store = await RedisStore.open(args.redis, namespace=ns)
    try:
        await preload_redis(store, data.disc_entries)
        started = time.perf_counter()
        await store.purge()  # what each discovery replica runs every 10 s
        fig(
            "disc RedisStore.purge pass (every 10 s per replica)",
            time.perf_counter() - started,
            "s",
        )
    finally:
        await store.close()
    pg = await PostgresStore.open(args.pg_url, schema=schema)
    try:
        await preload_pg(pg, data, args.latency_share, 1)
    finally:
        await pg.close()
    data.disc_entries.clear()
    data.transports.clear()

    disc_argv = [
        "dmsg",
        "disc",
        "--store",
        "redis",
        "--redis",
        args.redis,
        "--redis-namespace",
        ns,
        "--test-mode",
    ]
    tpd_argv = ["svc", "tpd", "--store", "postgres", "--pg-url", args.pg_url, "--pg-schema", schema]
    disc = [await svcs.start(f"disc{i}", *disc_argv) for i in (1, 2)]
    tpd = [await svcs.start(f"tpd{i}", *tpd_argv) for i in (1, 2)]
    for svc in disc + tpd:
        await svcs.wait_ready(svc)
    note(
        f"services: 2 dmsg discoveries on Redis namespace {ns!r}, 2 transport discoveries "
        f"on PostgreSQL schema {schema!r}, each its own process"
    )

    await scale_replicas.disc_replicas(disc[0].url, disc[1].url)
    await scale_replicas.tpd_replicas(tpd[0].url, tpd[1].url)

    pk_hex = [pk.hex() for pk in data.pks]
    c, s = args.clients, args.seconds
    load = f"{args.visors // 1000}k entries, {c} clients"
    rates = []
    for label, urls in (("1 replica", [disc[0].url]), ("2 replicas", [d.url for d in disc])):
        res = await run_load(
            pool,
            procs,
            scale_gen.load_disc_get,
            *[(urls, pk_hex, n, s, i) for i, n in enumerate(scale_gen.split(c, procs))],
        )
        rates.append(report(f"disc lookup ({load}, {label})", res, (200,)))
    fig("disc lookup throughput, 2 replicas vs 1", rates[1] / rates[0] if rates[0] else 0.0, "x")

    sk_hex = [sk.hex() for sk in data.sks[: args.clients]]
    per = max(4, int(s * args.reg_per_second))
    load = f"{args.transports // 1000}k stored, {len(sk_hex)} visors"
    rates = []
    for label, urls in (("1 replica", [tpd[0].url]), ("2 replicas", [t.url for t in tpd])):
        res = await run_load(
            pool,
            procs,
            scale_gen.load_tpd_register,
            *[
                (urls, part, per, s, 100 + i + 10 * len(rates))
                for i, part in enumerate(sk_hex[j::procs] for j in range(procs))
            ],
        )
        rates.append(report(f"tpd registration ({load}, {label})", res, (201,), "tp/s"))
        exhausted = sum(g["exhausted"] for g in res["extra"])
        if exhausted:
            note(f"tpd: {exhausted} visors used all {per} pre-signed entries before the end")
    fig(
        "tpd registration throughput, 2 replicas vs 1",
        rates[1] / rates[0] if rates[0] else 0.0,
        "x",
    )

    started = time.perf_counter()
    async with (
        aiohttp.ClientSession() as http,
        http.get(tpd[0].url + "/all-transports?latency=1") as resp,
    ):
        size = len(await resp.read())
    fig("tpd GET /all-transports?latency=1", time.perf_counter() - started, "s")
    fig("tpd GET /all-transports?latency=1 body", size / 2**20, "MiB")

    rf = await rf_figures(
        svcs, pool, args, "HTTP from tpd", ["--tpd", tpd[0].url], pk_hex, queries=True
    )
    if args.rf_pg:
        await svcs.stop(rf)
        await rf_figures(
            svcs,
            pool,
            args,
            "PostgreSQL",
            ["--pg-url", args.pg_url, "--pg-schema", schema],
            pk_hex,
            queries=True,
        )
    for svc in svcs.running:
        fig(f"RSS {svc.name} (peak)", svc.status("VmHWM") / 1024, "MiB")
        fig(f"RSS {svc.name} (now)", svc.status("VmRSS") / 1024, "MiB")


# -- set-up and clean-up ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def isolated(args: argparse.Namespace) -> AsyncIterator[tuple[str, str]]:
    """A Redis namespace and a PostgreSQL schema of this run, removed afterwards."""
    run = uuid.uuid4().hex[:10]
    ns, schema = f"scalebench:{run}:", f"scalebench_{run}"
    conn = await asyncpg.connect(args.pg_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield ns, schema
    finally:
        conn = await asyncpg.connect(args.pg_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        r = aioredis.Redis.from_url(args.redis)
        try:
            batch: list[bytes] = []
            async for key in r.scan_iter(match=f"{ns}*", count=10000):
                batch.append(key)
                if len(batch) >= 10000:
                    await r.unlink(*batch)
                    batch.clear()
            if batch:
                await r.unlink(*batch)
        finally:
            await r.aclose()
        note(f"removed Redis namespace {ns!r} and PostgreSQL schema {schema!r}")


async def amain(args: argparse.Namespace, data: Data) -> None:
    with tempfile.TemporaryDirectory(prefix="scalebench-") as logdir:
        async with isolated(args) as (ns, schema):
            await bench(args, data, ns, schema, Path(logdir))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visors", type=int, default=100_000)
    p.add_argument("--transports", type=int, default=500_000)
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--loadgen-procs", type=int, default=2, help="load generator processes")
    p.add_argument(
        "--latency-share",
        type=float,
        default=0.2,
        help="share of transports given a reported latency",
    )
    p.add_argument(
        "--reg-per-second",
        type=float,
        default=16.0,
        help="entries pre-signed per registering visor and second of load",
    )
    p.add_argument(
        "--rf-refresh",
        type=float,
        default=3.0,
        help="route finder --refresh (the service default is 3 s)",
    )
    p.add_argument(
        "--rf-wait",
        type=float,
        default=240.0,
        help="seconds to wait for a route finder's first graph",
    )
    p.add_argument(
        "--no-rf-pg",
        dest="rf_pg",
        action="store_false",
        help="skip the route finder reading PostgreSQL directly",
    )
    p.add_argument("--redis", default="redis://127.0.0.1:6379")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = p.parse_args()
    print(
        f"# scale bench: {args.visors} visors, {args.transports} transports, "
        f"{args.clients} clients x {args.seconds:g} s, {os.cpu_count()} cores, "
        f"{args.loadgen_procs} load processes",
        flush=True,
    )
    data = generate(args, seed=1)
    asyncio.run(amain(args, data))


if __name__ == "__main__":
    main()
