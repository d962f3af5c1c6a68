"""Noise over real loopback TCP: handshake, bulk transfer, tampering, timeout."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from skywire.cipher import KeyPair
from skywire.wire.errors import NoiseError
from skywire.wire.noise import Pattern
from skywire.wire.noise_aio import NoiseStream
from skywire.wire.stream import TcpStream


async def _pair(pattern: Pattern) -> tuple[NoiseStream, NoiseStream, asyncio.Server]:
    a, b = KeyPair.generate(), KeyPair.generate()
    accepted: asyncio.Future[NoiseStream] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            remote = a.pk if pattern is Pattern.KK else None
            accepted.set_result(await NoiseStream.respond(TcpStream(r, w), pattern, b.sk, remote))
        except Exception as exc:  # handed to the test
            accepted.set_exception(exc)

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await NoiseStream.initiate(
        await TcpStream.connect("127.0.0.1", port), pattern, a.sk, b.pk
    )
    srv = await accepted
    assert srv.remote_pk == a.pk
    return client, srv, server


@pytest.mark.parametrize("pattern", [Pattern.XK, Pattern.KK])
async def test_bulk_both_ways(pattern: Pattern) -> None:
    client, srv, server = await _pair(pattern)
    data = os.urandom(3 * 1024 * 1024 + 17)

    async def send(s: NoiseStream) -> None:
        for off in range(0, len(data), 65536):
            await s.write(data[off : off + 65536])

    async def recv(s: NoiseStream) -> str:
        h = hashlib.sha256()
        got = 0
        while got < len(data):
            chunk = await s.read()
            assert chunk
            got += len(chunk)
            h.update(chunk)
        return h.hexdigest()

    want = hashlib.sha256(data).hexdigest()
    results = await asyncio.gather(send(client), recv(srv), send(srv), recv(client))
    assert results[1] == want and results[3] == want
    await client.close()
    assert await srv.read() == b""  # EOF after the peer closes
    await srv.close()
    server.close()
    await server.wait_closed()


async def test_tampered_stream_errors() -> None:
    client, srv, server = await _pair(Pattern.KK)
    wire = client.noise.encode_frames(b"hello world")
    tampered = wire[:-1] + bytes([wire[-1] ^ 0xFF])
    assert isinstance(client.inner, TcpStream)
    await client.inner.write(tampered)
    with pytest.raises(NoiseError):
        await srv.read()
    await client.close()
    await srv.close()
    server.close()
    await server.wait_closed()


async def test_handshake_timeout_on_silent_peer() -> None:
    silent_conns: list[asyncio.StreamWriter] = []

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        silent_conns.append(w)

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    a, b = KeyPair.generate(), KeyPair.generate()
    stream = await TcpStream.connect("127.0.0.1", port)
    with pytest.raises(NoiseError, match="timed out"):
        await NoiseStream.initiate(stream, Pattern.XK, a.sk, b.pk, timeout=0.2)
    await stream.close()
    for w in silent_conns:
        w.close()
    server.close()
    await server.wait_closed()
