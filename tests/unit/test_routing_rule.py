"""Rules and route descriptors against the upstream Go vectors (routing.json, gob.json)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import PubKey
from skywire.routing.route import Hop, PathEdges, RouteFormatError
from skywire.routing.rule import (
    CONSUME_RULE_SIZE,
    FORWARD_RULE_SIZE,
    INTERMEDIARY_RULE_SIZE,
    ConsumeRule,
    ForwardRule,
    IntermediaryForwardRule,
    RouteDescriptor,
    Rule,
    RuleError,
    RuleTooShortError,
    RuleType,
    UnknownRuleTypeError,
    parse_rule,
    rule_from_summary,
    summary_json,
)
from skywire.wire.gob import gob_decode, gob_encode
from skywire.wire.gob_types import BIDIRECTIONAL_ROUTE, EDGE_RULES, ROUTE_DESCRIPTOR, RULES
from tests.conftest import load_vectors

VECTORS = load_vectors("routing")
RULE_CASE = next(c for c in VECTORS["cases"] if c["kind"] == "rule")
RULES_BY_NAME: dict[str, dict[str, Any]] = {it["name"]: it for it in RULE_CASE["items"]}
(DESC_ITEM,) = next(c for c in VECTORS["cases"] if c["kind"] == "route_descriptor")["items"]
GOB = {c["name"]: c for c in load_vectors("gob")["cases"]}

SRC = PubKey.from_hex(DESC_ITEM["src_pk"])
DST = PubKey.from_hex(DESC_ITEM["dst_pk"])
DESC = RouteDescriptor(SRC, DST, DESC_ITEM["src_port"], DESC_ITEM["dst_port"])
TP = uuid.UUID(RULE_CASE["next_tid_used"])
KEEP_ALIVE = 30_000_000_000

BUILT: dict[str, Rule] = {
    "consume": ConsumeRule(KEEP_ALIVE, 8, DESC),
    "forward": ForwardRule(KEEP_ALIVE, 7, 300, TP, DESC),
    "intermediary_forward": IntermediaryForwardRule(KEEP_ALIVE, 5, 10, TP),
    "consume_negative_keepalive": ConsumeRule(-1, 1, DESC.invert()),
}


def test_every_rule_vector_is_covered() -> None:
    assert set(BUILT) == set(RULES_BY_NAME)


@pytest.mark.parametrize("name", sorted(RULES_BY_NAME))
def test_rule_vector(name: str) -> None:
    item = RULES_BY_NAME[name]
    raw = bytes.fromhex(item["bytes"])
    assert len(raw) == item["len"]
    built = BUILT[name]
    assert built.to_bytes() == raw
    parsed = parse_rule(raw)
    assert parsed == built
    assert parsed.to_bytes() == raw
    assert str(parsed) == item["string"]
    assert summary_json(parsed) == item["summary_json"]
    assert rule_from_summary(json.loads(item["summary_json"])) == built


def test_rule_sizes_and_padding() -> None:
    assert (CONSUME_RULE_SIZE, FORWARD_RULE_SIZE, INTERMEDIARY_RULE_SIZE) == (83, 120, 50)
    assert BUILT["forward"].to_bytes()[103:] == bytes(17)
    assert BUILT["intermediary_forward"].to_bytes()[33:] == bytes(17)
    assert BUILT["consume_negative_keepalive"].keep_alive == 0
    assert BUILT["forward"].rule_type is RuleType.FORWARD
    assert RuleType.CONSUME.go_name == "Consume"


def test_route_descriptor_vector() -> None:
    raw = bytes.fromhex(DESC_ITEM["bytes"])
    assert DESC.to_bytes() == raw
    assert RouteDescriptor.from_bytes(raw) == DESC
    assert DESC.invert().to_bytes().hex() == DESC_ITEM["inverted_bytes"]
    assert DESC.invert().invert() == DESC
    assert str(DESC) == DESC_ITEM["string"]
    with pytest.raises(RuleError):
        RouteDescriptor.from_bytes(raw[:-1])
    with pytest.raises(RuleError):
        RouteDescriptor(SRC, DST, 65536, 1)


def test_route_descriptor_gob_vector() -> None:
    case = GOB["route_descriptor"]
    assert gob_encode(DESC.to_bytes(), ROUTE_DESCRIPTOR).hex() == case["gob"]
    value = gob_decode(bytes.fromhex(case["gob"]), ROUTE_DESCRIPTOR)
    assert RouteDescriptor.from_bytes(value) == DESC


@pytest.mark.parametrize("name", ["add_edge_rules_arg", "dial_route_group_reply"])
def test_edge_rules_gob_vectors_hold_parseable_rules(name: str) -> None:
    raw = bytes.fromhex(GOB[name]["gob"])
    value = gob_decode(raw, EDGE_RULES)
    desc = RouteDescriptor.from_bytes(value["Desc"])
    forward = parse_rule(value["Forward"])
    reverse = parse_rule(value["Reverse"])
    assert isinstance(forward, ForwardRule)
    assert isinstance(reverse, ConsumeRule)
    # These values are fixed by the vector generator's handlers (not made by GenerateRules,
    # whose Consume rule carries EdgeRules.Desc itself; see test_rsn): both rules here carry
    # EdgeRules.Desc inverted.
    assert forward.desc == reverse.desc == desc.invert()
    rebuilt = {
        "Desc": desc.to_bytes(),
        "Forward": forward.to_bytes(),
        "Reverse": reverse.to_bytes(),
    }
    assert gob_encode(rebuilt, EDGE_RULES) == raw


def test_intermediary_rules_gob_vector() -> None:
    raw = bytes.fromhex(GOB["add_intermediary_rules_arg"]["gob"])
    rules = [parse_rule(r) for r in gob_decode(raw, RULES)]
    assert rules and all(isinstance(r, IntermediaryForwardRule) for r in rules)
    assert gob_encode([r.to_bytes() for r in rules], RULES) == raw


def test_bidirectional_route_gob_vector_hops() -> None:
    raw = bytes.fromhex(GOB["dial_route_group_arg"]["gob"])
    value = gob_decode(raw, BIDIRECTIONAL_ROUTE)
    desc = RouteDescriptor.from_bytes(value["Desc"])
    forward = [Hop.from_gob(h) for h in value["Forward"]]
    reverse = [Hop.from_gob(h) for h in value["Reverse"]]
    assert forward[0].src == desc.src_pk == reverse[-1].dst
    assert reverse[0].src == desc.dst_pk == forward[-1].dst
    again = dict(
        value, Forward=[h.to_gob() for h in forward], Reverse=[h.to_gob() for h in reverse]
    )
    assert gob_encode(again, BIDIRECTIONAL_ROUTE) == raw


def test_hop_json_and_path_edges_text() -> None:
    hop = Hop(TP, SRC, DST)
    assert hop.to_json() == {"TpID": str(TP), "From": SRC.hex(), "To": DST.hex()}
    assert Hop.from_json(hop.to_json()) == hop
    edges = PathEdges(SRC, DST)
    assert edges.text() == f"{SRC.hex()}:{DST.hex()}"
    assert PathEdges.parse(edges.text()) == edges
    for bad in ("", SRC.hex(), f"{SRC.hex()}-{DST.hex()}", f"{SRC.hex()}:{'zz' * 33}"):
        with pytest.raises(RouteFormatError):
            PathEdges.parse(bad)
    bad_hops: list[Any] = [{}, [], {"TpID": "x", "From": SRC.hex(), "To": DST.hex()}, {"TpID": 1}]
    for obj in bad_hops:
        with pytest.raises(RouteFormatError):
            Hop.from_json(obj)


def test_parse_errors() -> None:
    with pytest.raises(RuleTooShortError):
        parse_rule(bytes(12))
    with pytest.raises(UnknownRuleTypeError) as info:
        parse_rule(bytes(8) + b"\x03" + bytes(80))
    assert str(info.value) == "invalid rule: Unknown(3)"
    forward = BUILT["forward"].to_bytes()
    assert parse_rule(forward[:103]) == BUILT["forward"]  # upstream ignores the padding
    with pytest.raises(RuleTooShortError):
        parse_rule(forward[:102])
    with pytest.raises(RuleTooShortError):
        parse_rule(BUILT["consume"].to_bytes()[:82])
    with pytest.raises(RuleError):
        ConsumeRule(1, 2**32, DESC)
    with pytest.raises(RuleError):
        ForwardRule(1 << 63, 1, 1, TP, DESC)


@pytest.mark.parametrize(
    "summary",
    [
        [],
        {"rule_type": 7},
        {"rule_type": 0},
        {"rule_type": 0, "app_fields": {"route_descriptor": {}}, "forward_fields": {}},
        {"rule_type": 1, "forward_fields": {"next_tid": "nope"}},
        {"rule_type": 2, "intermediary_forward_fields": {"next_rid": "1"}},
        {"rule_type": 0, "app_fields": {"route_descriptor": {"src_pk": "ab"}}},
        {"rule_type": 0, "app_fields": {"route_descriptor": []}},
        {"rule_type": True, "app_fields": {}},
    ],
)
def test_bad_summaries_raise_rule_errors(summary: Any) -> None:
    with pytest.raises(RuleError):
        rule_from_summary(summary)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=130))
def test_fuzz_parse_raises_only_rule_errors(data: bytes) -> None:
    try:
        rule = parse_rule(data)
    except RuleError:
        return
    assert parse_rule(rule.to_bytes()) == rule


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(RULES_BY_NAME)), st.data())
def test_fuzz_truncated_rules_are_too_short(name: str, data: st.DataObject) -> None:
    raw = bytes.fromhex(RULES_BY_NAME[name]["bytes"])
    minimum = {0: 83, 1: 103, 2: 33}[raw[8]]
    cut = data.draw(st.integers(0, minimum - 1))
    with pytest.raises(RuleTooShortError):
        parse_rule(raw[:cut])


KEYS = st.sampled_from([SRC, DST, PubKey.NULL])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, (1 << 63) - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.uuids(),
    st.binary(min_size=33, max_size=33),
    KEYS,
    st.integers(0, 65535),
    st.integers(0, 65535),
)
def test_fuzz_rules_round_trip(
    keep_alive: int,
    key: int,
    nxt: int,
    tp: uuid.UUID,
    raw_key: bytes,
    curve_key: PubKey,
    sport: int,
    dport: int,
) -> None:
    # bytes keep any 33 bytes (upstream copies them); the JSON summary needs real keys
    raw_desc = RouteDescriptor(PubKey(raw_key), curve_key, sport, dport)
    json_desc = RouteDescriptor(curve_key, DST, sport, dport)
    for desc, via_json in ((raw_desc, False), (json_desc, True)):
        for rule in (
            ConsumeRule(keep_alive, key, desc),
            ForwardRule(keep_alive, key, nxt, tp, desc),
            IntermediaryForwardRule(keep_alive, key, nxt, tp),
        ):
            assert parse_rule(rule.to_bytes()) == rule
            if via_json or isinstance(rule, IntermediaryForwardRule):
                assert rule_from_summary(json.loads(summary_json(rule))) == rule
