"""The address resolver's UDP side against 20,000 KCP-shaped garbage datagrams from one host:
they create no lasting state, and an honest sudph bind still works."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from skywire.cipher import KeyPair
from skywire.services.ar import ARClient, ARServer
from skywire.services.ar.store.memory import MemoryStore
from skywire.transport.kcp import MAX_PER_ADDRESS, KCPEndpoint

pytestmark = pytest.mark.timeout(90)


def garbage(conv: int) -> bytes:
    # a KCP segment header (conv, cmd=PUSH, frg, wnd, ts, sn, una, len) and junk after it
    return struct.pack("<IBBHIIII", conv, 81, 0, 128, 0, 0, 0, 16) + os.urandom(16)


async def test_garbage_datagrams_create_no_lasting_state() -> None:
    async with MemoryStore() as store, ARServer(store, "127.0.0.1", 0, 0, test_mode=True) as ar:
        tasks_before = len(asyncio.all_tasks())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for conv in range(1, 20_001):
                s.sendto(garbage(conv), ar.udp_addr)
                if conv % 500 == 0:
                    await asyncio.sleep(0)  # let the server read (the socket buffer is finite)
        async with asyncio.timeout(30):  # until the server has read the flood
            while ar.udp.ignored + ar.udp.conversations < 5_000:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        assert ar.udp.conversations <= MAX_PER_ADDRESS
        assert len(asyncio.all_tasks()) <= tasks_before + MAX_PER_ADDRESS + 2
        # an honest visor binds over sudph meanwhile
        kp = KeyPair.generate()
        endpoint = await KCPEndpoint.open()
        async with endpoint, ARClient(ar.url, kp.sk, ar.udp_addr) as client:
            bind = await client.bind_sudph(endpoint, ("127.0.0.1",))
            async with asyncio.timeout(10):
                while kp.pk not in ar.udp.bound:  # noqa: ASYNC110 - the server's handshake
                    await asyncio.sleep(0.01)
            await bind.close()
