"""Noise transport framing throughput over loopback TCP, next to the raw socket in the same run.

Prints one line per figure: ``<name>: <value> <unit>``.
"""

from __future__ import annotations

import asyncio
import time

from skywire.cipher import KeyPair
from skywire.wire.noise import Pattern
from skywire.wire.noise_aio import NoiseStream
from skywire.wire.stream import ByteStream, TcpStream

TOTAL = 256 * 1024 * 1024
CHUNK = 64 * 1024


async def _transfer(sender: ByteStream, receiver: ByteStream) -> float:
    block = bytes(CHUNK)

    async def send() -> None:
        for _ in range(TOTAL // CHUNK):
            await sender.write(block)

    async def recv() -> None:
        got = 0
        while got < TOTAL:
            chunk = await receiver.read(1 << 20)
            if not chunk:
                raise RuntimeError("early EOF")
            got += len(chunk)

    start = time.perf_counter()
    await asyncio.gather(send(), recv())
    return TOTAL / (time.perf_counter() - start) / 1e6


async def _tcp_pair() -> tuple[TcpStream, TcpStream, asyncio.Server]:
    fut: asyncio.Future[TcpStream] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        fut.set_result(TcpStream(r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    client = await TcpStream.connect("127.0.0.1", port)
    return client, await fut, server


async def main() -> None:
    client, srv, server = await _tcp_pair()
    raw = await _transfer(client, srv)
    await client.close()
    await srv.close()
    server.close()
    await server.wait_closed()
    print(f"raw_tcp_throughput: {raw:.1f} MB/s")

    a, b = KeyPair.generate(), KeyPair.generate()
    client, srv, server = await _tcp_pair()
    nc, ns = await asyncio.gather(
        NoiseStream.initiate(client, Pattern.KK, a.sk, b.pk),
        NoiseStream.respond(srv, Pattern.KK, b.sk, a.pk),
    )
    noise = await _transfer(nc, ns)
    await nc.close()
    await ns.close()
    server.close()
    await server.wait_closed()
    print(f"noise_transport_throughput: {noise:.1f} MB/s (64 KiB writes, 4070-byte frames)")


if __name__ == "__main__":
    asyncio.run(main())
