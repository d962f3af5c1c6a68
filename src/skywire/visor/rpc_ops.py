"""Operator routes of the control API: what a visor listens on, a dmsg ping, halt and reload,
and routing rules set by hand.

* ``GET /visor/ports`` — every port the visor holds, by what it is for;
* ``POST /dmsg/ping`` ``{"pk": …, "count": n}`` — dmsgctrl round trips to a key (port 7);
* ``POST /visor/halt`` — the visor stops as on SIGTERM (the answer goes out first);
* ``POST /visor/reload`` — the visor stops and starts again from its configuration file;
* ``POST /rules`` (an upstream ``RuleSummary``) and ``DELETE /rules/{key}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from skywire.cipher import CipherError, PubKey
from skywire.dmsg.errors import DmsgError
from skywire.routing.rule import Rule, RuleError, rule_from_summary

__all__ = ["OpsAPI", "add_ops_routes"]

MAX_PINGS = 100


class OpsAPI(Protocol):
    def ports(self) -> list[dict[str, Any]]: ...

    async def dmsg_ping(self, pk: PubKey, count: int) -> list[float]: ...

    def halt(self) -> None: ...

    def reload(self) -> bool:
        """Ask for a restart from the configuration file; False when there is none."""
        ...

    def save_rule(self, rule: Rule) -> None: ...

    def remove_rule(self, key: int) -> bool: ...


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

    async def reload(_: web.Request) -> web.Response:
        if not api().reload():
            return _error(409, "this visor was not started from a configuration file")
        return web.json_response({"reloading": True})

    async def add_rule(request: web.Request) -> web.Response:
        try:
            rule = rule_from_summary(await request.json())
        except (ValueError, RuleError) as exc:
            return _error(400, f"bad rule: {exc}")
        api().save_rule(rule)
        return web.json_response(rule.summary())

    async def rm_rule(request: web.Request) -> web.Response:
        try:
            key = int(request.match_info["key"])
        except ValueError:
            return _error(400, "bad route ID")
        if not api().remove_rule(key):
            return _error(404, f"no rule with route ID {key}")
        return web.json_response({"removed": key})

    app.router.add_post("/visor/reload", reload)
    app.router.add_post("/rules", add_rule)
    app.router.add_delete("/rules/{key}", rm_rule)
    app.router.add_get("/visor/ports", ports)
    app.router.add_post("/dmsg/ping", ping)
    app.router.add_post("/visor/halt", halt)
