"""Route finder service (``skywire svc rf``): graph search over the transport discovery.

* :class:`~skywire.services.rf.graph.Graph` — sans-I/O graph snapshot and the hop-count /
  latency-weighted path search.
* :class:`~skywire.services.rf.api.RouteFinder`, :func:`~.api.make_app`,
  :class:`~.api.RouteFinderServer` — the HTTP API (``POST /routes``).
* :class:`~skywire.services.rf.client.RFClient` — the typed async client.
* :class:`~skywire.services.rf.source.HttpTransportSource` — transports from a TPD over HTTP.
* :class:`~skywire.services.rf.pgsource.PostgresTransportSource` — straight from its PostgreSQL
  store (import it from its module: it needs asyncpg).
"""

from __future__ import annotations

from skywire.services.rf.api import RouteFinder, RouteFinderServer, make_app
from skywire.services.rf.client import RFClient
from skywire.services.rf.graph import (
    FoundRoute,
    Graph,
    NoRouteError,
    RouteFinderError,
    RouteNotFoundError,
    StaticTransportSource,
    TransportInfo,
    TransportNotFoundError,
    TransportSource,
    Weights,
)
from skywire.services.rf.source import HttpTransportSource

__all__ = [
    "FoundRoute",
    "Graph",
    "HttpTransportSource",
    "NoRouteError",
    "RFClient",
    "RouteFinder",
    "RouteFinderError",
    "RouteFinderServer",
    "RouteNotFoundError",
    "StaticTransportSource",
    "TransportInfo",
    "TransportNotFoundError",
    "TransportSource",
    "Weights",
    "make_app",
]
