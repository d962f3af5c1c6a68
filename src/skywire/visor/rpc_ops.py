"""Operator routes of the control API: what a visor listens on, a dmsg ping, and halt.

* ``GET /visor/ports`` — every port the visor holds, by what it is for;
* ``POST /dmsg/ping`` ``{"pk": …, "count": n}`` — dmsgctrl round trips to a key (port 7);
* ``POST /visor/halt`` — the visor stops as on SIGTERM (the answer goes out first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from skywire.cipher import CipherError, PubKey
from skywire.dmsg.errors import DmsgError

__all__ = ["OpsAPI", "add_ops_routes"]

MAX_PINGS = 100


class OpsAPI(Protocol):
    def ports(self) -> list[dict[str, Any]]: ...

    async def dmsg_ping(self, pk: PubKey, count: int) -> list[float]: ...

    def halt(self) -> None: ...


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def add_ops_routes(app: web.Application, api: Callable[[], OpsAPI]) -> None:
    async def ports(_: web.Request) -> web.Response:
        return web.json_response(api().ports())

    async def ping(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("a JSON object is expected")
            pk = PubKey.parse(str(body["pk"]))
            count = int(body.get("count", 1))
            if not 1 <= count <= MAX_PINGS:
                raise ValueError(f"count must be 1..{MAX_PINGS}")
        except (ValueError, KeyError, TypeError, CipherError) as exc:
            return _error(400, f"bad request: {exc}")
        try:
            rtts = await api().dmsg_ping(pk, count)
        except (DmsgError, ConnectionError, OSError, TimeoutError) as exc:
            return _error(502, f"dmsg ping {pk}: {exc or type(exc).__name__}")
        return web.json_response({"pk": pk.hex(), "rtt_ms": [round(x * 1e3, 3) for x in rtts]})

    async def halt(_: web.Request) -> web.Response:
        api().halt()
        return web.json_response({"halting": True})

    app.router.add_get("/visor/ports", ports)
    app.router.add_post("/dmsg/ping", ping)
    app.router.add_post("/visor/halt", halt)
