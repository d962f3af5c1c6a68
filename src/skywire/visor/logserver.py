"""The visor's log server on dmsg port 80, as upstream's: ``/health`` for anyone;
``/node-info`` (the visor's summary) and ``/visor.log`` (its log file) for hypervisors, the
dmsgpty whitelist and the survey whitelist; ``/debug/*`` for the survey whitelist. Everyone else
gets 403 with the reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from skywire import __version__
from skywire.debug import caller_key, default_ring, mount_debug
from skywire.debug.mount import Gate
from skywire.visor.logfile import LogFile

__all__ = ["LOG_SERVER_PORT", "logserver_app"]

LOG_SERVER_PORT = 80


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _forbidden(request: web.Request, what: str) -> web.Response:
    pk = caller_key(request)
    who = str(pk) if pk is not None else "a caller without a dmsg key"
    return web.Response(status=403, text=f"forbidden: {who} may not read {what} of this visor\n")


def logserver_app(
    *,
    info: Callable[[], dict[str, Any]],
    log_file: LogFile | None,
    readers: Gate,
    surveyors: Gate,
    started: float | None = None,
) -> web.Application:
    """``readers`` may read node info and the log; ``surveyors`` may use ``/debug/*``."""
    t0 = time.time() if started is None else started

    async def health(request: web.Request) -> web.Response:
        body = {"build_info": {"version": __version__}, "started_at": _rfc3339(t0)}
        return web.json_response(body)

    async def node_info(request: web.Request) -> web.Response:
        if not readers(caller_key(request)):
            return _forbidden(request, "the node info")
        return web.json_response(info(), dumps=lambda o: json.dumps(o, default=str))

    async def visor_log(request: web.Request) -> web.StreamResponse:
        if not readers(caller_key(request)):
            return _forbidden(request, "the log")
        if log_file is None:
            return web.Response(
                status=404, text="this visor writes no log file (it was not started as a process)\n"
            )
        rotated = request.query.get("rotated", "") in ("1", "true", "yes")
        files = log_file.files(rotated=rotated)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        for path in files:
            data = await asyncio.to_thread(path.read_bytes)
            await resp.write(data)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/node-info", node_info)
    app.router.add_get("/visor.log", visor_log)
    mount_debug(app, allowed=surveyors, ring=default_ring())
    return app
