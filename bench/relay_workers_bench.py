"""A relay server on 1 and on 2 worker processes, under the same load, one run.

The relay (``skywire dmsg server start --workers N``) runs in its own processes; discovery
runs here. Two load processes each open ``--sessions / 2`` dmsg clients (one session each) and
pair them up: in every pair one client streams ``--mb`` MiB to the other through the relay.
Aggregate throughput = all bytes received / time from "go" to the last byte; the slowest pair's
rate is reported too. Rounds alternate 1 and 2 workers. On a 2-core machine the load processes
compete with the relay's workers for the same cores; the figures say what the relay delivers
under that load, not its capacity on a larger machine.

Prints ``name: value unit`` lines. Usage: ``python bench/relay_workers_bench.py [--sessions 100]
[--mb 8] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from skywire.cipher import SecKey
from skywire.dmsg.client import Client
from skywire.dmsg.disc_errors import DiscError
from skywire.dmsg.server import ServerConfig
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork

CHUNK = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(disc_url: str, sessions: int, mb: int, conn: Connection) -> None:
    async with DiscClient(disc_url) as disc:
        clients = [Client(SecKey.generate(), disc) for _ in range(sessions)]
        for c in clients:
            await c.start()
        try:
            await asyncio.gather(*(c.ready(60) for c in clients))
            half = sessions // 2
            listeners = [await c.listen(9000) for c in clients[half:]]
            conn.send("ready")
            await asyncio.to_thread(conn.recv)  # "go"
            block = b"\x5a" * CHUNK
            total = mb << 20

            async def pair(i: int) -> tuple[int, float]:
                t0 = time.perf_counter()

                async def send() -> None:
                    stream = await clients[i].dial(clients[half + i].pk, 9000)
                    left = total
                    while left > 0:
                        await stream.write(block[: min(left, CHUNK)])
                        left -= CHUNK
                    await stream.close()

                async def recv() -> int:
                    stream = await listeners[i].accept()
                    got = 0
                    while data := await stream.read(1 << 20):
                        got += len(data)
                    return got

                _, got = await asyncio.gather(send(), recv())
                return got, time.perf_counter() - t0

            t0 = time.perf_counter()
            results = await asyncio.gather(*(pair(i) for i in range(half)))
            conn.send((sum(g for g, _ in results), time.perf_counter() - t0,
                       min(g / dt for g, dt in results)))  # fmt: skip
        finally:
            for c in clients:
                await c.close()


def _load_main(disc_url: str, sessions: int, mb: int, conn: Connection) -> None:
    asyncio.run(_load(disc_url, sessions, mb, conn))


async def _round(
    disc_url: str, cfg_path: Path, workers: int, sessions: int, mb: int
) -> tuple[float, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "skywire.cli", "dmsg", "server", "start", str(cfg_path),
        "--workers", str(workers), "--limit-ip", "0", "--max-streams", "4096",
        "--log-level", "error",
    )  # fmt: skip
    try:
        async with DiscClient(disc_url) as disc, asyncio.timeout(60):
            while True:
                try:
                    if await disc.available_servers():
                        break
                except DiscError:
                    pass
                await asyncio.sleep(0.1)  # the relay process is starting
        ctx = mp.get_context("spawn")
        pipes, procs = [], []
        for _ in range(2):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_load_main, args=(disc_url, sessions // 2, mb, child))
            p.start()
            pipes.append(parent)
            procs.append(p)
        for pipe in pipes:
            assert await asyncio.to_thread(pipe.recv) == "ready"
        for pipe in pipes:
            pipe.send("go")
        got = [await asyncio.to_thread(pipe.recv) for pipe in pipes]
        for p in procs:
            await asyncio.to_thread(p.join)
        total = sum(g[0] for g in got)
        wall = max(g[1] for g in got)
        return total / wall / 1e6, min(g[2] for g in got) / 1e6
    finally:
        proc.terminate()
        await proc.wait()


async def main(sessions: int, mb: int, rounds: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalDmsgNetwork(servers=0) as net:
            sk = SecKey.generate()
            cfg = ServerConfig(
                public_key=sk.pubkey(),
                secret_key=sk,
                discovery=net.disc_url,
                public_address=f"127.0.0.1:{port}",
                local_address=f"127.0.0.1:{port}",
                health_endpoint_address=f"127.0.0.1:{free_port()}",
                max_sessions=4096,
            )
            path = Path(tmp) / "relay.json"
            path.write_text(cfg.to_json())
            figures: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
            for _ in range(rounds):
                for workers in (1, 2):
                    figures[workers].append(await _round(net.disc_url, path, workers, sessions, mb))
    for workers, runs in figures.items():
        agg = statistics.median(r[0] for r in runs)
        slow = statistics.median(r[1] for r in runs)
        print(f"relay {workers} worker(s), {sessions} sessions, aggregate: {agg:.1f} MB/s")
        print(f"relay {workers} worker(s), {sessions} sessions, slowest pair: {slow:.2f} MB/s")
    one = statistics.median(r[0] for r in figures[1])
    two = statistics.median(r[0] for r in figures[2])
    print(f"relay 2 workers / 1 worker: {two / one:.2f} x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--mb", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    a = parser.parse_args()
    asyncio.run(main(a.sessions, a.mb, a.rounds))
