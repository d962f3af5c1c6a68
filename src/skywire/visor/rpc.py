"""The visor's local control API, for ``skywire cli`` (JSON over HTTP on ``cli_addr``).

The reference speaks gob net/rpc on ``localhost:3435``; this visor answers JSON on the same
address instead, so that operators can also use ``curl``. Errors are ``{"error": "..."}`` with a
4xx/5xx status.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from skywire.cipher import CipherError, PubKey
from skywire.transport.manager import TransportError

if TYPE_CHECKING:
    from skywire.visor.visor import Visor


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"invalid address {addr!r}")
    return host or "127.0.0.1", int(port)


class RPCServer:
    """Serves the visor's control API on a local TCP address."""

    def __init__(self, visor: Visor, addr: str) -> None:
        self.visor = visor
        self.host, self.port = split_addr(addr)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/visor/info", self._info)
        r.add_get("/transport-types", self._types)
        r.add_get("/transports", self._list)
        r.add_post("/transports", self._add)
        r.add_delete("/transports/{id}", self._remove)
        r.add_get("/rules", self._rules)
        r.add_get("/routes", self._routes)
        extra = getattr(self.visor, "rpc_routes", None)
        if callable(extra):
            extra(r)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response(self.visor.info())

    async def _types(self, _: web.Request) -> web.Response:
        assert self.visor.tm is not None
        return web.json_response(self.visor.tm.transport_types())

    async def _list(self, _: web.Request) -> web.Response:
        return web.json_response([tp.summary() for tp in self.visor.transports()])

    async def _rules(self, _: web.Request) -> web.Response:
        router = self.visor.router
        if router is None:
            return web.json_response([])
        now = time.monotonic()
        rows = []
        for rule in router.table.all_rules(now):
            summary = rule.summary()
            summary["key"] = rule.key_route_id
            rows.append(summary)
        return web.json_response(rows)

    async def _routes(self, _: web.Request) -> web.Response:
        router = self.visor.router
        if router is None:
            return web.json_response([])
        return web.json_response(
            [
                {
                    "remote_pk": rg.remote_pk.hex(),
                    "encrypted": rg.encrypted,
                    "latency_ms": rg.latency_ms,
                }
                for rg in router.route_groups
            ]
        )

    async def _add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            pk = PubKey.from_hex(str(body["pk"]))
            tp_type = str(body["type"])
        except (ValueError, KeyError, TypeError, CipherError) as exc:
            return _error(400, f"bad request: {exc}")
        try:
            tp = await self.visor.add_transport(pk, tp_type)
        except TransportError as exc:
            return _error(502, str(exc))
        return web.json_response(tp.summary())

    async def _remove(self, request: web.Request) -> web.Response:
        try:
            tp_id = uuid.UUID(request.match_info["id"])
        except ValueError:
            return _error(400, "bad transport id")
        try:
            await self.visor.remove_transport(tp_id)
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
