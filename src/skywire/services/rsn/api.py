"""The setup node's HTTP surface (served over dmsghttp on dmsg port 80): ``/stats``, ``/health``."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from skywire import __version__
from skywire.services.rsn.stats import SetupStats

__all__ = ["make_app"]


def make_app(stats: SetupStats, *, started: float | None = None) -> web.Application:
    t0 = time.time() if started is None else started

    async def get_stats(request: web.Request) -> web.Response:
        return web.Response(
            body=json.dumps(stats.snapshot()).encode(), content_type="application/json"
        )

    async def health(request: web.Request) -> web.Response:
        body = {
            "build_info": {"version": __version__},
            "started_at": t0,
            "tasks": len(asyncio.all_tasks()),
        }
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/health", health)
    return app
