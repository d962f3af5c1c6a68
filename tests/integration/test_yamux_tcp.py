"""yamux asyncio adapter over real loopback TCP sockets."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.yamux import (
    YamuxConfig,
    YamuxConnection,
    YamuxKeepAliveTimeoutError,
    YamuxProtocolError,
    YamuxSessionClosedError,
    YamuxStreamClosedError,
    YamuxStreamResetError,
)
from skywire.wire.yamux_aio import YamuxSession, YamuxStream
from tests.conftest import no_leaked_tasks

Pipe = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def tcp_pair(limit: int = 1 << 16) -> AsyncIterator[tuple[Pipe, Pipe]]:
    """A connected (client, server) reader/writer pair on 127.0.0.1."""
    accepted: asyncio.Future[Pipe] = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, limit=limit)
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.open_connection("127.0.0.1", port, limit=limit)
    srv = await accepted
    try:
        yield client, srv
    finally:
        for _, w in (client, srv):
            w.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def session_pair(
    config: YamuxConfig | None = None,
) -> AsyncIterator[tuple[YamuxSession, YamuxSession]]:
    async with tcp_pair() as ((cr, cw), (sr, sw)):
        client = YamuxSession(cr, cw, client=True, config=config)
        server = YamuxSession(sr, sw, client=False, config=config)
        async with client, server:
            yield client, server


async def read_all(stream: YamuxStream) -> bytes:
    parts = []
    while chunk := await stream.read():
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.timeout(10)
async def test_open_accept_echo_and_ping() -> None:
    async with session_pair() as (client, server):
        out = await client.open_stream()
        assert out.stream_id == 1
        await out.write(b"hello")
        inc = await server.accept()
        assert inc.stream_id == 1
        assert await inc.readexactly(5) == b"hello"
        await inc.write(b"world")
        assert await out.readexactly(5) == b"world"
        assert isinstance(out, ByteStream)
        rtt = await client.ping()
        assert 0 <= rtt < 5
        assert await server.ping() >= 0
        second = await server.open_stream()
        assert second.stream_id == 2


@pytest.mark.timeout(10)
async def test_mutable_buffer_is_snapshotted_by_write() -> None:
    async with session_pair() as (client, server):
        out = await client.open_stream()
        buf = bytearray(b"first")
        await out.write(buf)
        buf[:] = b"XXXXX"
        await out.write(memoryview(b"-second"))
        inc = await server.accept()
        assert await inc.readexactly(12) == b"first-second"


@pytest.mark.timeout(10)
async def test_accept_does_not_hang_when_peer_closes() -> None:
    async with tcp_pair() as ((cr, cw), (sr, sw)):
        server = YamuxSession(sr, sw, client=False)
        async with server:
            pending = asyncio.ensure_future(server.accept())
            # A ping round trip guarantees the server loop ran (and accept() is waiting).
            cw.write(bytes.fromhex("000200010000000000000007"))
            assert await cr.readexactly(12) == bytes.fromhex("000200020000000000000007")
            assert not pending.done()
            cw.close()
            with pytest.raises(YamuxSessionClosedError):
                await pending
            await server.wait_closed()
            assert server.closed
            with pytest.raises(ConnectionError):
                await server.accept()


@pytest.mark.timeout(10)
async def test_accept_does_not_hang_on_local_close() -> None:
    async with session_pair() as (client, server):
        pending = asyncio.ensure_future(server.accept())
        await client.ping()
        assert not pending.done()
        await server.close()
        with pytest.raises(YamuxSessionClosedError):
            await pending


@pytest.mark.timeout(30)
async def test_100_mb_single_stream_intact() -> None:
    block = os.urandom(1 << 20)
    total_blocks = 100
    async with session_pair() as (client, server):
        out = await client.open_stream()
        inc = await server.accept()

        async def send() -> str:
            digest = hashlib.sha256()
            for i in range(total_blocks):
                chunk = block[i:] + block[:i]  # vary the content cheaply
                digest.update(chunk)
                await out.write(chunk)
            await out.close()
            return digest.hexdigest()

        async def recv() -> tuple[str, int]:
            digest = hashlib.sha256()
            got = 0
            while chunk := await inc.read(1 << 18):
                digest.update(chunk)
                got += len(chunk)
            return digest.hexdigest(), got

        sent_hash, (got_hash, got) = await asyncio.gather(send(), recv())
        assert got == total_blocks << 20
        assert got_hash == sent_hash


@pytest.mark.timeout(30)
async def test_200_concurrent_echo_streams() -> None:
    async with session_pair() as (client, server):

        async def echo(stream: YamuxStream) -> None:
            data = await read_all(stream)
            await stream.write(data)
            await stream.close()

        async def serve() -> None:
            async with asyncio.TaskGroup() as tg:
                for _ in range(200):
                    tg.create_task(echo(await server.accept()))

        async def one(i: int) -> None:
            stream = await client.open_stream()
            payload = os.urandom(1000 + 997 * i)
            await stream.write(payload)
            await stream.close()
            assert await read_all(stream) == payload

        async with asyncio.TaskGroup() as tg:
            tg.create_task(serve())
            for i in range(200):
                tg.create_task(one(i))
        assert client.core.num_streams == server.core.num_streams == 0
        assert client.num_streams == server.num_streams == 0


@pytest.mark.timeout(10)
async def test_half_close_both_ways() -> None:
    async with session_pair() as (client, server):
        # Client finishes first; the server keeps answering afterwards.
        out = await client.open_stream()
        await out.write(b"question")
        await out.close()
        with pytest.raises(YamuxStreamClosedError):
            await out.write(b"more")
        inc = await server.accept()
        assert await read_all(inc) == b"question"
        assert await inc.read() == b""
        await inc.write(b"answer, after the client's FIN")
        await inc.close()
        assert await read_all(out) == b"answer, after the client's FIN"

        # Server finishes first; the client keeps sending afterwards.
        out2 = await client.open_stream()
        await out2.write(b"x")
        inc2 = await server.accept()
        await inc2.close()
        assert await out2.read() == b""
        await out2.write(b"still sending")
        await out2.close()
        assert await read_all(inc2) == b"xstill sending"
        with pytest.raises(asyncio.IncompleteReadError):
            await inc2.readexactly(1)
        assert client.core.num_streams == 0


@pytest.mark.timeout(10)
async def test_reset_reaches_the_peer() -> None:
    async with session_pair() as (client, server):
        out = await client.open_stream()
        await out.write(b"abc")
        inc = await server.accept()
        assert await inc.readexactly(3) == b"abc"
        reader = asyncio.ensure_future(inc.read())
        await out.reset()
        with pytest.raises(YamuxStreamResetError):
            await reader
        with pytest.raises(ConnectionResetError):
            await inc.write(b"x")
        with pytest.raises(YamuxStreamResetError):
            await out.read()


@pytest.mark.timeout(10)
async def test_readexactly_larger_than_window() -> None:
    async with session_pair() as (client, server):
        out = await client.open_stream()
        payload = os.urandom(3 * 256 * 1024 + 5)
        writer = asyncio.ensure_future(out.write(payload))
        inc = await server.accept()
        assert await inc.readexactly(len(payload)) == payload
        await writer


@pytest.mark.timeout(10)
async def test_go_away_blocks_new_streams() -> None:
    async with session_pair() as (client, server):
        existing = await client.open_stream()
        inc = await server.accept()
        await server.go_away()
        await client.ping()  # the go-away is processed before the pong
        with pytest.raises(ConnectionRefusedError):
            await client.open_stream()
        await existing.write(b"still fine")
        assert await inc.readexactly(10) == b"still fine"


@pytest.mark.timeout(10)
async def test_close_ends_streams_leaves_no_tasks_and_closes_socket() -> None:
    async with no_leaked_tasks(), tcp_pair() as ((cr, cw), (sr, sw)):
        client = YamuxSession(cr, cw, client=True)
        server = YamuxSession(sr, sw, client=False)
        client.start()
        server.start()
        out = await client.open_stream()
        await out.write(b"data")
        inc = await server.accept()
        await inc.readexactly(4)
        blocked_read = asyncio.ensure_future(out.read())
        # The server never reads, so this write stalls once the 256 KiB window is spent.
        blocked_write = asyncio.ensure_future(out.write(bytes(1 << 20)))
        await client.ping()
        assert not blocked_write.done()
        ping = asyncio.ensure_future(client.ping())
        await client.close()
        with pytest.raises(YamuxSessionClosedError):
            await blocked_read
        with pytest.raises(YamuxSessionClosedError):
            await blocked_write
        with pytest.raises(YamuxSessionClosedError):
            await ping
        with pytest.raises(ConnectionError):
            await out.write(b"x")
        # The peer notices: what arrived is still readable, then the stream errors out.
        got = 0
        with pytest.raises(YamuxSessionClosedError):
            while True:
                got += len(await inc.read())
        assert got == 256 * 1024 - 4  # the window minus the 4 bytes already read
        await server.wait_closed()
        await server.close()
        assert cw.transport.is_closing() and sw.transport.is_closing()
        assert cw.get_extra_info("socket").fileno() == -1
        assert sw.get_extra_info("socket").fileno() == -1


@pytest.mark.timeout(10)
async def test_unanswered_keepalive_closes_session() -> None:
    config = YamuxConfig(keepalive_interval=0.05, connection_write_timeout=0.2)
    async with (
        tcp_pair() as ((cr, _cw), (sr, sw)),
        YamuxSession(sr, sw, client=False, config=config) as server,
    ):
        # The raw peer reads the keepalive ping but never answers it.
        assert await cr.readexactly(12) == bytes.fromhex("000200010000000000000000")
        await server.wait_closed()
        assert isinstance(server.error, YamuxKeepAliveTimeoutError)
        assert await cr.read() == b""  # the socket was closed


@pytest.mark.timeout(10)
async def test_answered_keepalive_keeps_session() -> None:
    config = YamuxConfig(keepalive_interval=0.01, connection_write_timeout=5.0)
    async with session_pair(config) as (client, server):
        stream = await client.open_stream()
        inc = await server.accept()
        # Exchange traffic until several keepalive rounds have happened on both sides.
        while client.core._next_ping_id < 5 or server.core._next_ping_id < 5:
            await stream.write(b"tick")
            assert await inc.readexactly(4) == b"tick"
        assert not client.closed and not server.closed


@pytest.mark.timeout(10)
async def test_protocol_error_sends_go_away_and_closes() -> None:
    async with (
        tcp_pair() as ((cr, cw), (sr, sw)),
        YamuxSession(sr, sw, client=False) as server,
    ):
        # A SYN then a data frame bigger than the 256 KiB window.
        cw.write(bytes.fromhex("000100010000000100000000"))
        cw.write(bytes.fromhex("000000000000000100040001"))
        await cw.drain()
        await server.wait_closed()
        assert isinstance(server.error, YamuxProtocolError)
        assert await cr.readexactly(12) == bytes.fromhex("000300000000000000000001")
        with pytest.raises(YamuxSessionClosedError):
            await server.accept()


@pytest.mark.timeout(10)
async def test_buffered_handshake_leftover_is_consumed() -> None:
    """Bytes already sitting in the StreamReader (after a prior handshake) reach yamux."""
    async with tcp_pair() as ((_cr, cw), (sr, sw)):
        # The peer sends its handshake line and the first yamux frames in one segment.
        core = YamuxConnection(client=True)
        sid = core.open_stream(0.0)
        core.send_data(sid, b"early")
        cw.write(b"HELLO\n" + core.data_to_send())
        await cw.drain()
        assert await sr.readline() == b"HELLO\n"
        async with YamuxSession(sr, sw, client=False) as server:
            inc = await server.accept()
            assert await inc.readexactly(5) == b"early"


class _Wrapped:
    """A ByteStream that is not a TcpStream, to exercise the generic backend."""

    def __init__(self, inner: TcpStream) -> None:
        self.inner = inner

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        return await self.inner.readexactly(n)

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.timeout(20)
async def test_over_generic_byte_stream() -> None:
    async with no_leaked_tasks(), tcp_pair() as ((cr, cw), (sr, sw)):
        client = YamuxSession.over_stream(_Wrapped(TcpStream(cr, cw)), client=True)
        server = YamuxSession.over_stream(TcpStream(sr, sw), client=False)
        async with client, server:
            payload = os.urandom(5 << 20)
            out = await client.open_stream()
            sender = asyncio.ensure_future(out.write(payload))
            inc = await server.accept()
            assert await inc.readexactly(len(payload)) == payload
            await sender
            await inc.write(b"back")
            assert await out.readexactly(4) == b"back"
            assert await client.ping() >= 0
        assert cw.transport.is_closing()
