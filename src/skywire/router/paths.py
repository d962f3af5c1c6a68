"""Checks on the paths of a route: a chain of hops, the excluded visors, the edge rules."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from skywire.cipher import PubKey
from skywire.router.config import RouteDialError
from skywire.routing.route import Hop
from skywire.routing.rule import ConsumeRule, RouteDescriptor

__all__ = ["HopMemory", "check_chain", "consume_matches", "first_allowed"]


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


def first_allowed(
    paths: list[list[Hop]], excluded: set[PubKey], avoid: AbstractSet[PubKey] = frozenset()
) -> list[Hop] | None:
    """The first path whose intermediaries are not ``excluded``, preferring one that also
    avoids ``avoid`` (a softer wish: used only while some path satisfies it)."""
    usable = [p for p in paths if p and not any(h.dst in excluded for h in p[:-1])]
    for path in usable:
        if not any(h.dst in avoid for h in path[:-1]):
            return path
    return usable[0] if usable else None


class HopMemory:
    """Visors that just failed as intermediaries, remembered for ``ttl`` seconds by every
    dial of this router, so that the next dial does not pay for the same dead hop again."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._until: dict[PubKey, float] = {}

    def remember(self, pks: set[PubKey], now: float) -> None:
        for pk in pks:
            self._until[pk] = now + self.ttl

    def forget(self, pk: PubKey) -> None:
        self._until.pop(pk, None)

    def avoid(self, now: float) -> set[PubKey]:
        """The visors still remembered (expired ones are dropped)."""
        for pk in [pk for pk, until in self._until.items() if until <= now]:
            del self._until[pk]
        return set(self._until)


def consume_matches(cons: ConsumeRule, desc: RouteDescriptor) -> bool:
    """Whether an edge's Consume rule belongs to the route ``desc`` (seen from that edge).

    Upstream setup nodes give it the descriptor of the path arriving at the edge (``desc``
    inverted); earlier versions of this package's setup node gave it ``desc`` itself."""
    return cons.desc == desc.invert() or cons.desc == desc
