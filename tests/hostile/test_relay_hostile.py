"""A relay server against a flood of idle streams from one session, and against too many
connections from one address; honest clients keep being served throughout."""

from __future__ import annotations

import asyncio

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.server import Server
from skywire.dmsg.session import Session, client_handshake
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.wire.stream import TcpStream

pytestmark = pytest.mark.timeout(90)


async def raw_session(server: Server, kp: KeyPair) -> Session:
    tcp = await TcpStream.connect("127.0.0.1", server.port)
    noise, _ = await client_handshake(tcp, kp.sk, server.pk)
    return Session(tcp, noise, client=True)


async def test_a_flood_of_idle_streams_costs_no_task_per_stream() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        server.max_pending_streams = 32
        a, b = await net.client(), await net.client()
        listener = await b.listen(5)
        tasks_before = len(asyncio.all_tasks())
        hostile = KeyPair.generate()
        flood = await raw_session(server, hostile)
        try:
            opened = [await flood.open_stream() for _ in range(3000)]
            # wait (bounded) until the server has seen all of them: accepted or refused
            async with asyncio.timeout(30):
                while server.stats.streams_refused < len(opened) - 32:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert len(asyncio.all_tasks()) <= tasks_before + 32 + 10
            # an honest dial through the same server still works meanwhile
            stream = await a.dial(b.pk, 5)
            accepted = await listener.accept()
            await stream.write(b"still served")
            assert await accepted.readexactly(12) == b"still served"
            await stream.close()
            await accepted.close()
        finally:
            await flood.close()
        async with asyncio.timeout(30):  # the flood's session is gone, and its streams
            while hostile.pk in server.sessions:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert len(asyncio.all_tasks()) <= tasks_before + 2


async def test_connections_over_the_per_ip_limit_are_refused() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        server.limit_ip = 3
        held = [await TcpStream.connect("127.0.0.1", server.port) for _ in range(3)]
        try:
            async with asyncio.timeout(10):
                while server.open_connections < 3:  # noqa: ASYNC110 - the server saw them
                    await asyncio.sleep(0.01)
            extra = await TcpStream.connect("127.0.0.1", server.port)
            assert await extra.read() == b""  # closed by the server
            assert server.stats.connections_refused == 1
            await extra.close()
        finally:
            for tcp in held:
                await tcp.close()
