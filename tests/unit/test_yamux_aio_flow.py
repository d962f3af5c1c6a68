"""The asyncio yamux session's data path over TCP: received bytes pushed by the transport (and
bytes the reader held before the session took over), payload views, and a bounded backlog with
many writers at once."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from skywire.wire.stream import AcceptQueue
from skywire.wire.yamux_aio import YamuxSession
from skywire.wire.yamux_aio_backends import TCP_HIGH_WATER
from skywire.wire.yamux_const import INITIAL_STREAM_WINDOW

Pair = tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def tcp_pair() -> AsyncIterator[Pair]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cr, cw = await asyncio.open_connection("127.0.0.1", port)
    sr, sw = await accepted
    yield cr, cw, sr, sw
    for w in (cw, sw):
        w.close()
    server.close()
    await server.wait_closed()


async def test_bytes_buffered_before_the_session_are_read_first(tcp_pair: Pair) -> None:
    _cr, cw, sr, sw = tcp_pair
    # A SYN window update and a data frame on stream 1 that arrived with the handshake: they
    # sit in the server's StreamReader when the session takes the transport over.
    sr.feed_data(struct.pack(">BBHII", 0, 1, 1, 1, 0) + struct.pack(">BBHII", 0, 0, 0, 1, 5))
    sr.feed_data(b"hello")
    server = YamuxSession(sr, sw, client=False)
    server.start()
    stream = await server.accept()
    assert await stream.readexactly(5) == b"hello"
    cw.close()
    await server.wait_closed()  # the peer's close ends the session
    await server.close()  # and closing returns (the StreamWriter saw the connection go)


async def test_views_in_and_out_and_mutable_buffers_are_snapshotted(tcp_pair: Pair) -> None:
    cr, cw, sr, sw = tcp_pair
    async with (
        YamuxSession(cr, cw, client=True) as client,
        YamuxSession(sr, sw, client=False) as server,
    ):
        out = await client.open_stream()
        buf = bytearray(b"abcdef")
        await out.write(memoryview(buf))
        buf[:] = b"XXXXXX"  # after write() returned the bytes sent must not change
        await out.write(memoryview(b"0123456789")[2:5])
        await out.close()
        inc = await server.accept()
        got = b""
        while chunk := await inc.read_view(4):
            assert len(chunk) <= 4
            got += bytes(chunk)
        assert got == b"abcdef234"
        assert isinstance(await inc.read(), bytes)


async def test_many_writers_keep_the_backlog_bounded_and_all_data_arrives(
    tcp_pair: Pair,
) -> None:
    cr, cw, sr, sw = tcp_pair
    n, size = 128, INITIAL_STREAM_WINDOW  # 32 MiB: more than loopback socket buffers hold
    async with (
        YamuxSession(cr, cw, client=True) as client,
        YamuxSession(sr, sw, client=False) as server,
    ):
        backend = client._backend
        peak = 0
        write = backend.write

        def watched(data: bytes) -> None:
            nonlocal peak
            write(data)
            peak = max(peak, backend.buffer_size())

        backend.write = watched  # type: ignore[method-assign]
        sw.transport.pause_reading()  # the peer stops reading: the client's buffer fills
        streams = [await client.open_stream() for _ in range(n)]
        payloads = [bytes([i]) * size for i in range(n)]
        writers = [asyncio.create_task(s.write(p)) for s, p in zip(streams, payloads, strict=True)]
        # let every writer that can go go: the loop runs them until the buffer reaches the mark
        async with asyncio.timeout(10):
            while backend.buffer_size() < TCP_HIGH_WATER:
                if all(w.done() for w in writers):
                    break
                await asyncio.sleep(0)
        assert not all(w.done() for w in writers)  # some wait for their turn...
        # ...and what is queued in the process stays about one frame above the mark.
        assert peak <= TCP_HIGH_WATER + size + 64
        sw.transport.resume_reading()
        accepted = [await server.accept() for _ in range(n)]
        got = await asyncio.gather(*(s.readexactly(size) for s in accepted))
        await asyncio.gather(*writers)
        assert sorted(got) == sorted(payloads)


async def test_a_writer_arriving_while_others_wait_takes_its_turn_after_them(
    tcp_pair: Pair,
) -> None:
    """A newcomer that finds the backlog drained but writers still waiting queues behind
    them: the streams whose credit comes back first cannot take every turn."""
    cr, cw, sr, sw = tcp_pair
    async with (
        YamuxSession(cr, cw, client=True) as client,
        YamuxSession(sr, sw, client=False) as server,
    ):
        backend = client._backend
        sw.transport.pause_reading()
        fillers = [await client.open_stream() for _ in range(128)]  # more than sockets hold
        waiting = [await client.open_stream() for _ in range(4)]
        newcomer = await client.open_stream()
        full = asyncio.Event()
        write = backend.write

        def watched(data: bytes) -> None:
            write(data)
            if backend.buffer_size() >= TCP_HIGH_WATER:
                full.set()

        backend.write = watched  # type: ignore[method-assign]
        fill = [asyncio.create_task(f.write(bytes(INITIAL_STREAM_WINDOW))) for f in fillers]
        async with asyncio.timeout(10):  # the loop runs fillers until the buffer is full
            await full.wait()
        order: list[int] = []
        late: list[asyncio.Task[None]] = []
        send_now = client._send_now

        def recorded(stream_id: int, data: memoryview) -> int:
            order.append(stream_id)
            if len(order) == 1:  # the first waiter's turn: a newcomer arrives right now
                late.append(asyncio.create_task(newcomer.write(b"n" * 100)))
            return send_now(stream_id, data)

        entered: list[int] = []
        all_entered = asyncio.Event()
        send = client.send

        async def entering(stream_id: int, data: memoryview) -> int:
            entered.append(stream_id)
            if len(entered) == len(waiting):
                all_entered.set()
            return await send(stream_id, data)

        client._send_now = recorded  # type: ignore[method-assign]
        client.send = entering  # type: ignore[method-assign]
        writers = [asyncio.create_task(s.write(b"w" * 100)) for s in waiting]
        async with asyncio.timeout(10):  # every waiter reaches the queue
            await all_entered.wait()
        sw.transport.resume_reading()
        accepted = [await server.accept() for _ in range(len(fillers) + len(waiting) + 1)]
        async with asyncio.timeout(30):
            got = await asyncio.gather(*(s.read() for s in accepted[len(fillers) :]))
            await asyncio.gather(*fill, *writers, *late)
        mine = {s.stream_id for s in [*waiting, newcomer]}
        assert [sid for sid in order if sid in mine] == [s.stream_id for s in [*waiting, newcomer]]
        assert got == [b"w" * 100] * len(waiting) + [b"n" * 100]


async def test_accept_queue_hands_out_queued_items_without_waiting() -> None:
    q: AcceptQueue[int] = AcceptQueue(4, ConnectionError)
    for i in range(3):
        q.put_nowait(i)
    for i in range(3):
        coro = q.get()
        with pytest.raises(StopIteration) as done:
            coro.send(None)  # completes in one step: no loop turn per item
        assert done.value.value == i
