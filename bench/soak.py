"""Soak: a local network under churn, what users get, and whether resources stay flat.

Three dmsg relay servers, the services and six visors (a ring of stcpr transports plus two
chords, so that a path of live visors exists while any one visor is down), visor 0 running
the resolving proxies, and a dmsg client serving a small site. For ``--seconds`` (default 120)
three workers loop:

* route setups between random pairs of live visors (1-3 hops), echoing a few bytes;
* dmsg dials between random live visors (dmsgctrl ping on port 7);
* proxied requests through visor 0's SOCKS5 proxy to the dmsg site.

Meanwhile every 5-15 s one of a visor (never visor 0), a relay server or the discovery is
stopped and started again 1-5 s later, in this process: a graceful stop, not ``kill -9``. It
prints the share of each operation that succeeded (attempts only between live visors), the
time to recover after each restart (to the first success that involves the restarted part),
route setups over 1 s, and RSS, fds and tasks at the start and the end.

Prints ``name: value unit`` lines. ``--seconds N``, ``--seed S``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import struct
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from tests.integration._proxynet import SiteServer, site_app

from skywire.cipher import SecKey
from skywire.dmsg.http import HTTPServer
from skywire.router import RouteGroup, RouteListener
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import PersistentTransport, VisorConfig
from skywire.wire.tasks import serve_each

VISORS = 6
CHORDS = [(0, 3), (1, 4)]
ECHO_PORT = 9


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _task_kind(task: asyncio.Task[object]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", type(coro).__name__)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class Tally:
    def __init__(self) -> None:
        self.ok: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.setup_times: list[float] = []
        self.waiting: dict[str, float] = {}  # restarted part -> when it came back
        self.recovery: list[float] = []

    def record(self, kind: str, ok: bool, error: str = "", parties: tuple[str, ...] = ()) -> None:
        if ok:
            self.ok[kind] += 1
            now = time.monotonic()
            for p in parties:
                back = self.waiting.pop(p, None)
                if back is not None:
                    self.recovery.append(now - back)
        else:
            self.failed[kind] += 1
            self.errors[f"{kind}: {error[:400]}"] += 1


async def soak(seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    tally = Tally()
    down: set[str] = set()  # parts being restarted right now: "visor-3", "server-1", "disc"

    # The links: a ring and two chords, persistent in both visors' configs (as an operator
    # keeps them), so that a restarted visor gets its transports back.
    keys = {f"visor-{i}": SecKey.generate() for i in range(VISORS)}
    keys["setup-node"] = SecKey.generate()
    pks = [keys[f"visor-{i}"].pubkey() for i in range(VISORS)]
    links = [(i, (i + 1) % VISORS) for i in range(VISORS)] + CHORDS

    def configure(index: int, cfg: VisorConfig) -> None:
        if index == 0:
            cfg.dmsg_web.enabled = True
            cfg.dmsg_web.listen = "127.0.0.1:0"
        cfg.persistent_transports = [
            PersistentTransport(pk=pks[b if a == index else a], type="stcpr")
            for a, b in links
            if index in (a, b)
        ]

    async with (
        LocalDmsgNetwork(servers=3) as dnet,
        LocalSkywire(
            dnet, visors=VISORS, latency_interval=0, configure=configure, keys=keys.__getitem__
        ) as sky,
        SiteServer("the soak site") as _site,
    ):
        async with asyncio.timeout(60):  # the persistent transports come up on their own
            for a, b in links:
                tm = sky.visors[a].tm
                assert tm is not None
                while not tm.by_remote(pks[b]):  # noqa: ASYNC110 - a setup wait, bounded
                    await asyncio.sleep(0.05)
        assert sky.finder is not None
        await sky.finder.refresh()
        site = await dnet.client()
        listener = await site.listen(80)
        http = HTTPServer(site_app("the soak site"), listener)
        await http.start()
        listeners: dict[int, RouteListener] = {}

        start = (current_rss_mib(), fds(), len(asyncio.all_tasks()))
        names_before = Counter(_task_kind(t) for t in asyncio.all_tasks())
        print(f"soak_start_rss: {start[0]:.1f} MiB")
        print(f"soak_start_fds: {start[1]} fds")
        print(f"soak_start_tasks: {start[2]} tasks")
        deadline = time.monotonic() + seconds
        restarts: list[tuple[str, float]] = []  # (part, when it came back)

        def live() -> list[int]:
            return [i for i in range(VISORS) if f"visor-{i}" not in down]

        async def echo(rg: RouteGroup) -> None:
            try:
                data = await rg.read(64)
                await rg.write(data)
            except (ConnectionError, OSError):
                pass
            finally:
                await rg.close()

        async def echo_server(i: int) -> None:
            """Echo on every route group that reaches visor ``i`` (its current router, also
            after a restart), each in a task of its own."""
            while True:
                router = sky.visors[i].router
                assert router is not None
                listener = listeners.get(id(router))
                if listener is None:
                    listener = listeners[id(router)] = await router.listen(ECHO_PORT)
                with contextlib.suppress(ConnectionError):
                    await serve_each(listener.accept, echo, what="echo")
                await asyncio.sleep(0.1)  # the router was replaced: pick up the new one

        async def route_worker() -> None:
            while time.monotonic() < deadline:
                a, b = rng.sample(live(), 2)
                src, dst = sky.visors[a], sky.visors[b]
                assert src.router is not None
                t0 = time.monotonic()
                rg: RouteGroup | None = None
                try:
                    async with asyncio.timeout(10):
                        rg = await src.router.dial_routes(
                            dst.pk, 0, ECHO_PORT, min_hops=1, max_hops=3
                        )
                        tally.setup_times.append(time.monotonic() - t0)
                        await rg.write(b"soak")
                        ok = await rg.readexactly(4) == b"soak"
                        await rg.close()
                    tally.record("route_setup", ok, "", (f"visor-{a}", f"visor-{b}"))
                except Exception as exc:  # a failed attempt is what this bench counts
                    if rg is not None:
                        await rg.abort()
                    if f"visor-{a}" not in down and f"visor-{b}" not in down:
                        tally.record("route_setup", False, f"{type(exc).__name__}: {exc}")

        async def dial_worker() -> None:
            while time.monotonic() < deadline:
                a, b = rng.sample(live(), 2)
                src, dst = sky.visors[a], sky.visors[b]
                assert src.dmsg is not None
                try:
                    async with asyncio.timeout(10):
                        await src.dmsg.ping(dst.pk)
                    tally.record("dmsg_dial", True, "", (f"visor-{a}", f"visor-{b}", "dmsg"))
                except Exception as exc:
                    if f"visor-{a}" not in down and f"visor-{b}" not in down:
                        tally.record("dmsg_dial", False, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)

        async def proxy_worker() -> None:
            web = sky.visors[0].web
            assert web is not None
            host, _, port = web.proxies["dmsg_web"].address.rpartition(":")
            name = f"{site.pk.hex()}.dmsg".encode()
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(10):
                        r, w = await asyncio.open_connection(host, int(port))
                        w.write(b"\x05\x01\x00")
                        await r.readexactly(2)
                        w.write(bytes([5, 1, 0, 3, len(name)]) + name + struct.pack(">H", 80))
                        head = await r.readexactly(10)
                        ok = head[1] == 0
                        if ok:
                            w.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                            ok = b"soak site" in await r.read()
                        w.close()
                        await w.wait_closed()
                    tally.record("proxied_request", ok, f"reply {head[1]}", ("dmsg",))
                except Exception as exc:
                    tally.record("proxied_request", False, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)

        async def chaos() -> None:
            while time.monotonic() + 20 < deadline:
                await asyncio.sleep(rng.uniform(5, 15))
                kind = rng.choice(["visor", "server", "disc"])
                pause = rng.uniform(1, 5)
                if kind == "visor":
                    i = rng.choice([i for i in range(1, VISORS)])
                    part = f"visor-{i}"
                    down.add(part)
                    await sky.restart_visor(i, pause)
                elif kind == "server":
                    i = rng.randrange(len(dnet.servers))
                    part = f"server-{i}"
                    down.add(part)
                    await dnet.restart_server(i, pause)
                else:
                    part = "disc"
                    down.add(part)
                    await dnet.stop_discovery()
                    await asyncio.sleep(pause)
                    await dnet.start_discovery()
                down.discard(part)
                restarts.append((part, time.monotonic()))
                # recovered at the first success that needs it: a visor's own, or any dmsg
                # dial or proxied request after a relay server or the discovery came back
                tally.waiting[part if part.startswith("visor") else "dmsg"] = time.monotonic()
                print(f"# restarted {part} after {pause:.1f} s down", flush=True)

        async with asyncio.TaskGroup() as tg:
            servers = [tg.create_task(echo_server(i)) for i in range(VISORS)]
            workers = [
                tg.create_task(route_worker()),
                tg.create_task(dial_worker()),
                tg.create_task(proxy_worker()),
                tg.create_task(chaos()),
            ]
            await asyncio.wait(workers)
            for t in servers:
                t.cancel()

        for kind in ("route_setup", "dmsg_dial", "proxied_request"):
            total = tally.ok[kind] + tally.failed[kind]
            share = 100 * tally.ok[kind] / total if total else float("nan")
            print(f"soak_{kind}_success: {share:.2f} % of {total}")
        slow = sum(1 for t in tally.setup_times if t > 1.0)
        print(f"soak_route_setups_over_1s: {slow} setups")
        if tally.setup_times:
            q = statistics.quantiles(tally.setup_times, n=100)
            print(f"soak_route_setup_p50: {statistics.median(tally.setup_times) * 1e3:.1f} ms")
            print(f"soak_route_setup_p99: {q[98] * 1e3:.1f} ms")
        recover = tally.recovery
        if recover:
            p50 = statistics.median(recover)
            print(f"soak_recovery_p50: {p50:.2f} s after {len(restarts)} restarts")
            print(f"soak_recovery_max: {max(recover):.2f} s")
        await http.close()
        end = (current_rss_mib(), fds(), len(asyncio.all_tasks()))
        print(f"soak_end_rss: {end[0]:.1f} MiB")
        print(f"soak_end_fds: {end[1]} fds")
        print(f"soak_end_tasks: {end[2]} tasks")
        grown = Counter(_task_kind(t) for t in asyncio.all_tasks()) - names_before
        for kind, count in grown.most_common(6):
            print(f"# tasks grown: {count} x {kind}")
        for error, count in tally.errors.most_common(8):
            print(f"# {count} x {error}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(soak(args.seconds, args.seed))
