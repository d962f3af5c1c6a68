"""The visor's local control API, for ``skywire cli`` (JSON over HTTP on ``cli_addr``).

The reference speaks gob net/rpc on ``localhost:3435``; this visor answers JSON on the same
address, so that operators can also use ``curl``, and gob net/rpc too, so that upstream's
``skywire cli`` can drive it (:mod:`~skywire.visor.rpc_port` tells them apart,
:mod:`~skywire.visor.rpc_gob` answers the gob calls). Errors are ``{"error": "..."}`` with a
4xx/5xx status. ``GET /metrics`` answers Prometheus text
(:func:`~skywire.visor.metrics.visor_metrics`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
from aiohttp import web

from skywire.cipher import CipherError, PubKey
from skywire.debug.metrics import Registry, instrument_app
from skywire.proxy.errors import ProxyError
from skywire.services.appserver import AppServer
from skywire.transport.manager import TransportError
from skywire.visor.config import AppConfig
from skywire.visor.launcher import Launcher
from skywire.visor.rpc_apps import add_app_routes
from skywire.visor.rpc_gob import visor_rpc_server
from skywire.visor.rpc_ops import OpsAPI, add_ops_routes
from skywire.visor.rpc_port import ControlPort


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"invalid address {addr!r}")
    return host or "127.0.0.1", int(port)


class Summarized(Protocol):
    """A transport as the API lists it."""

    def summary(self) -> dict[str, object]: ...


class PingAnswer(Protocol):
    """A route ping's outcome as the API returns it."""

    error: str | None

    def to_json(self) -> dict[str, Any]: ...


class VisorAPI(OpsAPI, Protocol):
    """What the control API's handlers call: the visor provides it."""

    @property
    def launcher(self) -> Launcher | None:
        """The app launcher, when this visor runs apps."""
        ...

    def save_apps(self, apps: list[AppConfig]) -> None:
        """Keep the apps' settings (autostart) in the visor's config file, when it has one."""
        ...

    def info(self) -> dict[str, Any]: ...

    def metrics(self) -> Registry:
        """A fresh registry of the visor's metrics, for ``GET /metrics``."""
        ...

    def transport_types(self) -> list[str]: ...

    def transports(self) -> Sequence[Summarized]: ...

    async def add_transport(self, pk: PubKey, tp_type: str) -> Summarized: ...

    async def remove_transport(self, tp_id: uuid.UUID) -> None: ...

    def rules(self) -> list[dict[str, Any]]:
        """Every routing rule, each with its ``key`` route ID."""
        ...

    def route_groups(self) -> list[dict[str, Any]]:
        """The visor's route groups: remote key, encryption, latency."""
        ...

    def web_info(self) -> dict[str, Any]:
        """The resolving proxies, the published skynet services, the route pool."""
        ...

    async def publish(self, port: int, address: str) -> None: ...

    async def unpublish(self, port: int) -> bool: ...

    async def route_address(self, pks: list[PubKey], tp_type: str | None) -> dict[str, Any]:
        """``tp route-addr``: the transport of each consecutive pair and the address."""
        ...

    async def ping(
        self,
        pk: PubKey,
        *,
        via: Sequence[PubKey] = (),
        min_hops: int | None = None,
        max_hops: int | None = None,
        count: int = 1,
        size: int = 32,
        interval: float = 0.0,
    ) -> PingAnswer:
        """``route ping``: a new route to the visor's echo, probed, closed."""
        ...


class RPCServer(AppServer):
    """Serves the visor's control API on a local TCP address (``async with``): JSON over HTTP
    and upstream's gob net/rpc on the one port."""

    def __init__(self, api: VisorAPI, addr: str) -> None:
        host, port = split_addr(addr)
        super().__init__(host, port)
        self.api = api
        self._port: ControlPort | None = None

    @property
    def runner(self) -> web.AppRunner | None:
        return None if self._port is None else self._port.runner

    async def __aenter__(self) -> Self:
        port = ControlPort(self.make_app(), visor_rpc_server(self.api), self.host, self.port)
        await port.__aenter__()
        self._port, self.port = port, port.port
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        port, self._port = self._port, None
        if port is not None:
            await port.close()

    def make_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/visor/info", self._info)
        r.add_get("/transport-types", self._types)
        r.add_get("/transports", self._list)
        r.add_post("/transports", self._add)
        r.add_delete("/transports/{id}", self._remove)
        r.add_get("/rules", self._rules)
        r.add_get("/routes", self._routes)
        r.add_get("/skynet", self._skynet)
        r.add_post("/skynet/services", self._publish)
        r.add_delete("/skynet/services/{port}", self._unpublish)
        r.add_post("/route-addr", self._route_addr)
        r.add_post("/routes/ping", self._ping)
        add_app_routes(app, lambda: self.api.launcher, self.api.save_apps)
        add_ops_routes(app, lambda: self.api)
        instrument_app(app, self.api.metrics())
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("a JSON object is expected")
            pk = PubKey.parse(str(body["pk"]))
            via = [PubKey.parse(str(text)) for text in body.get("via") or []]
            hops = {k: int(body[k]) for k in ("min_hops", "max_hops") if body.get(k) is not None}
            count = int(body.get("count", 1))
            size = int(body.get("size", 32))
            interval = float(body.get("interval", 0.0))
            if not 0 <= interval <= 3600:
                raise ValueError("interval must be 0..3600 s")
            result = await self.api.ping(
                pk, via=via, count=count, size=size, interval=interval, **hops
            )
        except (ValueError, KeyError, TypeError, CipherError) as exc:
            return _error(400, f"bad request: {exc}")
        except ProxyError as exc:
            return _error(exc.status, str(exc))
        doc = result.to_json()
        return web.json_response(doc, status=200 if result.error is None else 502)

    async def _skynet(self, _: web.Request) -> web.Response:
        return web.json_response(self.api.web_info())

    async def _publish(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            port = int(body["port"])
            address = str(body["address"])
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} out of range")
            await self.api.publish(port, address)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"bad request: {exc}")
        return web.json_response({"port": port, "address": address})

    async def _unpublish(self, request: web.Request) -> web.Response:
        try:
            port = int(request.match_info["port"])
        except ValueError:
            return _error(400, "bad port")
        if not await self.api.unpublish(port):
            return _error(404, f"nothing is published on skynet port {port}")
        return web.json_response({"removed": port})

    async def _route_addr(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            pks = [PubKey.parse(str(text)) for text in body["pks"]]
            tp_type = body.get("type") or None
        except (ValueError, KeyError, TypeError, CipherError) as exc:
            return _error(400, f"bad request: {exc}")
        try:
            return web.json_response(await self.api.route_address(pks, tp_type))
        except ProxyError as exc:
            return _error(exc.status if exc.status != 502 else 404, str(exc))

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response(self.api.info())

    async def _types(self, _: web.Request) -> web.Response:
        return web.json_response(self.api.transport_types())

    async def _list(self, _: web.Request) -> web.Response:
        return web.json_response([tp.summary() for tp in self.api.transports()])

    async def _rules(self, _: web.Request) -> web.Response:
        return web.json_response(self.api.rules())

    async def _routes(self, _: web.Request) -> web.Response:
        return web.json_response(self.api.route_groups())

    async def _add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            pk = PubKey.from_hex(str(body["pk"]))
            tp_type = str(body["type"])
        except (ValueError, KeyError, TypeError, CipherError) as exc:
            return _error(400, f"bad request: {exc}")
        try:
            tp = await self.api.add_transport(pk, tp_type)
        except TransportError as exc:
            return _error(502, str(exc))
        return web.json_response(tp.summary())

    async def _remove(self, request: web.Request) -> web.Response:
        try:
            tp_id = uuid.UUID(request.match_info["id"])
        except ValueError:
            return _error(400, "bad transport id")
        try:
            await self.api.remove_transport(tp_id)
        except TransportError as exc:
            return _error(404, str(exc))
        return web.json_response({"removed": str(tp_id)})


class RPCClientError(Exception):
    """The visor answered with an error, or could not be reached."""


class RPCClient:
    """Talks to a visor's control API."""

    def __init__(self, addr: str = "localhost:3435", timeout: float = 30.0) -> None:
        host, port = split_addr(addr)
        self.base = f"http://{host}:{port}"
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as http,
                http.request(
                    method, self.base + path, data=None if body is None else json.dumps(body)
                ) as resp,
            ):
                payload = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RPCClientError(f"cannot reach the visor at {self.base}: {exc}") from exc
        try:
            doc = json.loads(payload) if payload else None
        except ValueError as exc:
            raise RPCClientError(f"bad answer from the visor: {exc}") from exc
        if resp.status >= 400:
            message = doc.get("error") if isinstance(doc, dict) else None
            raise RPCClientError(str(message or f"HTTP {resp.status}"))
        return doc
