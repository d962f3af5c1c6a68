"""What the visor's ``GET /metrics`` (on the control port) shows: a registry reading the
transport manager, the router and the dmsg client at each scrape, so nothing is counted twice.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

from skywire.debug.metrics import Registry
from skywire.dmsg.client import Client
from skywire.router import Router
from skywire.transport.manager import TransportManager

__all__ = ["visor_metrics"]


def visor_metrics(
    tm: TransportManager,
    router: Router,
    dmsg: Client,
    *,
    started: float,
    clock: Callable[[], float] = time.time,
) -> Registry:
    """A fresh registry over the visor's parts (``started``: the visor's start, by ``clock``)."""
    reg, p, st = Registry(), "skywire_visor_", router.stats

    def transports_by_type() -> dict[str, int]:
        counts = dict.fromkeys(tm.transport_types(), 0)
        counts.update(collections.Counter(tp.type for tp in tm.transports.values()))
        return counts

    reg.gauge(p + "transports", "Transports up, by type.", ("type",), callback=transports_by_type)
    reg.gauge(p + "route_groups", "Route groups open.", callback=lambda: len(router.route_groups))
    reg.gauge(p + "rules", "Routing rules stored.", callback=router.table.count)
    reg.gauge(p + "dmsg_sessions", "dmsg server sessions.", callback=lambda: len(dmsg.sessions))
    reg.counter(
        p + "route_setups_total",
        "Route setup attempts this visor dialled, by outcome.",
        ("outcome",),
        callback=st.setup_outcomes,
    )
    reg.register(st.setup_seconds)
    reg.counter(p + "route_dials_total", "Routes dialled.", callback=lambda: st.dials)
    reg.counter(
        p + "route_dial_failures_total",
        "Route dials that failed (every attempt).",
        callback=lambda: st.dial_failures,
    )
    reg.counter(
        p + "packets_total",
        "Route packets handled, by what became of them.",
        ("outcome",),
        callback=lambda: {
            "forwarded": st.forwarded,
            "delivered": st.delivered,
            "dropped": st.dropped,
        },
    )
    reg.counter(
        p + "routes_broken_total",
        "Routes torn down because a transport of theirs went away.",
        callback=lambda: st.routes_broken,
    )
    reg.gauge(
        p + "uptime_seconds", "Seconds since the visor started.", callback=lambda: clock() - started
    )
    return reg
