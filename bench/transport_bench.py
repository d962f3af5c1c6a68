"""Transport figures on loopback, per type: set-up time (dial + handshake + Noise + settlement,
including registration in a real transport discovery) and packet throughput (MB/s).

Prints one ``name: value unit`` line per figure. Types measured: those this build can make on
loopback without extra services (stcp, dmsg) plus stcpr and sudph when the address resolver is
available.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.services.tpd.api import TPDServer
from skywire.services.tpd.client import TPDRegistry
from skywire.services.tpd.store.memory import MemoryStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.transport.manager import TransportManager
from skywire.transport.network import DmsgNetwork, Network, TCPNetwork, static_table

TOTAL = 128 * 1024 * 1024
PAYLOAD = 60 * 1024
SETUPS = 20
THROUGHPUT: dict[str, float] = {}
"""MB/s per transport type measured in this run."""


async def _throughput(
    tm_a: TransportManager, tm_b: TransportManager, remote: PubKey, t: str
) -> tuple[float, float]:
    """``(MB/s, CPU ms per MB)``; both ends run in this process, so the CPU time is the
    whole cost of moving a megabyte (and is steadier than MB/s on a busy machine)."""
    tp = await tm_a.save_transport(remote, t)
    peer = await tm_b.wait_for(tp.id)
    block = bytes(PAYLOAD)
    count = TOTAL // PAYLOAD

    async def send() -> None:
        for _ in range(count):
            await tp.write_packet(0, 1, block)

    async def recv() -> None:
        for _ in range(count):
            await peer.inbox.get()

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(send(), recv())
    mb = count * PAYLOAD / 1e6
    return mb / (time.perf_counter() - start), (time.process_time() - cpu) * 1e3 / mb


async def _setup_times(
    tm_a: TransportManager, tm_b: TransportManager, remote: PubKey, t: str
) -> list[float]:
    times = []
    for _ in range(SETUPS):
        start = time.perf_counter()
        tp = await tm_a.save_transport(remote, t)
        await tm_b.wait_for(tp.id)
        times.append(time.perf_counter() - start)
        await tm_a.delete_transport(tp.id)
        if t != "sudph":  # KCP carries no close: the peer learns at the next dial, or by silence
            await tm_b.wait_gone(tp.id)
    return times


@asynccontextmanager
async def _pair(
    make: Callable[[SecKey], Network], registry: Callable[[SecKey], TPDRegistry]
) -> AsyncIterator[tuple[TransportManager, TransportManager]]:
    a, b = KeyPair.generate(), KeyPair.generate()
    async with (
        TransportManager(a.sk, [make(a.sk)], registry=registry(a.sk), latency_interval=0) as ta,
        TransportManager(b.sk, [make(b.sk)], registry=registry(b.sk), latency_interval=0) as tb,
    ):
        yield ta, tb


async def main(only: frozenset[str]) -> None:
    store = MemoryStore()
    async with TPDServer(store) as tpd:
        registries: list[TPDRegistry] = []

        def registry(sk: SecKey) -> TPDRegistry:
            reg = TPDRegistry(tpd.url, sk)
            registries.append(reg)
            return reg

        table: dict[str, str] = {}
        nets: dict[str, TCPNetwork] = {}

        def stcp(sk: SecKey) -> Network:
            net = TCPNetwork(sk, "stcp", resolve=static_table(table))
            nets[sk.pubkey().hex()] = net
            return net

        if "stcp" in only:
            async with _pair(stcp, registry) as (ta, tb):
                for tm in (ta, tb):
                    table[tm.pk.hex()] = f"127.0.0.1:{nets[tm.pk.hex()].port}"
                await _report("stcp", ta, tb)

        from skywire.services.ar import ARClient, ARServer
        from skywire.services.ar.store.memory import MemoryStore as ARStore
        from skywire.transport.resolved import StcprNetwork, SudphNetwork

        async with (
            ARStore() as ar_store,
            ARServer(ar_store, "127.0.0.1", 0, 0, test_mode=True) as ar,
        ):
            clients: list[ARClient] = []

            def resolved(kind: str) -> Callable[[SecKey], Network]:
                def make(sk: SecKey) -> Network:
                    client = ARClient(ar.url, sk, ar.udp_addr)
                    clients.append(client)
                    cls = StcprNetwork if kind == "stcpr" else SudphNetwork
                    return cls(sk, client, host="127.0.0.1", addresses=("127.0.0.1",))

                return make

            for kind in ("stcpr", "sudph"):
                if kind not in only:
                    continue
                async with _pair(resolved(kind), registry) as (ta, tb):
                    await _report(kind, ta, tb)
            for client in clients:
                await client.close()

        if "dmsg" in only:
            async with LocalDmsgNetwork(servers=1) as dnet:
                ca, cb = await dnet.client(), await dnet.client()
                async with (
                    TransportManager(ca.sk, [DmsgNetwork(ca)], registry=registry(ca.sk)) as ta,
                    TransportManager(cb.sk, [DmsgNetwork(cb)], registry=registry(cb.sk)) as tb,
                ):
                    await _report("dmsg", ta, tb)
        for reg in registries:
            await reg.close()
    await store.close()
    if "stcpr" in THROUGHPUT and "sudph" in THROUGHPUT:  # the goal: at least 0.70
        ratio = THROUGHPUT["sudph"] / THROUGHPUT["stcpr"]
        print(f"transport_throughput_ratio_sudph_vs_stcpr: {ratio:.2f} x")


async def _report(t: str, ta: TransportManager, tb: TransportManager) -> None:
    times = await _setup_times(ta, tb, tb.pk, t)
    print(f"transport_setup_p50_{t}: {statistics.median(times) * 1e3:.2f} ms")
    mbps, cpu = await _throughput(ta, tb, tb.pk, t)
    THROUGHPUT[t] = mbps
    print(f"transport_throughput_{t}: {mbps:.1f} MB/s ({PAYLOAD // 1024} KiB packets)")
    print(f"transport_cpu_per_mb_{t}: {cpu:.2f} ms/MB (both ends)")


TYPES = ("stcp", "stcpr", "sudph", "dmsg")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(TYPES),
        help="comma-separated transport types to measure (default: all)",
    )
    args = parser.parse_args()
    chosen = frozenset(t.strip() for t in args.only.split(",") if t.strip())
    if unknown := chosen - set(TYPES):
        parser.error(f"unknown transport types: {', '.join(sorted(unknown))}")
    asyncio.run(main(chosen))
