"""Route figures on loopback: route setup latency (visor side: route finder + setup node +
route handshake + Noise KK) for 1, 2 and 3 hops, route throughput through 2 intermediaries with
Noise over the route, and a churn run of route setups under injected faults.

Prints one ``name: value unit`` line per figure. ``--churn N`` sets the churn run's size
(default 500; 0 skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.test_router import RouteNet
from tests.integration.test_routing_churn import churn_run

from skywire.router import RouteGroup

SETUPS = 60
TOTAL = 64 * 1024 * 1024
CHUNK = 256 * 1024


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def setup_latency() -> None:
    async with RouteNet(4, [(0, 1), (1, 2), (2, 3)], ping_interval=0) as net:
        for hops in (1, 2, 3):
            dst = net.nodes[hops]
            listener = await dst.router.listen(10 + hops)
            times: list[float] = []
            for _ in range(SETUPS):
                t0 = time.perf_counter()
                rg = await net.nodes[0].router.dial_routes(dst.pk, 0, 10 + hops, min_hops=hops)
                times.append(time.perf_counter() - t0)
                peer = await listener.accept()
                await rg.close()
                await peer.wait_closed()
            print(f"route_setup_{hops}hop_p50: {_pct(times, 50) * 1000:.2f} ms")
            print(f"route_setup_{hops}hop_p90: {_pct(times, 90) * 1000:.2f} ms")
        lat = net.rsn_node.stats.snapshot()["latency_ms"]
        print(f"rsn_setup_p50: {lat['p50']:.2f} ms")


async def _send(rg: RouteGroup, total: int) -> None:
    block = bytes(CHUNK)
    for _ in range(total // CHUNK):
        await rg.write(block)


async def _recv(rg: RouteGroup, total: int) -> None:
    got = 0
    while got < total:
        got += len(await rg.read(1 << 20))


async def throughput(encrypt: bool) -> None:
    links = [(0, 1), (1, 2), (2, 3)]
    async with RouteNet(4, links, ping_interval=0, encrypt=encrypt) as net:
        listener = await net.nodes[3].router.listen(20)
        rg = await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 20, min_hops=3)
        peer = await listener.accept()
        t0 = time.perf_counter()
        await asyncio.gather(_send(rg, TOTAL), _recv(peer, TOTAL))
        dt = time.perf_counter() - t0
        label = "noise" if encrypt else "plain"
        print(f"route_throughput_2_intermediaries_{label}: {TOTAL / dt / 1e6:.1f} MB/s")
        await rg.close()
        await peer.wait_closed()


async def churn(n: int) -> None:
    t0 = time.perf_counter()
    stats = await churn_run(n, verbose=False)
    dt = time.perf_counter() - t0
    print(f"churn_setups: {n} setups")
    print(f"churn_dial_success_rate: {stats['dial_success_rate'] * 100:.2f} %")
    print(f"churn_rsn_success_rate: {stats['success_rate'] * 100:.2f} %")
    for cls, count in stats["failures_by_class"].items():
        if count:
            print(f"churn_failures_{cls}: {count} setups")
    print(f"churn_retries_dial_202: {stats['retries']['dial_202']} dials")
    print(f"churn_retries_stale_connection: {stats['retries']['stale_connection']} calls")
    print(f"churn_rsn_setup_p50: {stats['latency_ms']['p50']:.2f} ms")
    print(f"churn_rsn_setup_p90: {stats['latency_ms']['p90']:.2f} ms")
    print(f"churn_wall_time: {dt:.1f} s")


async def main(args: argparse.Namespace) -> None:
    await setup_latency()
    await throughput(True)
    await throughput(False)
    if args.churn:
        await churn(args.churn)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--churn", type=int, default=500)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args()))
