"""Soak: a network of processes under churn (SIGKILL), what users get, and whether resources
stay flat.

Every part is its own ``skywire`` process (skywire.testnet.procnet): dmsg discovery, three relay
servers, transport discovery, address resolver, route finder, setup node and eight visors
linked in a ring of stcpr transports plus a dmsg transport from each visor to the one two
along (16 transports, persistent, so that they come back with a restarted visor). Visor 0 runs
the resolving proxy. This process holds a dmsg client that serves a small site. For
``--seconds`` (default 600) workers loop:

* route set-ups between random pairs of live visors, 2-3 hops, each a ``route ping`` (a new
  route, a 256-byte echo, closed) asked of the source visor's control API;
* dmsg dials from this process's client to random live visors (dmsgctrl ping);
* proxied requests through visor 0's SOCKS5 proxy to the site's ``.dmsg`` name.

Meanwhile every 10-30 s one of a visor (never visor 0), a relay server or the discovery is
killed with SIGKILL and started again 1-10 s later. Before a visor is killed, a route between
its two ring neighbours is set up through it and kept pinging: the time from the kill to the
error at the pinging end is the teardown time. A visor counts as live again once its
transports are back.

Prints ``name: value unit`` lines: the share of route set-ups that succeeded while a path of
live visors existed (overall, with discovery down, and with nothing down), set-up p50/p99
with nothing down and over all, set-ups over 1 s, teardown times, recovery times, the
dmsg-dial and proxied-request shares, and RSS, fds and asyncio tasks of the parts never
killed, at the start, after the first minute (allocators warm up) and at the end (once work
under way has settled). ``--seconds N``, ``--seed S``, ``--dir PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from tests.integration._proxynet import site_app

from skywire.cipher import SecKey
from skywire.dmsg.client import Client
from skywire.dmsg.http import HTTPServer, fetch
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.procnet import ProcessNetwork
from skywire.visor.config import VisorConfig
from skywire.visor.rpc import RPCClient, RPCClientError

VISORS = 8
LINKS = [(i, (i + 1) % VISORS, "stcpr") for i in range(VISORS)] + [
    (i, (i + 2) % VISORS, "dmsg") for i in range(VISORS)
]
NEVER_KILLED = ["tpd", "ar", "rf", "sn", "visor-0"]


def say(text: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {text}", flush=True)


def neighbours(i: int) -> set[int]:
    return {b if a == i else a for a, b, _ in LINKS if i in (a, b)}


def path_exists(a: int, b: int, live: set[int], lo: int = 2, hi: int = 3) -> bool:
    """A simple path of ``lo``..``hi`` hops from ``a`` to ``b`` through live visors."""

    def walk(at: int, seen: tuple[int, ...]) -> bool:
        hops = len(seen) - 1
        if at == b:
            return lo <= hops <= hi
        if hops >= hi:
            return False
        return any(walk(n, (*seen, n)) for n in neighbours(at) if n in live and n not in seen)

    return walk(a, (a,))


def proc_stats(pid: int) -> tuple[float, int]:
    """RSS (MiB) and open fds of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    setup_ms: list[float] = field(default_factory=list)
    setup_ms_calm: list[float] = field(default_factory=list)
    teardown_ms: list[float] = field(default_factory=list)
    recovery: dict[str, list[float]] = field(default_factory=dict)
    waiting_dmsg: float | None = None

    def record(self, kinds: list[str], ok: bool, error: str = "") -> None:
        for kind in kinds:
            if ok:
                self.ok[kind] += 1
            else:
                self.failed[kind] += 1
        if not ok:
            self.errors[f"{kinds[0]}: {error[:300]}"] += 1

    def share(self, kind: str) -> str:
        total = self.ok[kind] + self.failed[kind]
        if not total:
            return "n/a"
        return f"{100 * self.ok[kind] / total:.2f} % of {total}"


class Soak:
    def __init__(self, net: ProcessNetwork, seconds: float, seed: int) -> None:
        self.net = net
        self.rng = random.Random(seed)
        self.deadline = time.monotonic() + seconds
        self.tally = Tally()
        self.live = set(range(VISORS))
        self.down: set[str] = set()  # parts killed and not back yet
        self.rpcs = [RPCClient(net.rpc_addr(i), timeout=30) for i in range(VISORS)]
        # route workers hold back while a visor's teardown probe is set up, so the new rule that
        # appears on the victim is the probe's
        self.quiet = False
        self.inflight = 0
        self.calm_down = asyncio.Condition()

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def ping(self, a: int, b: int, **body: object) -> dict[str, object]:
        doc = await self.rpcs[a].call(
            "POST", "/routes/ping", {"pk": self.net.visor_pk(b).hex(), **body}
        )
        assert isinstance(doc, dict)
        return doc

    async def rule_keys(self, v: int) -> set[int]:
        rules = await self.rpcs[v].call("GET", "/rules")
        assert isinstance(rules, list)
        return {int(r["key"]) for r in rules}

    # ---------------------------------------------------------------- workers
    async def route_worker(self) -> None:
        while self.running():
            if len(self.live) < 2:
                await asyncio.sleep(0.1)
                continue
            async with self.calm_down:
                await self.calm_down.wait_for(lambda: not self.quiet)
                self.inflight += 1
            a, b = self.rng.sample(sorted(self.live), 2)
            before = path_exists(a, b, self.live)
            calm, disc_down = not self.down, "disc" in self.down
            try:
                doc = await self.ping(a, b, min_hops=2, max_hops=3, size=256)
                ok, error = True, ""
                setup = float(doc["setup_ms"])  # type: ignore[arg-type]
            except RPCClientError as exc:
                ok, error, setup = False, str(exc), float("nan")
            finally:
                async with self.calm_down:
                    self.inflight -= 1
                    self.calm_down.notify_all()
            counted = before and path_exists(a, b, self.live) and {a, b} <= self.live
            if not counted:
                continue
            kinds = ["route_setup"]
            if disc_down:
                kinds.append("route_setup_discovery_down")
            if calm and not self.down:
                kinds.append("route_setup_calm")
            self.tally.record(kinds, ok, error)
            if ok:
                self.tally.setup_ms.append(setup)
                if "route_setup_calm" in kinds:
                    self.tally.setup_ms_calm.append(setup)

    async def dial_worker(self, client: Client) -> None:
        while self.running():
            i = self.rng.choice(sorted(self.live))
            try:
                async with asyncio.timeout(10):
                    await client.ping(self.net.visor_pk(i))
                ok, error = True, ""
            except Exception as exc:  # a failed dial is what this bench counts
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if i in self.live:
                self.tally.record(["dmsg_dial"], ok, error)
                if ok and self.tally.waiting_dmsg is not None:
                    self.tally.recovery.setdefault("relay/discovery", []).append(
                        time.monotonic() - self.tally.waiting_dmsg
                    )
                    self.tally.waiting_dmsg = None
            await asyncio.sleep(0.05)

    async def proxy_worker(self, site: Client, port: int) -> None:
        name = f"{site.pk.hex()}.dmsg".encode()
        while self.running():
            head = b"\x00\xff"
            try:
                async with asyncio.timeout(10):
                    r, w = await asyncio.open_connection("127.0.0.1", port)
                    try:
                        w.write(b"\x05\x01\x00")
                        await r.readexactly(2)
                        w.write(bytes([5, 1, 0, 3, len(name)]) + name + struct.pack(">H", 80))
                        head = await r.readexactly(10)
                        ok = head[1] == 0
                        if ok:
                            w.write(b"GET / HTTP/1.0\r\nHost: site\r\n\r\n")
                            ok = b"soak site" in await r.read()
                    finally:
                        w.close()
                        with contextlib.suppress(OSError):
                            await w.wait_closed()
                error = f"SOCKS5 reply {head[1]}"
            except Exception as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self.tally.record(["proxied_request"], ok, error)
            await asyncio.sleep(0.05)

    # ---------------------------------------------------------------- chaos
    async def chaos(self) -> None:
        while time.monotonic() + 40 < self.deadline:
            await asyncio.sleep(self.rng.uniform(10, 30))
            kind = self.rng.choice(["visor", "visor", "relay", "disc"])
            pause = self.rng.uniform(1, 10)
            if kind == "visor":
                await self.kill_visor(self.rng.randrange(1, VISORS), pause)
            else:
                part = f"relay-{self.rng.randrange(3)}" if kind == "relay" else "disc"
                self.down.add(part)
                await self.net.kill(part)
                say(f"killed {part}, down {pause:.1f} s")
                await asyncio.sleep(pause)
                await self.net.restart(part)
                self.down.discard(part)
                self.tally.waiting_dmsg = time.monotonic()

    async def kill_visor(self, v: int, pause: float) -> None:
        part = f"visor-{v}"
        a, b = (v - 1) % VISORS, (v + 1) % VISORS
        flowing: asyncio.Task[dict[str, object]] | None = None
        if {a, b} <= self.live:
            async with self.calm_down:
                self.quiet = True
                await self.calm_down.wait_for(lambda: self.inflight == 0)
            try:
                known = await self.rule_keys(v)
                flowing = asyncio.create_task(
                    self.ping(a, b, via=[self.net.visor_pk(v).hex()], count=10**6, interval=0.02)
                )
                with contextlib.suppress(TimeoutError, RPCClientError):
                    async with asyncio.timeout(5):
                        while await self.rule_keys(v) <= known:  # noqa: ASYNC110 (polls a process)
                            await asyncio.sleep(0.02)
            finally:
                async with self.calm_down:
                    self.quiet = False
                    self.calm_down.notify_all()
        self.live.discard(v)
        self.down.add(part)
        killed = time.monotonic()
        await self.net.kill(part)
        if flowing is not None:
            try:
                async with asyncio.timeout(30):
                    await flowing
            except RPCClientError as exc:
                if "broken" in str(exc):
                    self.tally.teardown_ms.append((time.monotonic() - killed) * 1e3)
                else:
                    self.tally.errors[f"teardown: {str(exc)[:200]}"] += 1
                    say(f"no teardown measured: {str(exc)[:300]}")
            except TimeoutError:
                self.tally.errors["teardown: no error within 30 s"] += 1
        say(f"killed {part} ({len(self.tally.teardown_ms)} teardowns so far), down {pause:.1f} s")
        await asyncio.sleep(max(0.0, pause - (time.monotonic() - killed)))
        restarted = time.monotonic()
        await self.net.restart(part)
        await self.net.visor_ready(v, transports=len(neighbours(v)))
        self.down.discard(part)
        self.live.add(v)
        # recovered at the first route through it
        while self.running():
            try:
                await self.ping(a, b, via=[self.net.visor_pk(v).hex()])
            except RPCClientError:
                await asyncio.sleep(0.1)
                continue
            self.tally.recovery.setdefault("visor", []).append(time.monotonic() - restarted)
            break

    # ---------------------------------------------------------------- resources
    async def resources(self, client: Client) -> dict[str, tuple[float, int, int]]:
        """RSS (MiB), open fds and asyncio tasks of every part never killed."""
        urls = {"tpd": self.net.tpd_url, "ar": self.net.ar_url, "rf": self.net.rf_url}
        out = {}
        async with aiohttp.ClientSession() as http:
            for name in NEVER_KILLED:
                proc = self.net.parts[name].proc
                assert proc is not None
                if name in urls:
                    async with http.get(f"{urls[name]}/health") as resp:
                        tasks = int((await resp.json(content_type=None))["tasks"])
                elif name == "sn":
                    url = f"dmsg://{self.net.setup_pk.hex()}:80/health"
                    tasks = int((await fetch(client.dial, url)).json()["tasks"])
                else:
                    info = await self.rpcs[0].call("GET", "/visor/info")
                    assert isinstance(info, dict)
                    tasks = int(info["tasks"])
                out[name] = (*proc_stats(proc.pid), tasks)
        return out

    async def settled(
        self, client: Client, start: dict[str, tuple[float, int, int]]
    ) -> dict[str, tuple[float, int, int]]:
        """The end figures, once work still under way when the workers stopped (route groups
        closing, a last proxied stream) is done: at the first sample whose fds and tasks are
        no higher than at the start, or after 10 s."""
        end = await self.resources(client)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            end[n][1] > start[n][1] or end[n][2] > start[n][2] for n in NEVER_KILLED
        ):
            await asyncio.sleep(0.5)
            end = await self.resources(client)
        return end


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


async def main(seconds: float, seed: int, data_dir: Path) -> None:
    base = 29090
    proxy_port = base + 60  # visor 0's proxy, on a fixed port of the network's range

    def configure(i: int, cfg: VisorConfig) -> None:
        if i == 0:
            cfg.dmsg_web.enabled = True
            cfg.dmsg_web.listen = f"127.0.0.1:{proxy_port}"

    net = ProcessNetwork(
        data_dir,
        relays=3,
        visors=VISORS,
        links=LINKS,
        base_port=base,
        configure=configure,
        log_level=os.environ.get("SOAK_LOG", "info"),  # debug: every part logs in detail
    )
    started = time.monotonic()
    async with net:
        for i in range(VISORS):
            await net.visor_ready(i, transports=len(neighbours(i)))
        print(f"soak_network_start: {time.monotonic() - started:.1f} s", flush=True)
        disc = DiscClient(net.disc_url)
        site = Client(SecKey.generate(), disc, min_sessions=2)
        await site.start()
        await site.ready()
        http = HTTPServer(site_app("the soak site"), await site.listen(80))
        await http.start()
        soak = Soak(net, seconds, seed)
        start = await soak.resources(site)
        warm: dict[str, tuple[float, int, int]] = {}

        async def sample_warm() -> None:
            await asyncio.sleep(min(60.0, seconds / 4))
            warm.update(await soak.resources(site))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(sample_warm())
            for _ in range(3):
                tg.create_task(soak.route_worker())
            tg.create_task(soak.dial_worker(site))
            tg.create_task(soak.proxy_worker(site, proxy_port))
            tg.create_task(soak.chaos())
        # let the last restart settle before the end figures
        for i in range(VISORS):
            await net.visor_ready(i, transports=len(neighbours(i)))
        end = await soak.settled(site, start)
        await http.close()
        await site.close()
        await disc.close()

    t = soak.tally
    print(f"soak_route_setup_success: {t.share('route_setup')}")
    print(f"soak_route_setup_success_discovery_down: {t.share('route_setup_discovery_down')}")
    print(f"soak_route_setup_success_nothing_down: {t.share('route_setup_calm')}")
    if t.setup_ms_calm:
        print(f"soak_route_setup_p50_nothing_down: {statistics.median(t.setup_ms_calm):.1f} ms")
        print(f"soak_route_setup_p99_nothing_down: {pct(t.setup_ms_calm, 99):.1f} ms")
    if t.setup_ms:
        print(f"soak_route_setup_p99_all: {pct(t.setup_ms, 99):.1f} ms")
        print(f"soak_route_setup_max_all: {max(t.setup_ms):.1f} ms")
    print(f"soak_route_setups_over_1s: {sum(1 for x in t.setup_ms if x > 1000)} setups")
    if t.teardown_ms:
        print(
            f"soak_teardown_after_kill: p50 {statistics.median(t.teardown_ms):.0f} ms, "
            f"max {max(t.teardown_ms):.0f} ms over {len(t.teardown_ms)} kills"
        )
    for part, times in sorted(t.recovery.items()):
        print(
            f"soak_recovery_{part.replace('/', '_')}: p50 {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s over {len(times)} restarts"
        )
    print(f"soak_dmsg_dial_success: {t.share('dmsg_dial')}")
    print(f"soak_proxied_request_success: {t.share('proxied_request')}")
    for name in NEVER_KILLED:
        (rss0, fd0, tasks0), (rss1, fd1, tasks1) = start[name], end[name]
        mid = f"{warm[name][0]:.1f} (after {min(60.0, seconds / 4):.0f} s) -> " if warm else ""
        print(f"soak_{name}_rss: {rss0:.1f} -> {mid}{rss1:.1f} MiB")
        print(f"soak_{name}_fds: {fd0} -> {fd1} fds")
        print(f"soak_{name}_tasks: {tasks0} -> {tasks1} tasks")
    for error, count in t.errors.most_common(10):
        print(f"# {count} x {error}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="Where logs and stores go.")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="skywire-soak-"))
    print(f"# logs in {directory}", flush=True)
    asyncio.run(main(args.seconds, args.seed, directory))
