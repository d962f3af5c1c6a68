"""What a lost transport breaks (router/breakage.py), decided from the rules alone."""

from __future__ import annotations

import uuid

from skywire.cipher import KeyPair
from skywire.router.breakage import EdgePair, assess, pair_hints
from skywire.routing.rule import (
    ConsumeRule,
    ForwardRule,
    IntermediaryForwardRule,
    RouteDescriptor,
)

LOST, OTHER, THIRD = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
DESC = RouteDescriptor(KeyPair.generate().pk, KeyPair.generate().pk, 1, 2)


def group(fwd_tp: uuid.UUID, fwd_key: int, cons_key: int) -> EdgePair:
    return EdgePair(
        ForwardRule(10**9, fwd_key, 77, fwd_tp, DESC), ConsumeRule(10**9, cons_key, DESC.invert())
    )


def test_groups_over_the_lost_transport_either_way_break_the_others_do_not() -> None:
    leaves = group(LOST, 1, 2)  # its forward rule leaves over the lost transport
    arrives = group(OTHER, 3, 4)  # its packets came in over it
    spared = group(OTHER, 5, 6)
    found = assess(LOST, [leaves, arrives, spared], [], {4: LOST, 6: THIRD})
    assert found.groups == [2, 4]
    assert found.pass_on == [] and found.remove == []


def test_passing_rules_pass_the_news_on_or_are_removed() -> None:
    onward = IntermediaryForwardRule(10**9, 10, 11, OTHER)  # arrived over the lost one
    dead_end = IntermediaryForwardRule(10**9, 12, 13, LOST)  # leaves over the lost one
    unseen = IntermediaryForwardRule(10**9, 14, 15, OTHER)  # no packet seen yet
    elsewhere = IntermediaryForwardRule(10**9, 16, 17, OTHER)
    edge_only = ConsumeRule(10**9, 18, DESC)  # a route group's: handled with its group
    found = assess(
        LOST, [], [onward, dead_end, unseen, elsewhere, edge_only], {10: LOST, 16: THIRD}
    )
    assert found.pass_on == [onward]
    assert sorted(found.remove) == [10, 12]
    assert found.groups == []


def test_a_pair_of_passing_rules_guesses_where_each_ones_packets_arrive() -> None:
    left, right = KeyPair.generate().pk, KeyPair.generate().pk
    peers = {LOST: right, OTHER: left, THIRD: right}
    towards_right = IntermediaryForwardRule(10**9, 20, 21, LOST)
    towards_left = IntermediaryForwardRule(10**9, 22, 23, OTHER)
    hints = pair_hints([towards_right, towards_left], peers.get)
    assert hints == {20: OTHER, 22: LOST}
    # with the guess, losing the right-hand link warns the left (the reply's rule passes on)
    found = assess(LOST, [], [towards_right, towards_left], hints)
    assert found.pass_on == [towards_left] and sorted(found.remove) == [20, 22]
    # no guess: one rule, three, both towards the same peer, an unknown transport, edge rules
    assert pair_hints([towards_right], peers.get) == {}
    assert pair_hints([towards_right, towards_left, towards_left], peers.get) == {}
    same_peer = IntermediaryForwardRule(10**9, 24, 25, THIRD)
    assert pair_hints([towards_right, same_peer], peers.get) == {}
    unknown = IntermediaryForwardRule(10**9, 26, 27, uuid.uuid4())
    assert pair_hints([towards_right, unknown], peers.get) == {}
    assert pair_hints([towards_right, ConsumeRule(10**9, 28, DESC)], peers.get) == {}


def test_hop_memory_is_soft_and_expires() -> None:
    from skywire.router.paths import HopMemory, first_allowed
    from skywire.routing.route import Hop

    a, m1, m2, b = (KeyPair.generate().pk for _ in range(4))
    via_m1 = [Hop(uuid.uuid4(), a, m1), Hop(uuid.uuid4(), m1, b)]
    via_m2 = [Hop(uuid.uuid4(), a, m2), Hop(uuid.uuid4(), m2, b)]
    memory = HopMemory(ttl=20.0)
    memory.remember({m1}, now=100.0)
    assert memory.avoid(110.0) == {m1}
    assert first_allowed([via_m1, via_m2], set(), memory.avoid(110.0)) == via_m2
    # the only path left crosses a remembered visor: it is still used (a soft wish)
    assert first_allowed([via_m1], set(), memory.avoid(110.0)) == via_m1
    # an excluded one is not
    assert first_allowed([via_m1], {m1}, set()) is None
    assert memory.avoid(120.0) == set()  # expired, and dropped
