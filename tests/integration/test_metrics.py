"""``GET /metrics`` of every service and of the visor's control port, over real HTTP (and dmsg
for the setup node): the answer parses with ``prometheus_client``'s parser, and the counters
move by exactly what the traffic caused."""

from __future__ import annotations

import asyncio
import math
import os

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from skywire.cipher import KeyPair, SecKey
from skywire.debug.metrics import HTTP_REQUESTS, Registry, instrument_app
from skywire.dmsg.http import fetch
from skywire.dmsg.server import Server
from skywire.router.setup_client import BidirectionalRoute, RoutingFailure
from skywire.routing.route import Hop
from skywire.routing.rule import RouteDescriptor
from skywire.services.ar import ARClient, ARServer, NoEntryError
from skywire.services.ar.store.memory import MemoryStore as ARMemoryStore
from skywire.services.tpd import TPDClient, TPDServer
from skywire.services.tpd.store.memory import MemoryStore as TPDMemoryStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.transport.entry import TransportType
from skywire.visor.metrics import visor_metrics
from skywire.wire.noise_frames import AUTH_SIZE, MAX_PLAINTEXT, PREFIX_LEN
from tests.integration._scrape import Scrape, parse_text, scrape
from tests.integration.test_rf_api import LONELY, A, E
from tests.integration.test_rf_api import running as running_rf
from tests.integration.test_router import RouteNet
from tests.integration.test_tpd_api import doubly_signed

pytestmark = pytest.mark.timeout(60)


def sealed_len(n: int) -> int:
    """Bytes on the wire for ``n`` bytes written to a dmsg stream (Noise transport frames)."""
    return n + math.ceil(n / MAX_PLAINTEXT) * (PREFIX_LEN + AUTH_SIZE)


async def test_the_request_counter_sees_final_statuses_under_an_error_middleware() -> None:
    """Handlers that answer, raise an HTTP error, or fail: each counted once, with the status
    the client got, under the route's pattern."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["name"])

    async def refused(_: web.Request) -> web.Response:
        raise web.HTTPConflict()

    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("boom")

    @web.middleware
    async def as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RuntimeError:
            return web.json_response({"error": "internal"}, status=503)

    app = web.Application(middlewares=[as_json])
    app.router.add_get("/hello/{name}", ok)
    app.router.add_post("/refused", refused)
    app.router.add_get("/broken", broken)
    instrument_app(app, Registry())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            for method, path, status in (
                ("GET", "/hello/a", 200),
                ("GET", "/hello/b", 200),
                ("POST", "/refused", 409),
                ("GET", "/broken", 503),
                ("DELETE", "/hello/a", 405),
                ("PROPFIND", "/nowhere", 404),
            ):
                async with http.request(method, base + path) as resp:
                    assert resp.status == status
            got = await scrape(http, base + "/metrics")
    finally:
        await runner.cleanup()
    expected = {
        ("/hello/{name}", "GET", "200"): 2,
        ("/refused", "POST", "409"): 1,
        ("/broken", "GET", "503"): 1,
        ("unmatched", "DELETE", "405"): 1,
        ("unmatched", "other", "404"): 1,
    }
    seen = {
        (d["route"], d["method"], d["status"]): v
        for (name, labels), v in got.samples.items()
        if name == HTTP_REQUESTS and (d := dict(labels))
    }
    assert seen == expected


async def test_dmsg_server_counts_sessions_streams_and_relayed_bytes() -> None:
    async with LocalDmsgNetwork(servers=0) as net, aiohttp.ClientSession() as http:
        srv = Server(SecKey.generate(), disc=net.disc_client(), health_address="127.0.0.1:0")
        async with srv:
            net.servers.append(srv)
            url = f"http://127.0.0.1:{srv.health_port}/metrics"
            s0 = await scrape(http, url)
            assert s0.value("skywire_dmsg_server_sessions") == 0
            a, b = await net.client(), await net.client()
            await srv.wait_sessions(2)
            s1 = await scrape(http, url)
            assert s1.value("skywire_dmsg_server_sessions") == 2
            assert s1.value("skywire_dmsg_server_sessions_post_quantum") == 2
            assert s1.delta(s0, "skywire_dmsg_server_sessions_accepted_total") == 2
            assert s1.value("skywire_dmsg_server_available_sessions") == srv.max_sessions - 2

            listener = await b.listen(80)
            dialed = asyncio.ensure_future(a.dial(b.pk, 80))
            accepted = await listener.accept()
            stream = await dialed
            payload, reply = os.urandom(200_000), b"pong" * 25
            await asyncio.gather(stream.write(payload), accepted.readexactly(len(payload)))
            await accepted.write(reply)
            assert await stream.readexactly(len(reply)) == reply
            await stream.close()
            # the server closes the other end once its relay is over: every byte is counted
            assert await accepted.read() == b""
            s2 = await scrape(http, url)
            assert s2.delta(s1, "skywire_dmsg_server_streams_relayed_total") == 1
            assert s2.delta(s1, "skywire_dmsg_server_streams_failed_total") == 0
            assert s2.delta(s1, "skywire_dmsg_server_streams_refused_total") == 0
            # what crossed the server: the end-to-end encrypted frames of both directions
            relayed = sealed_len(len(payload)) + sealed_len(len(reply))
            assert s2.delta(s1, "skywire_dmsg_server_bytes_relayed_total") == relayed
            assert s2.value("skywire_dmsg_server_connections_refused_total") == 0
            # the scrapes themselves are requests like any other
            assert s2.delta(s1, HTTP_REQUESTS, route="/metrics", method="GET", status="200") == 1
            await accepted.close()
            await listener.close()
            net.servers.remove(srv)
            await net.close()


async def test_discovery_counts_requests_by_route_and_status_and_its_entries() -> None:
    async with LocalDmsgNetwork(servers=1) as net, aiohttp.ClientSession() as http:
        url = net.disc_url
        s0 = await scrape(http, url + "/metrics")
        assert s0.value("skywire_dmsg_discovery_servers") == 1
        assert s0.value("skywire_dmsg_discovery_clients") == 0
        await net.client()
        s1 = await scrape(http, url + "/metrics")
        assert s1.value("skywire_dmsg_discovery_clients") == 1
        unknown = KeyPair.generate().pk.hex()
        for path, status in (
            (f"/dmsg-discovery/entry/{unknown}", 404),
            (f"/dmsg-discovery/entry/{unknown}", 404),
            ("/dmsg-discovery/entry/not-a-key", 400),
            ("/no/such/thing", 404),
            ("/health", 200),
        ):
            async with http.get(url + path) as resp:
                assert resp.status == status
        s2 = await scrape(http, url + "/metrics")
        entry = "/dmsg-discovery/entry/{pk}"
        assert s2.delta(s1, HTTP_REQUESTS, route=entry, method="GET", status="404") == 2
        assert s2.delta(s1, HTTP_REQUESTS, route=entry, method="GET", status="400") == 1
        assert s2.delta(s1, HTTP_REQUESTS, route="unmatched", method="GET", status="404") == 1
        assert s2.delta(s1, HTTP_REQUESTS, route="/health", method="GET", status="200") == 1
        # the label is the route's pattern: no key ever becomes a label value
        assert not any(unknown in dict(labels).get("route", "") for _, labels in s2.samples)


async def test_tpd_counts_registrations_and_transports_by_type() -> None:
    async with (
        TPDMemoryStore() as store,
        TPDServer(store) as server,
        aiohttp.ClientSession() as http,
    ):
        url = server.url + "/metrics"
        s0 = await scrape(http, url)
        assert s0.families["skywire_tpd_transports"] == "gauge"
        assert s0.value("skywire_tpd_transports", type="stcpr") == 0
        a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
        async with TPDClient(server.url, a.sk, http) as ca:
            await ca.register_transports(doubly_signed(a, b))
            await ca.register_transports(doubly_signed(a, c))
            await ca.register_transports(doubly_signed(a, b, TransportType.DMSG))
        async with http.get(server.url + "/transports/id:nope") as resp:
            assert resp.status == 401  # httpauth first: unsigned
        s1 = await scrape(http, url)
        assert s1.value("skywire_tpd_transports", type="stcpr") == 2
        assert s1.value("skywire_tpd_transports", type="dmsg") == 1
        register = {"route": "/transports/", "method": "POST"}
        assert s1.delta(s0, HTTP_REQUESTS, **register, status="201") == 3
        assert (
            s1.delta(s0, HTTP_REQUESTS, route="/transports/id:{id}", method="GET", status="401")
            == 1
        )


async def test_address_resolver_counts_binds_and_resolves() -> None:
    async with (
        ARMemoryStore() as store,
        ARServer(store, "127.0.0.1", 0, 0, test_mode=True) as server,
        aiohttp.ClientSession() as http,
    ):
        url = server.url + "/metrics"
        s0 = await scrape(http, url)
        assert s0.value("skywire_ar_bound_visors", type="stcpr") == 0
        assert s0.samples[("skywire_ar_bound_visors", frozenset({("type", "sudph")}))] == 0
        kp = KeyPair.generate()
        async with ARClient(server.url, kp.sk, server.udp_addr) as client:
            await client.bind_stcpr(7777, ["127.0.0.1"])
            with pytest.raises(NoEntryError):
                await client.resolve("stcpr", KeyPair.generate().pk)
        s1 = await scrape(http, url)
        assert s1.value("skywire_ar_bound_visors", type="stcpr") == 1
        assert s1.delta(s0, HTTP_REQUESTS, route="/bind/stcpr", method="POST", status="200") == 1
        resolve = {"route": "/resolve/{type}/{pk}", "method": "GET"}
        assert s1.delta(s0, HTTP_REQUESTS, **resolve, status="404") == 1


async def test_route_finder_times_queries_and_reports_its_graph() -> None:
    async with running_rf() as rf:
        url = rf.url + "/metrics"
        s0 = await scrape(rf.http, url)
        assert s0.families["skywire_rf_query_seconds"] == "histogram"
        assert s0.value("skywire_rf_query_seconds_count") == 0
        assert s0.value("skywire_rf_graph_visors") == 0  # not built before the first query
        status, _ = await rf.post(f'{{"Edges":["{A.hex()}:{E.hex()}"]}}')
        assert status == 200
        status, _ = await rf.post(f'{{"Edges":["{A.hex()}:{LONELY.hex()}"]}}')
        assert status == 404
        status, _ = await rf.post("not json")
        assert status == 400  # refused before any query: not timed
        s1 = await scrape(rf.http, url)
        assert s1.delta(s0, "skywire_rf_query_seconds_count") == 2
        assert s1.delta(s0, "skywire_rf_query_seconds_bucket", le="+Inf") == 2
        assert s1.value("skywire_rf_query_seconds_sum") > 0
        assert s1.value("skywire_rf_graph_visors") == 5
        assert s1.value("skywire_rf_graph_transports") == 5
        assert s1.value("skywire_rf_graph_builds_total") == 1
        for status_text in ("200", "404", "400"):
            assert (
                s1.delta(s0, HTTP_REQUESTS, route="/routes", method="POST", status=status_text) == 1
            )


async def test_setup_node_and_router_count_setups_by_outcome() -> None:
    async with RouteNet(3, [(0, 1), (1, 2)]) as net:
        rsn = net.rsn_node
        assert rsn.pk is not None
        node = net.nodes[0]
        url = f"dmsg://{rsn.pk.hex()}:80/metrics"

        async def rsn_scrape() -> Scrape:
            resp = await fetch(node.dmsg.dial, url)
            assert resp.status_code == 200
            return parse_text(resp.text, resp.headers["content-type"])

        def visor_scrape() -> Scrape:
            reg = visor_metrics(node.tm, node.router, node.dmsg, started=0.0, clock=lambda: 5.0)
            return Scrape.parse(reg.render())

        r0, v0 = await rsn_scrape(), visor_scrape()
        assert r0.value("skywire_rsn_route_setups_total", outcome="success") == 0
        assert v0.value("skywire_visor_uptime_seconds") == 5
        assert v0.value("skywire_visor_transports", type="stcp") == 1
        assert v0.value("skywire_visor_dmsg_sessions") == 1

        await net.nodes[2].router.listen(5)
        rg = await node.router.dial_routes(net.nodes[2].pk, 0, 5)
        # a route that is not the requester's: refused, counted under its class
        a, b, c = (n.pk for n in net.nodes)
        tps = [t.id for t in net.transports]
        bad = BidirectionalRoute(
            RouteDescriptor(a, c, 50000, 5),
            10**9,
            (Hop(tps[0], a, b), Hop(tps[1], b, c)),
            (Hop(tps[1], c, b), Hop(tps[0], b, a)),
        )
        with pytest.raises(RoutingFailure):
            await rsn.dial_route_group(bad, requester=b)

        r1, v1 = await rsn_scrape(), visor_scrape()
        assert r1.delta(r0, "skywire_rsn_route_setups_total", outcome="success") == 1
        assert r1.delta(r0, "skywire_rsn_route_setups_total", outcome="invalid_route") == 1
        assert r1.delta(r0, "skywire_rsn_route_setup_seconds_count") == 2
        assert r1.value("skywire_rsn_route_setups_in_flight") == 0
        assert r1.delta(r0, HTTP_REQUESTS, route="/metrics", method="GET", status="200") == 1

        assert v1.delta(v0, "skywire_visor_route_setups_total", outcome="success") == 1
        assert v1.value("skywire_visor_route_setups_total", outcome="setup_failure") == 0
        assert v1.delta(v0, "skywire_visor_route_setup_seconds_count") == 1
        assert v1.delta(v0, "skywire_visor_route_dials_total") == 1
        assert v1.value("skywire_visor_route_groups") == 1
        assert v1.value("skywire_visor_rules") == len(node.router.table) == 2
        await rg.close()


async def test_visor_control_port_serves_metrics_that_follow_routes() -> None:
    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=3) as sky,
        aiohttp.ClientSession() as http,
    ):
        await sky.chain()
        a, _, c = sky.visors
        assert a.rpc is not None and sky.tpd is not None and sky.rf is not None
        url = f"http://127.0.0.1:{a.rpc.port}/metrics"
        s0 = await scrape(http, url)
        assert s0.value("skywire_visor_transports", type="stcpr") == 1
        assert s0.value("skywire_visor_transports", type="sudph") == 0
        assert s0.value("skywire_visor_dmsg_sessions") == 1
        assert s0.value("skywire_visor_uptime_seconds") > 0
        rf0 = await scrape(http, sky.rf.url + "/metrics")
        tpd = await scrape(http, sky.tpd.url + "/metrics")
        assert tpd.value("skywire_tpd_transports", type="stcpr") == 2  # a-b and b-c

        result = await a.ping(c.pk, count=2, size=100)
        assert result.error is None
        s1 = await scrape(http, url)
        assert s1.delta(s0, "skywire_visor_route_setups_total", outcome="success") == 1
        assert s1.delta(s0, "skywire_visor_route_setup_seconds_count") == 1
        assert s1.delta(s0, "skywire_visor_route_dials_total") == 1
        assert s1.delta(s0, "skywire_visor_route_dial_failures_total") == 0
        assert s1.delta(s0, "skywire_visor_packets_total", outcome="delivered") >= 2
        assert s1.delta(s0, HTTP_REQUESTS, route="/metrics", method="GET", status="200") == 1
        rf1 = await scrape(http, sky.rf.url + "/metrics")
        assert rf1.delta(rf0, "skywire_rf_query_seconds_count") == 1
        # the upstream-compatible routes are unchanged
        async with http.get(f"http://127.0.0.1:{a.rpc.port}/visor/info") as resp:
            assert (await resp.json())["pk"] == a.pk.hex()
