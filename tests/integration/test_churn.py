"""Routes through churn, on a whole local network (real servers, real sockets):

* a visor that goes away is taken off offer: its peers deregister the transports they had
  with it, so transport discovery and the route finder stop offering paths through it within
  seconds; when a transport to it comes back, it is registered again (and stays so);
* route setups go on while dmsg discovery is down (setup node entries are kept warm, entries
  seen before serve, a shared relay needs no lookup)."""

from __future__ import annotations

import asyncio

import pytest

from skywire.routing.route import PathEdges, RouteQueryError
from skywire.services.rf.client import RFClient
from skywire.services.rf.source import HttpTransportSource
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire

pytestmark = pytest.mark.timeout(60)


async def test_a_gone_visors_transports_leave_discovery_and_the_route_finder() -> None:
    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=3) as sky:
        assert sky.tpd is not None and sky.rf is not None
        tps = await sky.chain()  # 0 - 1 - 2
        source = HttpTransportSource(sky.tpd.url)
        rf = RFClient(sky.rf.url)
        try:
            listed = {t.id for t in await source.all_transports()}
            assert {tp.id for tp in tps} <= listed
            a, c = sky.visors[0].pk, sky.visors[2].pk
            found = await rf.find_routes([PathEdges(a, c)], min_hops=2, max_hops=2)
            assert found[PathEdges(a, c)]

            loop = asyncio.get_running_loop()
            gone_at = loop.time()
            await sky.visors[1].close()  # it deregisters nothing itself
            async with asyncio.timeout(10):
                while {tp.id for tp in tps} & {t.id for t in await source.all_transports()}:  # noqa: ASYNC110 - polls the service
                    await asyncio.sleep(0.05)
            deregistered = loop.time() - gone_at
            async with asyncio.timeout(10):
                while True:
                    try:
                        found = await rf.find_routes([PathEdges(a, c)], min_hops=2, max_hops=2)
                    except RouteQueryError:
                        break
                    if not found.get(PathEdges(a, c)):
                        break
                    await asyncio.sleep(0.05)
            off_offer = loop.time() - gone_at
            assert deregistered < 2 and off_offer < 5, (deregistered, off_offer)

            # back: a new transport to it is registered again, and no late deregistration
            # of the old one undoes that
            restarted = await sky.restart_visor(1)
            await restarted.ready()
            # (visor 0 dials only once its deregistration of the old one has landed)
            tp = await sky.visors[0].add_transport(restarted.pk, "stcpr")
            assert tp.id == tps[0].id
            assert tp.id in {t.id for t in await source.all_transports()}
        finally:
            await source.close()
            await rf.close()


async def test_routes_are_set_up_while_discovery_is_down() -> None:
    async with LocalDmsgNetwork(servers=2) as dnet, LocalSkywire(dnet, visors=3) as sky:
        await sky.chain()
        src, dst = sky.visors[0], sky.visors[2]
        assert src.router is not None and dst.router is not None
        listener = await dst.router.listen(5)

        async def one_route() -> None:
            assert src.router is not None
            rg = await src.router.dial_routes(dst.pk, 0, 5, min_hops=2)
            peer = await listener.accept()
            await rg.write(b"through")
            assert await peer.readexactly(7) == b"through"
            await rg.close()
            await peer.wait_closed()

        await one_route()  # with discovery up: the entries are seen
        await dnet.stop_discovery()
        try:
            for _ in range(5):
                await one_route()
        finally:
            await dnet.start_discovery()
