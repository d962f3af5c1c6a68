"""The setup path under malformed gob: a visor's setup gateway (dmsg port 136) refuses
untrusted keys before any RPC and drops a trusted peer that sends garbage; the setup node
(port 36) drops garbage from anyone. Honest route setups go on working afterwards."""

from __future__ import annotations

import asyncio
import os

import pytest

from skywire.router.gateway import GATEWAY_PORT
from skywire.router.setup_client import SETUP_PORT
from skywire.wire import netrpc
from tests.hostile._baseline import baseline
from tests.integration.test_router import RouteNet

pytestmark = pytest.mark.timeout(60)

GARBAGE = [
    b"\x00",
    b"\xff" * 64,
    b"\x05\x02\x00\x01",  # a gob message length with a truncated body
    os.urandom(4096),
    b"\x1d\xff\x81\x03\x01\x01\x07Request" + os.urandom(40),  # a type definition gone wrong
]


async def _drained(stream: object) -> bool:
    """Whether the far end closed the stream (reads end) within a bounded time."""
    async with asyncio.timeout(10):
        while True:
            data = await stream.read(65536)  # type: ignore[attr-defined]
            if not data:
                return True


async def honest_route(net: RouteNet) -> None:
    a, c = net.nodes[0], net.nodes[2]
    listener = await c.router.listen(7)
    rg = await a.router.dial_routes(c.pk, 0, 7, min_hops=2, max_hops=2)
    peer = await listener.accept()
    await rg.write(b"ping")
    assert await peer.readexactly(4) == b"ping"
    await rg.close()
    await listener.close()


async def test_gateway_and_setup_node_survive_malformed_gob(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # half a request (a length prefix, no body) holds nothing for long: 10 s by default
    monkeypatch.setattr(netrpc, "PARTIAL_TIMEOUT", 0.5)
    async with RouteNet(3, [(0, 1), (1, 2)]) as net:
        visor = net.nodes[1]
        gateway = visor.router.gateway
        assert gateway is not None
        rsn_client, rsn_pk = net.rsn_node.dmsg, net.rsn_node.pk
        assert rsn_client is not None and rsn_pk is not None
        stranger = await net.dnet.client()
        await honest_route(net)  # warm-up, and every dialer below reaches its target once
        for dialer, target in ((stranger, visor.pk), (stranger, rsn_pk), (rsn_client, visor.pk)):
            await (await dialer.dial(target, 7)).close()
        async with baseline():
            tasks_before = asyncio.all_tasks()
            # untrusted key: refused before any RPC is read
            for blob in GARBAGE:
                stream = await stranger.dial(visor.pk, GATEWAY_PORT)
                await stream.write(blob)
                assert await _drained(stream)
                await stream.close()
            assert gateway.refused == len(GARBAGE)
            # the setup node's own (trusted) key sending garbage: the RPC connection is dropped
            for blob in GARBAGE:
                stream = await rsn_client.dial(visor.pk, GATEWAY_PORT)
                await stream.write(blob)
                assert await _drained(stream)
                await stream.close()
            # anyone sending garbage to the setup node
            for blob in GARBAGE:
                stream = await stranger.dial(rsn_pk, SETUP_PORT)
                await stream.write(blob)
                assert await _drained(stream)
                await stream.close()
            await honest_route(net)
            left = [repr(t.get_coro()) for t in asyncio.all_tasks() - tasks_before]
            # no RPC connection of the garbage senders is still being served
            assert not [c for c in left if "run" in c and "ServerConn" in c], left
