"""The route finder HTTP API (aiohttp), wire-compatible with the upstream route finder.

======  ===========  ==========================================================================
POST    ``/routes``  body ``{"Edges":["<src>:<dst>",…],"Opts":{"MinHops":n,"MaxHops":m}}``;
                     200: ``{"<src>:<dst>":[[{"TpID","From","To"},…],…],…}``
GET     ``/health``  build info, start time, the process's task count
GET     ``/metrics`` Prometheus text: requests, query latency, graph size and rebuilds
======  ===========  ==========================================================================

As Go's ``encoding/json``, request keys match case-insensitively (``edges``/``opts`` work too).
``Opts`` may carry the [2026] ``NumRoutes`` (default :data:`~.graph.DEFAULT_ROUTE_COUNT`, at most
:data:`~.graph.MAX_ROUTE_COUNT`). Errors are ``{"error":{"message":…,"code":…}}``: 400 for a
body that does not decode, 404 ``transport not found`` (the source has no transport),
``no route to destination`` (the destination is unknown) or ``route not found`` (nothing within
the hop bounds); the first failing pair answers for the whole request, as upstream.

Deliberate difference: ``MaxHops`` 0 (or no ``Opts``) means :data:`~.graph.DEFAULT_MAX_HOPS`,
where the [2024] service finds nothing (Go visors always send a maximum).

The graph is a snapshot rebuilt from the :class:`~.graph.TransportSource` every
``refresh_interval`` seconds by :class:`RouteFinder`, never per query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from skywire import __version__
from skywire.debug.metrics import Registry, instrument_app
from skywire.routing.route import PathEdges, RouteFormatError
from skywire.services.appserver import AppServer
from skywire.services.httpclient import describe
from skywire.services.rf.graph import (
    DEFAULT_MAX_EXPANSIONS,
    DEFAULT_MAX_HOPS,
    DEFAULT_ROUTE_COUNT,
    MAX_ROUTE_COUNT,
    BadRequestError,
    FoundRoute,
    Graph,
    RouteFinderError,
    TransportSource,
    Weights,
)

__all__ = ["DEFAULT_REFRESH_INTERVAL", "RouteFinder", "RouteFinderServer", "make_app"]

log = logging.getLogger("skywire.rf")

DEFAULT_REFRESH_INTERVAL = 3.0
"""Seconds between graph rebuilds from the transport source: short, because visors deregister
the transports of a peer that went away and routes must stop crossing it within seconds."""
_MAX_U16 = 0xFFFF
QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Bounds (seconds) of the query latency histogram."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RouteFinder:
    """Holds the current graph snapshot, rebuilds it from ``source`` and answers queries.

    ``weighted`` picks the latency-weighted order (default) or the hop-count order.
    """

    def __init__(
        self,
        source: TransportSource,
        *,
        weights: Weights | None = None,
        weighted: bool = True,
        refresh_interval: float | None = DEFAULT_REFRESH_INTERVAL,
        max_expansions: int = DEFAULT_MAX_EXPANSIONS,
    ) -> None:
        self.source = source
        self.weights = weights if weights is not None else Weights()
        self.weighted = weighted
        self.refresh_interval = refresh_interval
        self.max_expansions = max_expansions
        self._graph: Graph | None = None
        self._lock = asyncio.Lock()
        self.builds = 0
        self._built_from: int | None = None
        self.skipped_builds = 0
        """Refreshes that found nothing changed (a source that says so: the PostgreSQL one)."""
        self.last_build_seconds = 0.0
        self.last_refresh_seconds = 0.0
        """The last rebuild's whole time: reading every transport, then the build."""

    @property
    def graph(self) -> Graph | None:
        """The current snapshot (``None`` before the first build)."""
        return self._graph

    async def refresh(self) -> Graph:
        """Fetch every transport and swap in a freshly built graph."""
        async with self._lock:
            return await self._build()

    async def _build(self) -> Graph:
        began = time.perf_counter()
        transports = await self.source.all_transports()
        version = self.source.version  # a source that follows changes says when none came
        if self._graph is not None and version is not None and version == self._built_from:
            self.skipped_builds += 1  # nothing changed since the graph was built: it stands
            self.last_refresh_seconds = time.perf_counter() - began
            return self._graph
        started = time.perf_counter()
        graph = await asyncio.to_thread(Graph.build, transports, self.weights)
        self.last_build_seconds = time.perf_counter() - started
        self.last_refresh_seconds = time.perf_counter() - began
        self._built_from = version
        self._graph = graph
        self.builds += 1
        log.debug(
            "graph rebuilt: %d visors, %d transports in %.1f ms",
            graph.node_count,
            graph.transport_count,
            self.last_build_seconds * 1000,
        )
        return graph

    async def current(self) -> Graph:
        """The snapshot, building it first if there is none yet."""
        graph = self._graph
        if graph is None:
            async with self._lock:
                graph = self._graph if self._graph is not None else await self._build()
        return graph

    async def find_routes(
        self,
        edges: Sequence[PathEdges],
        *,
        min_hops: int = 0,
        max_hops: int = DEFAULT_MAX_HOPS,
        count: int = DEFAULT_ROUTE_COUNT,
    ) -> dict[PathEdges, list[FoundRoute]]:
        """Routes for every pair; raises the first pair's :class:`RouteFinderError`."""
        graph = await self.current()
        out: dict[PathEdges, list[FoundRoute]] = {}
        for pair in edges:
            out[pair] = graph.find_routes(
                pair.src,
                pair.dst,
                min_hops=min_hops,
                max_hops=max_hops,
                count=count,
                weighted=self.weighted,
                max_expansions=self.max_expansions,
            )
        return out

    def refresh_wait(self) -> float:
        """Seconds from the end of one rebuild to the start of the next: ``refresh_interval``,
        or as long as the last rebuild took when that is longer, so that rebuilding a large
        graph takes at most half of the process's time and queries keep the rest."""
        assert self.refresh_interval is not None
        return max(self.refresh_interval, self.last_refresh_seconds)

    async def run(self) -> None:
        """Rebuild every :meth:`refresh_wait` seconds until cancelled (errors are logged)."""
        if self.refresh_interval is None:
            return
        stretched = False
        while True:
            try:
                await self.refresh()
            except (RouteFinderError, ConnectionError, TimeoutError) as exc:
                log.warning("rebuilding the transport graph failed: %s", describe(exc))
            except Exception:
                log.exception("rebuilding the transport graph failed")
            wait = self.refresh_wait()
            if (wait > self.refresh_interval) != stretched:
                stretched = not stretched
                log.info(
                    "a rebuild took %.1f s: rebuilding every %.1f s (refresh interval %g s)",
                    self.last_refresh_seconds,
                    wait + self.last_refresh_seconds,
                    self.refresh_interval,
                )
            await asyncio.sleep(wait)


def _error_json(code: int, message: str) -> bytes:
    body = {"error": {"message": message, "code": code}}
    return json.dumps(body, separators=(",", ":")).encode()


def _json_response(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """Go's case-insensitive struct field match (an exact match wins)."""
    if name in obj:
        return obj[name]
    lower = name.lower()
    for key, value in obj.items():
        if key.lower() == lower:
            return value
    return None


def _u16(opts: Mapping[str, Any], name: str) -> int:
    value = _field(opts, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_U16:
        raise BadRequestError(f"json: Opts.{name}: expected an integer in 0..{_MAX_U16}")
    return value


def parse_request(body: bytes) -> tuple[list[PathEdges], int, int, int]:
    """``(edges, min_hops, max_hops, count)`` from a ``POST /routes`` body."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise BadRequestError("json: expected an object")
    raw_edges = _field(obj, "Edges")
    if raw_edges is None:
        raw_edges = []
    if not isinstance(raw_edges, list) or not all(isinstance(e, str) for e in raw_edges):
        raise BadRequestError("json: Edges: expected a list of '<pk>:<pk>' strings")
    try:
        edges = [PathEdges.parse(e) for e in raw_edges]
    except RouteFormatError as exc:
        raise BadRequestError(str(exc)) from exc
    opts = _field(obj, "Opts")
    if opts is None:
        opts = {}
    if not isinstance(opts, dict):
        raise BadRequestError("json: Opts: expected an object")
    min_hops = _u16(opts, "MinHops")
    max_hops = _u16(opts, "MaxHops") or DEFAULT_MAX_HOPS
    count = _u16(opts, "NumRoutes") or DEFAULT_ROUTE_COUNT
    return edges, min_hops, max_hops, min(count, MAX_ROUTE_COUNT)


def routes_json(routes: Mapping[PathEdges, list[FoundRoute]]) -> bytes:
    """The 200 body: pairs in key order (as Go sorts map keys), hops as ``TpID/From/To``."""
    ordered = sorted(routes.items(), key=lambda kv: kv[0].text())
    body = {
        pair.text(): [[hop.to_json() for hop in route.hops] for route in found]
        for pair, found in ordered
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class _RouteFinderAPI:
    def __init__(self, finder: RouteFinder, *, run_refresh: bool) -> None:
        self.finder = finder
        self.run_refresh = run_refresh
        self.started_at = time.time()
        self.registry = reg = Registry()
        self.query_seconds = reg.histogram(
            "skywire_rf_query_seconds",
            "Time to answer a route query (every pair of the request), whatever the answer.",
            QUERY_BUCKETS,
        )
        reg.gauge("skywire_rf_graph_visors", "Visors in the graph.", callback=self._visors)
        reg.gauge("skywire_rf_graph_transports", "Transports in it.", callback=self._transports)
        reg.counter(
            "skywire_rf_graph_builds_total", "Graph rebuilds.", callback=lambda: finder.builds
        )
        reg.gauge(
            "skywire_rf_graph_build_seconds",
            "Time the last graph rebuild took.",
            callback=lambda: finder.last_build_seconds,
        )

    def _visors(self) -> int:
        graph = self.finder.graph
        return 0 if graph is None else graph.node_count

    def _transports(self) -> int:
        graph = self.finder.graph
        return 0 if graph is None else graph.transport_count

    async def _find(self, request: web.Request) -> dict[PathEdges, list[FoundRoute]]:
        """Parse a routes request and answer it, timing the query."""
        edges, min_hops, max_hops, count = parse_request(await request.read())
        started = time.perf_counter()
        try:
            return await self.finder.find_routes(
                edges, min_hops=min_hops, max_hops=max_hops, count=count
            )
        finally:
            self.query_seconds.observe(time.perf_counter() - started)

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except RouteFinderError as exc:
            if exc.code != 404:
                log.warning("%d: %s", exc.code, exc.message)
            response = _json_response(exc.code, _error_json(exc.code, exc.message))
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _json_response(500, _error_json(500, str(exc) or type(exc).__name__))
        log.info(
            "%s %s %s -> %d (%.1f ms)",
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def refresher(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.finder.run()) if self.run_refresh else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def routes(self, request: web.Request) -> web.StreamResponse:
        return _json_response(200, routes_json(await self._find(request)))

    async def ranked(self, request: web.Request) -> web.StreamResponse:
        """Like ``/routes`` but each route carries its rank cost and measured latency (ours)."""
        found = await self._find(request)
        body = {
            pair.text(): [
                {
                    "hops": [hop.to_json() for hop in route.hops],
                    "cost_ms": route.cost,
                    "latency_ms": route.latency_ms,
                }
                for route in routes
            ]
            for pair, routes in sorted(found.items(), key=lambda kv: kv[0].text())
        }
        return _json_response(200, json.dumps(body, separators=(",", ":")).encode())

    async def health(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {
            "service_name": "route-finder",
            "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
            "started_at": _rfc3339(self.started_at),
            "tasks": len(asyncio.all_tasks()),
        }
        graph = self.finder.graph
        if graph is not None:
            finder = self.finder
            body["graph"] = {
                "visors": graph.node_count,
                "transports": graph.transport_count,
                "builds": finder.builds,
                "refreshes_unchanged": finder.skipped_builds,
                "last_rebuild_seconds": round(finder.last_refresh_seconds, 3),
            }
            if finder.refresh_interval is not None:
                body["graph"]["rebuild_every_seconds"] = round(
                    finder.refresh_wait() + finder.last_refresh_seconds, 3
                )
        return _json_response(200, json.dumps(body, separators=(",", ":")).encode())


def make_app(finder: RouteFinder, *, run_refresh: bool = True) -> web.Application:
    """The route finder application over ``finder``.

    With ``run_refresh`` the application owns a task that rebuilds the graph every
    ``finder.refresh_interval`` seconds (the first build happens at start-up); without it the
    graph is built on the first query and whenever the caller runs ``finder.refresh()``.
    """
    api = _RouteFinderAPI(finder, run_refresh=run_refresh)
    app = web.Application(middlewares=[api.middleware])
    app.cleanup_ctx.append(api.refresher)
    app.router.add_post("/routes", api.routes)
    app.router.add_post("/routes/ranked", api.ranked)
    app.router.add_get("/health", api.health)
    instrument_app(app, api.registry)
    return app


class RouteFinderServer(AppServer):
    """Serve :func:`make_app` on a TCP address for as long as the ``async with`` block runs."""

    def __init__(
        self,
        finder: RouteFinder,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        run_refresh: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.finder = finder
        self._run_refresh = run_refresh

    def make_app(self) -> web.Application:
        return make_app(self.finder, run_refresh=self._run_refresh)
