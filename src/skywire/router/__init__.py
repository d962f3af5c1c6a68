"""Router: forwarding by rule, route groups, dialing and accepting routes, setup RPC.

* :mod:`~skywire.router.router` — :class:`Router` (packet handler, routing table GC,
  ``dial_routes`` / ``listen``), :class:`RouterConfig`.
* :mod:`~skywire.router.route_group` — :class:`RouteGroup` (a ByteStream over a route, Noise KK
  when both ends want it) and its sans-I/O cores :class:`RouteHandshake`, :class:`RouteTimers`.
* :mod:`~skywire.router.setup_client` — route setup messages and the visor → setup node client.
* :mod:`~skywire.router.gateway` — ``RPCGateway`` (dmsg port 136) served to trusted setup nodes.
* :mod:`~skywire.router.stats` — :class:`RouterStats`: packets, dials, setups by outcome.
"""

from __future__ import annotations

from skywire.router.gateway import GATEWAY_PORT, Gateway, gateway_server
from skywire.router.route_group import (
    RouteClosedError,
    RouteGroup,
    RouteGroupConfig,
    RouteHandshake,
    RouteHandshakeError,
    RouteTimers,
)
from skywire.router.router import RouteDialError, RouteListener, Router, RouterConfig
from skywire.router.setup_client import (
    SETUP_PORT,
    BidirectionalRoute,
    EdgeRules,
    RouteSetupError,
    RoutingFailure,
    SetupClient,
)

__all__ = [
    "GATEWAY_PORT",
    "SETUP_PORT",
    "BidirectionalRoute",
    "EdgeRules",
    "Gateway",
    "RouteClosedError",
    "RouteDialError",
    "RouteGroup",
    "RouteGroupConfig",
    "RouteHandshake",
    "RouteHandshakeError",
    "RouteListener",
    "RouteSetupError",
    "RouteTimers",
    "Router",
    "RouterConfig",
    "RoutingFailure",
    "SetupClient",
    "gateway_server",
]
