"""skysocks figures on loopback, over a 2-hop route (visors 0─1─2, Noise over the route):
SOCKS5 connection set-up time through skysocks-client → route → skysocks (TCP connect to the
client until the CONNECT reply), the throughput of one large GET through it, and, in the same
run over the same route path, the raw route-group throughput and a direct GET for reference.

Two set-ups, each measured on its own network:

* ``library``: :class:`SkysocksClient` / :class:`SkysocksServer` in this process, on the
  routers of an in-process :class:`RouteNet`;
* ``apps``: skysocks as users run it, the ``skysocks`` and ``skysocks-client`` apps as their
  own processes launched by visors 2 and 0 of a :class:`LocalSkywire` (dmsg, transport
  discovery, route finder, setup node on loopback; ``stcpr`` transports 0─1─2), reaching routes
  through the visors' app servers. The raw route-group figure there is taken on the same
  visors' routers, in the same run.

Prints one ``name: value unit`` line per figure. ``--setups N``, ``--size MiB`` and
``--only {library,apps,both}`` set the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration._skysocks import Socks5, SocksRefused, web_site
from tests.integration.test_router import RouteNet

from skywire.apps.skysocks import RedialPolicy, SkysocksClient, SkysocksServer
from skywire.cipher import SecKey
from skywire.router import RouteGroup
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import AppConfig, VisorConfig
from skywire.visor.launcher import AppState

CHUNK = 256 * 1024
RAW_PORT = 90  # the route port of the raw route-group figure on the visors (apps use 3, 13)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def _setup_times(proxy: tuple[str, int], port: int, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn = await Socks5.open(proxy)
        await conn.greet()
        await conn.request("127.0.0.1", port)
        times.append(time.perf_counter() - t0)
        await conn.close()
    return times


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> float:
    """Seconds from sending the GET to its last byte (the body is counted, not kept)."""
    t0 = time.perf_counter()
    writer.write(f"GET /blob?size={size} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    got = 0
    while chunk := await reader.read(1 << 20):
        got += len(chunk)
    dt = time.perf_counter() - t0
    assert got == size, (got, size)
    writer.close()
    return dt


async def _route_throughput(src: RouteGroup, dst: RouteGroup, total: int) -> float:
    block = bytes(CHUNK)

    async def send() -> None:
        for _ in range(total // CHUNK):
            await src.write(block)

    async def recv() -> None:
        got = 0
        while got < total:
            got += len(await dst.read(1 << 20))

    t0 = time.perf_counter()
    await asyncio.gather(send(), recv())
    return time.perf_counter() - t0


async def library(setups: int, size: int) -> None:
    async with web_site() as web_port, RouteNet(3, [(0, 1), (1, 2)], ping_interval=0) as net:
        far = net.nodes[2]
        async with (
            SkysocksServer(far.router),
            SkysocksClient(
                net.nodes[0].router,
                far.pk,
                listen=("127.0.0.1", 0),
                redial=RedialPolicy(initial=0.05, maximum=1.0),
            ) as client,
        ):
            await asyncio.wait_for(client.wait_connected(), 30)
            assert client.address is not None
            (group,) = net.nodes[0].router.route_groups
            assert group.route is not None
            hops = len(group.route.forward)
            await _setup_times(client.address, web_port, 10)  # warm-up
            times = await _setup_times(client.address, web_port, setups)
            print(f"skysocks_route_hops: {hops} hops")
            print(f"skysocks_connect_p50: {_pct(times, 50) * 1000:.2f} ms")
            print(f"skysocks_connect_p90: {_pct(times, 90) * 1000:.2f} ms")

            conn = await Socks5.open(client.address)
            await conn.greet()
            await conn.request("127.0.0.1", web_port)
            dt = await _get(conn.reader, conn.writer, size)
            print(f"skysocks_get_{size >> 20}MiB_throughput: {size / dt / 1e6:.1f} MB/s")

        listener = await far.router.listen(20)
        src = await net.nodes[0].router.dial_routes(far.pk, 0, 20, min_hops=2)
        dst = await listener.accept()
        assert src.route is not None and len(src.route.forward) == 2
        dt = await _route_throughput(src, dst, size)
        print(f"route_group_2hop_throughput: {size / dt / 1e6:.1f} MB/s")
        await src.close()
        await listener.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", web_port)
        dt = await _get(reader, writer, size)
        print(f"direct_get_{size >> 20}MiB_throughput: {size / dt / 1e6:.1f} MB/s")


async def _socks_ready(proxy: tuple[str, int], web_port: int, timeout: float) -> None:
    """Poll (bounded) until a CONNECT through ``proxy`` to the site succeeds: the client app
    process has bound its SOCKS port and dialled its route to the server app."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                conn = await Socks5.open(proxy)
            except OSError:
                await asyncio.sleep(0.1)  # the app process has not bound its port yet
                continue
            try:
                await conn.greet()
                await conn.request("127.0.0.1", web_port)
                return
            except (OSError, AssertionError, asyncio.IncompleteReadError, SocksRefused):
                await asyncio.sleep(0.1)  # no route to the server app yet
            finally:
                await conn.close()


async def apps(setups: int, size: int) -> None:
    keys = {f"visor-{i}": SecKey.generate() for i in range(3)}
    keys["setup-node"] = SecKey.generate()
    socks = ("127.0.0.1", _free_port())
    server_pk = keys["visor-2"].pubkey()

    with tempfile.TemporaryDirectory(prefix="skysocks-bench-") as tmp:

        def configure(i: int, cfg: VisorConfig) -> None:
            cfg.local_path = str(Path(tmp) / f"visor-{i}")
            cfg.launcher.server_addr = f"127.0.0.1:{_free_port()}"
            cfg.launcher.apps = []
            if i == 2:
                cfg.launcher.apps = [
                    AppConfig(
                        name="skysocks",
                        binary="skywire",
                        auto_start=True,
                        port=3,
                        args=["app", "skysocks"],
                    )
                ]
            if i == 0:
                cfg.launcher.apps = [
                    AppConfig(
                        name="skysocks-client",
                        binary="skywire",
                        auto_start=True,
                        port=13,
                        args=[
                            "app",
                            "skysocks-client",
                            "--srv",
                            server_pk.hex(),
                            "--addr",
                            f"{socks[0]}:{socks[1]}",
                        ],
                    )
                ]

        async with (
            web_site() as web_port,
            LocalDmsgNetwork(servers=1) as dnet,
            LocalSkywire(
                dnet, visors=3, configure=configure, keys=keys.__getitem__, apps=True
            ) as sky,
        ):
            v0, _v1, v2 = sky.visors
            # 0─1─2 only: the one route from visor 0 to visor 2 has 2 hops
            await sky.chain("stcpr")
            assert v0.launcher is not None and v2.launcher is not None
            assert v0.router is not None and v2.router is not None
            await v2.launcher.wait_for("skysocks", lambda s: s.state is AppState.RUNNING, 30)
            await v0.launcher.wait_for("skysocks-client", lambda s: s.state is AppState.RUNNING, 30)
            await _socks_ready(socks, web_port, 60)
            app_groups = [g for g in v0.router.route_groups if g.route is not None]
            assert app_groups, "the client app holds no route group on visor 0"
            hops = {len(g.route.forward) for g in app_groups if g.route is not None}
            assert hops == {2}, hops

            await _setup_times(socks, web_port, 10)  # warm-up
            times = await _setup_times(socks, web_port, setups)
            print(f"apps route hops: {hops.pop()} hops")
            print(f"apps socks5 connect p50: {_pct(times, 50) * 1000:.2f} ms")
            print(f"apps socks5 connect p90: {_pct(times, 90) * 1000:.2f} ms")

            conn = await Socks5.open(socks)
            await conn.greet()
            await conn.request("127.0.0.1", web_port)
            dt = await _get(conn.reader, conn.writer, size)
            print(f"apps socks5 GET {size >> 20}MiB: {size / dt / 1e6:.1f} MB/s")

            # the same visors, the same run: a bare route group 0 → 2 over the 2-hop path
            listener = await v2.router.listen(RAW_PORT)
            try:
                src = await v0.router.dial_routes(v2.pk, 0, RAW_PORT, min_hops=2, max_hops=2)
                try:
                    dst = await asyncio.wait_for(listener.accept(), 30)
                    assert src.route is not None and len(src.route.forward) == 2
                    dt = await _route_throughput(src, dst, size)
                    print(f"apps raw route (same visors): {size / dt / 1e6:.1f} MB/s")
                finally:
                    await src.close()
            finally:
                await listener.close()


async def main(setups: int, size: int, only: str) -> None:
    if only in ("library", "both"):
        await library(setups, size)
    if only in ("apps", "both"):
        await apps(setups, size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setups", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="GET size in MiB")
    parser.add_argument("--only", choices=("library", "apps", "both"), default="both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.setups, args.size << 20, args.only))
