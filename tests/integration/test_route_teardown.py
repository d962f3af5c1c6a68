"""Routes torn down when a transport of theirs goes away: an intermediary that dies silently
under a flowing route, and a link lost between two live intermediaries on a route whose two
directions take different paths. Both ends see an error (not an orderly end) within seconds,
and no rule is left behind on the visors still up."""

from __future__ import annotations

import asyncio
import os

import pytest

from skywire.router import RouteDialError, RouteGroup
from skywire.router.route_group import RouteClosedError
from skywire.routing.packet import PacketType
from skywire.routing.route import Hop
from skywire.transport.managed import ManagedTransport
from tests.integration.test_router import FIVE_LINKS, A, B, C, D, E, RouteNet, _dial_pair

pytestmark = pytest.mark.timeout(60)


async def _until_broken(rg: RouteGroup) -> RouteClosedError:
    """Write until the route group refuses; the error it gives."""
    chunk = os.urandom(16 * 1024)
    while True:
        try:
            await rg.write(chunk)
        except RouteClosedError as exc:
            return exc
        await asyncio.sleep(0)  # let the other side of this loopback network run


async def _read_until_error(rg: RouteGroup) -> BaseException:
    while True:
        try:
            if not await rg.read(1 << 20):
                return EOFError("orderly end")
        except RouteClosedError as exc:
            return exc


def _hop(net: RouteNet, i: int, j: int) -> Hop:
    a, b = net.nodes[i].pk, net.nodes[j].pk
    tp = next(t for t in net.transports if set(t.edges) == {a, b})
    return Hop(tp.id, a, b)


async def test_an_intermediary_that_dies_silently_breaks_the_route_at_both_ends() -> None:
    async with RouteNet(5, FIVE_LINKS, encrypt=True) as net:
        rg, peer = await _dial_pair(net, A, B, 45, min_hops=3)
        assert rg.route is not None and net.nodes[C].pk in rg.route.intermediaries()
        writer = asyncio.create_task(_until_broken(rg))
        reader = asyncio.create_task(_read_until_error(peer))
        await rg.ping()  # the route carries traffic both ways
        # C dies as a killed process does: its sockets close, it sends nothing of its own
        dead = net.nodes[C]
        dead.tm.on_lost = None
        dead.tm.packet_handler = None
        loop = asyncio.get_running_loop()
        killed = loop.time()
        await dead.tm.close()
        async with asyncio.timeout(5):
            err_a = await writer
            err_b = await reader
        took = loop.time() - killed
        assert "broken" in str(err_a) and "broken" in str(err_b), (err_a, err_b)
        assert rg.broken is not None and peer.broken is not None
        with pytest.raises(RouteClosedError, match="broken"):
            await rg.write(b"after")
        with pytest.raises(RouteClosedError, match="broken"):
            await peer.read()
        # the visors still up hold no rule of the dead route
        counts = net.rule_counts()
        assert counts[A] == counts[B] == counts[D] == counts[E] == 0, counts
        assert net.nodes[D].router.stats.routes_broken == 1
        assert took < 5


async def test_a_lost_link_between_live_visors_reaches_both_ends_by_the_other_path() -> None:
    async with RouteNet(5, FIVE_LINKS, encrypt=False) as net:
        dst = net.nodes[B].router
        listener = await dst.listen(46)
        forward = [_hop(net, A, C), _hop(net, C, D), _hop(net, D, B)]
        reverse = [_hop(net, B, E), _hop(net, E, A)]
        rg = await net.nodes[A].router.dial_source_route(net.nodes[B].pk, 46, forward, reverse)
        peer = await listener.accept()
        await rg.write(b"ping")
        assert await peer.readexactly(4) == b"ping"
        # C and D stay up; only the transport between them goes away
        await net.nodes[C].tm.delete_transport(forward[1].tp_id)
        async with asyncio.timeout(5):
            err_b = await _read_until_error(peer)
            err_a = await _read_until_error(rg)
        # B heard it from D (the rule arriving over the lost link), A from B's Close by E
        assert "broken" in str(err_b) and "broken" in str(err_a), (err_a, err_b)
        assert net.nodes[D].router.stats.routes_broken == 1
        assert net.nodes[E].router.stats.routes_broken == 0
        assert net.rule_counts() == [0, 0, 0, 0, 0]


async def test_a_link_lost_during_the_handshake_fails_the_dial_at_once() -> None:
    """The responder's reply has not come back through the intermediary yet when the link
    beyond it goes away: the intermediary still knows which way to warn (its two rules of the
    route came in one batch), so the initiator's dial fails as broken instead of waiting for a
    handshake that cannot come (here it would wait forever)."""
    a, c, b = range(3)
    async with RouteNet(3, [(a, c), (c, b)], setup_attempts=1, handshake_timeout=3600) as net:
        await net.nodes[b].router.listen(47)
        # B hears nothing on its routes: the handshake never comes back through C
        net.nodes[b].tm.packet_handler = None
        middle = net.nodes[c].router
        # the initiator's handshake has reached C: A holds its rules, the route is half-open
        passed = asyncio.Event()
        handler = net.nodes[c].tm.packet_handler
        assert handler is not None

        async def spy(tp: ManagedTransport, ptype: int, route_id: int, payload: bytes) -> None:
            await handler(tp, ptype, route_id, payload)
            if ptype == PacketType.HANDSHAKE:
                passed.set()

        net.nodes[c].tm.packet_handler = spy
        dial = asyncio.create_task(net.nodes[a].router.dial_routes(net.nodes[b].pk, 0, 47))
        async with asyncio.timeout(20):
            await passed.wait()
            await net.nodes[c].tm.delete_transport(_hop(net, c, b).tp_id)
            with pytest.raises(RouteDialError, match="broken"):
                await dial
        assert middle.stats.routes_broken == 1
        assert net.rule_counts()[a] == 0 and net.rule_counts()[c] == 0
