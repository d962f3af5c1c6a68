"""Transports between two transport managers on loopback: stcp and dmsg carriers, settlement,
packets both ways, removal, persistence across a peer restart."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid

import pytest

from skywire.cipher import KeyPair, SecKey
from skywire.services.tpd.api import TPDServer
from skywire.services.tpd.client import TPDRegistry
from skywire.services.tpd.store.memory import MemoryStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.transport.entry import make_entry, make_transport_id
from skywire.transport.manager import (
    DEAD_AFTER_ROUNDS,
    ManagedTransport,
    TransportError,
    TransportManager,
)
from skywire.transport.network import DmsgNetwork, TCPNetwork, static_table

pytestmark = pytest.mark.timeout(60)


class TPD:
    """A real transport discovery on 127.0.0.1 (memory store) and per-visor registries."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.server = TPDServer(self.store)
        self._registries: list[TPDRegistry] = []

    async def __aenter__(self) -> TPD:
        await self.server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for r in self._registries:
            await r.close()
        await self.server.__aexit__(None, None, None)
        await self.store.close()

    def registry(self, sk: SecKey) -> TPDRegistry:
        reg = TPDRegistry(self.server.url, sk)
        self._registries.append(reg)
        return reg

    async def ids(self) -> set[uuid.UUID]:
        return {e.id for e in await self.store.all_transports()}


def _stcp(sk: SecKey, table: dict[str, str], port: int = 0) -> TCPNetwork:
    return TCPNetwork(sk, "stcp", port=port, resolve=static_table(table))


async def test_stcp_transport_both_ways_and_removal() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    table: dict[str, str] = {}
    net_a, net_b = _stcp(a.sk, table), _stcp(b.sk, table)
    async with (
        TPD() as tpd,
        TransportManager(a.sk, [net_a], registry=tpd.registry(a.sk), latency_interval=0) as tm_a,
        TransportManager(b.sk, [net_b], registry=tpd.registry(b.sk), latency_interval=0) as tm_b,
    ):
        table[a.pk.hex()] = f"127.0.0.1:{net_a.port}"
        table[b.pk.hex()] = f"127.0.0.1:{net_b.port}"
        tp = await tm_a.save_transport(b.pk, "stcp")
        assert tp.id == make_transport_id(a.pk, b.pk, "stcp")
        peer = await tm_b.wait_for(tp.id)
        # registered once, with both signatures, by the accepting side
        assert await tpd.ids() == {tp.id}
        (signed,) = [await tpd.store.get_signed(tp.id)]
        signed.verify_all()
        # packets both ways
        blob = os.urandom(60000)
        await tp.write_packet(0, 7, blob)
        assert await peer.inbox.get() == (0, 7, blob)
        await peer.write_packet(0, 9, b"back")
        assert await tp.inbox.get() == (0, 9, b"back")
        assert tp.stats.sent == len(blob) and peer.stats.received == len(blob)
        # latency probe over the transport, reported to discovery
        ms = await tp.ping()
        assert ms > 0
        await tm_a.registry.report_latency(tp.id, ms)  # type: ignore[union-attr]
        assert (await tpd.store.get_by_id(tp.id)).latency_ms == pytest.approx(ms)
        # a second save returns the same transport
        assert await tm_a.save_transport(b.pk, "stcp") is tp
        # removal: gone from both tables and from discovery
        await tm_a.delete_transport(tp.id)
        await tm_b.wait_gone(tp.id)
        assert await tpd.ids() == set()


async def test_idle_transport_to_a_peer_without_transport_pings_stays_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reference visor drops transport-level pings (an unknown packet type to it): an idle
    transport to it must not be closed as silent, and one unanswered probe stops the probing
    (each probe is an "unknown packet type" line in its log)."""
    interval = 0.05
    monkeypatch.setattr(
        ManagedTransport, "ping", functools.partialmethod(ManagedTransport.ping, timeout=interval)
    )
    a, b = KeyPair.generate(), KeyPair.generate()
    table: dict[str, str] = {}
    net_a, net_b = _stcp(a.sk, table), _stcp(b.sk, table)
    async with (
        TransportManager(a.sk, [net_a], latency_interval=interval) as tm_a,
        TransportManager(b.sk, [net_b], latency_interval=0) as tm_b,
    ):

        async def deaf_read_loop(tp: ManagedTransport) -> None:
            with contextlib.suppress(EOFError, TransportError):
                while True:
                    await tp.read_packet()

        monkeypatch.setattr(tm_b, "_read_loop", deaf_read_loop)
        table[a.pk.hex()] = f"127.0.0.1:{net_a.port}"
        table[b.pk.hex()] = f"127.0.0.1:{net_b.port}"
        tp = await tm_a.save_transport(b.pk, "stcp")
        peer = await tm_b.wait_for(tp.id)
        # The probe is timer-driven: wait (bounded) until it has given up on the deaf peer...
        async with asyncio.timeout(10):
            while tp.unanswered_pings < 1:  # noqa: ASYNC110 - a timer, no event
                await asyncio.sleep(interval)
        # ...then let more than the silence limit pass: the transport must still be there.
        quiet_until = time.monotonic() + 2 * DEAD_AFTER_ROUNDS * interval
        while time.monotonic() < quiet_until:  # noqa: ASYNC110 - asserting nothing happens
            await asyncio.sleep(interval)
        assert not tp.closed and tm_a.transports.get(tp.id) is tp
        assert not tp.answers_pings and tp.unanswered_pings == 1
        assert peer.stats.packets_received == 1  # the one probe, nothing after it
        await tp.write_packet(0, 7, b"still here")
        await peer.write_packet(0, 9, b"back")
        assert await tp.inbox.get() == (0, 9, b"back")


async def test_dmsg_transport() -> None:
    async with LocalDmsgNetwork(servers=1) as dnet:
        ca = await dnet.client()
        cb = await dnet.client()
        async with (
            TPD() as tpd,
            TransportManager(
                ca.sk, [DmsgNetwork(ca)], registry=tpd.registry(ca.sk), latency_interval=0
            ) as tm_a,
            TransportManager(
                cb.sk, [DmsgNetwork(cb)], registry=tpd.registry(cb.sk), latency_interval=0
            ) as tm_b,
        ):
            tp = await tm_a.save_transport(cb.pk, "dmsg")
            peer = await tm_b.wait_for(tp.id)
            await tp.write_packet(0, 1, b"over dmsg")
            assert await peer.inbox.get() == (0, 1, b"over dmsg")
            assert await tpd.ids() == {tp.id}


async def test_handshake_refuses_forged_peer() -> None:
    """A dialer whose key is not the one it claims cannot settle (Noise KK fails)."""
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    table: dict[str, str] = {}
    net_b = _stcp(b.sk, table)
    async with TransportManager(b.sk, [net_b], latency_interval=0) as tm_b:
        # c's table says b lives at net_b; c dials b but expects b to be a: KK fails
        table[a.pk.hex()] = f"127.0.0.1:{net_b.port}"
        net_c = _stcp(c.sk, table)
        async with TransportManager(c.sk, [net_c], latency_interval=0) as tm_c:
            with pytest.raises(Exception):  # noqa: B017 - any typed failure, never a hang
                await tm_c.save_transport(a.pk, "stcp")
            assert not tm_b.transports and not tm_c.transports


async def test_persistent_transport_returns_after_peer_restart() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    table: dict[str, str] = {}
    net_a = _stcp(a.sk, table)
    async with TransportManager(
        a.sk, [net_a], persistent=[(b.pk, "stcp")], latency_interval=0
    ) as tm_a:
        table[a.pk.hex()] = f"127.0.0.1:{net_a.port}"
        tp_id = make_transport_id(a.pk, b.pk, "stcp")
        port_b = 0
        for _round in range(2):  # b starts, then restarts on the same port
            net_b = _stcp(b.sk, table, port=port_b)
            async with TransportManager(b.sk, [net_b], latency_interval=0) as tm_b:
                port_b = net_b.port
                table[b.pk.hex()] = f"127.0.0.1:{port_b}"
                tm_a._changed.set()  # the address is known now: let the keeper look again
                tp = await tm_a.wait_for(tp_id)
                peer = await tm_b.wait_for(tp_id)
                await tp.write_packet(0, 3, b"hi")
                assert await peer.inbox.get() == (0, 3, b"hi")
            await tm_a.wait_gone(tp_id)


async def test_a_starting_visor_dials_its_persistent_transports_without_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The side that does not redial a dropped transport waits a grace period for its peer;
    at start there is nothing to wait for (the peer may be deep in its backoff, or not know
    we are back), so it dials at once. With an endless grace the transport still comes up."""
    import skywire.transport.manager as manager_mod

    monkeypatch.setattr(manager_mod, "PERSISTENT_GRACE", 3600.0)
    a, b = KeyPair.generate(), KeyPair.generate()
    starter, peer_kp = (a, b) if make_entry(a.pk, b.pk, "stcp").edges[0] != a.pk else (b, a)
    table: dict[str, str] = {}
    net_peer = _stcp(peer_kp.sk, table)
    async with TransportManager(peer_kp.sk, [net_peer], latency_interval=0) as tm_peer:
        table[peer_kp.pk.hex()] = f"127.0.0.1:{net_peer.port}"
        net_s = _stcp(starter.sk, table)
        async with TransportManager(
            starter.sk, [net_s], persistent=[(peer_kp.pk, "stcp")], latency_interval=0
        ) as tm_s:
            tp_id = make_transport_id(a.pk, b.pk, "stcp")
            async with asyncio.timeout(20):
                tp = await tm_s.wait_for(tp_id)
                await tm_peer.wait_for(tp_id)
            assert tp.remote_pk == peer_kp.pk


@pytest.mark.parametrize("tp_type", ["stcpr", "sudph"])
async def test_resolved_transports_through_the_address_resolver(tp_type: str) -> None:
    from skywire.services.ar import ARClient, ARServer
    from skywire.services.ar.store.memory import MemoryStore as ARMemoryStore
    from skywire.transport.resolved import StcprNetwork, SudphNetwork

    a, b = KeyPair.generate(), KeyPair.generate()
    async with (
        ARMemoryStore() as ar_store,
        ARServer(ar_store, "127.0.0.1", 0, 0, test_mode=True) as ar,
        TPD() as tpd,
    ):
        clients = [ARClient(ar.url, kp.sk, ar.udp_addr) for kp in (a, b)]

        def net(kp: KeyPair, client: ARClient) -> StcprNetwork | SudphNetwork:
            if tp_type == "stcpr":
                return StcprNetwork(kp.sk, client, host="127.0.0.1", addresses=("127.0.0.1",))
            return SudphNetwork(kp.sk, client, host="127.0.0.1", addresses=("127.0.0.1",))

        try:
            async with (
                TransportManager(
                    a.sk, [net(a, clients[0])], registry=tpd.registry(a.sk), latency_interval=0
                ) as tm_a,
                TransportManager(
                    b.sk, [net(b, clients[1])], registry=tpd.registry(b.sk), latency_interval=0
                ) as tm_b,
            ):
                bound = await clients[0].transports()
                assert tp_type in bound[b.pk]
                tp = await tm_a.save_transport(b.pk, tp_type)
                peer = await tm_b.wait_for(tp.id)
                blob = os.urandom(200_000)
                for i in range(0, 200_000, 50_000):
                    await tp.write_packet(0, 5, blob[i : i + 50_000])
                got = b"".join([(await peer.inbox.get())[2] for _ in range(4)])
                assert got == blob
                await peer.write_packet(0, 6, b"reply")
                assert await tp.inbox.get() == (0, 6, b"reply")
                assert await tpd.ids() == {tp.id}
            # closing the networks released the binds
            assert not await clients[0].transports()
        finally:
            for c in clients:
                await c.close()


async def test_closing_a_carrier_leaves_the_connections_it_handed_out_to_their_owner() -> None:
    """Closing a TCP carrier stops it listening and returns, while a connection it accepted
    and handed out stays with its taker and keeps working. (Python 3.12.1+ makes
    ``asyncio.Server.wait_closed`` wait for every accepted connection: awaiting it here would
    hang until the taker closed its connection.)"""
    a, b = KeyPair.generate(), KeyPair.generate()
    table: dict[str, str] = {}
    net_a, net_b = _stcp(a.sk, table), _stcp(b.sk, table)
    await net_a.start()
    await net_b.start()
    table[b.pk.hex()] = f"127.0.0.1:{net_b.port}"
    try:
        dialed = await net_a.dial(b.pk)
        accepted = await net_b.accept()
        async with asyncio.timeout(5):
            await net_b.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", net_b.port)
        await dialed.stream.write(b"still here")
        assert await accepted.stream.readexactly(10) == b"still here"
        await accepted.stream.close()
        await dialed.stream.close()
    finally:
        await net_a.close()
        await net_b.close()


async def test_stcpr_is_kept_and_binds_once_the_resolver_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resolver that is away when the visor starts does not turn stcpr off: the carrier
    stays, binds as soon as the resolver answers, and is then reachable."""
    import socket

    from skywire.services.ar import ARClient, ARServer
    from skywire.services.ar.store.memory import MemoryStore as ARMemoryStore
    from skywire.transport import resolved
    from skywire.transport.resolved import StcprNetwork

    monkeypatch.setattr(resolved, "BIND_RETRY_INITIAL", 0.05)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a, b = KeyPair.generate(), KeyPair.generate()
    url = f"http://127.0.0.1:{port}"
    async with ARClient(url, a.sk) as ar_a, ARClient(url, b.sk) as ar_b:
        net = StcprNetwork(a.sk, ar_a, host="127.0.0.1", addresses=("127.0.0.1",))
        tm = TransportManager(a.sk, [net], latency_interval=0)
        async with tm:
            assert "stcpr" in tm.transport_types() and not net.bound
            async with (
                ARMemoryStore() as store,
                ARServer(store, "127.0.0.1", port, 0, test_mode=True),
            ):
                async with asyncio.timeout(10):
                    while not net.bound:  # noqa: ASYNC110 - the carrier's own retry timer
                        await asyncio.sleep(0.02)
                data = await ar_b.resolve("stcpr", a.pk)
                assert data.port == str(net.port)
