"""A relay server against a flood of bad session handshakes, a flood of idle streams from one
session, too many connections from one address, and a replayed session object. Honest clients
keep being served throughout and after, and tasks, fds and heap come back to their baseline."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import pytest

from skywire.cipher import KeyPair, PubKey
from skywire.dmsg.addr import Addr
from skywire.dmsg.server import Server
from skywire.dmsg.session import Session, client_handshake
from skywire.dmsg.types import StreamRequest, decode_response, now_nanos, sign_request
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.wire.noise import Noise, Pattern, Role
from skywire.wire.noise_aio import read_frame
from skywire.wire.noise_frames import frame
from skywire.wire.stream import TcpStream
from tests.hostile._baseline import baseline
from tests.hostile._honest import assert_served, honest_client

pytestmark = pytest.mark.timeout(90)


async def raw_session(server: Server, kp: KeyPair) -> Session:
    tcp = await TcpStream.connect("127.0.0.1", server.port)
    noise, _ = await client_handshake(tcp, kp.sk, server.pk)
    return Session(tcp, noise, client=True)


async def closed_by_server(tcp: TcpStream) -> None:
    """Read (bounded) until the server has closed the connection, then close our end."""
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    if not await tcp.read(65536):
                        return
                except ConnectionError:
                    return
    finally:
        await tcp.close()


# --------------------------------------------------------------------------------------------
# Bad session handshakes: each opens a connection, misbehaves, and leaves it open for the server
# to close.


def _msg1(server: Server, to: KeyPair | None = None) -> tuple[Noise, bytes]:
    """An initiator's first XK message, to ``server`` (or to another key)."""
    noise = Noise(Pattern.XK, Role.INITIATOR, KeyPair.generate().sk, (to or server).pk)
    return noise, noise.write_message()


async def _garbage(server: Server, tcp: TcpStream) -> None:
    await tcp.write(os.urandom(1024))


async def _empty_frame(server: Server, tcp: TcpStream) -> None:
    await tcp.write(b"\x00\x00")


async def _long_frame_never_finished(server: Server, tcp: TcpStream) -> None:
    await tcp.write(b"\xff\xff" + os.urandom(16))


async def _truncated_msg1(server: Server, tcp: TcpStream) -> None:
    _, msg1 = _msg1(server)
    await tcp.write(frame(msg1)[: len(msg1) // 2])


async def _short_msg1(server: Server, tcp: TcpStream) -> None:
    _, msg1 = _msg1(server)
    await tcp.write(frame(msg1[:20]))


async def _bad_ephemeral(server: Server, tcp: TcpStream) -> None:
    _, msg1 = _msg1(server)
    await tcp.write(frame(b"\x05" + b"\xff" * 32 + msg1[33:]))  # not a point on the curve


async def _wrong_server_key(server: Server, tcp: TcpStream) -> None:
    _, msg1 = _msg1(server, to=KeyPair.generate())
    await tcp.write(frame(msg1))


async def _silent(server: Server, tcp: TcpStream) -> None:
    return


async def _no_msg3(server: Server, tcp: TcpStream) -> None:
    noise, msg1 = _msg1(server)
    await tcp.write(frame(msg1))
    noise.read_message(await read_frame(tcp))


async def _bad_msg3(server: Server, tcp: TcpStream) -> None:
    noise, msg1 = _msg1(server)
    await tcp.write(frame(msg1))
    noise.read_message(await read_frame(tcp))
    await tcp.write(frame(os.urandom(len(noise.write_message()))))


async def _garbage_after_handshake(server: Server, tcp: TcpStream) -> None:
    await client_handshake(tcp, KeyPair.generate().sk, server.pk)
    await tcp.write(b"\xff" + os.urandom(511))  # not yamux (no such version)


Attack = Callable[[Server, TcpStream], Awaitable[None]]
HANDSHAKE_ATTACKS: list[Attack] = [
    _garbage,
    _empty_frame,
    _long_frame_never_finished,
    _truncated_msg1,
    _short_msg1,
    _bad_ephemeral,
    _wrong_server_key,
    _silent,
    _no_msg3,
    _bad_msg3,
    _garbage_after_handshake,
]


async def bad_handshakes(server: Server, rounds: int, meanwhile: Awaitable[None]) -> None:
    """Every attack ``rounds`` times at once, each connection left open; await ``meanwhile``,
    then until (bounded) the server has closed every one. Our ends die with this frame."""

    async def attack(how: Attack) -> TcpStream:
        tcp = await TcpStream.connect("127.0.0.1", server.port)
        await how(server, tcp)
        return tcp

    held = await asyncio.gather(*(attack(how) for how in HANDSHAKE_ATTACKS * rounds))
    await meanwhile
    await asyncio.gather(*(closed_by_server(tcp) for tcp in held))


async def test_a_flood_of_bad_session_handshakes_is_shed() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        server.handshake_timeout = 2.0  # silent and half-done handshakes: 5 s by default (a
        # shorter bound fails honest handshakes too when a loaded machine runs 176 at once)
        a, b = await net.client(), await net.client()
        listener = await b.listen(5)
        await assert_served(a, listener)  # warm-up
        async with honest_client(net) as c:
            await assert_served(c, listener)
        accepted = server.stats.sessions_accepted
        async with baseline():
            await bad_handshakes(server, 16, assert_served(a, listener, b"during the flood"))
            async with asyncio.timeout(10):  # the server releases what it counted
                while server.open_connections != 2:  # noqa: ASYNC110 - its tasks end
                    await asyncio.sleep(0.01)
            assert set(server.sessions) == {a.pk, b.pk}
            assert server.stats.sessions_accepted == accepted + 16  # only the handshakes done
            # a new honest client connects and relays; the old ones still do
            async with honest_client(net) as c:
                await assert_served(c, listener, b"after the flood")
            await assert_served(a, listener, b"after the flood")


async def idle_streams(server: Server, count: int, meanwhile: Awaitable[None]) -> PubKey:
    """Open ``count`` streams on one session and never use them; await ``meanwhile`` once the
    server has seen them all, then close the session. Its key (the streams are gone with this
    coroutine's frame: what stays is the server's doing)."""
    hostile = KeyPair.generate()
    flood = await raw_session(server, hostile)
    try:
        opened = [await flood.open_stream() for _ in range(count)]
        # wait (bounded) until the server has seen all of them: accepted or refused
        refused = len(opened) - server.max_pending_streams
        async with asyncio.timeout(30):
            while server.stats.streams_refused < refused:  # noqa: ASYNC110 - the server reads
                await asyncio.sleep(0.02)
        await meanwhile
    finally:
        await flood.close()
    return hostile.pk


async def test_a_flood_of_idle_streams_costs_no_task_per_stream() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        server.max_pending_streams = 32
        a, b = await net.client(), await net.client()
        listener = await b.listen(5)
        await assert_served(a, listener)  # warm-up
        async with baseline() as base:
            assert base.before is not None
            tasks = base.before.tasks

            async def meanwhile() -> None:
                assert len(asyncio.all_tasks()) <= tasks + 32 + 10
                await assert_served(a, listener, b"still served")  # the same relay serves

            hostile = await idle_streams(server, 3000, meanwhile())
            async with asyncio.timeout(30):  # the flood's session is gone, and its streams
                await server.wait_session_ended(hostile)
            await assert_served(a, listener, b"after the flood")


async def test_connections_over_the_per_ip_limit_are_refused() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        a, b = await net.client(), await net.client()
        listener = await b.listen(5)
        await assert_served(a, listener)  # warm-up
        async with honest_client(net) as c:
            await assert_served(c, listener)
        server.limit_ip = 5  # the two honest clients and three more
        async with baseline():
            held = [await TcpStream.connect("127.0.0.1", server.port) for _ in range(3)]
            try:
                async with asyncio.timeout(10):
                    while server.open_connections < 5:  # noqa: ASYNC110 - the server saw them
                        await asyncio.sleep(0.01)
                extra = await TcpStream.connect("127.0.0.1", server.port)
                await closed_by_server(extra)
                assert server.stats.connections_refused == 1
                await assert_served(a, listener, b"at the limit")
            finally:
                for tcp in held:
                    await tcp.close()
            async with asyncio.timeout(10):
                while server.open_connections != 2:  # noqa: ASYNC110 - the server saw them go
                    await asyncio.sleep(0.01)
            async with honest_client(net) as c:  # room again for a new connection
                await assert_served(c, listener, b"after")


async def test_a_replayed_session_object_is_refused_by_the_replay_window() -> None:
    """A stream request's sealed bytes sent again on a new stream of the same session (what
    an on-path replay would do): the relay refuses it at the nonce window, and the listener
    sees one stream only."""
    async with LocalDmsgNetwork(servers=1) as net:
        (server,) = net.servers
        a, b = await net.client(), await net.client()
        listener = await b.listen(70)
        await assert_served(a, listener)  # warm-up
        async with baseline():
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
            async with asyncio.timeout(10):
                await server.wait_session_ended(kp.pk)
            await assert_served(a, listener, b"after the replay")
