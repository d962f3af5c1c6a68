"""The uptime tracker HTTP API (aiohttp).

======  ================================  ==================================================
GET     ``/v4/update?version=``           a visor's heartbeat (httpauth, empty body): 200
                                          ``{"pk":…,"credited":<seconds>}``
GET     ``/uptimes?v=v2&visors=&days=``   upstream's v2 list: per visor ``pk``, ``up``,
                                          ``down`` (seconds), ``pct``, ``on``, ``version``,
                                          ``daily`` (``{"YYYY-MM-DD":"99.50",…}``)
GET     ``/uptimes/{pk}?days=``           one visor (ours): the totals, ``first_seen``,
                                          ``last_seen`` and ``days`` (``[{"date","up","pct"}]``)
GET     ``/security/nonces/{pk}``         httpauth: ``{"edge":…,"next_nonce":…}``
GET     ``/health``                       service name, build info, start time, task count
GET     ``/metrics``                      Prometheus text: requests, heartbeats, credited time
======  ================================  ==================================================

``visors=`` takes keys separated by commas or semicolons (upstream's documentation uses ``;``);
without it every known visor is listed. ``days=`` is the window (1 to 366, default 30, ending
today, UTC). Errors are ``{"code":<status>,"error":"<message>"}`` (httpauth refusals:
``{"error":{"message":…,"code":401}}``): 400 a bad key, day count, version or ``v``; 404 ``visor
not found`` (never heard from). A refused request changes nothing.

Upstream's side, as far as it is known: visors send ``GET /v4/update?version=<v>`` signed with
httpauth every 5 minutes (``pkg/utclient``, ``pkg/visor/init.go``) and only look at the status;
tools read ``/uptimes?v=v2`` with the fields above (``cmd/skywire-cli/commands/ut``, ``log``).
The tracker itself is not in the public tree: how it counts (which gap it credits, the window of
``up`` / ``down`` / ``pct``, the v1 shape) is ours, described in
:mod:`skywire.services.ut.uptime`; any ``v`` but ``v2`` (or none) is refused rather than guessed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from skywire import __version__
from skywire.cipher import CipherError, PubKey
from skywire.debug.metrics import Registry, instrument_app
from skywire.services.appserver import StoreAppServer
from skywire.services.httpauth import HTTPAuth, NonceStore, authenticated_pk
from skywire.services.ut.errors import QueryError, UTError
from skywire.services.ut.store import UptimeStore
from skywire.services.ut.uptime import (
    DAY,
    DEFAULT_TOLERANCE,
    check_tolerance,
    check_version,
    day_of,
    parse_days,
    parse_keys,
)

__all__ = ["DEFAULT_RETENTION_DAYS", "PURGE_INTERVAL", "UTServer", "make_app"]

log = logging.getLogger("skywire.ut")

PURGE_INTERVAL = 3600.0
"""Seconds between two purges of days past the retention (run by a heartbeat)."""
DEFAULT_RETENTION_DAYS = 400
"""Days of uptime kept (a year's query fits)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(obj: Any, status: int = 200) -> web.Response:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    return web.Response(body=body, status=status, content_type="application/json")


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class _UTAPI:
    def __init__(
        self,
        store: UptimeStore,
        clock: Callable[[], float],
        tolerance: float,
        retention_days: int | None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.tolerance = check_tolerance(tolerance)
        self.retention_days = retention_days
        self.started_at = clock()
        self.last_purge = self.started_at - PURGE_INTERVAL
        self.registry = Registry()
        self.beats = self.registry.counter(
            "skywire_ut_heartbeats_total", "Heartbeats received, signed and accepted."
        )
        self.credited = self.registry.counter(
            "skywire_ut_credited_seconds_total", "Seconds of uptime credited to visors."
        )

    async def maybe_purge(self, now: float) -> None:
        if self.retention_days is None or now - self.last_purge < PURGE_INTERVAL:
            return
        self.last_purge = now
        dropped = await self.store.purge_before(day_of(now - self.retention_days * DAY))
        if dropped:
            log.info("dropped %d rows past %d days", dropped, self.retention_days)

    @web.middleware
    async def errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except UTError as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.path, exc)
            response = _json({"code": exc.status, "error": str(exc)}, exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _json({"code": exc.status, "error": exc.reason}, exc.status)
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _json({"code": 500, "error": "something unexpected happened"}, 500)
        log.debug(
            "%s %s %s -> %d (%.1f ms)",
            request.remote,
            request.method,
            request.path_qs[:200],
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def update(self, request: web.Request) -> web.StreamResponse:
        pk = authenticated_pk(request)
        version = check_version(request.query.get("version", ""))
        now = self.clock()
        got = await self.store.heartbeat(pk, version, now, self.tolerance)
        credited = sum(c.seconds for c in got)
        self.beats.inc()
        self.credited.inc(credited)
        log.debug("heartbeat of %s (%s): %.1f s credited", pk, version or "no version", credited)
        await self.maybe_purge(now)
        return _json({"pk": pk.hex(), "credited": round(credited, 3)})

    async def uptimes(self, request: web.Request) -> web.StreamResponse:
        v = request.query.get("v", "v2")
        if v != "v2":
            raise QueryError(f"unknown version {v[:20]!r}: only v=v2 is served")
        text = request.query.get("visors", "")
        keys = parse_keys(text) if text else None
        days = parse_days(request.query.get("days", ""))
        found = await self.store.uptimes(keys, self.clock(), days, self.tolerance)
        return _json([u.to_v2() for u in found])

    async def uptime(self, request: web.Request) -> web.StreamResponse:
        try:
            pk = PubKey.from_hex(request.match_info["pk"])
        except CipherError as exc:
            raise QueryError(f"invalid public key: {exc}") from exc
        days = parse_days(request.query.get("days", ""))
        found = await self.store.uptime(pk, self.clock(), days, self.tolerance)
        return _json(found.to_json())

    async def health(self, request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "service_name": "uptime-tracker",
                "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
                "started_at": _rfc3339(self.started_at),
                "tolerance_s": self.tolerance,
                "tasks": len(asyncio.all_tasks()),
            }
        )


def make_app(
    store: UptimeStore,
    *,
    nonce_store: NonceStore | None = None,
    clock: Callable[[], float] = time.time,
    tolerance: float = DEFAULT_TOLERANCE,
    retention_days: int | None = DEFAULT_RETENTION_DAYS,
) -> web.Application:
    """Build the uptime tracker application over ``store`` (the caller closes it).

    ``tolerance``: the longest gap between two heartbeats of a visor that is credited, and how
    long a visor counts as online after its last; ``retention_days``: days of history kept
    (None: all); ``clock`` stamps heartbeats and answers. httpauth nonces live in
    ``nonce_store``, by default the one kept in ``store``'s database.
    """
    api = _UTAPI(store, clock, tolerance, retention_days)
    auth = HTTPAuth(nonce_store if nonce_store is not None else store.nonce_store())
    app = web.Application(middlewares=[api.errors])
    auth.setup(app)
    app.router.add_get("/v4/update", auth.protect(api.update))
    app.router.add_get("/uptimes", api.uptimes)
    app.router.add_get("/uptimes/{pk}", api.uptime)
    app.router.add_get("/health", api.health)
    instrument_app(app, api.registry)
    return app


class UTServer(StoreAppServer[UptimeStore]):
    """Serve :func:`make_app` on a TCP address for as long as the ``async with`` block runs."""

    def make_app(self) -> web.Application:
        return make_app(self.store, **self.app_options)
