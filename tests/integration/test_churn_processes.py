"""Churn with real processes: every service, relay and visor is its own ``skywire`` process
(:class:`~skywire.testnet.procnet.ProcessNetwork`), and parts are killed with ``SIGKILL``.

* an intermediary killed under a flowing route: the pinging end gets "broken" within
  seconds; the dead visor's transports leave transport discovery and the route finder's
  answers within seconds; routes go around it; once it is back and its transports are up
  again, routes go through it again;
* dmsg discovery killed: route set-ups between visors go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skywire.routing.route import PathEdges, RouteQueryError
from skywire.services.rf.client import RFClient
from skywire.services.rf.source import HttpTransportSource
from skywire.testnet.procnet import ProcessNetwork
from skywire.visor.rpc import RPCClient, RPCClientError

pytestmark = pytest.mark.timeout(120)

RING = [(0, 1, "stcpr"), (1, 2, "stcpr"), (2, 3, "stcpr"), (3, 0, "stcpr")]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[ProcessNetwork]:
    async with ProcessNetwork(
        tmp_path / "net", relays=2, visors=4, links=RING, base_port=_free_base()
    ) as n:
        await asyncio.gather(*(n.visor_ready(i, transports=2) for i in range(4)))
        yield n


def _free_base() -> int:
    """A run of 50 free ports (the network uses base .. base+49)."""
    import socket

    for base in range(21000, 60000, 97):
        socks = []
        try:
            for port in (
                base,
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 10,
                base + 11,
                base + 12,
            ):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
            for port in range(base + 40, base + 44):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free ports")


async def _ping(net: ProcessNetwork, i: int, j: int, **body: object) -> dict[str, object]:
    rpc = RPCClient(net.rpc_addr(i), timeout=120)
    doc = await rpc.call("POST", "/routes/ping", {"pk": net.visor_pk(j).hex(), **body})
    assert isinstance(doc, dict)
    return doc


async def test_a_killed_intermediary_breaks_its_routes_and_leaves_the_offer(
    net: ProcessNetwork,
) -> None:
    loop = asyncio.get_running_loop()
    a, m, b, other = 0, 1, 2, 3
    source = HttpTransportSource(net.tpd_url)
    rf = RFClient(net.rf_url)
    try:
        assert (await _ping(net, a, b, via=[net.visor_pk(m).hex()]))["error"] is None
        flowing = asyncio.create_task(
            _ping(net, a, b, via=[net.visor_pk(m).hex()], count=100000, interval=0.02)
        )
        # once m holds the route's rules (the probes flow), m dies
        rpc_m = RPCClient(net.rpc_addr(m))
        async with asyncio.timeout(10):
            while not await rpc_m.call("GET", "/rules"):  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.02)
        assert not flowing.done()
        killed = loop.time()
        await net.kill(f"visor-{m}")
        with pytest.raises(RPCClientError, match="broken") as info:
            async with asyncio.timeout(10):
                await flowing
        broke_after = loop.time() - killed
        assert broke_after < 3, (broke_after, info.value)

        # its transports leave discovery (its peers deregister them) and the finder
        dead = net.visor_pk(m)
        async with asyncio.timeout(10):
            while any(dead in t.edges for t in await source.all_transports()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        left_discovery = loop.time() - killed
        edges = PathEdges(net.visor_pk(a), net.visor_pk(b))
        async with asyncio.timeout(10):
            while True:
                try:
                    found = await rf.find_routes([edges], min_hops=2, max_hops=2)
                except RouteQueryError:  # a graph built a moment ago may lack some visors
                    found = {}
                paths = found.get(edges, [])
                if paths and all(dead not in {h.dst for h in p} for p in paths):
                    break
                await asyncio.sleep(0.05)
        left_finder = loop.time() - killed
        assert left_discovery < 3 and left_finder < 6, (left_discovery, left_finder)

        # routes go around it, at once
        doc = await _ping(net, a, b, min_hops=2, max_hops=2)
        assert doc["error"] is None and net.visor_pk(other).hex() in doc["hops"]  # type: ignore[operator]

        # back: once its transports are up (and so registered again), routes cross it again
        await net.restart(f"visor-{m}")
        await net.visor_ready(m, transports=2)
        async with asyncio.timeout(10):
            while sum(dead in t.edges for t in await source.all_transports()) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        doc = await _ping(net, a, b, via=[dead.hex()])
        assert doc["error"] is None and doc["hops"] == [dead.hex(), net.visor_pk(b).hex()]
    finally:
        await source.close()
        await rf.close()


async def test_route_setups_go_on_while_discovery_is_killed(net: ProcessNetwork) -> None:
    pairs = [(0, 2), (1, 3), (2, 0), (3, 1)]
    for i, j in pairs:  # with discovery: entries seen
        assert (await _ping(net, i, j, min_hops=2))["error"] is None
    await net.kill("disc")
    try:
        for _ in range(2):
            for i, j in pairs:
                doc = await _ping(net, i, j, min_hops=2)
                assert doc["error"] is None, doc
    finally:
        await net.restart("disc")
