"""The router's configuration, its errors, and what it needs of a route finder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from skywire.cipher import PubKey
from skywire.router.route_group import (
    DEFAULT_CLOSE_WAIT,
    DEFAULT_HANDSHAKE_RETRANSMIT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    RouteGroupConfig,
)
from skywire.router.setup_client import SETUP_TIMEOUT
from skywire.routing.route import Hop, PathEdges

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "EPHEMERAL_PORTS",
    "RouteDialError",
    "RouteFinderClient",
    "RouterConfig",
]

DEFAULT_KEEP_ALIVE = 30.0
"""Route keep-alive in seconds ([2024] ``DefaultRouteKeepAlive``)."""
EPHEMERAL_PORTS = range(49152, 65536)


class RouteFinderClient(Protocol):
    """The part of :class:`skywire.services.rf.client.RFClient` the router uses; it raises
    :class:`~skywire.routing.route.RouteQueryError`, ``OSError`` or ``TimeoutError``."""

    async def find_routes(
        self,
        edges: Sequence[PathEdges | tuple[PubKey, PubKey]],
        *,
        min_hops: int = ...,
        max_hops: int = ...,
        num_routes: int | None = ...,
    ) -> dict[PathEdges, list[list[Hop]]]: ...


class RouteDialError(ConnectionError):
    """No route to the remote app could be set up."""


@dataclass(frozen=True)
class RouterConfig:
    setup_nodes: tuple[PubKey, ...] = ()
    """Setup nodes this visor asks for routes and trusts on port 136."""
    min_hops: int = 1
    max_hops: int = 50
    keep_alive: float = DEFAULT_KEEP_ALIVE
    encrypt: bool = True
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    handshake_retransmit: float = DEFAULT_HANDSHAKE_RETRANSMIT
    ping_interval: float = DEFAULT_PING_INTERVAL
    close_wait: float = DEFAULT_CLOSE_WAIT
    gc_interval: float = 5.0
    setup_timeout: float = SETUP_TIMEOUT
    setup_attempts: int = 3
    """Whole-route attempts of one dial (new route each time, failed intermediaries excluded)."""
    rf_retry_interval: float = 0.5
    rf_retry_total: float = 2.0
    route_candidates: int = 8
    """Paths asked of the route finder per direction, so that excluded ones can be skipped."""
    failed_hop_memory: float = 20.0
    """Seconds every dial avoids an intermediary that just failed one (while another path
    exists); the route finder drops a gone visor's transports within seconds anyway."""
    accept_backlog: int = 32
    serve_gateway: bool = True

    def group_config(self) -> RouteGroupConfig:
        return RouteGroupConfig(
            encrypt=self.encrypt,
            handshake_timeout=self.handshake_timeout,
            handshake_retransmit=self.handshake_retransmit,
            ping_interval=self.ping_interval,
            close_wait=self.close_wait,
        )
