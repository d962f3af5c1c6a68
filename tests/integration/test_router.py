"""Routers on loopback: multi-hop routes set up by a setup node, data through intermediaries with
Noise over the route, clean close from either end, no leftovers after many dial/close cycles.

:class:`RouteNet` (also used by the churn and RSN tests) builds N visors — each a dmsg client,
a stcp transport manager and a router — plus a dmsg network, a route finder fed with the
transports, and a setup node trusted by every visor.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.client import Client
from skywire.router import RouteDialError, RouteGroup, Router, RouterConfig
from skywire.router.gateway import GATEWAY_PORT
from skywire.services.rf.api import RouteFinder, RouteFinderServer
from skywire.services.rf.client import RFClient
from skywire.services.rf.graph import StaticTransportSource, TransportInfo
from skywire.services.rsn.node import SetupNode
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.transport.manager import TransportManager
from skywire.transport.network import TCPNetwork, static_table
from skywire.wire.stream import ByteStream

pytestmark = pytest.mark.timeout(60)

Dial = Callable[[PubKey, int], Awaitable[ByteStream]]


@dataclass
class Node:
    sk: SecKey
    pk: PubKey
    dmsg: Client
    tm: TransportManager
    router: Router


class RouteNet:
    """``async with RouteNet(5, links=[(0, 2), …]) as net:`` — visors 0…n-1 on loopback."""

    def __init__(
        self,
        n: int,
        links: Sequence[tuple[int, int]],
        *,
        rsn_dial_wrapper: Callable[[Dial], Dial] | None = None,
        rsn_kwargs: dict[str, Any] | None = None,
        **router_kwargs: Any,
    ) -> None:
        self.n = n
        self.links = list(links)
        self.rsn_dial_wrapper = rsn_dial_wrapper
        self.rsn_kwargs = {"call_timeout": 5.0, "dial_backoff": 0.05, **(rsn_kwargs or {})}
        self.router_kwargs = {"gc_interval": 1.0, "ping_interval": 0, **router_kwargs}
        self.nodes: list[Node] = []
        self.table: dict[str, str] = {}
        self.dnet = LocalDmsgNetwork(servers=1)
        self.rsn: SetupNode | None = None
        self.rf_server: RouteFinderServer | None = None
        self.rf: RFClient | None = None
        self.transports: list[TransportInfo] = []

    @property
    def rsn_node(self) -> SetupNode:
        assert self.rsn is not None
        return self.rsn

    async def __aenter__(self) -> RouteNet:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def config(self) -> RouterConfig:
        assert self.rsn is not None and self.rsn.pk is not None
        return RouterConfig(setup_nodes=(self.rsn.pk,), **self.router_kwargs)

    async def _start(self) -> None:
        await self.dnet.__aenter__()
        rsn_client = await self.dnet.client()
        dial: Dial = rsn_client.dial
        if self.rsn_dial_wrapper is not None:
            dial = self.rsn_dial_wrapper(dial)
        self.rsn = SetupNode(rsn_client, dial=dial, **self.rsn_kwargs)
        await self.rsn.start()
        sks = [SecKey.generate() for _ in range(self.n)]
        tms: list[TransportManager] = []
        for sk in sks:
            net = TCPNetwork(sk, "stcp", resolve=static_table(self.table))
            tm = TransportManager(sk, [net], latency_interval=0)
            await tm.start()
            self.table[sk.pubkey().hex()] = f"127.0.0.1:{net.port}"
            tms.append(tm)
        for i, j in self.links:
            tp = await tms[i].save_transport(sks[j].pubkey(), "stcp")
            await tms[j].wait_for(tp.id)
            self.transports.append(TransportInfo(tp.id, tp.entry.edges, "stcp"))
        finder = RouteFinder(StaticTransportSource(self.transports), refresh_interval=None)
        self.rf_server = RouteFinderServer(finder, run_refresh=False)
        await self.rf_server.__aenter__()
        self.rf = RFClient(self.rf_server.url)
        for sk, tm in zip(sks, tms, strict=True):
            dmsg = await self.dnet.client(sk)
            router = Router(tm, dmsg, rf=self.rf, config=self.config())
            await router.start()
            self.nodes.append(Node(sk, sk.pubkey(), dmsg, tm, router))

    async def restart_router(self, i: int) -> Router:
        """Replace visor ``i``'s router (its setup RPC connections die, its table is new)."""
        node = self.nodes[i]
        await node.router.close()
        node.router = Router(node.tm, node.dmsg, rf=self.rf, config=self.config())
        await node.router.start()
        return node.router

    def rule_counts(self) -> list[int]:
        return [len(n.router.table) for n in self.nodes]

    async def close(self) -> None:
        for node in self.nodes:
            await node.router.close()
        for node in self.nodes:
            await node.tm.close()
        if self.rsn is not None:
            await self.rsn.close()
        if self.rf is not None:
            await self.rf.close()
        if self.rf_server is not None:
            await self.rf_server.__aexit__(None, None, None)
        await self.dnet.close()


# A─C─D─B is the only path of 3 hops or more from A to B; A─E─B is a 2-hop shortcut.
A, B, C, D, E = range(5)
FIVE_LINKS = [(A, C), (C, D), (D, B), (A, E), (E, B)]


async def _pump(rg: RouteGroup, data: bytes) -> None:
    view = memoryview(data)
    for off in range(0, len(view), 256 * 1024):
        await rg.write(bytes(view[off : off + 256 * 1024]))


async def _digest(rg: RouteGroup, n: int) -> str:
    h = hashlib.sha256()
    got = 0
    while got < n:
        chunk = await rg.read(1 << 20)
        assert chunk, f"route ended after {got} of {n} bytes"
        h.update(chunk)
        got += len(chunk)
    return h.hexdigest()


async def _dial_pair(
    net: RouteNet, src: int, dst: int, port: int, **kw: Any
) -> tuple[RouteGroup, RouteGroup]:
    listener = net.nodes[dst].router._listeners.get(port) or await net.nodes[dst].router.listen(
        port
    )
    rg = await net.nodes[src].router.dial_routes(net.nodes[dst].pk, 0, port, **kw)
    peer = await listener.accept()
    return rg, peer


async def test_three_hop_route_carries_50mb_both_ways_with_noise_and_closes_cleanly() -> None:
    size = 50 * 1024 * 1024
    async with RouteNet(5, FIVE_LINKS) as net:
        rg, peer = await _dial_pair(net, A, B, 45, min_hops=3)
        assert rg.route is not None
        assert [h.dst for h in rg.route.forward] == [net.nodes[i].pk for i in (C, D, B)]
        assert [h.dst for h in rg.route.reverse] == [net.nodes[i].pk for i in (D, C, A)]
        assert rg.encrypted and peer.encrypted
        assert peer.remote_pk == net.nodes[A].pk and peer.local_port == 45
        # rules: 2 at each edge, 2 intermediary rules at each of C and D, none at E
        assert net.rule_counts() == [2, 2, 2, 2, 0]

        up, down = os.urandom(size), os.urandom(size)
        results = await asyncio.gather(
            _pump(rg, up), _pump(peer, down), _digest(peer, size), _digest(rg, size)
        )
        assert results[2] == hashlib.sha256(up).hexdigest()
        assert results[3] == hashlib.sha256(down).hexdigest()
        assert net.nodes[C].router.stats.forwarded > 2 * size // (64 * 1024)

        assert await rg.ping() >= 0 and rg.latency_ms is not None

        await rg.close()
        await peer.wait_closed()
        assert await peer.read() == b""
        assert net.rule_counts() == [0, 0, 0, 0, 0]
        assert not net.nodes[A].router.route_groups and not net.nodes[B].router.route_groups


async def test_close_from_the_responder_removes_every_rule() -> None:
    async with RouteNet(5, FIVE_LINKS, encrypt=False) as net:
        rg, peer = await _dial_pair(net, A, B, 45, min_hops=3)
        assert not rg.encrypted
        await rg.write(b"hello")
        assert await peer.readexactly(5) == b"hello"
        await peer.write(b"world")
        assert await rg.readexactly(5) == b"world"
        await peer.close()
        await rg.wait_closed()
        assert await rg.read() == b""
        with pytest.raises(ConnectionError):
            await rg.write(b"late")
        assert net.rule_counts() == [0, 0, 0, 0, 0]


async def test_dial_to_a_port_nobody_listens_on_fails_and_leaves_no_rule() -> None:
    async with RouteNet(4, [(0, 1), (1, 2), (2, 3)], setup_attempts=1) as net:
        with pytest.raises(RouteDialError, match="no app listens on port 9"):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 9)
        # the intermediaries' rules were pushed, then rolled back
        assert net.rule_counts() == [0, 0, 0, 0]
        stats = net.rsn_node.stats.snapshot()
        assert stats["failures_by_class"]["destination_rules"] == 1
        assert stats["rollbacks"] == 1


async def test_gateway_serves_only_trusted_setup_nodes() -> None:
    async with RouteNet(2, [(0, 1)]) as net:
        stranger = await net.dnet.client()
        stream = await stranger.dial(net.nodes[0].pk, GATEWAY_PORT)
        assert await stream.read() == b""  # closed unanswered
        await stream.close()
        gw = net.nodes[0].router.gateway
        assert gw is not None and gw.refused == 1
        assert net.nodes[0].router.table.last_reserved == 0


def _open_fds() -> int:
    """Open file descriptors of this process (0 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


async def test_50_dial_close_cycles_leave_no_task_rule_or_socket() -> None:
    async with RouteNet(4, [(0, 1), (1, 2), (2, 3)], encrypt=True) as net:
        src, dst = net.nodes[0], net.nodes[3]
        listener = await dst.router.listen(7)

        async def cycle(i: int) -> None:
            rg = await src.router.dial_routes(dst.pk, 0, 7)
            peer = await listener.accept()
            await rg.write(b"x%d" % i)
            assert await peer.read() == b"x%d" % i
            if i % 2:
                await rg.close()
                await peer.wait_closed()
            else:
                await peer.close()
                await rg.wait_closed()

        await cycle(0)
        base_tasks = len(asyncio.all_tasks())
        base_fds = _open_fds()
        for i in range(1, 50):
            await cycle(i)
        assert net.rule_counts() == [0, 0, 0, 0]
        assert all(not n.router.route_groups for n in net.nodes)
        gc.collect()
        # Only tasks that settle on their own (RPC connection closers) may linger briefly.
        for _ in range(100):
            if len(asyncio.all_tasks()) <= base_tasks:
                break
            await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) <= base_tasks
        if base_fds:
            assert _open_fds() <= base_fds
        assert net.rsn_node.stats.successes == 50
