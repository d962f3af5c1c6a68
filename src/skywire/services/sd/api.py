"""The service discovery HTTP API (aiohttp), wire-compatible with the upstream service.

======  ================================  ==================================================
GET     ``/api/services?type=&version=``  live entries of a type (``&country=`` two letters,
        ``&country=&quantity=``           ``&quantity=N``: N of them picked at random)
GET     ``/api/services/{addr}?type=``    one live entry (``addr``: ``<pk>[:<port>]``)
POST    ``/api/services``                 register or refresh an entry (httpauth): 200, the
                                          entry as stored
DELETE  ``/api/services/{addr}?type=``    deregister (httpauth): 200 ``true``
GET     ``/security/nonces/{pk}``         httpauth: ``{"edge":…,"next_nonce":…}``
GET     ``/health``                       service name, build info, start time, task count
GET     ``/metrics``                      Prometheus text: requests, live services by type
======  ================================  ==================================================

Errors are upstream's ``{"code":<status>,"error":"<message>"}`` (httpauth refusals:
``{"error":{"message":…,"code":401}}``): 400 ``missing service type in request``, ``invalid
json``, a bad address, type, version, location or quantity; 403 ``using public key other than
your own is forbidden`` (an entry's address names another key than the one that signed),
``visor version is too old`` (a ``vpn`` or ``skysocks`` entry without a version), ``visor is
unreachable`` (a ``visor`` entry whose ``local_ips`` lack the address it registers from); 404
``service not found``; 413 a body over :data:`MAX_BODY` bytes. A refused request changes nothing.

Entries live :data:`~skywire.services.sd.store.DEFAULT_TTL` seconds after their last
registration (upstream ``--entry-timeout``). Listings and single reads hide ``local_ips`` unless
the entry sets ``display_node_ip`` (upstream hides them in listings only).

Deliberately stricter than upstream, which stores what it is sent: an entry is checked whole
(:mod:`skywire.services.sd.entry`), the type must be known (``proxy`` is stored as
``skysocks``), queries are checked too. Not served: upstream's geolocation by IP address
(an entry without ``geo`` has none), the network monitor's ``DELETE
/api/services/deregister/{type}`` and the ``/uptimes`` visor statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from aiohttp import web

from skywire import __version__
from skywire.cipher import CipherError, PubKey
from skywire.debug.metrics import Registry, instrument_app
from skywire.services.appserver import StoreAppServer
from skywire.services.httpauth import HEADER_PUBLIC_IP, HTTPAuth, NonceStore, authenticated_pk
from skywire.services.sd.entry import (
    ServiceEntry,
    ServiceType,
    SWAddr,
    check_country,
    check_version,
    parse_entry,
    parse_type,
)
from skywire.services.sd.errors import SDError
from skywire.services.sd.store import ServiceStore

__all__ = [
    "ERR_PK_MISMATCH",
    "ERR_VERSION_TOO_OLD",
    "ERR_VISOR_UNREACHABLE",
    "MAX_BODY",
    "PURGE_INTERVAL",
    "SDServer",
    "make_app",
    "remote_ip",
]

log = logging.getLogger("skywire.sd")

MAX_BODY = 16 << 10
"""Bytes of a request body at most (an entry is a few hundred)."""

PURGE_INTERVAL = 60.0
"""Seconds between two purges of expired rows (run by a registration or a scrape)."""

ERR_PK_MISMATCH = "using public key other than your own is forbidden"
ERR_VERSION_TOO_OLD = "visor version is too old"
ERR_VISOR_UNREACHABLE = "visor is unreachable"
ERR_QUANTITY = "quantity must be integer"

_QUANTITY = re.compile(r"[+-]?[0-9]{1,18}")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class APIError(SDError):
    """A refusal answered as ``{"code":status,"error":message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error_body(status: int, message: str) -> bytes:
    body = {"code": status, "error": message}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _entries_json(entries: Iterable[ServiceEntry]) -> bytes:
    return b"[" + b",".join(e.public().to_json() for e in entries) + b"]\n"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _query_type(request: web.Request) -> ServiceType:
    return parse_type(request.query.get("type", ""))


def _path_addr(request: web.Request) -> SWAddr:
    return SWAddr.parse(request.match_info["addr"])


def _quantity(text: str) -> int:
    if not text:
        return 0
    if not _QUANTITY.fullmatch(text):
        raise APIError(400, ERR_QUANTITY)
    return int(text)


def remote_ip(request: web.Request) -> str:
    """The address a request comes from, as upstream's ``GetRemoteAddr`` reads it: over dmsg
    (where the peer is a public key) the ``SW-PublicIP`` header; an IPv4-mapped IPv6 address
    as its IPv4 form. Empty when unknown."""
    host = request.remote or ""
    with contextlib.suppress(CipherError):
        if len(host) == 66:
            PubKey.from_hex(host)
            host = request.headers.get(HEADER_PUBLIC_IP, "")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class _SDAPI:
    def __init__(
        self,
        store: ServiceStore,
        clock: Callable[[], float],
        rng: random.Random,
        max_body: int,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.max_body = max_body
        self.started_at = clock()
        self.last_purge = self.started_at
        self.by_type: dict[str, int] = {}  # live services per type, counted at each scrape
        self.registry = Registry()
        self.registry.gauge(
            "skywire_sd_services",
            "Live service entries, by type.",
            ("type",),
            callback=lambda: self.by_type,
        )

    async def maybe_purge(self) -> None:
        now = self.clock()
        if now - self.last_purge >= PURGE_INTERVAL:
            self.last_purge = now
            dropped = await self.store.purge_expired()
            if dropped:
                log.info("dropped %d expired service entries", dropped)

    async def refresh_metrics(self) -> None:
        await self.maybe_purge()
        counts = await self.store.count_by_type()
        self.by_type.clear()
        self.by_type.update({t.value: counts.get(t.value, 0) for t in ServiceType})

    def _http_error(self, exc: web.HTTPException) -> web.Response:
        if exc.status == 413:
            message = f"request body larger than {self.max_body} bytes"
        elif exc.text and exc.text != f"{exc.status}: {exc.reason}":
            message = exc.text  # a handler's own words
        else:
            message = exc.reason
        response = _json_response(_error_body(exc.status, message), exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response

    @web.middleware
    async def errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except SDError as exc:
            if exc.status >= 500:
                log.error("%s %s: %s", request.method, request.path, exc)
            response = _json_response(_error_body(exc.status, str(exc)), exc.status)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self._http_error(exc)
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _json_response(_error_body(500, "something unexpected happened"), 500)
        log.info(
            "%s %s %s -> %d (%.1f ms)",
            request.remote,
            request.method,
            request.path_qs[:200],
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def list_services(self, request: web.Request) -> web.StreamResponse:
        service_type = _query_type(request)
        version = check_version(request.query.get("version", ""))
        country = request.query.get("country", "")
        if country:
            country = check_country(country)
        quantity = _quantity(request.query.get("quantity", ""))
        entries = await self.store.services(service_type, version=version, country=country)
        if 0 < quantity < len(entries):
            entries = self.rng.sample(entries, quantity)
        return _json_response(_entries_json(entries))

    async def get_service(self, request: web.Request) -> web.StreamResponse:
        service_type = _query_type(request)
        entry = await self.store.get(service_type, _path_addr(request).pk)
        return _json_response(entry.public().to_json() + b"\n")

    async def register(self, request: web.Request) -> web.StreamResponse:
        signer = authenticated_pk(request)
        entry = parse_entry(await request.read())
        if entry.pk != signer:
            raise APIError(403, ERR_PK_MISMATCH)
        if entry.type in (ServiceType.VPN, ServiceType.SKYSOCKS) and not entry.version:
            raise APIError(403, ERR_VERSION_TOO_OLD)
        if entry.type == ServiceType.VISOR and remote_ip(request) not in entry.local_ips:
            raise APIError(403, ERR_VISOR_UNREACHABLE)
        await self.store.register(entry)
        log.info("registered %s %s (version %r)", entry.type, entry.addr, entry.version)
        await self.maybe_purge()
        return _json_response(entry.to_json() + b"\n")

    async def delete(self, request: web.Request) -> web.StreamResponse:
        signer = authenticated_pk(request)
        service_type = _query_type(request)
        addr = _path_addr(request)
        if addr.pk != signer:
            raise APIError(403, ERR_PK_MISMATCH)
        if await self.store.delete(service_type, addr.pk):
            log.info("deregistered %s %s", service_type, addr.pk)
        return _json_response(b"true\n")

    async def health(self, request: web.Request) -> web.StreamResponse:
        body = {
            "service_name": "service-discovery",
            "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
            "started_at": _rfc3339(self.started_at),
            "tasks": len(asyncio.all_tasks()),
        }
        return _json_response(json.dumps(body, separators=(",", ":")).encode() + b"\n")


def make_app(
    store: ServiceStore,
    *,
    nonce_store: NonceStore | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    max_body: int = MAX_BODY,
) -> web.Application:
    """Build the service discovery application over ``store`` (the caller closes it).

    httpauth nonces live in ``nonce_store``, by default the one kept in ``store``'s database;
    ``rng`` picks the entries of a ``quantity`` query; ``clock`` times the start and purges
    (the store has its own clock for expiry).
    """
    api = _SDAPI(store, clock, rng if rng is not None else random.Random(), max_body)
    auth = HTTPAuth(nonce_store if nonce_store is not None else store.nonce_store())
    app = web.Application(middlewares=[api.errors], client_max_size=max_body)
    auth.setup(app)
    app.router.add_get("/api/services", api.list_services)
    app.router.add_post("/api/services", auth.protect(api.register))
    app.router.add_get("/api/services/{addr}", api.get_service)
    app.router.add_delete("/api/services/{addr}", auth.protect(api.delete))
    app.router.add_get("/health", api.health)
    instrument_app(app, api.registry, refresh=api.refresh_metrics)
    return app


class SDServer(StoreAppServer[ServiceStore]):
    """Serve :func:`make_app` on a TCP address for as long as the ``async with`` block runs."""

    def make_app(self) -> web.Application:
        return make_app(self.store, **self.app_options)
