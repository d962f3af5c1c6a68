"""What the debug machinery costs when nobody uses it, side by side in one run.

Two relay networks (discovery + one relay server), each in its own process: one plain, one
with everything ``/debug`` needs in place (the log ring handler on the root logger, the task
clock stamping every new task, tracemalloc off until asked, the ``/debug/*`` routes mounted on
an HTTP app). The same two dmsg clients of this process then fetch a blob through each relay in
turn, ``--rounds`` times, and each side's median throughput is printed.

Usage: ``python bench/debug_bench.py [--size-mb 50] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skywire.cipher import SecKey
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.http import HTTPServer, fetch_stream
from skywire.services.dmsgdisc.client import DiscClient


def _relay_process(conn: mp.connection.Connection, with_debug: bool) -> None:
    """Discovery + one relay server; reports the discovery URL, then waits to be told to stop."""
    logging.basicConfig(level=logging.INFO)  # records made at info on both sides
    logging.getLogger().handlers[0].setLevel(logging.WARNING)  # but only warnings printed
    from skywire.debug import install_ring_handler, install_task_clock, mount_debug, whitelist_gate
    from skywire.testnet.dmsgnet import LocalDmsgNetwork

    async def main() -> None:
        runner: web.AppRunner | None = None
        if with_debug:
            install_ring_handler()
            install_task_clock()
            app = web.Application()
            mount_debug(app, allowed=whitelist_gate([SecKey.generate().pubkey()]))
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with LocalDmsgNetwork(servers=1) as net:
                conn.send(json.dumps({"disc": net.disc_url}))
                await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        finally:
            if runner is not None:
                await runner.cleanup()

    asyncio.run(main())


async def _pair(disc_url: str, size: int, stack: list[object]) -> tuple[Client, Client]:
    backoff = Backoff(initial=0.05, factor=1.5, maximum=1.0)
    disc_a, disc_b = DiscClient(disc_url), DiscClient(disc_url)
    host = Client(SecKey.generate(), disc_a, backoff=backoff)
    fetcher = Client(SecKey.generate(), disc_b, backoff=backoff)
    for part in (disc_a, disc_b, host, fetcher):
        await part.__aenter__()
        stack.append(part)
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
    server = HTTPServer(app, await host.listen(80))
    await server.__aenter__()
    stack.append(server)
    return host, fetcher


async def _get(host: Client, fetcher: Client, size: int) -> float:
    got = 0
    start = time.perf_counter()
    async with fetch_stream(fetcher.dial, f"dmsg://{host.pk}:80/blob", timeout=300) as resp:
        async for chunk in resp.aiter_bytes(1 << 20):
            got += len(chunk)
    assert got == size, f"short body: {got}"
    return got / (time.perf_counter() - start) / 1e6


async def main(size_mb: int, rounds: int) -> None:
    ctx = mp.get_context("spawn")
    size = size_mb << 20
    children = []
    urls = {}
    for name, flag in (("absent", False), ("present", True)):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_relay_process, args=(child, flag), daemon=True)
        proc.start()
        urls[name] = json.loads(parent.recv())["disc"]
        children.append((proc, parent))
    stack: list[object] = []
    try:
        pairs = {name: await _pair(url, size, stack) for name, url in urls.items()}
        figures: dict[str, list[float]] = {name: [] for name in pairs}
        for i in range(rounds):
            order = list(pairs) if i % 2 == 0 else list(reversed(pairs))
            for name in order:
                figures[name].append(await _get(*pairs[name], size))
        for name, values in figures.items():
            print(
                f"debug_mount_{name}_relay_throughput: {statistics.median(values):.1f} MB/s"
                f" (median of {rounds} GETs of {size_mb} MB through one relay;"
                f" range {min(values):.1f}-{max(values):.1f})"
            )
    finally:
        for part in reversed(stack):
            await part.__aexit__(None, None, None)  # type: ignore[attr-defined]
        for proc, parent in children:
            parent.send("stop")
            proc.join(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.size_mb, args.rounds))
