"""dmsg under faults: dead servers, a server killed mid-stream, duplicate sessions, the msg-3
race, and open/close cycles that must leave nothing behind."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import time

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.client import Client
from skywire.dmsg.disc_entry import Entry, sign
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.dmsg.session import Session, client_handshake
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.wire.noise import Noise, Pattern, Role
from skywire.wire.noise_frames import frame
from skywire.wire.stream import TcpStream

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_all_delegated_servers_down_fails_fast_with_202() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        a = await net.client()
        disc = net.disc_client()
        dead_server = KeyPair.generate()
        # a server entry whose address refuses connections, and one with no entry at all
        await disc.post_entry(
            sign(
                Entry.new_server(dead_server.pk, 0, f"127.0.0.1:{_free_port()}", 10), dead_server.sk
            )
        )
        ghost = KeyPair.generate().pk
        target = KeyPair.generate()
        await disc.post_entry(
            sign(Entry.new_client(target.pk, 0, [dead_server.pk, ghost]), target.sk)
        )
        start = time.monotonic()
        with pytest.raises(DmsgError) as exc:
            await a.dial(target.pk, 80)
        assert exc.value.code == ErrorCode.CANNOT_CONNECT_TO_DELEGATED
        assert time.monotonic() - start < 2.0
        # and an entry without delegated servers is 103
        lonely = KeyPair.generate()
        await disc.post_entry(sign(Entry.new_client(lonely.pk, 0, []), lonely.sk))
        with pytest.raises(DmsgError) as exc:
            await a.dial(lonely.pk, 80)
        assert exc.value.code == ErrorCode.DISC_ENTRY_HAS_NO_DELEGATED


async def test_server_killed_mid_stream_then_reconnect() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        a = await net.client()
        b = await net.client()
        first = net.servers[0]
        listener = await b.listen(80)
        dialed = asyncio.ensure_future(a.dial(b.pk, 80))
        accepted = await listener.accept()
        stream = await dialed
        await stream.write(b"before")
        assert await accepted.readexactly(6) == b"before"
        second = await net.add_server()
        await first.close()
        with pytest.raises(ConnectionError):
            while await accepted.read():
                pass
        with pytest.raises(ConnectionError):
            while await stream.read():
                pass
        # both clients find the remaining server and publish it
        for cl in (a, b):
            await cl.ready()
            assert set(cl.sessions) == {second.pk}
        dialed = asyncio.ensure_future(a.dial(b.pk, 80))
        accepted = await listener.accept()
        stream = await dialed
        assert stream.server_pk == second.pk
        await stream.write(b"after")
        assert await accepted.readexactly(5) == b"after"
        await stream.close()
        await accepted.close()


async def test_second_session_with_same_pk_is_refused_first_keeps_working() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        server = net.servers[0]
        a = await net.client()
        b = await net.client()
        assert server.sessions[a.pk]
        # a second session from a's key, made by hand
        tcp = await TcpStream.connect("127.0.0.1", server.port)
        noise, _ = await client_handshake(tcp, a.sk, server.pk)
        dup = Session(tcp, noise, client=True)
        await asyncio.wait_for(dup.wait_closed(), 5)  # the server drops the newcomer
        await dup.close()
        assert server.stats.sessions_refused == 1
        # the first session is still registered and relays
        listener = await a.listen(3)
        dialed = asyncio.ensure_future(b.dial(a.pk, 3))
        accepted = await listener.accept()
        stream = await dialed
        await stream.write(b"still here")
        assert await accepted.readexactly(10) == b"still here"
        await stream.close()
        await accepted.close()


async def test_client_never_sends_yamux_bytes_with_msg3() -> None:
    """A strict server (as the reference: extra bytes after the handshake fail the session)."""
    server_kp = KeyPair.generate()
    outcome: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def strict(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        noise = Noise(Pattern.XK, Role.RESPONDER, server_kp.sk)
        (n,) = struct.unpack(">H", await reader.readexactly(2))
        noise.read_message(await reader.readexactly(n))
        writer.write(frame(noise.write_message()))
        await writer.drain()
        # read msg3 the way a buffered reader does: whatever has arrived
        data = await reader.read(8192)
        outcome.set_result(data)
        writer.close()

    srv = await asyncio.start_server(strict, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    kp = KeyPair.generate()
    tcp = await TcpStream.connect("127.0.0.1", port)
    noise, _ = await client_handshake(tcp, kp.sk, server_kp.pk)
    session = Session(tcp, noise, client=True, writes_after=time.monotonic() + 0.005)
    # open a stream at once: its SYN must not ride with msg3
    opener = asyncio.ensure_future(session.open_stream())
    first_read = await outcome
    assert len(first_read) == 2 + 65, "yamux bytes arrived together with msg3"
    await asyncio.gather(opener, return_exceptions=True)
    await session.close()
    srv.close()
    await srv.wait_closed()


async def test_our_server_tolerates_bytes_right_after_msg3() -> None:
    """The other direction of the race: a client that writes yamux right behind msg3."""
    async with LocalDmsgNetwork(servers=1) as net:
        server = net.servers[0]
        b = await net.client()
        listener = await b.listen(4)
        a_kp = KeyPair.generate()
        disc = net.disc_client()
        await disc.post_entry(sign(Entry.new_client(a_kp.pk, 0, [server.pk]), a_kp.sk))
        tcp = await TcpStream.connect("127.0.0.1", server.port)
        noise, _ = await client_handshake(tcp, a_kp.sk, server.pk)
        session = Session(tcp, noise, client=True)  # no hold at all
        hasty = Client(a_kp.sk, disc, serve_ctrl=False)
        try:
            stream = await hasty._dial_stream(session, b.pk, 4)
            accepted = await listener.accept()
            await stream.write(b"ok")
            assert await accepted.readexactly(2) == b"ok"
            await stream.close()
            await accepted.close()
        finally:
            await session.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_fifty_client_cycles_leave_nothing_behind() -> None:
    async with LocalDmsgNetwork(servers=2) as net:
        peer = await net.client()
        listener = await peer.listen(80)

        async def cycle() -> None:
            disc = DiscClient(net.disc_url)
            kp = KeyPair.generate()
            async with Client(kp.sk, disc, backoff=net.client_backoff) as cl:
                await cl.ready()
                dialed = asyncio.ensure_future(cl.dial(peer.pk, 80))
                accepted = await listener.accept()
                stream = await dialed
                await stream.write(b"x")
                assert await accepted.readexactly(1) == b"x"
                await stream.close()
                await accepted.close()
            await disc.close()

        await cycle()  # warm-up: lazy imports, caches
        gc.collect()
        tasks_before = len(asyncio.all_tasks())
        fds_before = _fds()
        for _ in range(50):
            await cycle()
        gc.collect()
        # server-side session tasks end when they see the TCP close
        for srv in net.servers:
            await srv.wait_sessions(1 if peer.pk in srv.sessions else 0)
        assert len(asyncio.all_tasks()) == tasks_before
        assert _fds() == fds_before
        assert not [c for c in Client._active if c != peer.pk]
