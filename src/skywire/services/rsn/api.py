"""The setup node's HTTP surface (served over dmsghttp on dmsg port 80): ``/stats``, ``/health``,
``/metrics`` (Prometheus text: setups by outcome, setup latency, retries, requests)."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from skywire import __version__
from skywire.debug.metrics import Registry, instrument_app
from skywire.services.rsn.stats import SetupStats

__all__ = ["make_app", "setup_metrics"]


def setup_metrics(stats: SetupStats) -> Registry:
    """A registry reading ``stats`` at each scrape."""
    reg = Registry()
    p = "skywire_rsn_"
    reg.counter(
        p + "route_setups_total",
        "Route setups finished, by outcome (success or the failure class).",
        ("outcome",),
        callback=stats.outcomes,
    )
    reg.register(stats.latency_histogram)
    reg.gauge(p + "route_setups_in_flight", "Setups under way.", callback=lambda: stats.in_flight)
    reg.counter(
        p + "rollbacks_total",
        "Setups whose rules were rolled back.",
        callback=lambda: stats.rollbacks,
    )
    reg.counter(
        p + "hop_dial_retries_total",
        "Hop calls retried: dials after dmsg error 202, re-dials of a dead pooled connection.",
        ("reason",),
        callback=lambda: {"dmsg_202": stats.dial_retries, "stale_connection": stats.stale_redials},
    )
    return reg


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
    instrument_app(app, setup_metrics(stats))
    return app
