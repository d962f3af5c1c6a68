"""What a visor serves to its hypervisor over the link: its control API (the same aiohttp
application ``skywire cli`` talks to, :class:`~skywire.visor.rpc.RPCServer`) plus two routes
the dashboard needs and the CLI does not:

* ``GET /visor/dmsg`` — the dmsg servers this visor has sessions with, each with the round
  trip of a yamux ping on that session (``latency_ms``, null when it went unanswered);
* ``GET /visor/log?n=`` — the last ``n`` lines of the visor's log: its log file when it writes
  one (``skywire visor`` does), else the process's in-memory ring (``/debug/log``'s).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from skywire.cipher import PubKey
from skywire.debug import default_ring
from skywire.visor.logfile import LogFile
from skywire.visor.rpc import RPCServer, VisorAPI

__all__ = ["MAX_LOG_LINES", "ManagedVisor", "control_app"]

MAX_LOG_LINES = 5000
PING_TIMEOUT = 3.0


class PingableSession(Protocol):
    async def ping(self) -> float: ...


class SessionsLike(Protocol):
    @property
    def sessions(self) -> Mapping[PubKey, PingableSession]: ...


class ManagedVisor(VisorAPI, Protocol):
    """The visor as its hypervisor link needs it (``skywire.visor.visor.Visor``)."""

    @property
    def dmsg(self) -> SessionsLike | None: ...

    @property
    def log_file(self) -> LogFile | None: ...


def _tail(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=n)]


async def _ping(session: PingableSession) -> float | None:
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            return await session.ping()
    except (ConnectionError, TimeoutError, OSError):
        return None


def control_app(visor: ManagedVisor) -> web.Application:
    """The control API with the dashboard's two routes (a new application each call)."""
    app = RPCServer(visor, "127.0.0.1:0").make_app()

    async def dmsg_sessions(_: web.Request) -> web.Response:
        client = visor.dmsg
        sessions = dict(client.sessions) if client is not None else {}
        rtts = await asyncio.gather(*(_ping(s) for s in sessions.values()))
        rows: list[dict[str, Any]] = [
            {"server": pk.hex(), "latency_ms": None if rtt is None else round(rtt * 1e3, 3)}
            for pk, rtt in zip(sessions, rtts, strict=True)
        ]
        return web.json_response(rows)

    async def visor_log(request: web.Request) -> web.Response:
        try:
            n = int(request.query.get("n", "200"))
        except ValueError:
            return web.json_response({"error": "n must be a whole number"}, status=400)
        n = max(1, min(n, MAX_LOG_LINES))
        log_file = visor.log_file
        if log_file is not None and log_file.path.is_file():
            lines = await asyncio.to_thread(_tail, log_file.path, n)
            source = str(log_file.path)
        else:
            lines = default_ring().lines(n)
            source = "memory (this process's log ring)"
        return web.json_response({"source": source, "lines": lines})

    app.router.add_get("/visor/dmsg", dmsg_sessions)
    app.router.add_get("/visor/log", visor_log)
    return app
