"""skysocks figures on loopback, over a 2-hop route (visors 0─1─2, Noise over the route):
SOCKS5 connection set-up time through skysocks-client → route → skysocks (TCP connect to the
client until the CONNECT reply), the throughput of one large GET through it, and, in the same
run over the same route path, the raw route-group throughput and a direct GET for reference.

Prints one ``name: value unit`` line per figure. ``--setups N`` and ``--size MiB`` set the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration._skysocks import Socks5, web_site
from tests.integration.test_router import RouteNet

from skywire.apps.skysocks import RedialPolicy, SkysocksClient, SkysocksServer
from skywire.router import RouteGroup

CHUNK = 256 * 1024


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


async def main(setups: int, size: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setups", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="GET size in MiB")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.setups, args.size << 20))
