"""RoutingTable with the clock passed in: reservation, keep-alive expiry and garbage collection."""

from __future__ import annotations

import uuid

import pytest

from skywire.cipher import PubKey
from skywire.routing.rule import ConsumeRule, ForwardRule, IntermediaryForwardRule, RouteDescriptor
from skywire.routing.table import (
    MAX_ROUTE_ID,
    NoAvailableRoutesError,
    RoutingTable,
    RuleNotFoundError,
    RuleTimedOutError,
)

SECOND = 1_000_000_000
A = PubKey(b"\x02" + bytes(31) + b"\x01")
B = PubKey(b"\x03" + bytes(31) + b"\x02")
DESC = RouteDescriptor(A, B, 1, 2)
TP = uuid.UUID(int=7)
T0 = 1000.0


def test_route_ids_start_at_one_increase_and_are_never_reused() -> None:
    table = RoutingTable()
    assert table.reserve_keys(3) == [1, 2, 3]
    assert table.reserve_keys(0) == []
    assert table.reserve_keys(2) == [4, 5]
    table.save_rule(ConsumeRule(SECOND, 4, DESC), T0)
    table.del_rules([4])
    assert table.reserve_keys(1) == [6]  # a freed key is not handed out again
    assert table.last_reserved == 6
    with pytest.raises(ValueError):
        table.reserve_keys(-1)


def test_reservation_fails_before_the_counter_reaches_the_maximum() -> None:
    table = RoutingTable(start_after=MAX_ROUTE_ID - 3)
    with pytest.raises(NoAvailableRoutesError) as info:
        table.reserve_keys(3)
    assert str(info.value) == "no available routeIDs"
    assert table.last_reserved == MAX_ROUTE_ID - 3  # all or nothing
    assert table.reserve_keys(2) == [MAX_ROUTE_ID - 2, MAX_ROUTE_ID - 1]
    with pytest.raises(NoAvailableRoutesError):
        table.reserve_keys(1)
    with pytest.raises(ValueError):
        RoutingTable(start_after=MAX_ROUTE_ID)


def test_lookup_of_missing_and_expired_rules() -> None:
    table = RoutingTable()
    with pytest.raises(RuleNotFoundError):
        table.rule(1, T0)
    with pytest.raises(RuleNotFoundError):
        table.update_activity(1, T0)
    rule = ForwardRule(30 * SECOND, 1, 9, TP, DESC)
    table.save_rule(rule, T0)
    assert table.rule(1, T0 + 30.0) == rule  # idle == keep-alive is still live
    with pytest.raises(RuleTimedOutError) as info:
        table.rule(1, T0 + 30.001)
    assert "keep-alive timeout exceeded" in str(info.value)
    with pytest.raises(RuleTimedOutError):
        table.update_activity(1, T0 + 31.0)
    assert table.count() == 1  # expired, but only garbage collection removes it


def test_consume_lookups_refresh_activity_forward_lookups_do_not() -> None:
    table = RoutingTable()
    consume = ConsumeRule(10 * SECOND, 1, DESC)
    forward = ForwardRule(10 * SECOND, 2, 5, TP, DESC)
    inter = IntermediaryForwardRule(10 * SECOND, 3, 6, TP)
    for rule in (consume, forward, inter):
        table.save_rule(rule, T0)
    for t in (T0 + 8, T0 + 16):
        assert table.rule(1, t) == consume
    assert table.rule(2, T0 + 8) == forward
    with pytest.raises(RuleTimedOutError):
        table.rule(2, T0 + 16)
    table.update_activity(3, T0 + 8)  # forwarding through the rule refreshes it
    assert table.rule(3, T0 + 16) == inter
    assert table.last_activity(3) == T0 + 8
    with pytest.raises(RuleNotFoundError):
        table.last_activity(99)


def test_saving_refreshes_and_replaces() -> None:
    table = RoutingTable()
    table.save_rule(ConsumeRule(SECOND, 1, DESC), T0)
    newer = ConsumeRule(5 * SECOND, 1, DESC.invert())
    table.save_rule(newer, T0 + 100)
    assert table.rule(1, T0 + 104) == newer
    assert len(table) == 1 and 1 in table


def test_collect_garbage_removes_exactly_the_expired_rules() -> None:
    table = RoutingTable()
    short = ConsumeRule(2 * SECOND, 1, DESC)
    long = IntermediaryForwardRule(60 * SECOND, 2, 3, TP)
    zero = ForwardRule(-5, 3, 4, TP, DESC)  # negative keep-alive is stored as 0
    for rule in (short, long, zero):
        table.save_rule(rule, T0)
    assert table.collect_garbage(T0) == []
    assert table.collect_garbage(T0 + 0.5) == [zero]
    assert table.next_expiry() == T0 + 2.0
    assert table.collect_garbage(T0 + 2.0) == []
    assert table.collect_garbage(T0 + 2.5) == [short]
    assert table.all_rules(T0 + 3) == [long]
    assert table.count() == 1
    assert table.collect_garbage(T0 + 61) == [long]
    assert table.next_expiry() is None
    assert table.count() == 0


def test_rules_with_desc_and_deletion() -> None:
    table = RoutingTable()
    consume = ConsumeRule(10 * SECOND, 1, DESC)
    forward = ForwardRule(10 * SECOND, 2, 5, TP, DESC)
    other = ConsumeRule(10 * SECOND, 3, DESC.invert())
    inter = IntermediaryForwardRule(10 * SECOND, 4, 6, TP)
    for rule in (consume, forward, other, inter):
        table.save_rule(rule, T0)
    assert table.rules_with_desc(DESC, T0 + 1) == [consume, forward]
    assert table.rules_with_desc(DESC, T0 + 11) == []  # expired rules are not listed
    table.del_rules([1, 4, 99])
    assert table.all_rules(T0 + 1) == [forward, other]
    assert table.count() == 2
