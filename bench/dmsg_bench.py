"""dmsg figures on loopback, one line each (``name: value unit``).

Through one relay server (the server in its own process, both clients in this one):

* a 200 MB HTTP GET, and one raw stream of ``--single-mb`` MiB (the single-stream figure);
* ``--streams 10,100,1000`` concurrent streams of ``--stream-mb`` MiB each: aggregate MB/s, the
  share of the single-stream figure it reaches, and the slowest stream's rate (fairness);
* the relay server's CPU per relayed byte (its capacity were the clients elsewhere);
* the limits beside them, measured in the same run: plain TCP loopback (asyncio both ends, two
  processes) and the Noise cipher (seal + open of 4 KiB transport frames as a stream writes
  and reads them, one core);
* ``--server-loop asyncio,uvloop``: the same figures with the relay under each loop (A/B);
* with ``GO_DMSG_SERVER=/path/to/dmsg-server`` the same transfers through the upstream relay,
  and the ratio ours/Go;
* stream dial latency, session set-up time, and the RSS of a server holding ``--sessions`` idle
  sessions.

``--profile-server FILE`` writes a cProfile of the (first) relay server process.

Usage: ``python bench/dmsg_bench.py [--size-mb 200] [--streams 10,100,1000] [--sessions 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from aiohttp import web

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.http import HTTPServer, fetch_stream
from skywire.dmsg.server import ServerConfig
from skywire.dmsg.session import Session, client_handshake
from skywire.services.dmsgdisc.client import DiscClient
from skywire.wire.errors import WireError
from skywire.wire.noise import Noise, Pattern, Role, TransportDecoder
from skywire.wire.noise_aio import WRITE_PIECE
from skywire.wire.noise_frames import MAX_BODY_LEN
from skywire.wire.stream import ByteStream, TcpStream

MiB = 1 << 20


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _run(main: Any, loop: str = "asyncio") -> None:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)


def network_process(
    conn: mp.connection.Connection, servers: int, loop: str = "asyncio", profile: str = ""
) -> None:
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
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until "stop"

    if not profile:
        _run(main(), loop)
        return
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        _run(main(), loop)
    finally:
        prof.disable()
        prof.dump_stats(profile)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------- transfers


async def _serve_blobs(listener: Any) -> None:
    """Each stream: an 8-byte size request, answered with that many bytes, then FIN."""
    block = bytes(MiB)

    async def one(stream: ByteStream) -> None:
        try:
            left = int.from_bytes(await stream.readexactly(8), "big")
            while left:
                n = min(left, len(block))
                await stream.write(block if n == len(block) else block[:n])
                left -= n
        finally:
            await stream.close()

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            task = asyncio.create_task(one(await listener.accept()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (ConnectionError, WireError, OSError):
        pass  # the listener closed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _streams(fetcher: Client, pk: PubKey, n: int, size: int) -> tuple[float, float, float]:
    """``n`` concurrent streams of ``size`` bytes: aggregate MB/s, and the slowest stream's
    MB/s and Jain's fairness index over the streams while all of them were still running
    (until the first one finished)."""
    sem = asyncio.Semaphore(16)  # below the listener backlog (20) and the pending-stream limit

    async def dial() -> ByteStream:
        async with sem:
            return await fetcher.dial(pk, 81)

    streams = await asyncio.gather(*(dial() for _ in range(n)))
    got = [0] * n
    snapshot: list[int] = []
    first_done = 0.0
    start = time.perf_counter()

    async def fetch(i: int, stream: ByteStream) -> None:
        nonlocal first_done
        await stream.write(size.to_bytes(8, "big"))
        while chunk := await stream.read(MiB):
            got[i] += len(chunk)
        assert got[i] == size, f"short stream: {got[i]}"
        if not snapshot:
            first_done = time.perf_counter() - start
            snapshot.extend(got)

    await asyncio.gather(*(fetch(i, s) for i, s in enumerate(streams)))
    elapsed = time.perf_counter() - start
    for s in streams:
        await s.close()
    jain = sum(snapshot) ** 2 / (n * sum(x * x for x in snapshot))
    return n * size / elapsed / 1e6, min(snapshot) / first_done / 1e6, jain


async def _relay_suite(
    disc_url: str, args: argparse.Namespace, server_pid: int | None
) -> dict[str, float]:
    """The relay transfers through whatever server ``disc_url`` lists; figures by name."""
    out: dict[str, float] = {}
    backoff = Backoff(initial=0.05, factor=1.5, maximum=1.0)
    async with (
        DiscClient(disc_url) as disc_a,
        DiscClient(disc_url) as disc_b,
        Client(SecKey.generate(), disc_b, backoff=backoff) as host,
        Client(SecKey.generate(), disc_a, backoff=backoff) as fetcher,
    ):
        await host.ready()
        await fetcher.ready()
        size = args.size_mb * MiB
        block = bytes(MiB)

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
        blobs = asyncio.create_task(_serve_blobs(await host.listen(81)))
        async with HTTPServer(app, listener):
            dials = []
            for _ in range(50):
                start = time.perf_counter()
                stream = await fetcher.dial(host.pk, 80)
                dials.append(time.perf_counter() - start)
                await stream.close()
            out["dial_p50"] = statistics.median(dials) * 1e3
            out["dial_p90"] = statistics.quantiles(dials, n=10)[8] * 1e3

            got = 0
            cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
            start = time.perf_counter()
            url = f"dmsg://{host.pk}:80/blob"
            async with fetch_stream(fetcher.dial, url, timeout=300) as resp:
                async for chunk in resp.aiter_raw():
                    got += len(chunk)
            elapsed = time.perf_counter() - start
            assert got == size, f"short body: {got}"
            out["get"] = got / elapsed / 1e6
            if server_pid:
                cpu = cpu_seconds(server_pid) - cpu0
                out["server_cpu_busy"] = 100 * cpu / elapsed
                out["server_capacity"] = got / max(cpu, 1e-9) / 1e6
            out["single"], _, _ = await _streams(fetcher, host.pk, 1, args.single_mb * MiB)
            for n in args.streams:
                cpu0 = cpu_seconds(server_pid) if server_pid else 0.0
                t0 = time.perf_counter()
                out[f"agg_{n}"], out[f"slow_{n}"], out[f"jain_{n}"] = await _streams(
                    fetcher, host.pk, n, args.stream_mb * MiB
                )
                if server_pid:
                    busy = (cpu_seconds(server_pid) - cpu0) / (time.perf_counter() - t0)
                    out[f"busy_{n}"] = 100 * busy
        blobs.cancel()
        await asyncio.gather(blobs, return_exceptions=True)
    return out


def _print_suite(tag: str, r: dict[str, float], args: argparse.Namespace) -> None:
    sfx = f"_{tag}" if tag else ""
    via = f" through {tag or 'our'} relay"
    print(f"dmsg_stream_dial_p50{sfx}: {r['dial_p50']:.2f} ms")
    print(f"dmsg_stream_dial_p90{sfx}: {r['dial_p90']:.2f} ms")
    print(f"dmsg_relay_get_throughput{sfx}: {r['get']:.1f} MB/s ({args.size_mb} MiB GET{via})")
    if "server_capacity" in r:
        print(
            f"dmsg_relay_server_cpu_capacity{sfx}: {r['server_capacity']:.0f} MB/s per core"
            f" (bytes relayed / relay CPU seconds in the GET; relay busy"
            f" {r['server_cpu_busy']:.0f} % of one core)"
        )
    one = r["single"]
    print(f"dmsg_relay_stream_throughput{sfx}: {one:.1f} MB/s (1 stream × {args.single_mb} MiB)")
    for n in args.streams:
        agg, slow = r[f"agg_{n}"], r[f"slow_{n}"]
        busy = f"; relay busy {r[f'busy_{n}']:.0f} %" if f"busy_{n}" in r else ""
        print(
            f"dmsg_relay_streams_{n}_aggregate{sfx}: {agg:.1f} MB/s"
            f" ({n} × {args.stream_mb} MiB, {100 * agg / one:.0f} % of one stream{busy})"
        )
        print(
            f"dmsg_relay_streams_{n}_slowest{sfx}: {slow:.3f} MB/s (while all {n} ran; fair"
            f" share {agg / n:.3f} MB/s, Jain index {r[f'jain_{n}']:.3f})"
        )


async def _with_network(args: argparse.Namespace, loop: str, profile: str) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=network_process, args=(child, 1, loop, profile))
    proc.start()
    try:
        info = json.loads(await asyncio.get_running_loop().run_in_executor(None, parent.recv))
        r = await _relay_suite(info["disc"], args, proc.pid)
        server_pk, address = info["servers"][0]
        r["setup_p50"] = await _session_setup(PubKey.from_hex(server_pk), address)
        return r
    finally:
        parent.send("stop")
        proc.join(60)


def start_go(binary: str, cfg: ServerConfig, path: str) -> subprocess.Popen[bytes]:
    with open(path, "w") as f:
        f.write(cfg.to_json())
    out = subprocess.DEVNULL
    return subprocess.Popen([binary, "start", path], stdout=out, stderr=out)


async def _with_go_server(binary: str, args: argparse.Namespace) -> dict[str, float]:
    """The same transfers through the upstream relay (our discovery, in a child process)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=network_process, args=(child, 0))
    proc.start()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            info = json.loads(await asyncio.get_running_loop().run_in_executor(None, parent.recv))
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cfg = ServerConfig.generate(
                discovery=info["disc"],
                public_address=f"127.0.0.1:{port}",
                local_address=f"127.0.0.1:{port}",
                health_endpoint_address="127.0.0.1:0",
                log_level="error",
            )
            go = start_go(binary, cfg, os.path.join(tmp, "config.json"))
            try:
                await asyncio.sleep(2.0)  # until it registered in discovery
                return await _relay_suite(info["disc"], args, go.pid)
            finally:
                go.terminate()
                go.wait(10)
        finally:
            parent.send("stop")
            proc.join(60)


# ---------------------------------------------------------------------------- limits


def _tcp_sender(port: int, total: int) -> None:
    async def main() -> None:
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        block = bytes(MiB)
        for _ in range(total // MiB):
            w.write(block)
            await w.drain()
        w.close()
        await w.wait_closed()

    asyncio.run(main())


async def _raw_tcp(total: int) -> float:
    """Plain TCP loopback between two processes, asyncio at both ends (MB/s)."""
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got, start = 0, time.perf_counter()
        while chunk := await r.read(MiB):
            got += len(chunk)
        done.set_result(got / (time.perf_counter() - start) / 1e6)
        w.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, limit=MiB)
    port = server.sockets[0].getsockname()[1]
    proc = mp.get_context("spawn").Process(target=_tcp_sender, args=(port, total))
    proc.start()
    rate = await done
    proc.join(30)
    server.close()
    return rate


def _cipher(total: int) -> float:
    """Noise transport seal + open as a stream does it, one core (MB/s of plaintext): writes
    sealed a piece (64 KiB) at a time, read back 16 whole frames at a time."""
    a, b = KeyPair.generate(), KeyPair.generate()
    i = Noise(Pattern.KK, Role.INITIATOR, a.sk, b.pk)
    r = Noise(Pattern.KK, Role.RESPONDER, b.sk, a.pk)
    r.read_message(i.write_message())
    i.read_message(r.write_message())
    dec = TransportDecoder(r)
    piece = bytes(WRITE_PIECE)
    read = 16 * MAX_BODY_LEN
    got = 0
    start = time.perf_counter()
    for _ in range(total // WRITE_PIECE):
        wire = memoryview(i.encode_frames(piece))
        for off in range(0, len(wire), read):
            got += sum(len(p) for p in dec.feed(wire[off : off + read]))
    elapsed = time.perf_counter() - start
    assert got == total // WRITE_PIECE * WRITE_PIECE
    return got / elapsed / 1e6


# ---------------------------------------------------------------------------- sessions


async def _session_setup(server_pk: PubKey, address: str) -> float:
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
    return statistics.median(times) * 1e3


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
    proc = ctx.Process(target=network_process, args=(child, 1))
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


async def main(args: argparse.Namespace) -> None:
    print(f"raw_tcp_loopback_throughput: {await _raw_tcp(1024 * MiB):.1f} MB/s (asyncio, 2 procs)")
    print(
        f"noise_seal_open_throughput: {_cipher(256 * MiB):.1f} MB/s (4 KiB frames, 64 KiB"
        " writes and reads, one core)"
    )
    ours: dict[str, float] = {}
    for i, loop in enumerate(args.server_loop):
        r = await _with_network(args, loop, args.profile_server if i == 0 else "")
        tag = "" if i == 0 else loop
        _print_suite(tag, r, args)
        if i == 0:
            ours = r
            print(f"dmsg_session_setup_p50: {r['setup_p50']:.2f} ms")
        else:
            print(
                f"dmsg_relay_{loop}_vs_{args.server_loop[0]}: get ×{r['get'] / ours['get']:.2f},"
                f" capacity ×{r['server_capacity'] / ours['server_capacity']:.2f}"
            )
    go = os.environ.get("GO_DMSG_SERVER")
    if go:
        r = await _with_go_server(go, args)
        _print_suite("go", r, args)
        print(f"dmsg_relay_get_ratio_ours_vs_go: {ours['get'] / r['get']:.2f}")
        capacity = ours["server_capacity"] / r["server_capacity"]
        print(f"dmsg_relay_capacity_ratio_ours_vs_go: {capacity:.2f}")
        for n in args.streams:
            ratio = ours[f"agg_{n}"] / r[f"agg_{n}"]
            print(f"dmsg_relay_streams_{n}_ratio_ours_vs_go: {ratio:.2f}")
    if args.sessions:
        await _idle_sessions(args.sessions)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--single-mb", type=int, default=200)
    parser.add_argument("--streams", default="10,100,1000")
    parser.add_argument("--stream-mb", type=int, default=1)
    parser.add_argument("--server-loop", default="asyncio", help="e.g. asyncio,uvloop")
    parser.add_argument("--profile-server", default="", metavar="FILE")
    parser.add_argument("--sessions", type=int, default=10_000)
    args = parser.parse_args()
    args.streams = [int(s) for s in args.streams.split(",") if s]
    args.server_loop = [s for s in args.server_loop.split(",") if s]
    _raise_fd_limit()
    asyncio.run(main(args))
    sys.exit(0)
