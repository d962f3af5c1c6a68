"""Loopback throughput: raw asyncio TCP versus one yamux stream over the same kind of socket.

Run with ``.venv/bin/python bench/yamux_throughput.py [megabytes]``; prints one line per figure.
Both ends live in this process and event loop, so each figure includes sender and receiver work.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from skywire.wire.yamux_aio import YamuxSession

CHUNK = 1 << 20
LIMIT = 1 << 20


async def _tcp_pair() -> tuple[
    asyncio.StreamReader,
    asyncio.StreamWriter,
    asyncio.StreamReader,
    asyncio.StreamWriter,
    asyncio.Server,
]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, limit=LIMIT)
    port = server.sockets[0].getsockname()[1]
    cr, cw = await asyncio.open_connection("127.0.0.1", port, limit=LIMIT)
    sr, sw = await accepted
    return cr, cw, sr, sw, server


async def raw_tcp(total: int, block: bytes) -> float:
    _cr, cw, sr, sw, server = await _tcp_pair()

    async def send() -> None:
        sent = 0
        while sent < total:
            cw.write(block)
            await cw.drain()
            sent += len(block)
        cw.close()

    async def recv() -> int:
        got = 0
        while True:
            data = await sr.read(256 * 1024)
            if not data:
                return got
            got += len(data)

    start = time.perf_counter()
    _, got = await asyncio.gather(send(), recv())
    elapsed = time.perf_counter() - start
    assert got == total, (got, total)
    sw.close()
    await sw.wait_closed()
    await cw.wait_closed()
    server.close()
    await server.wait_closed()
    return total / elapsed / 1e6


async def yamux_stream(total: int, block: bytes) -> float:
    cr, cw, sr, sw, server = await _tcp_pair()
    async with (
        YamuxSession(cr, cw, client=True) as client,
        YamuxSession(sr, sw, client=False) as srv,
    ):
        out = await client.open_stream()
        inc = await srv.accept()

        async def send() -> None:
            sent = 0
            while sent < total:
                await out.write(block)
                sent += len(block)
            await out.close()

        async def recv() -> int:
            got = 0
            while True:
                data = await inc.read(256 * 1024)
                if not data:
                    return got
                got += len(data)

        start = time.perf_counter()
        _, got = await asyncio.gather(send(), recv())
        elapsed = time.perf_counter() - start
        assert got == total, (got, total)
    server.close()
    await server.wait_closed()
    return total / elapsed / 1e6


async def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    total = megabytes * CHUNK
    block = os.urandom(CHUNK)
    raw = await raw_tcp(total, block)
    print(f"raw asyncio TCP loopback ({megabytes} MiB): {raw:.0f} MB/s")
    ymx = await yamux_stream(total, block)
    print(f"yamux single stream over loopback TCP ({megabytes} MiB): {ymx:.0f} MB/s")


if __name__ == "__main__":
    asyncio.run(main())
