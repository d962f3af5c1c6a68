"""KCP over real UDP sockets on 127.0.0.1: bulk transfer both ways, loss, close, no leaks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator, Callable

import pytest

from skywire.transport.kcp import Address, KCPConnection, KCPEndpoint, KCPOptions
from skywire.wire.stream import ByteStream
from tests.conftest import no_leaked_tasks

MB = 1 << 20
CHUNK = 64 * 1024


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _send(conn: KCPConnection, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        await conn.write(bytes(view[start : start + CHUNK]))


async def _receive_digest(conn: KCPConnection, size: int) -> str:
    digest = hashlib.sha256()
    got = 0
    while got < size:
        chunk = await conn.read(CHUNK)
        assert chunk, f"connection ended after {got} of {size} bytes"
        digest.update(chunk)
        got += len(chunk)
    return digest.hexdigest()


async def _connected(a: KCPEndpoint, b: KCPEndpoint) -> tuple[KCPConnection, KCPConnection]:
    dialed = await a.dial(b.local_addr)
    await dialed.write(b"hello")
    accepted = await asyncio.wait_for(b.accept(), 5)
    assert await accepted.readexactly(5) == b"hello"
    assert accepted.conv == dialed.conv
    assert accepted.remote_addr == a.local_addr
    return dialed, accepted


@pytest.fixture
async def endpoints() -> AsyncIterator[tuple[KCPEndpoint, KCPEndpoint]]:
    a = await KCPEndpoint.open()
    b = await KCPEndpoint.open()
    async with a, b:
        yield a, b


async def _exchange(a: KCPConnection, b: KCPConnection, size: int) -> None:
    data_ab, data_ba = _data(1, size), _data(2, size)
    results = await asyncio.wait_for(
        asyncio.gather(
            _send(a, data_ab),
            _send(b, data_ba),
            _receive_digest(b, size),
            _receive_digest(a, size),
        ),
        60,
    )
    assert results[2] == hashlib.sha256(data_ab).hexdigest()
    assert results[3] == hashlib.sha256(data_ba).hexdigest()


async def test_20_mb_each_way_arrive_intact(
    endpoints: tuple[KCPEndpoint, KCPEndpoint],
) -> None:
    a, b = endpoints
    dialed, accepted = await _connected(a, b)
    assert isinstance(dialed, ByteStream)
    await _exchange(dialed, accepted, 20 * MB)
    assert await dialed.drain(5)
    assert dialed.unacknowledged == 0


async def test_lossy_link_still_delivers_intact() -> None:
    rng_a, rng_b = random.Random(10), random.Random(11)
    dropped = [0, 0]

    def lossy(rng: random.Random, i: int) -> Callable[[bytes, Address], bool]:
        def keep(_data: bytes, _addr: Address) -> bool:
            if rng.random() < 0.10:
                dropped[i] += 1
                return False
            return True

        return keep

    a = await KCPEndpoint.open(datagram_filter=lossy(rng_a, 0))
    b = await KCPEndpoint.open(datagram_filter=lossy(rng_b, 1))
    async with a, b:
        dialed = await a.dial(b.local_addr)
        await dialed.write(b"hello")
        accepted = await asyncio.wait_for(b.accept(), 5)
        assert await accepted.readexactly(5) == b"hello"
        await _exchange(dialed, accepted, 2 * MB)
    assert dropped[0] > 100 and dropped[1] > 100


async def test_message_boundaries_are_kept(endpoints: tuple[KCPEndpoint, KCPEndpoint]) -> None:
    a, b = endpoints
    dialed, accepted = await _connected(a, b)
    for message in (b"get_nonce", b'{"Nonce":[1]}\n', b"heartbeat", b"delBind"):
        await dialed.write(message)
    assert [await accepted.read(4096) for _ in range(4)] == [
        b"get_nonce",
        b'{"Nonce":[1]}\n',
        b"heartbeat",
        b"delBind",
    ]
    # A long write arrives as MSS-sized messages; a small read splits one, never joins two.
    mss = a.options.mss
    await dialed.write(b"x" * (mss + 10))
    assert len(await accepted.read(65536)) == mss
    assert await accepted.read(4) == b"xxxx"
    assert await accepted.read(65536) == b"x" * 6


async def test_several_conversations_share_one_socket(
    endpoints: tuple[KCPEndpoint, KCPEndpoint],
) -> None:
    a, b = endpoints
    convs = [await a.dial(b.local_addr) for _ in range(5)]
    for i, conn in enumerate(convs):
        await conn.write(f"conv {i}".encode())
    accepted = [await asyncio.wait_for(b.accept(), 5) for _ in convs]
    by_conv = {c.conv: c for c in accepted}
    assert set(by_conv) == {c.conv for c in convs}
    for i, conn in enumerate(convs):
        assert await by_conv[conn.conv].read() == f"conv {i}".encode()
        await by_conv[conn.conv].write(f"reply {i}".encode())
        assert await conn.read() == f"reply {i}".encode()


async def test_control_datagrams_go_to_the_handler() -> None:
    got: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
    a = await KCPEndpoint.open(on_datagram=lambda d, addr: got.put_nowait((d, addr)))
    b = await KCPEndpoint.open()
    async with a, b:
        b.send_datagram(b"holepunch", a.local_addr)
        assert await asyncio.wait_for(got.get(), 5) == (b"holepunch", b.local_addr)
        # KCP traffic on the same socket is not offered to the handler.
        dialed = await b.dial(a.local_addr)
        await dialed.write(b"kcp")
        accepted = await asyncio.wait_for(a.accept(), 5)
        assert await accepted.read() == b"kcp"
        assert got.empty()


async def test_dial_only_endpoint_ignores_new_conversations() -> None:
    a = await KCPEndpoint.open(accepting=False)
    b = await KCPEndpoint.open()
    async with a, b:
        from_b = await b.dial(a.local_addr)
        await from_b.write(b"anyone?")
        to_b = await a.dial(b.local_addr)
        await to_b.write(b"ping")
        accepted = await asyncio.wait_for(b.accept(), 5)
        assert await accepted.read() == b"ping"
        assert a.connections == [to_b]


async def test_accept_and_read_return_when_the_endpoint_closes() -> None:
    a = await KCPEndpoint.open()
    b = await KCPEndpoint.open()
    dialed, accepted = await _connected(a, b)
    pending_accept = asyncio.create_task(b.accept())
    pending_read = asyncio.create_task(accepted.read())
    await asyncio.sleep(0)  # let both start waiting
    await b.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(pending_accept, 5)
    assert await asyncio.wait_for(pending_read, 5) == b""
    with pytest.raises(ConnectionError):
        await accepted.write(b"late")
    with pytest.raises(ConnectionError):
        await b.accept()
    with pytest.raises(ConnectionError):
        await b.dial(a.local_addr)
    await a.close()
    assert dialed.closed


async def test_closed_conversation_is_not_accepted_again(
    endpoints: tuple[KCPEndpoint, KCPEndpoint],
) -> None:
    a, b = endpoints
    dialed, accepted = await _connected(a, b)
    await accepted.close()
    assert await accepted.read() == b""
    await dialed.write(b"after close")  # reaches b, which must not resurrect the conversation
    await dialed.write(b"x")
    second = await a.dial(b.local_addr)
    await second.write(b"new")
    fresh = await asyncio.wait_for(b.accept(), 5)
    assert fresh.conv == second.conv
    assert await fresh.read() == b"new"


async def test_idle_timeout_closes_a_silent_conversation() -> None:
    quick = KCPOptions(idle_timeout=0.2)
    a = await KCPEndpoint.open()
    b = await KCPEndpoint.open(options=quick)
    async with a, b:
        _dialed, accepted = await _connected(a, b)
        await a.close()  # the peer vanishes without a word (KCP has no FIN)
        assert await asyncio.wait_for(accepted.read(), 5) == b""
        assert "idle" in accepted.close_reason
        assert b.connections == []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


async def test_no_task_or_socket_left_after_close() -> None:
    async with no_leaked_tasks():
        fds = _open_fds()
        for _ in range(5):
            a = await KCPEndpoint.open()
            b = await KCPEndpoint.open()
            async with a, b:
                dialed, accepted = await _connected(a, b)
                await _exchange(dialed, accepted, 256 * 1024)
            assert a.closed and b.closed
            assert a.connections == [] and b.connections == []
            assert dialed.closed and accepted.closed
    assert _open_fds() == fds


async def test_a_slow_reader_holds_the_writer_back_and_then_catches_up(
    endpoints: tuple[KCPEndpoint, KCPEndpoint],
) -> None:
    a, b = endpoints
    dialed, accepted = await _connected(a, b)
    size = 4 * MB  # several receive windows
    data = _data(3, size)
    sender = asyncio.create_task(_send(dialed, data))
    # Nobody reads: the receive window fills up and the writer waits (flow control).
    done, _ = await asyncio.wait({sender}, timeout=0.5)
    assert not done
    # Reading reopens the window at once (no waiting for KCP's 7 s window probe).
    digest = await asyncio.wait_for(_receive_digest(accepted, size), 5)
    await sender
    assert digest == hashlib.sha256(data).hexdigest()
