"""The dashboard's per-visor REST, under ``/api/visors``, with upstream's names where they fit
(``pkg/visor/hypervisor.go``). Each call is proxied to the managed visor's control API over its
link (:class:`VisorProxy`); a visor's own error status and message are passed on.

=======================================  ============================================
``GET /api/visors``                      every connected visor: key, version, uptime…
``GET /api/visors-summary``              the same with each one's dmsg sessions
``GET /api/visors/{pk}[/summary]``       one visor (summary: with dmsg latency)
``GET /api/visors/{pk}/uptime``          ``{"uptime_s"}``
``GET|POST /api/visors/{pk}/transports``  list; add ``{"remote_pk", "transport_type"}``
``GET|DELETE …/transports/{tid}``         one transport; remove it
``GET …/transport-types``                 the types this visor can dial
``GET …/routes``, ``…/routegroups``       routing rules; route groups
``GET …/apps``, ``GET|PUT …/apps/{app}``  apps; ``{"status": 1|0, "autostart": bool}``
``GET …/apps/{app}/logs?n=``              ``{"logs": [...]}``
``GET …/runtime-logs?n=``                 the visor's log ``{"source", "lines"}``
``GET …/ports``, ``POST …/shutdown``      ports held; halt the visor
=======================================  ============================================
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from aiohttp import web

from skywire.cipher import CipherError, PubKey
from skywire.dmsg.http.client import DmsgTransport
from skywire.visor.hypervisor.errors import BadRequestError, VisorCallError
from skywire.visor.hypervisor.link import HYPERVISOR_PORT, VisorLink
from skywire.wire.stream import ByteStream

__all__ = ["Directory", "VisorProxy", "add_visor_routes", "visor_pk"]

OVERVIEW_TIMEOUT = 5.0


class Directory(Protocol):
    """The connected visors (:class:`~skywire.visor.hypervisor.link.LinkServer`)."""

    def visors(self) -> list[VisorLink]: ...

    def get(self, pk: PubKey) -> VisorLink: ...

    async def dial(self, pk: PubKey, port: int) -> ByteStream: ...


class VisorProxy:
    """HTTP to a managed visor's control API over its link; ``await aclose()`` when done."""

    def __init__(self, directory: Directory, timeout: float = 60.0) -> None:
        self.directory = directory
        self._http = httpx.AsyncClient(
            transport=DmsgTransport(directory.dial), timeout=httpx.Timeout(timeout, connect=5.0)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, pk: PubKey, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, decoded JSON)``; :class:`VisorCallError` (502) when the visor cannot be
        reached, :class:`~.errors.VisorOfflineError` (404) when it is not connected."""
        self.directory.get(pk)
        url = f"dmsg://{pk.hex()}:{HYPERVISOR_PORT}{path}"
        try:
            resp = await self._http.request(
                method, url, content=None if body is None else json.dumps(body).encode()
            )
        except httpx.TransportError as exc:
            raise VisorCallError(f"visor {pk}: {exc or type(exc).__name__}") from exc
        try:
            return resp.status_code, (resp.json() if resp.content else None)
        except ValueError as exc:
            raise VisorCallError(f"visor {pk}: the answer is not JSON ({exc})") from exc

    async def get(self, pk: PubKey, path: str) -> Any:
        """The JSON of a GET that must succeed (a visor's error becomes :class:`VisorCallError`
        with its status)."""
        return await self.ok(pk, "GET", path)

    async def ok(self, pk: PubKey, method: str, path: str, body: Any = None) -> Any:
        status, doc = await self.call(pk, method, path, body)
        if status >= 400:
            message = doc.get("error") if isinstance(doc, dict) else None
            raise VisorCallError(str(message or f"visor {pk}: HTTP {status}"), status)
        return doc


def visor_pk(request: web.Request) -> PubKey:
    try:
        return PubKey.from_hex(request.match_info["pk"])
    except (CipherError, ValueError) as exc:
        raise BadRequestError(f"not a public key: {request.match_info['pk']!r}") from exc


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequestError(f"the body must be a JSON object ({exc})") from exc
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


def _count(request: web.Request, default: int = 200) -> int:
    try:
        return max(1, min(int(request.query.get("n", str(default))), 10_000))
    except ValueError as exc:
        raise BadRequestError("n must be a whole number") from exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_visor_routes(app: web.Application, proxy: VisorProxy) -> None:
    directory = proxy.directory

    async def overview(link: VisorLink, *, dmsg: bool = False) -> dict[str, Any]:
        row: dict[str, Any] = {
            "pk": link.pk.hex(),
            "is_hypervisor": link.session is None,
            "online": True,
            "connected_since": link.since,
        }
        try:
            async with asyncio.timeout(OVERVIEW_TIMEOUT):
                info = await proxy.get(link.pk, "/visor/info")
                if dmsg:
                    row["dmsg"] = await proxy.get(link.pk, "/visor/dmsg")
        except (VisorCallError, ConnectionError, TimeoutError) as exc:
            row["error"] = str(exc) or type(exc).__name__
            return row
        for key in ("version", "uptime_s", "transports", "dmsg_servers", "transport_types"):
            row[key] = info.get(key)
        return row

    async def visors(_: web.Request) -> web.Response:
        rows = await asyncio.gather(*(overview(v) for v in directory.visors()))
        return web.json_response(rows)

    async def visors_summary(_: web.Request) -> web.Response:
        rows = await asyncio.gather(*(overview(v, dmsg=True) for v in directory.visors()))
        return web.json_response(rows)

    async def visor(request: web.Request) -> web.Response:
        return web.json_response(await overview(directory.get(visor_pk(request))))

    async def summary(request: web.Request) -> web.Response:
        pk = visor_pk(request)
        link = directory.get(pk)
        info, dmsg = await asyncio.gather(
            proxy.get(pk, "/visor/info"), proxy.get(pk, "/visor/dmsg")
        )
        return web.json_response(
            {
                "overview": info,
                "dmsg": dmsg,
                "is_hypervisor": link.session is None,
                "connected_since": link.since,
            }
        )

    async def uptime(request: web.Request) -> web.Response:
        info = await proxy.get(visor_pk(request), "/visor/info")
        return web.json_response({"uptime_s": info.get("uptime_s")})

    def passthrough(method: str, path: Callable[[web.Request], str]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            body = await _body(request) if request.can_read_body else None
            status, doc = await proxy.call(visor_pk(request), method, path(request), body)
            return web.json_response(doc, status=status)

        return handler

    async def add_transport(request: web.Request) -> web.Response:
        body = await _body(request)
        remote = body.get("remote_pk", body.get("pk"))
        tp_type = body.get("transport_type", body.get("type"))
        if not isinstance(remote, str) or not isinstance(tp_type, str) or not tp_type:
            raise BadRequestError('the body must be {"remote_pk": "<hex>", "transport_type": …}')
        try:
            PubKey.from_hex(remote.strip())
        except (CipherError, ValueError) as exc:
            raise BadRequestError(f"remote_pk is not a public key: {remote!r}") from exc
        status, doc = await proxy.call(
            visor_pk(request), "POST", "/transports", {"pk": remote.strip(), "type": tp_type}
        )
        return web.json_response(doc, status=status)

    async def transport(request: web.Request) -> web.Response:
        tid = request.match_info["tid"]
        for tp in await proxy.get(visor_pk(request), "/transports"):
            if tp.get("id") == tid:
                return web.json_response(tp)
        raise VisorCallError(f"no transport {tid}", 404)

    async def app_status(pk: PubKey, name: str) -> dict[str, Any]:
        for app_doc in await proxy.get(pk, "/apps"):
            if app_doc.get("name") == name:
                return dict(app_doc)
        raise VisorCallError(f"no app named {name!r}", 404)

    async def get_app(request: web.Request) -> web.Response:
        return web.json_response(await app_status(visor_pk(request), request.match_info["app"]))

    async def put_app(request: web.Request) -> web.Response:
        pk, name = visor_pk(request), request.match_info["app"]
        body = await _body(request)
        status, autostart = body.get("status"), body.get("autostart")
        if status not in (None, 0, 1) or not isinstance(autostart, bool | None):
            raise BadRequestError('the body is {"status": 0|1, "autostart": true|false}')
        where = f"/apps/{quote(name, safe='')}"
        if autostart is not None:
            await proxy.ok(pk, "POST", f"{where}/autostart", {"on": autostart})
        if status is not None:
            await proxy.ok(pk, "POST", f"{where}/{'start' if status == 1 else 'stop'}")
        return web.json_response(await app_status(pk, name))

    async def app_logs(request: web.Request) -> web.Response:
        name = quote(request.match_info["app"], safe="")
        doc = await proxy.get(visor_pk(request), f"/apps/{name}/logs?n={_count(request)}")
        return web.json_response({"logs": doc.get("lines", [])})

    async def runtime_logs(request: web.Request) -> web.Response:
        return web.json_response(
            await proxy.get(visor_pk(request), f"/visor/log?n={_count(request)}")
        )

    def fixed(path: str) -> Callable[[web.Request], str]:
        return lambda _: path

    r = app.router
    base = "/api/visors/{pk}"
    r.add_get("/api/visors", visors)
    r.add_get("/api/visors-summary", visors_summary)
    r.add_get(base, visor)
    r.add_get(f"{base}/summary", summary)
    r.add_get(f"{base}/uptime", uptime)
    r.add_get(f"{base}/transport-types", passthrough("GET", fixed("/transport-types")))
    r.add_get(f"{base}/transports", passthrough("GET", fixed("/transports")))
    r.add_post(f"{base}/transports", add_transport)
    r.add_get(f"{base}/transports/{{tid}}", transport)
    r.add_delete(
        f"{base}/transports/{{tid}}",
        passthrough("DELETE", lambda rq: f"/transports/{quote(rq.match_info['tid'], safe='')}"),
    )
    r.add_get(f"{base}/routes", passthrough("GET", fixed("/rules")))
    r.add_get(f"{base}/routegroups", passthrough("GET", fixed("/routes")))
    r.add_get(f"{base}/apps", passthrough("GET", fixed("/apps")))
    r.add_get(f"{base}/apps/{{app}}", get_app)
    r.add_put(f"{base}/apps/{{app}}", put_app)
    r.add_get(f"{base}/apps/{{app}}/logs", app_logs)
    r.add_get(f"{base}/runtime-logs", runtime_logs)
    r.add_get(f"{base}/ports", passthrough("GET", fixed("/visor/ports")))
    r.add_post(f"{base}/shutdown", passthrough("POST", fixed("/visor/halt")))
