"""Typed async client of the route finder HTTP API (works against the Go route finder too).

``POST <rf>/routes`` with ``{"Edges":["<src>:<dst>",…],"Opts":{"MinHops":n,"MaxHops":m}}``.
A refusal raises the :class:`~skywire.services.rf.graph.RouteFinderError` subclass its message
names; any other 404 is :class:`~.graph.TransportNotFoundError`, as the Go client maps every
404 to ``ErrTransportNotFound``. A 200 answer that does not parse raises
:class:`ResponseFormatError`; a route finder that cannot be asked raises
:class:`RouteFinderUnreachableError` (also a ``ConnectionError``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiohttp

from skywire.cipher import PubKey
from skywire.routing.route import Hop, PathEdges, RouteFormatError
from skywire.services.httpclient import HTTPClientBase
from skywire.services.rf.graph import (
    DEFAULT_MAX_HOPS,
    BadRequestError,
    NoRouteError,
    RouteFinderError,
    RouteNotFoundError,
    TransportNotFoundError,
)

__all__ = ["DEFAULT_TIMEOUT", "RFClient", "ResponseFormatError", "RouteFinderUnreachableError"]

DEFAULT_TIMEOUT = 10.0
"""Seconds per request (the Go client's default)."""

_BY_MESSAGE: dict[str, type[RouteFinderError]] = {
    "transport not found": TransportNotFoundError,
    "no route to destination": NoRouteError,
    "route not found": RouteNotFoundError,
}


class ResponseFormatError(RouteFinderError):
    """A 200 answer that is not the routes object."""

    code = 502


class EndpointMissingError(RouteFinderError):
    """A 404 that is not the route finder's own error body: the endpoint does not exist there
    (an upstream finder has no ``/routes/ranked``)."""

    code = 404


class RouteFinderUnreachableError(RouteFinderError, ConnectionError):
    """The route finder could not be asked (refused, reset, timed out)."""

    code = 503


def _error_from_response(status: int, body: bytes) -> RouteFinderError:
    message = ""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        text = obj["error"].get("message")
        if isinstance(text, str):
            message = text
    if status == 404 and not message:
        text = body.decode("utf-8", "replace").strip() or "HTTP 404"
        return EndpointMissingError(f"no such endpoint: {text}")
    if not message:
        message = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    if status == 404:
        return _BY_MESSAGE.get(message, TransportNotFoundError)(message)
    if status == 400:
        return BadRequestError(message)
    err = RouteFinderError(message)
    err.code = status
    return err


def _edges(pairs: Sequence[PathEdges | tuple[PubKey, PubKey]]) -> list[PathEdges]:
    return [p if isinstance(p, PathEdges) else PathEdges(p[0], p[1]) for p in pairs]


def parse_routes(body: bytes) -> dict[PathEdges, list[list[Hop]]]:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ResponseFormatError(f"routes: invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ResponseFormatError("routes: expected an object")
    out: dict[PathEdges, list[list[Hop]]] = {}
    try:
        for key, paths in obj.items():
            if not isinstance(paths, list) or not all(isinstance(p, list) for p in paths):
                raise ResponseFormatError(f"routes[{key}]: expected a list of hop lists")
            out[PathEdges.parse(key)] = [[Hop.from_json(h) for h in path] for path in paths]
    except RouteFormatError as exc:
        raise ResponseFormatError(f"routes: {exc}") from exc
    return out


class RFClient(HTTPClientBase):
    """A client of one route finder at ``base_url`` (``http://host:port``).

    Pass an ``aiohttp.ClientSession`` to share one; otherwise the client opens its own and
    closes it in :meth:`close` / ``async with``.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        base = base_url.rstrip("/")
        self.base_url = base if "://" in base else f"http://{base}"
        super().__init__(session, timeout)

    def unreachable(self, detail: str) -> Exception:
        return RouteFinderUnreachableError(f"route finder unreachable: {detail}")

    async def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/json"} if body is not None else None
        got = await self.fetch(method, self.base_url + path, data=body, headers=headers)
        if got.status != 200:
            raise _error_from_response(got.status, got.body)
        return got.body

    async def find_routes(
        self,
        edges: Sequence[PathEdges | tuple[PubKey, PubKey]],
        *,
        min_hops: int = 0,
        max_hops: int = DEFAULT_MAX_HOPS,
        num_routes: int | None = None,
    ) -> dict[PathEdges, list[list[Hop]]]:
        """Paths for each (source, destination) pair, best first.

        ``num_routes`` sends the [2026] ``NumRoutes`` option (ignored by [2024] finders).
        """
        opts: dict[str, int] = {"MinHops": min_hops, "MaxHops": max_hops}
        if num_routes is not None:
            opts["NumRoutes"] = num_routes
        request = {"Edges": [e.text() for e in _edges(edges)], "Opts": opts}
        body = json.dumps(request, separators=(",", ":")).encode()
        return parse_routes(await self._request("POST", "/routes", body))

    async def ranked_routes(
        self,
        src: PubKey,
        dst: PubKey,
        *,
        min_hops: int = 0,
        max_hops: int = DEFAULT_MAX_HOPS,
        num_routes: int | None = None,
    ) -> list[dict[str, Any]]:
        """Candidates from ``src`` to ``dst``, best first, each ``{"hops", "cost_ms",
        "latency_ms"}`` (this project's finders only: ``POST /routes/ranked``)."""
        opts: dict[str, int] = {"MinHops": min_hops, "MaxHops": max_hops}
        if num_routes is not None:
            opts["NumRoutes"] = num_routes
        pair = PathEdges(src, dst)
        body = json.dumps({"Edges": [pair.text()], "Opts": opts}).encode()
        payload = await self._request("POST", "/routes/ranked", body)
        try:
            doc = json.loads(payload)
            routes = doc[pair.text()]
            if not isinstance(routes, list):
                raise TypeError("routes must be a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise ResponseFormatError(f"bad ranked answer: {exc}") from exc
        return [r for r in routes if isinstance(r, dict)]

    async def candidate_routes(
        self,
        src: PubKey,
        dst: PubKey,
        *,
        min_hops: int = 0,
        max_hops: int = DEFAULT_MAX_HOPS,
        num_routes: int | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """:meth:`ranked_routes` where the finder has it; from an upstream finder (no such
        endpoint) the plain ``POST /routes`` paths, kept in the finder's order, with no
        latencies. The flag says whether the answer is ranked by measured latency."""
        try:
            ranked = await self.ranked_routes(
                src, dst, min_hops=min_hops, max_hops=max_hops, num_routes=num_routes
            )
            return ranked, True
        except EndpointMissingError:
            pass
        found = await self.find_routes([(src, dst)], min_hops=min_hops, max_hops=max_hops)
        paths = found.get(PathEdges(src, dst), [])
        if num_routes is not None:
            paths = paths[:num_routes]
        plain = [
            {"hops": [h.to_json() for h in path], "cost_ms": None, "latency_ms": None}
            for path in paths
        ]
        return plain, False

    async def health(self) -> dict[str, Any]:
        payload = await self._request("GET", "/health")
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise ResponseFormatError(f"health: invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ResponseFormatError("health: expected an object")
        return obj
