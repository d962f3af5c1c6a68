"""A relay server against a flood of idle streams from one session, against too many
connections from one address, and against a replayed session object; honest clients keep
being served throughout."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.addr import Addr
from skywire.dmsg.server import Server
from skywire.dmsg.session import Session, client_handshake
from skywire.dmsg.types import StreamRequest, decode_response, now_nanos, sign_request
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.wire.noise import Noise, Pattern, Role
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


async def test_a_replayed_session_object_is_refused_by_the_replay_window() -> None:
    """A stream request's sealed bytes sent again on a new stream of the same session (what
    an on-path replay would do): the relay refuses it at the nonce window, and the listener
    sees one stream only."""
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        b = await net.client()
        listener = await b.listen(70)
        kp = KeyPair.generate()
        session = await raw_session(server, kp)
        try:

            def request(port: int) -> bytes:
                noise = Noise(Pattern.KK, Role.INITIATOR, kp.sk, b.pk)
                req = StreamRequest(
                    now_nanos(), Addr(kp.pk, port), Addr(b.pk, 70), noise.write_message()
                )
                return session.noise.encode_object(sign_request(req, kp.sk).raw)

            sealed = request(49153)
            first = await session.open_stream()
            await first.write(sealed)
            assert decode_response(await session.read_object(first)).accepted
            accepted = await listener.accept()
            failed_before = server.stats.streams_failed
            second = await session.open_stream()
            await second.write(sealed)  # the same nonce again
            with contextlib.suppress(ConnectionError):
                assert await second.read() == b""  # aborted by the relay
            assert server.stats.streams_failed == failed_before + 1
            # a fresh request is served, and it is the next stream the listener gets
            third = await session.open_stream()
            await third.write(request(49154))
            assert decode_response(await session.read_object(third)).accepted
            again = await listener.accept()
            assert accepted.remote_addr.port == 49153 and again.remote_addr.port == 49154
            await accepted.close()
            await again.close()
        finally:
            await session.close()
