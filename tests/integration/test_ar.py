"""The address resolver over real HTTP and UDP/KCP on 127.0.0.1.

stcpr binds over signed HTTP; sudph binds over KCP from the visor's own UDP socket, resolution
of the UDP address the resolver saw, the hole-punch push, delBind, and expiry without heartbeats.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from skywire.cipher import KeyPair
from skywire.services.ar import ARClient, ARError, ARServer, HolePunchRequest, NoEntryError
from skywire.services.ar.store import VisorData
from skywire.services.ar.store.memory import MemoryStore
from skywire.services.ar.udp import HOLE_PUNCH_MESSAGE
from skywire.services.httpauth import HTTPAuthClient, auth_headers
from skywire.transport.kcp import Address, KCPEndpoint

TIMEOUT = 10


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore() as s:
        yield s


@pytest.fixture
async def server(store: MemoryStore) -> AsyncIterator[ARServer]:
    async with ARServer(store, "127.0.0.1", 0, 0, test_mode=True) as srv:
        yield srv


def _client(server: ARServer, kp: KeyPair) -> ARClient:
    return ARClient(server.url, kp.sk, server.udp_addr)


class Visor:
    """A key pair, an AR client and a UDP endpoint recording the control datagrams it gets."""

    def __init__(self, server: ARServer) -> None:
        self.kp = KeyPair.generate()
        self.client = _client(server, self.kp)
        self.datagrams: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.endpoint: KCPEndpoint | None = None

    async def open(self) -> KCPEndpoint:
        self.endpoint = await KCPEndpoint.open(
            on_datagram=lambda data, addr: self.datagrams.put_nowait((data, addr))
        )
        return self.endpoint

    async def close(self) -> None:
        await self.client.close()
        if self.endpoint is not None:
            await self.endpoint.close()


@pytest.fixture
async def visors(server: ARServer) -> AsyncIterator[list[Visor]]:
    made = [Visor(server) for _ in range(3)]
    yield made
    for v in made:
        await v.close()


# -- stcpr -------------------------------------------------------------------------------------


async def test_stcpr_bind_resolve_unbind(
    server: ARServer, store: MemoryStore, visors: list[Visor]
) -> None:
    a, b, _ = visors
    await a.client.bind_stcpr(7777, ["127.0.0.1", "10.1.2.3"])
    assert await store.resolve("stcpr", a.kp.pk) == VisorData(
        "127.0.0.1", "7777", ("127.0.0.1", "10.1.2.3")
    )
    found = await b.client.resolve("stcpr", a.kp.pk)
    # Same public IP as the requester: the dialer tries the local addresses first.
    assert found == VisorData("127.0.0.1", "7777", ("127.0.0.1", "10.1.2.3"), is_local=True)
    assert await b.client.transports() == {a.kp.pk: ["stcpr"]}
    with pytest.raises(NoEntryError):
        await b.client.resolve("sudph", a.kp.pk)

    await a.client.unbind_stcpr()
    with pytest.raises(NoEntryError):
        await b.client.resolve("stcpr", a.kp.pk)
    assert await b.client.transports() == {}


async def test_resolve_bad_requests(server: ARServer, visors: list[Visor]) -> None:
    a = visors[0]
    with pytest.raises(NoEntryError):
        await a.client.resolve("stcpr", visors[1].kp.pk)
    with pytest.raises(ARError) as err:
        await a.client.resolve("dmsg", visors[1].kp.pk)
    assert err.value.status == 400
    resp = await a.client._http.request("GET", "/resolve/stcpr/not-a-key")
    assert resp.status == 400


async def test_health(server: ARServer, visors: list[Visor]) -> None:
    health = await visors[0].client.health()
    assert "build_info" in health and health["started_at"].endswith("Z")


async def test_bind_from_a_private_address_is_refused_outside_test_mode(
    store: MemoryStore,
) -> None:
    kp = KeyPair.generate()
    async with ARServer(store, "127.0.0.1", 0, 0) as srv, _client(srv, kp) as client:
        with pytest.raises(ARError) as err:
            await client.bind_stcpr(7777, ["127.0.0.1"])
        assert err.value.status == 400 and "Invalid IP address" in err.value.message
    assert await store.get_all("stcpr") == []


async def test_forwarded_public_ip_is_bound_when_trusted(store: MemoryStore) -> None:
    kp, other = KeyPair.generate(), KeyPair.generate()
    async with ARServer(store, "127.0.0.1", 0, 0, trust_forwarded=True) as srv:
        async with HTTPAuthClient(srv.url, kp.sk) as http:
            body = b'{"port":"7777","addresses":["10.0.0.5"]}\n'
            forwarded = {"X-Forwarded-For": "8.8.8.8, 10.0.0.1"}
            resp = await http.request("POST", "/bind/stcpr", body=body, headers=forwarded)
            assert resp.status == 400 and "not present" in resp.text
            body = b'{"port":"7777","addresses":["10.0.0.5","8.8.8.8"]}\n'
            resp = await http.request("POST", "/bind/stcpr", body=body, headers=forwarded)
            assert resp.status == 200
        async with _client(srv, other) as client:
            found = await client.resolve("stcpr", kp.pk)
    assert found == VisorData("8.8.8.8", "7777", ("10.0.0.5", "8.8.8.8"))  # not local
    assert await store.get_all("stcpr") == [kp.pk]


async def test_httpauth_failures_are_401_and_store_nothing(
    server: ARServer, store: MemoryStore
) -> None:
    kp, mallory = KeyPair.generate(), KeyPair.generate()
    body = b'{"port":"7777","addresses":["127.0.0.1"]}\n'
    url = server.url + "/bind/stcpr"
    async with aiohttp.ClientSession() as http:
        attempts = [
            {},  # unsigned
            auth_headers(mallory.sk, body, 0, pk=kp.pk),  # signed by someone else
            auth_headers(kp.sk, body, 5),  # wrong nonce
            auth_headers(kp.sk, body + b" ", 0),  # signature over other bytes
        ]
        for headers in attempts:
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 401, headers
                assert "error" in json.loads(await resp.read())
        async with http.get(server.url + f"/resolve/stcpr/{kp.pk.hex()}") as resp:
            assert resp.status == 401
    assert await store.get_all("stcpr") == []
    # The nonce was not consumed by any refusal: a proper first request still uses nonce 0.
    async with _client(server, kp) as client:
        await client.bind_stcpr(7777, ["127.0.0.1"])
        assert client._http.current_nonce == 1


# -- sudph ---------------------------------------------------------------------------------------


async def test_sudph_bind_resolve_and_hole_punch(
    server: ARServer, store: MemoryStore, visors: list[Visor]
) -> None:
    a, b, _ = visors
    ep_a, ep_b = await a.open(), await b.open()
    bind_a = await a.client.bind_sudph(ep_a, ["10.0.0.1"])
    bind_b = await b.client.bind_sudph(ep_b, ["10.0.0.2"])
    for v in (a, b):
        await asyncio.wait_for(server.udp.wait_for(v.kp.pk, bound=True), TIMEOUT)

    # The resolver answers with the UDP address it saw the bind come from.
    found = await b.client.resolve("sudph", a.kp.pk)
    assert found == VisorData(
        f"127.0.0.1:{ep_a.local_addr[1]}", str(ep_a.local_addr[1]), ("10.0.0.1",), is_local=True
    )
    assert await b.client.transports() == {a.kp.pk: ["sudph"], b.kp.pk: ["sudph"]}

    # ... and pushes the requester's address to the target, which punches towards it.
    request = await asyncio.wait_for(bind_a.next_request(), TIMEOUT)
    assert request == HolePunchRequest(b.kp.pk, f"127.0.0.1:{ep_b.local_addr[1]}")
    assert await asyncio.wait_for(b.datagrams.get(), TIMEOUT) == (
        HOLE_PUNCH_MESSAGE,
        ep_a.local_addr,
    )

    # The hole is open: B reaches A over KCP on the very sockets bound at the resolver.
    assert request.udp_address() == ep_b.local_addr
    conn = await ep_b.dial(ep_a.local_addr)
    await conn.write(b"hello over sudph")
    accepted = await asyncio.wait_for(ep_a.accept(), TIMEOUT)
    assert accepted.remote_addr == ep_b.local_addr
    assert await accepted.read() == b"hello over sudph"

    # delBind on close removes the bind at once.
    await bind_a.close()
    await asyncio.wait_for(server.udp.wait_for(a.kp.pk, bound=False), TIMEOUT)
    with pytest.raises(NoEntryError):
        await b.client.resolve("sudph", a.kp.pk)
    assert await store.get_all("sudph") == [b.kp.pk]
    assert await bind_a.next_request() is None
    await bind_b.close()


async def test_resolve_without_own_sudph_bind_pushes_nothing(
    server: ARServer, visors: list[Visor]
) -> None:
    a, b, _ = visors
    bind_a = await a.client.bind_sudph(await a.open())
    await asyncio.wait_for(server.udp.wait_for(a.kp.pk, bound=True), TIMEOUT)
    found = await b.client.resolve("sudph", a.kp.pk)  # b has no sudph bind
    assert found.port == str(a.endpoint.local_addr[1])  # type: ignore[union-attr]
    await bind_a.close()
    assert await bind_a.next_request() is None


async def test_bind_without_heartbeats_expires(store: MemoryStore) -> None:
    async with ARServer(store, "127.0.0.1", 0, 0, test_mode=True, heartbeat_timeout=0.3) as srv:
        alive, silent = Visor(srv), Visor(srv)
        try:
            await alive.client.bind_sudph(await alive.open(), heartbeat_interval=0.05)
            await asyncio.wait_for(srv.udp.wait_for(alive.kp.pk, bound=True), TIMEOUT)
            await silent.client.bind_sudph(await silent.open(), heartbeat_interval=3600)
            await asyncio.wait_for(srv.udp.wait_for(silent.kp.pk, bound=True), TIMEOUT)
            # The protocol's own wait: one heartbeat timeout of silence.
            await asyncio.wait_for(srv.udp.wait_for(silent.kp.pk, bound=False), TIMEOUT)
            with pytest.raises(NoEntryError):
                await alive.client.resolve("sudph", silent.kp.pk)
            # Bound before the silent one, kept alive by its heartbeats alone.
            assert alive.kp.pk in srv.udp.bound
            assert await store.get_all("sudph") == [alive.kp.pk]
        finally:
            await alive.close()
            await silent.close()


async def test_a_new_bind_of_the_same_key_replaces_the_old(
    server: ARServer, store: MemoryStore
) -> None:
    kp = KeyPair.generate()
    async with _client(server, kp) as first, _client(server, kp) as second:
        ep1 = await KCPEndpoint.open()
        ep2 = await KCPEndpoint.open()
        async with ep1, ep2:
            bind1 = await first.bind_sudph(ep1)
            await asyncio.wait_for(server.udp.wait_for(kp.pk, bound=True), TIMEOUT)
            await second.bind_sudph(ep2)
            port2 = str(ep2.local_addr[1])
            await asyncio.wait_for(
                server.udp.wait_until(lambda b: b.get(kp.pk, VisorData()).port == port2),
                TIMEOUT,
            )
            assert (await store.resolve("sudph", kp.pk)).port == port2
            await bind1.close()  # the old connection's delBind must not remove the new bind
            assert (await store.resolve("sudph", kp.pk)).port == port2


async def test_nothing_left_running_after_close(store: MemoryStore) -> None:
    before = asyncio.all_tasks()
    for _ in range(3):
        async with ARServer(store, "127.0.0.1", 0, 0, test_mode=True) as srv:
            v = Visor(srv)
            bind = await v.client.bind_sudph(await v.open())
            await asyncio.wait_for(srv.udp.wait_for(v.kp.pk, bound=True), TIMEOUT)
            await v.client.bind_stcpr(1234, ["127.0.0.1"])
            await v.close()
            assert bind.closed
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()
    assert await store.get_all("sudph") == []
