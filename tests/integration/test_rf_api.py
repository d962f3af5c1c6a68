"""The route finder over real HTTP on 127.0.0.1, fed by a synthetic transport source."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from skywire.cipher import KeyPair, PubKey
from skywire.routing.route import Hop, PathEdges
from skywire.services.rf import (
    RFClient,
    RouteFinder,
    RouteFinderServer,
    StaticTransportSource,
    TransportInfo,
)
from skywire.services.rf.client import ResponseFormatError
from skywire.services.rf.graph import (
    BadRequestError,
    NoRouteError,
    RouteNotFoundError,
    TransportNotFoundError,
)
from skywire.services.rf.source import HttpTransportSource, parse_transport_entries

K = [KeyPair.generate().pk for _ in range(6)]
A, B, C, D, E, LONELY = K


def tp(a: PubKey, b: PubKey, latency: float | None, kind: str = "stcpr") -> TransportInfo:
    return TransportInfo(uuid.uuid4(), (a, b), kind, latency)


# A-B-E: 2 hops, 800 ms; A-C-D-E: 3 hops, 300 ms
AB, BE = tp(A, B, 400), tp(B, E, 400)
AC, CD, DE = tp(A, C, 100), tp(C, D, 100), tp(D, E, 100)
TRANSPORTS = [AB, BE, AC, CD, DE]


@dataclass
class RF:
    url: str
    client: RFClient
    finder: RouteFinder
    source: StaticTransportSource
    http: aiohttp.ClientSession

    async def post(self, body: bytes | str) -> tuple[int, Any]:
        data = body.encode() if isinstance(body, str) else body
        async with self.http.post(self.url + "/routes", data=data) as resp:
            assert resp.content_type == "application/json"
            return resp.status, json.loads(await resp.read())


@contextlib.asynccontextmanager
async def running(weighted: bool = True, run_refresh: bool = False) -> AsyncIterator[RF]:
    source = StaticTransportSource(TRANSPORTS)
    finder = RouteFinder(source, weighted=weighted, refresh_interval=3600.0)
    async with (
        RouteFinderServer(finder, "127.0.0.1", 0, run_refresh=run_refresh) as server,
        aiohttp.ClientSession() as http,
        RFClient(server.url, http) as client,
    ):
        yield RF(server.url, client, finder, source, http)


def hops(*pairs: tuple[TransportInfo, PubKey, PubKey]) -> list[Hop]:
    return [Hop(t.id, a, b) for t, a, b in pairs]


FAST = hops((AC, A, C), (CD, C, D), (DE, D, E))
SLOW = hops((AB, A, B), (BE, B, E))


async def test_client_gets_latency_ranked_paths_for_both_directions() -> None:
    async with running() as rf:
        routes = await rf.client.find_routes([(A, E), PathEdges(E, A)], min_hops=1, max_hops=50)
    assert routes[PathEdges(A, E)] == [FAST, SLOW]
    back = routes[PathEdges(E, A)]
    assert back[0] == [Hop(h.tp_id, h.dst, h.src) for h in reversed(FAST)]
    assert len(back) == 2


async def test_hop_count_service_orders_by_hops() -> None:
    async with running(weighted=False) as rf:
        routes = await rf.client.find_routes([(A, E)])
    assert routes[PathEdges(A, E)] == [SLOW, FAST]


async def test_go_client_request_shape_and_response_shape() -> None:
    body = json.dumps(
        {
            "Edges": [f"{A.hex()}:{E.hex()}", f"{A.hex()}:{D.hex()}"],
            "Opts": {"MinHops": 2, "MaxHops": 50},
        }
    )
    async with running() as rf:
        status, obj = await rf.post(body)
        # Go's decoder matches field names case-insensitively
        lower = json.dumps(
            {"edges": [f"{A.hex()}:{E.hex()}"], "opts": {"minhops": 3, "maxhops": 3}}
        )
        status_lower, obj_lower = await rf.post(lower)
    assert status == 200
    assert list(obj) == sorted(obj)  # Go marshals map keys in order
    assert obj[f"{A.hex()}:{E.hex()}"] == [[h.to_json() for h in FAST], [h.to_json() for h in SLOW]]
    assert obj[f"{A.hex()}:{D.hex()}"][0] == [h.to_json() for h in FAST[:2]]
    assert set(obj[f"{A.hex()}:{E.hex()}"][0][0]) == {"TpID", "From", "To"}
    assert status_lower == 200
    assert obj_lower == {f"{A.hex()}:{E.hex()}": [[h.to_json() for h in FAST]]}


async def test_num_routes_option_limits_the_paths() -> None:
    async with running() as rf:
        routes = await rf.client.find_routes([(A, E)], num_routes=1)
    assert routes[PathEdges(A, E)] == [FAST]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"Edges": "x"}',
        '{"Edges": ["abc"]}',
        '{"Edges": [], "Opts": {"MinHops": -1}}',
        '{"Edges": [], "Opts": {"MaxHops": 70000}}',
        '{"Edges": [], "Opts": []}',
    ],
)
async def test_bad_requests_answer_400_with_the_upstream_error_shape(body: str) -> None:
    async with running() as rf:
        status, obj = await rf.post(body)
    assert status == 400
    assert obj["error"]["code"] == 400
    assert isinstance(obj["error"]["message"], str) and obj["error"]["message"]


async def test_not_found_errors_are_typed_on_the_client() -> None:
    async with running() as rf:
        status, obj = await rf.post(json.dumps({"Edges": [f"{LONELY.hex()}:{A.hex()}"]}))
        assert (status, obj) == (404, {"error": {"message": "transport not found", "code": 404}})
        with pytest.raises(TransportNotFoundError):
            await rf.client.find_routes([(LONELY, A)])
        with pytest.raises(NoRouteError):
            await rf.client.find_routes([(A, LONELY)])
        with pytest.raises(RouteNotFoundError):
            await rf.client.find_routes([(A, E)], min_hops=4)
        with pytest.raises(BadRequestError):
            await rf.client.find_routes([(A, E)], max_hops=70000)


async def test_empty_request_and_health() -> None:
    async with running() as rf:
        assert await rf.client.find_routes([]) == {}
        health = await rf.client.health()
    assert health["service_name"] == "route-finder"
    graph = health["graph"]
    assert (graph["visors"], graph["transports"], graph["builds"]) == (5, 5, 1)
    assert 0 <= graph["last_rebuild_seconds"] < 3600 <= graph["rebuild_every_seconds"]
    assert health["started_at"].endswith("Z")


async def test_graph_is_a_snapshot_refreshed_from_the_source() -> None:
    async with running() as rf:
        await rf.client.find_routes([(A, E)])
        assert rf.source.calls == 1
        await rf.client.find_routes([(A, E)])
        assert rf.source.calls == 1  # not rebuilt per query
        shortcut = tp(A, E, 50)
        rf.source.transports.append(shortcut)
        assert (await rf.client.find_routes([(A, E)]))[PathEdges(A, E)][0] == FAST
        await rf.finder.refresh()
        routes = await rf.client.find_routes([(A, E)])
    assert routes[PathEdges(A, E)][0] == [Hop(shortcut.id, A, E)]


class _SignallingSource(StaticTransportSource):
    def __init__(self) -> None:
        super().__init__(TRANSPORTS)
        self.built = asyncio.Event()

    async def all_transports(self) -> list[TransportInfo]:
        self.built.set()
        return await super().all_transports()


async def test_background_refresh_builds_at_start_and_stops_with_the_server() -> None:
    source = _SignallingSource()
    finder = RouteFinder(source, refresh_interval=3600.0)
    async with RouteFinderServer(finder, run_refresh=True) as server:
        await asyncio.wait_for(source.built.wait(), 5)
        async with RFClient(server.url) as client:
            routes = await client.find_routes([(A, E)])
        assert routes[PathEdges(A, E)][0] == FAST
    assert source.calls == 1
    assert not [t for t in asyncio.all_tasks() if "RouteFinder.run" in repr(t.get_coro())]


def test_rebuilds_that_take_longer_than_the_interval_are_spaced_by_their_duration() -> None:
    finder = RouteFinder(StaticTransportSource(TRANSPORTS), refresh_interval=3.0)
    finder.last_refresh_seconds = 0.2  # a small graph: the interval rules
    assert finder.refresh_wait() == 3.0
    finder.last_refresh_seconds = 8.0  # 500,000 transports: at most half the time rebuilding
    assert finder.refresh_wait() == 8.0


async def test_client_rejects_a_malformed_200_answer() -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"x:y": [[{"TpID": "nope"}]]})

    app = web.Application()
    app.router.add_post("/routes", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with RFClient(f"127.0.0.1:{port}") as client:
            with pytest.raises(ResponseFormatError):
                await client.find_routes([(A, E)])
    finally:
        await runner.cleanup()


async def test_http_transport_source_reads_all_transports() -> None:
    from aiohttp import web

    entries = [
        {"t_id": str(AB.id), "edges": [A.hex(), B.hex()], "type": "stcpr", "label": "user"},
        {
            "entry": {"t_id": str(BE.id), "edges": [B.hex(), E.hex()], "type": "dmsg"},
            "signatures": [],
        },
        {"t_id": str(AC.id), "edges": [A.hex(), C.hex()], "type": "sudph", "latency": 12.5},
        {"t_id": "garbage"},
        17,
    ]

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(entries)

    app = web.Application()
    app.router.add_get("/all-transports", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    source = HttpTransportSource(f"http://127.0.0.1:{port}/")
    try:
        got = await source.all_transports()
    finally:
        await source.close()
        await runner.cleanup()
    assert got == [
        TransportInfo(AB.id, (A, B), "stcpr", None),
        TransportInfo(BE.id, (B, E), "dmsg", None),
        TransportInfo(AC.id, (A, C), "sudph", 12.5),
    ]
    assert parse_transport_entries(b"[]") == []


def test_parse_transport_entries_checks_each_key_once_and_skips_bad_ones() -> None:
    a, b, c = (KeyPair.generate().pk for _ in range(3))
    good = [
        {"t_id": str(uuid.uuid4()), "edges": [a.hex(), b.hex()], "type": "stcpr"},
        {"t_id": str(uuid.uuid4()), "edges": [a.hex(), c.hex()], "type": "dmsg"},
    ]
    bad = [
        {"t_id": str(uuid.uuid4()), "edges": [a.hex(), 7], "type": "stcpr"},
        {"t_id": str(uuid.uuid4()), "edges": [a.hex(), "02" + "00" * 32], "type": "stcpr"},
    ]
    got = parse_transport_entries(json.dumps(good + bad).encode())
    assert [tp.id for tp in got] == [uuid.UUID(e["t_id"]) for e in good]
    assert got[0].edges[0] is got[1].edges[0]  # one PubKey for a visor on two transports
