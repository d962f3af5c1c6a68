"""What a lost transport breaks, decided without I/O.

When a transport goes away, every route that crossed it is dead. A visor knows, for each rule,
the transport it forwards over (``next_tp_id``) and, from the packets it has seen, the transport
the route's packets arrive on. From those two facts alone it decides:

* its own route groups (it is an end) whose forward rule leaves over the lost transport, or
  whose packets arrived over it, are broken: the app gets an error, and a Close (path broken)
  goes along the forward path if that still exists;
* a rule of a route passing through (an intermediary) whose packets arrived over the lost
  transport still has a live way forward: a Close (path broken) is sent along it, so the end
  downstream learns at once, and that end's own Close travels back to the other end;
* such a rule whose next transport is the lost one can only drop packets: it is removed.

No route has to wait for keep-alives to expire to be torn down.

Before a rule has seen a packet, where its packets will arrive is a guess (:func:`pair_hints`):
a setup node installs a visor's passing rules of one route in one call, so a batch of exactly
two, leaving towards two different peers, is that route's two directions through this visor,
and each direction's packets come in over the transport the other one leaves on. Without the
guess, a route that loses a link while its handshake is under way (no packet has come back yet)
would leave its initiator waiting for the handshake to time out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from skywire.cipher import PubKey
from skywire.routing.rule import ConsumeRule, ForwardRule, IntermediaryForwardRule, Rule

__all__ = ["Breakage", "EdgePair", "assess", "pair_hints"]


@dataclass(frozen=True)
class EdgePair:
    """One route group's two rules, as the router holds them."""

    fwd: ForwardRule
    cons: ConsumeRule


@dataclass
class Breakage:
    """What to do about one lost transport."""

    groups: list[int] = field(default_factory=list)
    """Consume keys of the route groups to break."""
    pass_on: list[IntermediaryForwardRule] = field(default_factory=list)
    """Rules along which a Close (path broken) goes out before they are removed."""
    remove: list[int] = field(default_factory=list)
    """Keys of every rule to remove (the ``pass_on`` ones included; route groups remove their
    own when they close)."""


def assess(
    lost: uuid.UUID,
    groups: Iterable[EdgePair],
    rules: Iterable[Rule],
    arrives_on: Mapping[int, uuid.UUID],
) -> Breakage:
    """What transport ``lost`` going away breaks: ``groups`` are this visor's route groups,
    ``rules`` its live rules, ``arrives_on`` the transport each rule's packets were last seen
    arriving on (by key)."""
    out = Breakage()
    for g in groups:
        if g.fwd.next_tp_id == lost or arrives_on.get(g.cons.key_route_id) == lost:
            out.groups.append(g.cons.key_route_id)
    for rule in rules:
        if not isinstance(rule, IntermediaryForwardRule):
            continue
        if rule.next_tp_id == lost:
            out.remove.append(rule.key_route_id)
        elif arrives_on.get(rule.key_route_id) == lost:
            out.pass_on.append(rule)
            out.remove.append(rule.key_route_id)
    return out


def pair_hints(
    batch: Sequence[Rule], peer_of: Callable[[uuid.UUID], PubKey | None]
) -> dict[int, uuid.UUID]:
    """Where the packets of a freshly installed batch of passing rules will arrive (by key),
    when the batch is one route's two directions through this visor: exactly two intermediary
    rules whose next transports lead to two different known peers. Otherwise no guess."""
    if len(batch) != 2:
        return {}
    a, b = batch
    if not isinstance(a, IntermediaryForwardRule) or not isinstance(b, IntermediaryForwardRule):
        return {}
    peer_a, peer_b = peer_of(a.next_tp_id), peer_of(b.next_tp_id)
    if peer_a is None or peer_b is None or peer_a == peer_b:
        return {}
    return {a.key_route_id: b.next_tp_id, b.key_route_id: a.next_tp_id}
