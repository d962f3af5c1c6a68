"""The address resolver (``skywire svc ar``): HTTP API (aiohttp) plus the sudph UDP side.

======  =========================  ===========================================================
POST    ``/bind/stcpr``            httpauth; body ``{"port":"…","addresses":[…]}``: bind the
                                   signing key to the request's public IP
DELETE  ``/bind/stcpr``            httpauth; remove the signer's stcpr bind
GET     ``/resolve/{type}/{pk}``   httpauth; the bind (``VisorData``) or 404; for ``sudph`` the
                                   bound visor is asked to hole-punch towards the requester
GET     ``/transports``            ``{"sudph":[pk…],"stcpr":[pk…]}`` (empty lists left out)
GET     ``/security/nonces/{pk}``  httpauth nonce
GET     ``/health``                build info, start time, the process's task count
GET     ``/metrics``               Prometheus text: requests, bound visors by type
======  =========================  ===========================================================

Errors are ``{"error":"…"}`` as upstream (httpauth refusals keep httpauth's own shape).

Where this differs from the reference, on purpose:

* a bind body that does not parse is answered 400 (upstream answers an empty 200);
* an unknown type in ``/resolve`` is 400 (upstream 500);
* ``is_local`` compares the requester's IP with the host part of the bound address; upstream
  compares ``SplitHostPort`` results, which never succeed on a bare IP, so it never sets it;
* stcpr binds carry a TTL (``stcpr_ttl``, 5 min by default, as the current upstream
  ``--entry-timeout``); a visor re-binds every :data:`STCPR_REBIND_INTERVAL` seconds.

``test_mode`` accepts stcpr binds from non-public IPs and without the request IP among the
declared addresses (everything on loopback). The request IP is the TCP peer, or with
``trust_forwarded`` the ``X-Real-IP`` / first ``X-Forwarded-For`` entry (behind a proxy).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from skywire import __version__
from skywire.cipher import CipherError, PubKey
from skywire.debug.metrics import Registry, instrument_app
from skywire.services.ar.store import (
    BIND_TYPES,
    ARStore,
    NoEntryError,
    UnknownTransportTypeError,
    VisorData,
    VisorDataError,
    check_type,
    parse_local_addresses,
)
from skywire.services.ar.udp import (
    DEFAULT_UDP_PORT,
    HEARTBEAT_TIMEOUT,
    HolePunchRequest,
    SUDPHBindServer,
)
from skywire.services.dmsgport import with_debug
from skywire.services.httpauth import HTTPAuth, MemoryNonceStore, NonceStore, authenticated_pk
from skywire.transport.kcp import Address, KCPOptions
from skywire.transport.resolver import STCPR_REBIND_INTERVAL

__all__ = [
    "DEFAULT_HTTP_PORT",
    "STCPR_BIND_TTL",
    "STCPR_REBIND_INTERVAL",
    "ARServer",
    "make_app",
    "remote_ip",
    "same_host",
]

log = logging.getLogger("skywire.ar")

DEFAULT_HTTP_PORT = 9093
STCPR_BIND_TTL = 300.0
"""Seconds an stcpr bind lives after it is written."""

"""How often a visor should re-post its stcpr bind (well inside :data:`STCPR_BIND_TTL`)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, obj: Any) -> web.Response:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=body, status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(status, {"error": message})


def remote_ip(request: web.Request, *, trust_forwarded: bool = False) -> str:
    """The requester's IP: the TCP peer, or what a trusted proxy says it forwarded."""
    if trust_forwarded:
        real = request.headers.get("X-Real-IP", "").strip()
        if real:
            return real
        forwarded = request.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.remote or ""


def _host_of(addr: str) -> str:
    """The host part of ``ip``, ``ip:port`` or ``[ipv6]:port``."""
    if addr.startswith("["):
        return addr[1 : addr.find("]")] if "]" in addr else addr
    if addr.count(":") == 1:
        return addr.rsplit(":", 1)[0]
    return addr


def same_host(a: str, b: str) -> bool:
    """Whether two addresses (each ``ip`` or ``ip:port``) have the same IP."""
    ha, hb = _host_of(a), _host_of(b)
    try:
        return ipaddress.ip_address(ha) == ipaddress.ip_address(hb)
    except ValueError:
        return ha != "" and ha == hb


def _is_public(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class _ARAPI:
    def __init__(
        self,
        store: ARStore,
        udp: SUDPHBindServer | None,
        *,
        test_mode: bool,
        trust_forwarded: bool,
        stcpr_ttl: float | None,
    ) -> None:
        self.store = store
        self.udp = udp
        self.test_mode = test_mode
        self.trust_forwarded = trust_forwarded
        self.stcpr_ttl = stcpr_ttl
        self.started_at = time.time()
        self.bound: dict[str, int] = {}  # visors bound per type, counted at each scrape
        self.registry = Registry()
        self.registry.gauge(
            "skywire_ar_bound_visors",
            "Visors with a live bind, by transport type.",
            ("type",),
            callback=lambda: self.bound,
        )

    async def refresh_metrics(self) -> None:
        listing = await self.store.transports()
        self.bound.update({tp_type: len(listing.get(tp_type, ())) for tp_type in BIND_TYPES})

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            response = _error(500, "internal error")
        log.info(
            "%s %s %s -> %d",
            self._ip(request),
            request.method,
            request.path_qs,
            response.status,
        )
        return response

    def _ip(self, request: web.Request) -> str:
        return remote_ip(request, trust_forwarded=self.trust_forwarded)

    async def bind_stcpr(self, request: web.Request) -> web.StreamResponse:
        pk = authenticated_pk(request)
        ip = self._ip(request)
        try:
            port, addresses = parse_local_addresses(await request.read())
        except VisorDataError as exc:
            return _error(400, f"error bad input: {exc}")
        if not self.test_mode:
            if not _is_public(ip):
                return _error(
                    400,
                    f"Cannot bind {pk.hex()} to {ip} (STCPR). Invalid IP address in request: "
                    f"{list(addresses)}",
                )
            if not any(same_host(ip, a) for a in addresses):
                return _error(
                    400,
                    f"Cannot bind {pk.hex()} to {ip} (STCPR). Remote address not present in "
                    f"request: {list(addresses)}",
                )
        await self.store.bind("stcpr", pk, VisorData(ip, port, addresses), ttl=self.stcpr_ttl)
        log.info("bound %s to %s port %s (stcpr)", pk, ip, port)
        return web.Response(status=200)

    async def unbind_stcpr(self, request: web.Request) -> web.StreamResponse:
        pk = authenticated_pk(request)
        await self.store.del_bind("stcpr", pk)
        log.info("unbound %s (stcpr)", pk)
        return web.Response(status=200)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        requester = authenticated_pk(request)
        tp_type = request.match_info["type"]
        try:
            check_type(tp_type)
        except UnknownTransportTypeError as exc:
            return _error(400, str(exc))
        try:
            target = PubKey.from_hex(request.match_info["pk"])
        except CipherError as exc:
            return _error(400, str(exc))
        try:
            data = await self.store.resolve(tp_type, target)
        except NoEntryError as exc:
            return _error(404, str(exc))
        ip = self._ip(request)
        if same_host(data.remote_addr, ip):
            data = VisorData(data.remote_addr, data.port, data.addresses, is_local=True)
        if tp_type == "sudph" and self.udp is not None:
            await self._ask_to_punch(target, requester)
        return web.Response(body=data.to_json(), status=200, content_type="application/json")

    async def _ask_to_punch(self, target: PubKey, requester: PubKey) -> None:
        """Tell ``target`` (over its bind) where ``requester``'s sudph socket is."""
        assert self.udp is not None
        try:
            requester_data = await self.store.resolve("sudph", requester)
        except NoEntryError:
            log.info("%s resolved %s (sudph) without an sudph bind: no push", requester, target)
            return
        request = HolePunchRequest(requester, requester_data.remote_addr)
        if await self.udp.push(target, request):
            log.info("asked %s to hole-punch towards %s", target, request.addr)
        else:
            log.info("%s is not connected over UDP: no push", target)

    async def transports(self, request: web.Request) -> web.StreamResponse:
        listing = await self.store.transports()
        return _json(200, {t: [pk.hex() for pk in pks] for t, pks in listing.items()})

    async def health(self, request: web.Request) -> web.StreamResponse:
        return _json(
            200,
            {
                "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
                "started_at": _rfc3339(self.started_at),
                "tasks": len(asyncio.all_tasks()),
            },
        )


def make_app(
    store: ARStore,
    *,
    nonce_store: NonceStore | None = None,
    udp: SUDPHBindServer | None = None,
    test_mode: bool = False,
    trust_forwarded: bool = False,
    stcpr_ttl: float | None = STCPR_BIND_TTL,
) -> web.Application:
    """The HTTP application over ``store`` (kept and closed by the caller). ``udp`` is the sudph
    side that resolves of sudph keys push through (``None``: no pushes)."""
    api = _ARAPI(
        store, udp, test_mode=test_mode, trust_forwarded=trust_forwarded, stcpr_ttl=stcpr_ttl
    )
    auth = HTTPAuth(nonce_store if nonce_store is not None else MemoryNonceStore())
    app = web.Application(middlewares=[api.middleware])
    auth.setup(app)
    app.router.add_post("/bind/stcpr", auth.protect(api.bind_stcpr))
    app.router.add_delete("/bind/stcpr", auth.protect(api.unbind_stcpr))
    app.router.add_get("/resolve/{type}/{pk}", auth.protect(api.resolve))
    app.router.add_get("/transports", api.transports)
    app.router.add_get("/health", api.health)
    instrument_app(app, api.registry, refresh=api.refresh_metrics)
    return app


class ARServer:
    """The address resolver on ``host:http_port`` (HTTP) and ``udp_host:udp_port`` (sudph) for
    as long as the ``async with`` block runs. Port 0 picks a free port; :attr:`url` and
    :attr:`udp_addr` say where it listens. The store is not closed on exit.

    With a ``survey_whitelist`` (even an empty one) the app has ``/debug/*`` for those dmsg keys
    (:func:`~skywire.services.dmsgport.with_debug`), for serving :attr:`runner` on dmsg too."""

    def __init__(
        self,
        store: ARStore,
        host: str = "127.0.0.1",
        http_port: int = DEFAULT_HTTP_PORT,
        udp_port: int = DEFAULT_UDP_PORT,
        *,
        udp_host: str | None = None,
        nonce_store: NonceStore | None = None,
        test_mode: bool = False,
        trust_forwarded: bool = False,
        stcpr_ttl: float | None = STCPR_BIND_TTL,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        kcp_options: KCPOptions | None = None,
        survey_whitelist: Collection[PubKey] | None = None,
    ) -> None:
        self.store = store
        self.survey_whitelist = None if survey_whitelist is None else frozenset(survey_whitelist)
        self.host = host
        self.http_port = http_port
        self.udp_host = host if udp_host is None else udp_host
        self.udp_port = udp_port
        self._options: dict[str, Any] = {
            "nonce_store": nonce_store,
            "test_mode": test_mode,
            "trust_forwarded": trust_forwarded,
            "stcpr_ttl": stcpr_ttl,
        }
        self.udp = SUDPHBindServer(
            store, heartbeat_timeout=heartbeat_timeout, kcp_options=kcp_options
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"

    @property
    def runner(self) -> web.AppRunner | None:
        """The set-up runner of the HTTP side while serving (to serve it on dmsg as well)."""
        return self._runner

    def make_app(self) -> web.Application:
        """The HTTP application, with ``/debug/*`` when there is a survey whitelist."""
        app = make_app(self.store, udp=self.udp, **self._options)
        if self.survey_whitelist is not None:
            with_debug(app, self.survey_whitelist)
        return app

    @property
    def udp_addr(self) -> Address:
        """``(host, port)`` of the sudph UDP socket."""
        return self.udp.udp_addr

    async def __aenter__(self) -> Self:
        await self.udp.start(self.udp_host, self.udp_port)
        try:
            self.udp_port = self.udp.udp_addr[1]
            runner = web.AppRunner(self.make_app(), access_log=None)
            await runner.setup()
            try:
                site = web.TCPSite(runner, self.host or None, self.http_port)
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
        except BaseException:
            await self.udp.close()
            raise
        self._runner = runner
        if runner.addresses:
            self.http_port = int(runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            await self.udp.close()
