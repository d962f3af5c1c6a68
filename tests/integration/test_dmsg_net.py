"""dmsg end to end on loopback: discovery, two relay servers, clients dialing through them."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.client import Client
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.testnet.dmsgnet import LocalDmsgNetwork

pytestmark = pytest.mark.timeout(60)


async def test_dial_through_delegated_server_and_echo() -> None:
    async with LocalDmsgNetwork(servers=2) as net:
        a = await net.client()
        b = await net.client()
        listener = await b.listen(80)
        dialed = asyncio.ensure_future(a.dial(b.pk, 80))
        accepted = await listener.accept()
        stream = await dialed
        assert stream.remote_addr.pk == b.pk and stream.remote_addr.port == 80
        assert accepted.remote_addr.pk == a.pk
        assert accepted.remote_addr.port == stream.local_addr.port >= 49153
        # the stream goes through one of b's delegated servers
        assert stream.server_pk in b.sessions
        payload = os.urandom(300_000)
        _, got = await asyncio.gather(stream.write(payload), accepted.readexactly(len(payload)))
        assert got == payload
        await accepted.write(b"pong")
        assert await stream.readexactly(4) == b"pong"
        await stream.close()
        assert await accepted.read() == b""
        await accepted.close()
        await listener.close()


async def test_clients_on_different_servers() -> None:
    async with LocalDmsgNetwork(servers=2) as net:
        # pin each client to one server by giving each a session to a different server
        a = await net.client()
        b = await net.client()
        a_server = next(iter(a.sessions))
        b_server = next(iter(b.sessions))
        if a_server == b_server:
            # move b to the other server: close b's session, the client reconnects elsewhere
            other = next(s for s in net.servers if s.pk != a_server)
            entry = await b.disc.get_entry(other.pk)
            await b.ensure_session(entry)
            await b.sessions[a_server].close()
            await b.ready()
        b_servers = set(b.sessions)
        listener = await b.listen(9)
        dialed = asyncio.ensure_future(a.dial(b.pk, 9))
        accepted = await listener.accept()
        stream = await dialed
        assert stream.server_pk in b_servers
        blob = os.urandom(4 << 20)  # far beyond the flow-control windows: both ends must run
        _, got = await asyncio.gather(stream.write(blob), accepted.readexactly(len(blob)))
        assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest()
        await stream.close()
        await accepted.close()


async def test_no_listener_is_refused_with_306() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        a = await net.client()
        b = await net.client()
        with pytest.raises(DmsgError) as exc:
            await a.dial(b.pk, 1234)
        assert exc.value.code == ErrorCode.REQ_NO_LISTENER
        assert exc.value.temporary


async def test_port_occupied_and_unknown_pk() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        a = await net.client()
        await a.listen(5)
        with pytest.raises(DmsgError) as exc:
            await a.listen(5)
        assert exc.value.code == ErrorCode.PORT_OCCUPIED
        with pytest.raises(DmsgError) as exc:
            await a.dial(KeyPair.generate().pk, 80)
        assert exc.value.code == ErrorCode.DISC_ENTRY_NOT_FOUND


async def test_dmsgctrl_ping() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        a = await net.client()
        b = await net.client()
        rtts = await a.ping(b.pk, count=3)
        assert len(rtts) == 3 and all(0 < r < 5 for r in rtts)


async def test_one_client_per_pk_per_process() -> None:
    async with LocalDmsgNetwork(servers=1) as net:
        a = await net.client()
        twin = Client(a.sk, net.disc_client())
        with pytest.raises(DmsgError):
            await twin.start()


async def test_server_health_endpoint() -> None:
    import aiohttp

    from skywire.cipher import SecKey
    from skywire.dmsg.server import Server

    async with LocalDmsgNetwork(servers=0) as net:
        srv = Server(SecKey.generate(), disc=net.disc_client(), health_address="127.0.0.1:0")
        async with srv:
            net.servers.append(srv)
            a = await net.client()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{srv.health_port}/health") as resp,
            ):
                doc = await resp.json()
            assert resp.status == 200
            assert doc["public_key"] == srv.pk.hex()
            assert doc["sessions"] == 1 and a.pk in srv.sessions
            assert doc["sessions_post_quantum"] == 1  # both ends ours: hybrid
            assert doc["available_sessions"] == srv.max_sessions - 1
            net.servers.remove(srv)
            await net.close()
