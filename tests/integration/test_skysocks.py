"""skysocks over a real 2-hop route on loopback: skysocks-client on visor 0, skysocks on visor
2, a web site on 127.0.0.1, a raw SOCKS5 client standing in for the browser.

What a user sees: many concurrent pages each get their own body; a login is required and a
wrong one refused (``01 01``); a closed port is 0x05, BIND 0x07, an unknown address type 0x08;
a broken route is redialled and later requests work, and while no route can be made a request
gets 0x01 (general failure) within the client's bounded wait; fifty start/stop cycles leave no
task, descriptor or route group behind. The wire tests read and write the hashicorp yamux
frames themselves.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct

import pytest

from skywire.apps.skysocks import (
    SERVER_PORT,
    YAMUX_CONFIG,
    SkysocksClient,
    SkysocksServer,
    StaticCredentials,
)
from skywire.router import RouteGroup
from tests.integration._skysocks import (
    FAST_REDIAL,
    Socks5,
    SocksRefused,
    http_get,
    item_body,
    skysocks_net,
    web_site,
)
from tests.integration.test_router import RouteNet

pytestmark = pytest.mark.timeout(90)


async def test_100_concurrent_requests_over_a_2_hop_route_each_get_their_own_body() -> None:
    async with skysocks_net() as sn:
        assert sn.net.nodes[0].router.route_groups[0].route is not None
        assert len(sn.net.nodes[0].router.route_groups[0].route.forward) == 2  # two hops
        bodies = await asyncio.gather(
            *(http_get(sn.proxy, sn.web_port, f"/item/{i}") for i in range(100))
        )
        assert list(bodies) == [item_body(i) for i in range(100)]
        # one route, one session, one stream per request
        assert len(sn.net.nodes[0].router.route_groups) == 1
        assert sn.server.stats.routes == 1 and sn.server.stats.tunnels == 100
        assert sn.client.stats.piped == 100 and sn.client.stats.refused == 0
        # by domain name, too
        assert await http_get(sn.proxy, sn.web_port, "/item/7", host="localhost") == item_body(7)
        status = sn.client.status()
        assert status.connected and status.server == sn.net.nodes[2].pk
        assert status.server_port == SERVER_PORT and status.redials == 0
        assert status.route_age is not None and status.route_age >= 0


async def test_an_ipv6_target_is_reached_and_its_bound_address_is_ipv6() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    async with web_site("::1") as port6, skysocks_net() as sn:
        conn = await Socks5.open(sn.proxy)
        await conn.greet()
        await conn.request("::1", port6)
        assert conn.bound is not None and conn.bound[0] == "::1"
        await conn.send(b"GET /item/4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await conn.reader.read()).endswith(b"\r\n\r\n" + item_body(4))
        await conn.close()


async def test_a_login_is_required_and_a_wrong_one_is_refused() -> None:
    creds = StaticCredentials({"alice": "s3cret"})
    async with skysocks_net(credentials=creds) as sn:
        body = await http_get(sn.proxy, sn.web_port, "/item/3", auth=("alice", "s3cret"))
        assert body == item_body(3)

        conn = await Socks5.open(sn.proxy)  # offers only "no authentication"
        with pytest.raises(SocksRefused) as refused:
            await conn.greet()
        assert (refused.value.stage, refused.value.code) == ("method", 0xFF)
        assert await conn.reader.read() == b""  # and the stream ends
        await conn.close()

        for login in [("alice", "wrong"), ("mallory", "s3cret"), ("", "")]:
            conn = await Socks5.open(sn.proxy)
            with pytest.raises(SocksRefused) as refused:
                await conn.greet(login)
            assert (refused.value.stage, refused.value.code) == ("login", 0x01)
            assert conn.received == b"\x05\x02\x01\x01"
            assert await conn.reader.read() == b""
            await conn.close()
        assert sn.server.stats.auth_failures == 4
        assert sn.server.stats.tunnels == 1


async def test_failures_get_the_rfc_1928_reply_codes() -> None:
    async with skysocks_net() as sn:
        # a port nobody listens on: connection refused
        probe = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        closed_port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        cases = [
            (dict(host="127.0.0.1", port=closed_port), 0x05),
            (dict(host="localhost", port=closed_port), 0x05),  # every address refuses
            (dict(host="127.0.0.1", port=sn.web_port, command=2), 0x07),  # BIND
            (dict(host="127.0.0.1", port=sn.web_port, command=3), 0x07),  # UDP ASSOCIATE
            (dict(host="127.0.0.1", port=sn.web_port, atyp=9), 0x08),
        ]
        for kwargs, code in cases:
            conn = await Socks5.open(sn.proxy)
            await conn.greet()
            with pytest.raises(SocksRefused) as refused:
                await conn.request(**kwargs)  # type: ignore[arg-type]
            assert (refused.value.stage, refused.value.code) == ("request", code), kwargs
            assert await conn.reader.read() == b""
            await conn.close()
        assert sn.server.stats.refused == {
            "CONNECTION_REFUSED": 2,
            "COMMAND_NOT_SUPPORTED": 2,
            "ADDRESS_TYPE_NOT_SUPPORTED": 1,
        }
        assert sn.client.stats.refused == 0  # those answers came from the server


async def test_a_piped_connection_ends_when_the_route_breaks_and_the_client_redials() -> None:
    async with skysocks_net() as sn:
        held = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.set()
            await reader.read()  # until skysocks closes it
            writer.close()

        target = await asyncio.start_server(hold, "127.0.0.1", 0)
        try:
            conn = await Socks5.open(sn.proxy)
            await conn.greet()
            await conn.request("127.0.0.1", target.sockets[0].getsockname()[1])
            await held.wait()
            # the far end closes the route group (as a restarted server visor would)
            (group,) = sn.net.nodes[2].router.route_groups
            await group.close()
            async with asyncio.timeout(10):
                assert await conn.reader.read() == b""  # the piped connection ended
                await sn.client.wait_disconnected()
                await sn.client.wait_connected()
            await conn.close()
        finally:
            target.close()
            await target.wait_closed()
        assert await http_get(sn.proxy, sn.web_port, "/item/5") == item_body(5)
        status = sn.client.status()
        assert status.connected and status.redials == 1
        assert status.last_error is not None and "route" in status.last_error
        assert sn.server.stats.routes == 2


async def test_while_no_route_can_be_made_a_request_gets_general_failure_then_works_again() -> None:
    async with skysocks_net(route_wait=1.0) as sn:
        a, b = sn.net.nodes[0], sn.net.nodes[1]
        (tp,) = a.tm.transports.values()
        await a.tm.delete_transport(tp.id)  # visor 0 is cut off: no route can be made
        async with asyncio.timeout(10):
            await sn.client.wait_disconnected()

        conn = await Socks5.open(sn.proxy)
        async with asyncio.timeout(10):  # the client's bound is 1 s
            await conn.greet()
            with pytest.raises(SocksRefused) as refused:
                await conn.request("127.0.0.1", sn.web_port)
            assert await conn.reader.read() == b""
        await conn.close()
        assert (refused.value.stage, refused.value.code) == ("request", 0x01)
        assert conn.received == b"\x05\x00" + b"\x05\x01\x00\x01" + bytes(6)
        # a client that only offers a login hears the same (the login is not checked here)
        conn = await Socks5.open(sn.proxy)
        async with asyncio.timeout(10):
            await conn.greet(("alice", "x"))
            with pytest.raises(SocksRefused):
                await conn.request("localhost", sn.web_port)
        assert conn.received == b"\x05\x02\x01\x00\x05\x01\x00\x01" + bytes(6)
        await conn.close()
        status = sn.client.status()
        assert not status.connected and status.route_age is None
        assert status.dial_failures >= 1 and "no transports" in (status.last_error or "")
        assert sn.client.stats.refused == 2

        tp = await a.tm.save_transport(b.pk, "stcp")  # the link is back
        await b.tm.wait_for(tp.id)
        async with asyncio.timeout(20):
            await sn.client.wait_connected()
        assert await http_get(sn.proxy, sn.web_port, "/item/9") == item_body(9)
        assert sn.client.status().redials == 1


# ---------------------------------------------------------------------------- wire


async def _frame(group: RouteGroup) -> tuple[int, int, int, int, bytes]:
    """One hashicorp yamux frame: (type, flags, stream id, length, body)."""
    version, kind, flags, sid, length = struct.unpack(">BBHII", await group.readexactly(12))
    assert version == 0
    body = await group.readexactly(length) if kind == 0 else b""
    return kind, flags, sid, length, body


def _data(sid: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BBHII", 0, 0, flags, sid, len(body)) + body


def _window(sid: int, flags: int, delta: int = 0) -> bytes:
    return struct.pack(">BBHII", 0, 1, flags, sid, delta)


SYN, ACK, FIN = 1, 2, 4


async def test_the_client_is_the_yamux_client_and_pipes_raw_socks5_bytes() -> None:
    """The test plays the server visor: it listens on routing port 3 itself and reads what
    hashicorp yamux ``DefaultConfig()`` (client side) sends when a stream opens."""
    async with RouteNet(3, [(0, 1), (1, 2)]) as net:
        listener = await net.nodes[2].router.listen(SERVER_PORT)
        async with SkysocksClient(
            net.nodes[0].router, net.nodes[2].pk, listen=("127.0.0.1", 0), redial=FAST_REDIAL
        ) as client:
            assert client.address is not None
            async with asyncio.timeout(20):
                group = await listener.accept()
                await client.wait_connected()
            assert group.remote_pk == net.nodes[0].pk and group.local_port == SERVER_PORT
            assert group.remote_port >= 49152  # the client dials from an ephemeral port
            assert YAMUX_CONFIG.enable_keepalive is False

            first = await Socks5.open(client.address)
            await first.send(b"\x05\x01\x00")
            async with asyncio.timeout(10):
                # a window update with SYN opens stream 1 (odd: the yamux client), delta 0
                assert await group.readexactly(12) == _window(1, SYN)
                # then the browser's bytes, untouched, in a data frame without flags
                assert await group.readexactly(15) == _data(1, b"\x05\x01\x00")
            await group.write(_window(1, ACK) + _data(1, b"\x05\x00"))
            assert await first.recv(2) == b"\x05\x00"

            second = await Socks5.open(client.address)
            await second.send(b"\x05\x02\x00\x02")
            async with asyncio.timeout(10):
                assert await group.readexactly(12) == _window(3, SYN)
                assert await _frame(group) == (0, 0, 3, 4, b"\x05\x02\x00\x02")
            # the far end ends stream 1: its local connection ends, the client FINs back
            await group.write(_window(1, FIN))
            async with asyncio.timeout(10):
                assert await first.reader.read() == b""
                assert await _frame(group) == (1, FIN, 1, 0, b"")
            await first.close()
            await second.close()
            async with asyncio.timeout(10):
                kind, flags, sid, _, _ = await _frame(group)
            assert (kind, sid) == (1, 3) and flags & FIN
            await group.close()


async def test_the_server_answers_hashicorp_yamux_frames_with_go_socks5_bytes() -> None:
    """The test plays skysocks-client: it dials a route to port 3 and writes the yamux frames
    and SOCKS5 bytes itself; the answers are checked byte for byte."""
    creds = StaticCredentials({"alice": "s3cret"})
    got: list[tuple[str, int]] = []
    heard = asyncio.Queue[bytes]()

    async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(writer.get_extra_info("peername")[:2])
        await heard.put(await reader.readexactly(4))
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(target, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            RouteNet(3, [(0, 1), (1, 2)]) as net,
            SkysocksServer(net.nodes[2].router, credentials=creds),
        ):
            group = await net.nodes[0].router.dial_routes(net.nodes[2].pk, 0, SERVER_PORT)
            await group.write(_window(1, SYN) + _data(1, b"\x05\x01\x02"))
            async with asyncio.timeout(10):
                assert await _frame(group) == (1, ACK, 1, 0, b"")  # accepted, delta 0
                assert await _frame(group) == (0, 0, 1, 2, b"\x05\x02")
            await group.write(_data(1, b"\x01\x05alice\x06s3cret"))
            async with asyncio.timeout(10):
                assert await _frame(group) == (0, 0, 1, 2, b"\x01\x00")
            request = b"\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack(">H", port)
            await group.write(_data(1, request + b"ping"))  # early bytes are kept
            async with asyncio.timeout(10):
                kind, flags, sid, _, reply = await _frame(group)
                assert await heard.get() == b"ping"
            # success, bound to the server's end of its connection to the target
            (peer,) = got
            bound = b"\x7f\x00\x00\x01" + struct.pack(">H", peer[1])
            assert (kind, flags, sid, reply) == (0, 0, 1, b"\x05\x00\x00\x01" + bound)
            async with asyncio.timeout(10):
                assert await _frame(group) == (0, 0, 1, 4, b"pong")
                # the target closed: the server ends the stream with a FIN
                assert await _frame(group) == (1, FIN, 1, 0, b"")
            await group.write(_window(1, FIN))
            await group.close()
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------- leaks


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


async def test_50_start_stop_cycles_leave_no_task_fd_or_route_group() -> None:
    async with web_site() as web_port, RouteNet(3, [(0, 1), (1, 2)]) as net:
        routers = [n.router for n in net.nodes]
        # kept, so that a task one of them failed to end stays alive (and counted) instead of
        # being collected with it
        stopped: list[tuple[SkysocksServer, SkysocksClient]] = []

        async def cycle(i: int) -> None:
            server = SkysocksServer(routers[2])
            client = SkysocksClient(
                routers[0], net.nodes[2].pk, listen=("127.0.0.1", 0), redial=FAST_REDIAL
            )
            stopped.append((server, client))
            async with server, client:
                async with asyncio.timeout(20):
                    await client.wait_connected()
                assert client.address is not None
                assert await http_get(client.address, web_port, f"/item/{i}") == item_body(i)
                if i % 2:  # leave one connection piped when the client stops
                    conn = await Socks5.open(client.address)
                    await conn.greet()
                    await conn.request("127.0.0.1", web_port)
                    await conn.send(b"GET /item/1 HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert (await conn.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            if i % 2:
                async with asyncio.timeout(10):
                    await conn.reader.read()  # the client's close ended it
                await conn.close()

        await cycle(0)
        gc.collect()
        base_tasks = len(asyncio.all_tasks())
        base_fds = _open_fds()
        for i in range(1, 50):
            await cycle(i)
        for r in routers:
            assert r.route_groups == [], r.route_groups
        gc.collect()
        for _ in range(100):  # tasks that end on their own (RPC connection closers) may lag
            if len(asyncio.all_tasks()) <= base_tasks:
                break
            await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) <= base_tasks, asyncio.all_tasks()
        if base_fds:
            assert _open_fds() <= base_fds
        # the routing port is free again
        listener = await routers[2].listen(SERVER_PORT)
        await listener.close()
