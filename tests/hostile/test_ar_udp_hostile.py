"""The address resolver's UDP side against 20,000 KCP-shaped garbage datagrams from one host:
they create no lasting state (tasks, fds and heap come back), and honest sudph binds work
during and after the flood."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from skywire.cipher import KeyPair
from skywire.services.ar import ARClient, ARServer
from skywire.services.ar import udp as ar_udp
from skywire.services.ar.store.memory import MemoryStore
from skywire.transport.kcp import MAX_PER_ADDRESS, KCPEndpoint
from tests.hostile._baseline import baseline

pytestmark = pytest.mark.timeout(90)


def garbage(conv: int) -> bytes:
    # a KCP segment header (conv, cmd=PUSH, frg, wnd, ts, sn, una, len) and junk after it
    return struct.pack("<IBBHIIII", conv, 81, 0, 128, 0, 0, 0, 16) + os.urandom(16)


async def honest_bind(ar: ARServer) -> None:
    """A visor binds over sudph, is seen bound, and unbinds."""
    kp = KeyPair.generate()
    endpoint = await KCPEndpoint.open()
    async with endpoint, ARClient(ar.url, kp.sk, ar.udp_addr) as client:
        bind = await client.bind_sudph(endpoint, ("127.0.0.1",))
        async with asyncio.timeout(10):
            await ar.udp.wait_for(kp.pk, bound=True)  # the server's handshake
        await bind.close()
        async with asyncio.timeout(10):
            await ar.udp.wait_for(kp.pk, bound=False)


async def test_garbage_datagrams_create_no_lasting_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # a conversation that never completes its handshake ends after this: 10 s by default
    monkeypatch.setattr(ar_udp, "HANDSHAKE_TIMEOUT", 1.0)
    async with MemoryStore() as store, ARServer(store, "127.0.0.1", 0, 0, test_mode=True) as ar:
        await honest_bind(ar)  # warm-up
        async with baseline() as base:
            assert base.before is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for conv in range(1, 20_001):
                    s.sendto(garbage(conv), ar.udp_addr)
                    if conv % 500 == 0:
                        await asyncio.sleep(0)  # let the server read (the buffer is finite)
            async with asyncio.timeout(30):  # until the server has read the flood
                while ar.udp.ignored + ar.udp.conversations < 5_000:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert ar.udp.conversations <= MAX_PER_ADDRESS
            assert len(asyncio.all_tasks()) <= base.before.tasks + MAX_PER_ADDRESS + 2
            await honest_bind(ar)  # an honest visor binds meanwhile
            async with asyncio.timeout(10):  # the garbage conversations time out
                while ar.udp.conversations:  # noqa: ASYNC110 - their handshake timers
                    await asyncio.sleep(0.02)
            await honest_bind(ar)  # and after
