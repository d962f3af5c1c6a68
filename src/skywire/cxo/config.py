"""A CXO node's configuration and counters: :data:`CXO_PORTS` (the dmsg ports of Skywire's
feeds), :class:`NodeConfig` (limits and timers, frozen, given once) and :class:`NodeStats`
(counters the node and its fill update as they go).
"""

from __future__ import annotations

import dataclasses

from skywire.cxo.msg import MAX_FRAME

__all__ = ["CXO_PORTS", "NodeConfig", "NodeStats"]

#: dmsg ports of the feeds Skywire runs (skyenv); one CXO connection = one stream on the port
CXO_PORTS = {
    "telemetry": 50,
    "metrics": 51,
    "uptime": 52,
    "services": 53,
    "clients_by_server": 54,
    "all_transports": 55,
    "tp_list": 69,
    "sd_registration": 72,
}


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """Limits and timers (cxo.md §6)."""

    response_timeout: float = 59.0
    idle_timeout: float | None = 90.0
    #: RqObject requests in flight at once, over all fills of the node
    max_in_flight: int = 32
    max_heads: int = 10
    max_frame: int = MAX_FRAME
    max_object_size: int = 16 << 20
    max_filling_time: float = 600.0
    #: answer RqList
    public: bool = False
    #: keep only the last N Roots of each head (None: keep all)
    keep_roots: int | None = None
    #: require the handshake NodeID to equal the stream's authenticated key (dmsg)
    verify_node_id: bool = False


@dataclasses.dataclass
class NodeStats:
    """Counters (monotonic, except the in-flight gauge)."""

    objects_requested: int = 0
    objects_received: int = 0
    bytes_received: int = 0
    objects_served: int = 0
    roots_filled: int = 0
    roots_published: int = 0
    fills_failed: int = 0
    in_flight: int = 0
    in_flight_peak: int = 0
