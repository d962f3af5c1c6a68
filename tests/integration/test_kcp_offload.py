"""KCP's batched UDP I/O on real sockets: what a peer without receive coalescing sees (the
reference reads plain datagrams of at most 1500 bytes), transfers with coalescing off on one
side, and reads that join messages for byte-stream users."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import struct
import sys

import pytest

from skywire.transport import kcp as kcp_module
from skywire.transport.kcp import IKCP_CMD_PUSH, IKCP_OVERHEAD, KCPEndpoint, kcp_conv

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP GSO is Linux's")


def _segments(datagram: bytes) -> list[tuple[int, int, int]]:
    """``(cmd, sn, len)`` of each segment; fails unless the datagram is whole segments."""
    out, off = [], 0
    while off < len(datagram):
        _conv, cmd, frg, _wnd, _ts, sn, _una, length = struct.unpack_from(
            "<IBBHIIII", datagram, off
        )
        assert frg == 0
        off += IKCP_OVERHEAD + length
        out.append((cmd, sn, length))
    assert off == len(datagram)
    return out


@linux_only
async def test_a_peer_without_coalescing_receives_ordinary_datagrams() -> None:
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # like kcp-go: no UDP_GRO
    plain.bind(("127.0.0.1", 0))
    plain.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with await KCPEndpoint.open() as a:
            conn = await a.dial(plain.getsockname())
            mss = a.options.mss
            await conn.write(bytes(range(256)) * 400)  # ~75 segments, one flush
            received: list[bytes] = []
            sns: list[int] = []
            while len(sns) < -(-256 * 400 // mss):
                data = await asyncio.wait_for(loop.sock_recv(plain, 65536), 5)
                received.append(data)
                sns += [sn for cmd, sn, _ in _segments(data) if cmd == IKCP_CMD_PUSH]
            assert sns == list(range(len(sns)))
            assert all(len(d) <= a.options.mtu and kcp_conv(d) == conn.conv for d in received)
            # …yet they left in far fewer system calls than datagrams (segmentation offload).
            assert a.sent_datagrams >= len(received)
            assert a.send_calls < a.sent_datagrams
    finally:
        plain.close()


async def test_transfer_with_coalescing_off_on_one_side(monkeypatch: pytest.MonkeyPatch) -> None:
    a = await KCPEndpoint.open()
    monkeypatch.setattr(kcp_module, "enable_gro", lambda _sock: False)
    b = await KCPEndpoint.open()
    data = random.Random(5).randbytes(4 << 20)
    async with a, b:
        dialed = await a.dial(b.local_addr)
        await dialed.write(b"hello")
        accepted = await asyncio.wait_for(b.accept(), 5)
        assert await accepted.readexactly(5) == b"hello"
        for conn in (dialed, accepted):
            conn.coalesce_reads = True

        async def send(conn: kcp_module.KCPConnection) -> None:
            for start in range(0, len(data), 60_000):
                await conn.write(data[start : start + 60_000])

        async def digest(conn: kcp_module.KCPConnection) -> str:
            return hashlib.sha256(await conn.readexactly(len(data))).hexdigest()

        results = await asyncio.wait_for(
            asyncio.gather(send(dialed), send(accepted), digest(accepted), digest(dialed)), 60
        )
    assert results[2] == results[3] == hashlib.sha256(data).hexdigest()


async def test_coalesced_reads_join_messages_and_keep_the_rest() -> None:
    async with await KCPEndpoint.open() as a, await KCPEndpoint.open() as b:
        dialed = await a.dial(b.local_addr)
        for message in (b"one", b"two", b"three"):
            await dialed.write(message)
        assert await dialed.drain(5)  # all three are in b's receive queue
        accepted = await asyncio.wait_for(b.accept(), 5)
        accepted.coalesce_reads = True
        assert await accepted.read(5) == b"onetw"
        assert await accepted.read(65536) == b"othree"
