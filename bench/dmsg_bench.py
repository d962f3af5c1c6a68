"""dmsg figures on loopback, one line each (``name: value unit``).

* a 200 MB GET through one relay server (the server in its own process, both clients here);
* stream dial latency p50/p90 over 50 dials;
* session set-up time (TCP + Noise XK + yamux), p50 over 20 sessions;
* RSS of a server process holding 10,000 idle sessions opened by a load process.

Usage: ``python bench/dmsg_bench.py [--size-mb 200] [--sessions 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time

from aiohttp import web

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.http import HTTPServer, fetch_stream
from skywire.dmsg.session import Session, client_handshake
from skywire.services.dmsgdisc.client import DiscClient
from skywire.wire.stream import TcpStream


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _network_process(conn: mp.connection.Connection, servers: int) -> None:
    """Discovery + relay servers in a child process; reports addresses, then waits."""
    _raise_fd_limit()
    from skywire.testnet.dmsgnet import LocalDmsgNetwork

    async def main() -> None:
        async with LocalDmsgNetwork(servers=servers) as net:
            info = {
                "disc": net.disc_url,
                "servers": [[s.pk.hex(), s.address] for s in net.servers],
            }
            conn.send(json.dumps(info))
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, conn.recv)  # until the parent says stop

    asyncio.run(main())


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _throughput_and_latency(disc_url: str, size: int) -> None:
    backoff = Backoff(initial=0.05, factor=1.5, maximum=1.0)
    async with (
        DiscClient(disc_url) as disc_a,
        DiscClient(disc_url) as disc_b,
        Client(SecKey.generate(), disc_b, backoff=backoff) as host,
        Client(SecKey.generate(), disc_a, backoff=backoff) as fetcher,
    ):
        await host.ready()
        await fetcher.ready()

        block = bytes(1 << 20)

        async def body(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(headers={"Content-Length": str(size)})
            await resp.prepare(request)
            left = size
            while left:
                n = min(left, len(block))
                await resp.write(block[:n])
                left -= n
            return resp

        app = web.Application()
        app.router.add_get("/blob", body)
        listener = await host.listen(80)
        async with HTTPServer(app, listener):
            dials = []
            for _ in range(50):
                start = time.perf_counter()
                stream = await fetcher.dial(host.pk, 80)
                dials.append(time.perf_counter() - start)
                await stream.close()
            q = statistics.quantiles(dials, n=10)
            print(f"dmsg_stream_dial_p50: {statistics.median(dials) * 1e3:.2f} ms")
            print(f"dmsg_stream_dial_p90: {q[8] * 1e3:.2f} ms")

            got = 0
            start = time.perf_counter()
            async with fetch_stream(fetcher.dial, f"dmsg://{host.pk}:80/blob", timeout=300) as resp:
                async for chunk in resp.aiter_bytes(1 << 20):
                    got += len(chunk)
            elapsed = time.perf_counter() - start
            assert got == size, f"short body: {got}"
            print(
                f"dmsg_relay_get_throughput: {got / elapsed / 1e6:.1f} MB/s"
                f" ({got / 1e6:.0f} MB GET through one server)"
            )


async def _session_setup(server_pk: PubKey, address: str) -> None:
    host, _, port = address.rpartition(":")
    times = []
    for _ in range(20):
        kp = KeyPair.generate()
        start = time.perf_counter()
        tcp = await TcpStream.connect(host, int(port))
        noise, _ = await client_handshake(tcp, kp.sk, server_pk)
        session = Session(tcp, noise, client=True)
        times.append(time.perf_counter() - start)
        await session.close()
    print(f"dmsg_session_setup_p50: {statistics.median(times) * 1e3:.2f} ms")


def _load_process(conn: mp.connection.Connection, server: str, address: str, n: int) -> None:
    """Open ``n`` idle sessions to the server and hold them until told to stop."""
    _raise_fd_limit()

    async def main() -> None:
        pk = PubKey.from_hex(server)
        host, _, port = address.rpartition(":")
        sessions: list[Session] = []
        sem = asyncio.Semaphore(64)

        async def one() -> None:
            async with sem:
                tcp = await TcpStream.connect(host, int(port))
                noise, _ = await client_handshake(tcp, SecKey.generate(), pk, timeout=30)
                sessions.append(Session(tcp, noise, client=True))

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        conn.send(time.perf_counter() - start)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        for s in sessions:
            await s.close()

    asyncio.run(main())


async def _idle_sessions(n: int) -> None:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_network_process, args=(child, 1))
    proc.start()
    info = json.loads(parent.recv())
    server_pk, address = info["servers"][0]
    base = _rss_mb(proc.pid)
    lparent, lchild = ctx.Pipe()
    load = ctx.Process(target=_load_process, args=(lchild, server_pk, address, n))
    load.start()
    loop = asyncio.get_running_loop()
    opened_in = await loop.run_in_executor(None, lparent.recv)
    rss = _rss_mb(proc.pid)
    print(f"dmsg_server_rss_idle_sessions: {rss:.1f} MiB with {n} sessions (empty: {base:.1f} MiB)")
    print(f"dmsg_sessions_opened_per_s: {n / opened_in:.0f} sessions/s")
    lparent.send("stop")
    load.join(60)
    parent.send("stop")
    proc.join(60)


async def main(size_mb: int, n_sessions: int) -> None:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_network_process, args=(child, 1))
    proc.start()
    try:
        info = json.loads(await asyncio.get_running_loop().run_in_executor(None, parent.recv))
        await _throughput_and_latency(info["disc"], size_mb << 20)
        server_pk, address = info["servers"][0]
        await _session_setup(PubKey.from_hex(server_pk), address)
    finally:
        parent.send("stop")
        proc.join(30)
    if n_sessions:
        await _idle_sessions(n_sessions)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10_000)
    args = parser.parse_args()
    _raise_fd_limit()
    asyncio.run(main(args.size_mb, args.sessions))
    sys.exit(0)
