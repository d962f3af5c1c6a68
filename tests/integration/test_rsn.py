"""The setup node and the visor's setup RPC against Go-recorded net/rpc conversations, and the
setup node's refusals and ``/stats`` over dmsghttp."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from skywire.cipher import PubKey
from skywire.dmsg.http import fetch
from skywire.router.gateway import gateway_server
from skywire.router.setup_client import BidirectionalRoute, EdgeRules, RoutingFailure, SetupClient
from skywire.routing.route import Hop
from skywire.routing.rule import ConsumeRule, ForwardRule, RouteDescriptor, Rule
from skywire.services.rsn.node import SetupNode
from skywire.wire.stream import ByteStream
from tests.integration.test_router import RouteNet

pytestmark = pytest.mark.timeout(60)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "gob.json").read_text())
CTX = VECTORS["context"]
STREAMS = {"+".join(c["calls"]): c for c in VECTORS["cases"] if c["name"] == "netrpc_stream"}


def _side(case: dict[str, Any], side: str) -> bytes:
    return b"".join(bytes.fromhex(s["bytes"]) for s in case["sequence"] if s["from"] == side)


class Recorded:
    """Reads ``incoming`` then EOF; records writes."""

    def __init__(self, incoming: bytes) -> None:
        self._data = incoming
        self.written = bytearray()

    async def read(self, max_bytes: int = 65536) -> bytes:
        out, self._data = self._data[:max_bytes], self._data[max_bytes:]
        return out

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        pass


class Answering:
    """Answers with ``reply`` once the client has written ``expect_len`` bytes."""

    def __init__(self, reply: bytes, expect_len: int) -> None:
        self.reply = reply
        self.expect_len = expect_len
        self.written = bytearray()
        self._ready = asyncio.Event()
        self._sent = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        await self._ready.wait()
        if self._sent:
            await asyncio.Event().wait()
        self._sent = True
        return self.reply

    async def readexactly(self, n: int) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        self.written += data
        if len(self.written) >= self.expect_len:
            self._ready.set()

    async def close(self) -> None:
        pass


class Backend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def reserve_ids(self, n: int) -> list[int]:
        self.calls.append(("ReserveIDs", n))
        return [5, 300]

    def add_intermediary_rules(self, rules: list[Rule]) -> None:
        self.calls.append(("AddIntermediaryRules", rules))

    async def add_edge_rules(self, rules: EdgeRules) -> None:
        self.calls.append(("AddEdgeRules", rules))

    async def delete_rules(self, keys: list[int]) -> None:
        self.calls.append(("DeleteRules", keys))


@pytest.mark.parametrize(
    "calls",
    ["ReserveIDs", "ReserveIDs+ReserveIDs", "AddIntermediaryRules", "AddEdgeRules", "BadMethod"],
)
async def test_visor_gateway_answers_go_setup_node_byte_for_byte(calls: str) -> None:
    case = STREAMS[calls]
    backend = Backend()
    stream = Recorded(_side(case, "client"))
    await gateway_server(backend).serve(stream)
    assert bytes(stream.written) == _side(case, "server")
    if calls == "AddEdgeRules":
        ((_, edge),) = backend.calls
        assert isinstance(edge, EdgeRules)
        assert edge.desc == RouteDescriptor.from_bytes(bytes.fromhex(CTX["forward_desc"]))
        # the vector handler's fixed rules: both carry the descriptor seen from that edge
        assert edge.forward.desc == edge.reverse.desc == edge.desc.invert()
    if calls == "AddIntermediaryRules":
        assert [len(r.to_bytes()) for r in backend.calls[0][1]] == [50, 50]


def _vector_route() -> BidirectionalRoute:
    keys = CTX["keys"]
    a, b, c = (PubKey.from_hex(keys[k]) for k in ("A_pk", "B_pk", "C_pk"))
    tp1, tp2 = uuid.UUID(CTX["tp1"]), uuid.UUID(CTX["tp2"])
    return BidirectionalRoute(
        RouteDescriptor.from_bytes(bytes.fromhex(CTX["forward_desc"])),
        30_000_000_000,
        (Hop(tp1, a, c), Hop(tp2, c, b)),
        (Hop(tp2, b, c), Hop(tp1, c, a)),
    )


async def test_setup_client_sends_what_a_go_visor_sends() -> None:
    case = STREAMS["DialRouteGroup"]
    request = _side(case, "client")
    stream = Answering(_side(case, "server"), len(request))

    async def dial(pk: PubKey, port: int) -> ByteStream:
        assert port == 36
        return stream

    client = SetupClient(dial, [PubKey.from_hex(CTX["keys"]["C_pk"])])
    edge = await client.dial_route_group(_vector_route())
    assert bytes(stream.written) == request
    assert edge.desc == _vector_route().desc.invert()
    assert edge.forward.desc == edge.reverse.desc == _vector_route().desc


async def test_setup_node_answers_a_go_visor_byte_for_byte() -> None:
    case = STREAMS["DialRouteGroup"]
    answer_stream = Answering(_side(case, "server"), 0)
    # the recorded reply, decoded, is what our stubbed algorithm returns
    reply_bytes = answer_stream.reply
    decoded: list[EdgeRules] = []

    async def capture(pk: PubKey, port: int) -> ByteStream:
        return Answering(reply_bytes, len(_side(case, "client")))

    decoded.append(
        await SetupClient(capture, [PubKey.from_hex(CTX["keys"]["C_pk"])]).dial_route_group(
            _vector_route()
        )
    )
    node = SetupNode(None, dial=capture, http_port=None)
    seen: list[BidirectionalRoute] = []

    async def algorithm(route: BidirectionalRoute, requester: PubKey | None = None) -> EdgeRules:
        seen.append(route)
        return decoded[0]

    node.dial_route_group = algorithm  # type: ignore[method-assign]
    stream = Recorded(_side(case, "client"))
    await node.rpc_server(None).serve(stream)
    assert bytes(stream.written) == _side(case, "server")
    assert seen == [_vector_route()]


async def test_setup_node_refuses_bad_routes_and_reports_stats_over_dmsg() -> None:
    async with RouteNet(3, [(0, 1), (1, 2)]) as net:
        rsn = net.rsn_node
        a, b, c = (n.pk for n in net.nodes)
        tps = [t.id for t in net.transports]
        desc = RouteDescriptor(a, c, 50000, 5)
        good = BidirectionalRoute(
            desc,
            10**9,
            (Hop(tps[0], a, b), Hop(tps[1], b, c)),
            (Hop(tps[1], c, b), Hop(tps[0], b, a)),
        )
        # a route that is not the requester's
        with pytest.raises(RoutingFailure, match="not the route's source"):
            await rsn.dial_route_group(good, requester=b)
        # a route whose hops do not join up
        broken = BidirectionalRoute(desc, 10**9, (Hop(tps[0], a, b),), good.reverse)
        with pytest.raises(RoutingFailure, match="invalid route"):
            await rsn.dial_route_group(broken, requester=a)
        assert net.rule_counts() == [0, 0, 0]

        await net.nodes[2].router.listen(5)
        edge = await rsn.dial_route_group(good, requester=a)
        # as upstream GenerateRules: each Consume rule carries the descriptor of the path that
        # ends there, equal to EdgeRules.Desc, the key a Go visor files its route group under
        assert edge.forward.desc == desc and edge.reverse.desc == desc.invert() == edge.desc
        # the responder got the same shape: Consume rule = the forward path's descriptor
        loop_now = asyncio.get_running_loop().time()
        resp = {type(r): r.desc for r in net.nodes[2].router.table.all_rules(loop_now)}
        assert resp == {ConsumeRule: desc, ForwardRule: desc.invert()}
        assert net.rule_counts() == [0, 2, 2]  # the requester installs its own two

        assert rsn.pk is not None
        resp = await fetch(net.nodes[0].dmsg.dial, f"dmsg://{rsn.pk.hex()}:80/stats")
        stats = resp.json()
        assert stats["requests"] == 3 and stats["successes"] == 1
        assert stats["failures_by_class"]["invalid_route"] == 2
        assert stats["success_rate"] == pytest.approx(1 / 3, abs=1e-4)
        assert stats["latency_ms"]["p50"] is not None
        health = await fetch(net.nodes[0].dmsg.dial, f"dmsg://{rsn.pk.hex()}:80/health")
        assert health.status_code == 200


async def test_responder_accepts_either_consume_rule_orientation() -> None:
    """Upstream setup nodes give the Consume rule the arriving path's descriptor; earlier
    versions of ours gave it the edge's own. Both are accepted; rules for another visor not."""
    async with RouteNet(2, [(0, 1)]) as net:
        a, b = net.nodes[0].pk, net.nodes[1].pk
        router = net.nodes[1].router
        await router.listen(7)
        tp = net.transports[0].id
        for src_port, upstream in ((1000, True), (1001, False)):
            desc = RouteDescriptor(a, b, src_port, 7)  # as the initiator sees it
            k1, k2 = router.reserve_ids(2)
            mine = desc.invert()
            cons = ConsumeRule(10**9, k2, desc if upstream else mine)
            await router.add_edge_rules(EdgeRules(desc, ForwardRule(10**9, k1, 9, tp, mine), cons))
        k1, k2 = router.reserve_ids(2)
        theirs = RouteDescriptor(a, b, 1002, 7)  # Forward rule with the initiator as source
        with pytest.raises(RoutingFailure, match="not for this visor"):
            fwd = ForwardRule(10**9, k1, 9, tp, theirs)
            await router.add_edge_rules(EdgeRules(theirs, fwd, ConsumeRule(10**9, k2, theirs)))
