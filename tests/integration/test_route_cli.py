"""Latency-weighted route finding end to end: measured latencies in transport discovery reach
the route finder's ranking, and ``skywire cli route find`` shows the ranked candidates."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid

import pytest

from skywire.cipher import KeyPair, PubKey
from skywire.services.rf.api import RouteFinder, RouteFinderServer
from skywire.services.rf.client import RFClient
from skywire.services.rf.source import HttpTransportSource
from skywire.services.tpd.api import TPDServer
from skywire.services.tpd.store.memory import MemoryStore
from skywire.transport.entry import SignedEntry, make_entry

pytestmark = pytest.mark.timeout(60)


def _signed(a: KeyPair, b: KeyPair, tp_type: str = "stcpr") -> SignedEntry:
    entry = make_entry(a.pk, b.pk, tp_type)
    return SignedEntry.new(entry, a.pk, a.sk).sign(b.pk, b.sk)


async def _graph(store: MemoryStore) -> tuple[list[KeyPair], dict[str, float]]:
    """src → x → y → dst at 100 ms per hop (300 ms) and src → z → dst at 400 ms per hop."""
    src, x, y, z, dst = (KeyPair.generate() for _ in range(5))
    links = [(src, x, 100.0), (x, y, 100.0), (y, dst, 100.0), (src, z, 400.0), (z, dst, 400.0)]
    for a, b, ms in links:
        se = _signed(a, b)
        await store.register([se])
        await store.set_latency(se.entry.id, ms, a.pk)
    return [src, x, y, z, dst], {}


async def test_measured_latency_flows_from_tpd_into_the_ranking() -> None:
    async with MemoryStore() as store:
        (src, x, y, _z, dst), _ = await _graph(store)
        async with TPDServer(store) as tpd:
            source = HttpTransportSource(tpd.url)
            finder = RouteFinder(source, refresh_interval=None)
            async with (
                RouteFinderServer(finder, run_refresh=False) as rf,
                RFClient(rf.url) as client,
            ):
                ranked = await client.ranked_routes(src.pk, dst.pk, min_hops=1, max_hops=5)
                # the 3-hop 300 ms path beats the 2-hop 800 ms path
                assert [len(r["hops"]) for r in ranked] == [3, 2]
                assert ranked[0]["latency_ms"] == pytest.approx(300.0)
                assert ranked[1]["latency_ms"] == pytest.approx(800.0)
                via = [PubKey.from_hex(h["To"]) for h in ranked[0]["hops"]]
                assert via == [x.pk, y.pk, dst.pk]
                # the plain endpoint (as Go visors call it) gives the same order
                plain = await client.find_routes([(src.pk, dst.pk)], min_hops=1, max_hops=5)
                assert [len(h) for h in next(iter(plain.values()))] == [3, 2]
            await source.close()


def test_route_find_cli_shows_ranked_candidates() -> None:
    ready = threading.Event()
    state: dict[str, object] = {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with MemoryStore() as store:
            (src, _x, _y, _z, dst), _ = await _graph(store)
            async with TPDServer(store) as tpd:
                source = HttpTransportSource(tpd.url)
                async with RouteFinderServer(RouteFinder(source), run_refresh=False) as rf:
                    state.update(src=src.pk.hex(), dst=dst.pk.hex(), url=rf.url)
                    ready.set()
                    await stop.wait()
                await source.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(30)
        res = subprocess.run(
            [sys.executable, "-m", "skywire.cli", "cli", "route", "find", str(state["dst"]),
             "--from", str(state["src"]), "--rf", str(state["url"]), "-n", "1", "-x", "5",
             "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        routes = json.loads(res.stdout)
        assert [round(r["latency_ms"]) for r in routes] == [300, 800]
        table = subprocess.run(
            [sys.executable, "-m", "skywire.cli", "cli", "route", "find", str(state["dst"]),
             "--from", str(state["src"]), "--rf", str(state["url"])],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "300.0 ms" in table.stdout and "800.0 ms" in table.stdout
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


async def test_a_finder_without_the_ranked_endpoint_still_answers() -> None:
    """Upstream route finders have only ``POST /routes``: the client falls back to it."""
    from aiohttp import web

    from skywire.routing.route import Hop, PathEdges

    src, mid, dst = (KeyPair.generate().pk for _ in range(3))
    hop1 = Hop(uuid.uuid4(), src, mid)
    hop2 = Hop(uuid.uuid4(), mid, dst)

    async def routes(request: web.Request) -> web.Response:
        body = await request.json()
        key = PathEdges(src, dst).text()
        assert body["Edges"] == [key]
        return web.json_response({key: [[hop1.to_json(), hop2.to_json()]]})

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="404 page not found\n")  # chi's plain 404

    app = web.Application()
    app.router.add_post("/routes", routes)
    app.router.add_post("/routes/ranked", not_found)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with RFClient(url) as client:
            found, ranked = await client.candidate_routes(src, dst, min_hops=1, max_hops=5)
        assert not ranked
        assert [h["To"] for h in found[0]["hops"]] == [mid.hex(), dst.hex()]
        assert found[0]["latency_ms"] is None
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skywire.cli", "cli", "route", "find", dst.hex(),
            "--from", src.hex(), "--rf", url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert b"no ranked endpoint" in err and b"unmeasured" in out
    finally:
        await runner.cleanup()
