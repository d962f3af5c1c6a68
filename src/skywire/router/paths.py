"""Checks on the paths of a route: a chain of hops, the excluded visors, the edge rules."""

from __future__ import annotations

from collections.abc import Sequence

from skywire.cipher import PubKey
from skywire.router.config import RouteDialError
from skywire.routing.route import Hop
from skywire.routing.rule import ConsumeRule, RouteDescriptor

__all__ = ["check_chain", "consume_matches", "first_allowed"]


def check_chain(hops: Sequence[Hop], src: PubKey, dst: PubKey, which: str) -> None:
    if not hops:
        raise RouteDialError(f"{which} route has no hops")
    at = src
    for i, hop in enumerate(hops):
        if hop.src != at:
            raise RouteDialError(f"{which} hop {i + 1} ({hop.tp_id}) starts at {hop.src}, not {at}")
        at = hop.dst
    if at != dst:
        raise RouteDialError(f"{which} route ends at {at}, not {dst}")


def first_allowed(paths: list[list[Hop]], excluded: set[PubKey]) -> list[Hop] | None:
    for path in paths:
        if path and not any(h.dst in excluded for h in path[:-1]):
            return path
    return None


def consume_matches(cons: ConsumeRule, desc: RouteDescriptor) -> bool:
    """Whether an edge's Consume rule belongs to the route ``desc`` (seen from that edge).

    Upstream setup nodes give it the descriptor of the path arriving at the edge (``desc``
    inverted); earlier versions of this package's setup node gave it ``desc`` itself."""
    return cons.desc == desc.invert() or cons.desc == desc
