"""Routing data plane, sans-I/O: packets, rules, route descriptors, hops and the routing table.

* :mod:`~skywire.routing.packet` — :class:`Packet` codec, builders and payload parsers.
* :mod:`~skywire.routing.rule` — Consume / Forward / IntermediaryForward rules and the
  70-byte :class:`RouteDescriptor`, byte-identical with upstream.
* :mod:`~skywire.routing.route` — :class:`Hop` and :class:`PathEdges`.
* :mod:`~skywire.routing.table` — :class:`RoutingTable` (route ID reservation, keep-alive
  expiry with the clock passed in).
"""

from __future__ import annotations

from skywire.routing.packet import (
    Capability,
    CloseCode,
    Packet,
    PacketDecoder,
    PacketError,
    PacketType,
    PayloadTooBigError,
)
from skywire.routing.route import Hop, PathEdges, RouteFormatError
from skywire.routing.rule import (
    ConsumeRule,
    ForwardRule,
    IntermediaryForwardRule,
    RouteDescriptor,
    Rule,
    RuleError,
    RuleType,
    parse_rule,
)
from skywire.routing.table import (
    NoAvailableRoutesError,
    RoutingTable,
    RoutingTableError,
    RuleNotFoundError,
    RuleTimedOutError,
)

__all__ = [
    "Capability",
    "CloseCode",
    "ConsumeRule",
    "ForwardRule",
    "Hop",
    "IntermediaryForwardRule",
    "NoAvailableRoutesError",
    "Packet",
    "PacketDecoder",
    "PacketError",
    "PacketType",
    "PathEdges",
    "PayloadTooBigError",
    "RouteDescriptor",
    "RouteFormatError",
    "RoutingTable",
    "RoutingTableError",
    "Rule",
    "RuleError",
    "RuleNotFoundError",
    "RuleTimedOutError",
    "RuleType",
    "parse_rule",
]
