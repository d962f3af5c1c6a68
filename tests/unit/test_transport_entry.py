"""Transport IDs, entries, signed entries and settlement against the upstream vectors."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import KeyPair, PubKey, Sig, SignatureError, deterministic_keypair, sha256
from skywire.services.httpauth import (
    AuthError,
    auth_headers,
    parse_auth_headers,
    payload_with_nonce,
    verify_request,
)
from skywire.transport.entry import (
    EdgeNotFoundError,
    EntryDecodeError,
    InvalidEntryError,
    Label,
    SignedEntry,
    TransportType,
    go_json_string,
    make_entry,
    make_transport_id,
    marshal_entries,
    marshal_signed_entries,
    parse_entries,
    parse_entry,
    parse_signed_entries,
    parse_signed_entry,
    sort_edges,
)
from skywire.transport.settlement import (
    SettlementError,
    SettlementInitiator,
    SettlementRejectedError,
    SettlementResponder,
    SettlementStatus,
    decode_settlement_status,
)
from tests.conftest import load_vectors

VECTORS = load_vectors("transport")


def _group(kind: str) -> list[dict[str, Any]]:
    for case in VECTORS["cases"]:
        if case["kind"] == kind:
            items: list[dict[str, Any]] = case["items"]
            return items
    raise KeyError(kind)


KEYS = [deterministic_keypair(f"tp-entry-{i}".encode()) for i in range(4)]

# -- transport IDs ------------------------------------------------------------------------------


@pytest.mark.parametrize("item", _group("transport_id"), ids=lambda i: f"{i['type']}")
def test_transport_id_vectors(item: dict[str, Any]) -> None:
    a, b = PubKey.from_hex(item["pk_a"]), PubKey.from_hex(item["pk_b"])
    tp_id = make_transport_id(a, b, item["type"])
    assert str(tp_id) == item["transport_id"]
    assert tp_id.bytes.hex() == item["transport_id_hex"]
    assert [pk.hex() for pk in sort_edges(a, b)] == item["sorted_edges"]
    entry = make_entry(a, b, TransportType(item["type"]))
    assert entry.id == tp_id
    assert [pk.hex() for pk in entry.edges] == item["sorted_edges"]
    assert entry.label == "user"
    entry.check()


def test_transport_type_spellings() -> None:
    assert [t.value for t in TransportType] == ["dmsg", "stcp", "stcpr", "sudph"]
    assert [label.value for label in Label] == ["user", "automatic", "skycoin"]


def test_transport_id_version_nibble_and_variant() -> None:
    tp_id = make_transport_id(KEYS[0].pk, KEYS[1].pk, "stcpr")
    raw = tp_id.bytes
    assert raw[6] >> 4 == 0
    assert raw[8] >> 6 == 0b10


@given(
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from([*TransportType, "squicr", ""]),
)
def test_transport_id_symmetric(i: int, j: int, tp_type: str) -> None:
    a, b = KEYS[i].pk, KEYS[j].pk
    assert make_transport_id(a, b, tp_type) == make_transport_id(b, a, tp_type)
    lo, hi = sort_edges(a, b)
    assert lo.raw <= hi.raw
    assert {lo, hi} == {a, b}


def test_transport_id_differs_by_type_and_pair() -> None:
    ids = {
        make_transport_id(KEYS[i].pk, KEYS[j].pk, t)
        for i in range(4)
        for j in range(i + 1, 4)
        for t in TransportType
    }
    assert len(ids) == 6 * 4


# -- signed entries -----------------------------------------------------------------------------


@pytest.mark.parametrize("item", _group("signed_entry"), ids=lambda i: i["type"])
def test_signed_entry_vectors(item: dict[str, Any]) -> None:
    se = parse_signed_entry(item["signed_entry_json"])
    assert se.to_json() == item["signed_entry_json"].encode()
    assert se.entry.to_json() == item["entry_json"].encode()
    assert parse_entry(item["entry_json"]) == se.entry
    assert se.entry.type == item["type"]
    assert se.entry.label == item["label"]
    assert se.entry.to_binary() == bytes.fromhex(item["to_binary"])
    se.entry.check()
    errors = se.verification_errors()
    assert (errors[0] is None) == (item["sig_edge0_verify_error"] is None)
    assert (errors[1] is None) == (item["sig_edge1_verify_error"] is None)
    se.verify_all()
    for pk in se.entry.edges:
        se.verify_pk(pk)
    # The same entry built from scratch gives the same JSON and signed bytes.
    rebuilt = make_entry(se.entry.edges[1], se.entry.edges[0], se.entry.type)
    assert rebuilt == se.entry
    assert rebuilt.to_json() == item["entry_json"].encode()


@pytest.mark.parametrize("item", _group("signed_entry"), ids=lambda i: i["type"])
def test_signed_entry_negative_verification(item: dict[str, Any]) -> None:
    se = parse_signed_entry(item["signed_entry_json"])
    s0, s1 = se.signatures
    # Swapped slots: each signature is now checked against the other edge.
    swapped = replace(se, signatures=(s1, s0))
    e0, e1 = swapped.verification_errors()
    assert isinstance(e0, SignatureError) and isinstance(e1, SignatureError)
    # One slot emptied.
    half = replace(se, signatures=(s0, Sig.NULL))
    e0, e1 = half.verification_errors()
    assert e0 is None and isinstance(e1, SignatureError)
    with pytest.raises(SignatureError):
        half.verify_all()
    # A different type changes the signed bytes: both signatures fail.
    other = replace(
        se, entry=replace(se.entry, type="sudph" if se.entry.type != "sudph" else "stcp")
    )
    assert all(isinstance(e, SignatureError) for e in other.verification_errors())
    # The label is not signed.
    relabelled = replace(se, entry=replace(se.entry, label="automatic"))
    assert relabelled.verification_errors() == (None, None)
    # A flipped bit in a signature.
    bad = bytearray(s1.raw)
    bad[5] ^= 1
    flipped = replace(se, signatures=(s0, Sig(bytes(bad))))
    assert flipped.verification_errors()[0] is None
    assert isinstance(flipped.verification_errors()[1], SignatureError)


def test_sign_both_edges_and_edge_lookup() -> None:
    a, b, c = KEYS[0], KEYS[1], KEYS[2]
    entry = make_entry(a.pk, b.pk, TransportType.STCPR)
    se = SignedEntry.new(entry, a.pk, a.sk)
    idx_a = entry.edge_index(a.pk)
    assert se.signatures[1 - idx_a].is_null()
    assert se.verification_errors()[idx_a] is None
    se = se.sign(b.pk, b.sk)
    se.verify_all()
    assert se.signature(b.pk) == se.signatures[entry.edge_index(b.pk)]
    with pytest.raises(EdgeNotFoundError):
        se.sign(c.pk, c.sk)
    with pytest.raises(EdgeNotFoundError):
        se.signature(c.pk)
    with pytest.raises(EdgeNotFoundError):
        se.verify_pk(c.pk)
    assert entry.remote_edge(a.pk) == b.pk
    assert entry.is_least_significant_edge(entry.edges[0])
    assert not entry.has_edge(c.pk)


def test_self_transport_keeps_second_slot_empty() -> None:
    a = KEYS[0]
    se = SignedEntry.new(make_entry(a.pk, a.pk, "stcp"), a.pk, a.sk)
    assert se.signatures[1].is_null()
    se.verify_all()


def test_registered_is_omitted_when_zero_and_kept_otherwise() -> None:
    a, b = KEYS[0], KEYS[1]
    se = SignedEntry.new(make_entry(a.pk, b.pk, "dmsg"), a.pk, a.sk)
    assert b'"registered"' not in se.to_json()
    stamped = replace(se, registered=1_700_000_000)
    assert stamped.to_json().endswith(b',"registered":1700000000}')
    assert parse_signed_entry(stamped.to_json()) == stamped


def test_latency_key_only_when_set() -> None:
    entry = make_entry(KEYS[0].pk, KEYS[1].pk, "stcpr")
    assert b"latency" not in entry.to_json()
    timed = replace(entry, latency_ms=12.5)
    assert timed.to_json().endswith(b',"latency":12.5}')
    assert replace(entry, latency_ms=40.0).to_json().endswith(b',"latency":40}')
    # Numbers are written as the reference encoder writes float64s.
    for value, text in [(0.0, b"0"), (1e-5, b"0.00001"), (2.5e-7, b"2.5e-7"), (3.6e6, b"3600000")]:
        assert replace(entry, latency_ms=value).to_json().endswith(b',"latency":' + text + b"}")
    assert parse_entry(timed.to_json()) == timed
    assert b"latency" not in timed.to_json(with_latency=False)
    # A signed entry never carries latency on the wire.
    assert b"latency" not in SignedEntry(timed).to_json()


def test_check_refuses_bad_entries() -> None:
    a, b = KEYS[0].pk, KEYS[1].pk
    good = make_entry(a, b, "stcpr")
    with pytest.raises(InvalidEntryError, match="not sorted"):
        replace(good, edges=(good.edges[1], good.edges[0])).check()
    with pytest.raises(InvalidEntryError, match="ID"):
        replace(good, id=uuid.uuid4()).check()
    with pytest.raises(InvalidEntryError, match="ID"):
        replace(good, type="sudph").check()
    with pytest.raises(InvalidEntryError, match="empty"):
        replace(good, type="").check()
    with pytest.raises(InvalidEntryError, match="edge 0"):
        replace(good, edges=(PubKey.NULL, good.edges[1])).check()


def test_marshal_lists_round_trip() -> None:
    entries = [make_entry(KEYS[0].pk, KEYS[i].pk, "stcpr") for i in (1, 2, 3)]
    assert parse_entries(marshal_entries(entries)) == entries
    assert parse_entries(b"null") == []
    assert parse_entries(b"[]") == []
    signed = [SignedEntry.new(e, KEYS[0].pk, KEYS[0].sk) for e in entries]
    assert parse_signed_entries(marshal_signed_entries(signed)) == signed
    assert parse_signed_entries(b"null") == []


def test_go_json_string_escapes_like_the_reference() -> None:
    assert go_json_string('a"b\\c') == '"a\\"b\\\\c"'
    assert go_json_string("<&>") == '"\\u003c\\u0026\\u003e"'
    assert go_json_string("\n\r\t\b\f\x00\x1f") == '"\\n\\r\\t\\u0008\\u000c\\u0000\\u001f"'
    assert go_json_string("\u2028\u2029é") == '"\\u2028\\u2029é"'
    assert go_json_string("\ud800") == '"\ufffd"'


_BAD_SIGNED = [
    b"",
    b"not json",
    b"[]",
    b"{}",
    b'{"entry":null}',
    b'{"entry":{}}',
    b'{"entry":{"t_id":"x","edges":[],"type":"stcpr"}}',
    b"\xff\xfe",
    b'{"entry":{"t_id":1,"edges":["00","00"],"type":"stcpr"}}',
]


@pytest.mark.parametrize("data", _BAD_SIGNED)
def test_malformed_signed_entries_are_refused(data: bytes) -> None:
    with pytest.raises(EntryDecodeError):
        parse_signed_entry(data)


def _mutations(item: dict[str, Any]) -> list[Any]:
    base = json.loads(item["signed_entry_json"])
    out: list[Any] = []
    for key, value in [
        ("t_id", "1f203c61-a24a-09a9-aa20-f19fedbb0a4"),
        ("t_id", "1f203c61xa24a-09a9-aa20-f19fedbb0a40"),
        ("edges", [base["entry"]["edges"][0]]),
        ("edges", [base["entry"]["edges"][0], "02" + "ff" * 32]),
        ("edges", "nope"),
        ("type", 5),
        ("label", ["user"]),
        ("latency", "fast"),
        ("latency", -1),
        ("latency", True),
    ]:
        obj = json.loads(item["signed_entry_json"])
        obj["entry"][key] = value
        out.append(obj)
    for sigs in (["00"], ["zz" * 65, "00" * 65], "sig", [1, 2], ["00" * 64, "00" * 65]):
        obj = json.loads(item["signed_entry_json"])
        obj["signatures"] = sigs
        out.append(obj)
    for reg in ("1", 1.5, 2**63, True):
        obj = json.loads(item["signed_entry_json"])
        obj["registered"] = reg
        out.append(obj)
    return out


@pytest.mark.parametrize(
    "obj", _mutations(_group("signed_entry")[0]), ids=lambda o: json.dumps(o)[:60]
)
def test_mutated_fields_are_refused(obj: Any) -> None:
    with pytest.raises(EntryDecodeError):
        parse_signed_entry(json.dumps(obj))


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_signed_entry_parser_raises_only_decode_errors(data: bytes) -> None:
    try:
        se = parse_signed_entry(data)
    except EntryDecodeError:
        return
    assert parse_signed_entry(se.to_json()) == se


@settings(max_examples=200)
@given(st.text(max_size=40), st.text(max_size=40), st.floats(0, 1e9))
def test_entry_json_round_trip_with_any_type_and_label(
    tp_type: str, label: str, lat: float
) -> None:
    entry = replace(make_entry(KEYS[0].pk, KEYS[1].pk, tp_type, label), latency_ms=lat)
    text = entry.to_json()
    back = parse_entry(text)
    # Lone surrogates cannot survive UTF-8; everything else does.
    if not any("\ud800" <= c <= "\udfff" for c in tp_type + label):
        assert back == entry
    assert json.loads(text)["t_id"] == str(entry.id)


# -- settlement ---------------------------------------------------------------------------------


def _pair() -> tuple[KeyPair, KeyPair]:
    return KEYS[0], KEYS[1]


def test_settlement_happy_path_and_leftover() -> None:
    ini, resp = _pair()
    i = SettlementInitiator(ini.pk, ini.sk, resp.pk, TransportType.STCPR)
    r = SettlementResponder(resp.pk, resp.sk, ini.pk, TransportType.STCPR)
    line = i.data_to_send()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_signed_entry(line[:-1]) == i.signed_entry
    assert i.data_to_send() == b""
    # Delivered in pieces, with the first routing packet bytes right behind.
    assert not r.receive_data(line[:10])
    assert r.receive_data(line[10:] + b"\x00\x01")
    assert r.leftover == b"\x00\x01"
    assert r.signed_entry is not None
    r.signed_entry.verify_all()
    assert r.signed_entry.entry == make_entry(ini.pk, resp.pk, "stcpr")
    ok = r.accept()
    assert ok == b"\x01"
    i.receive_data(ok + b"pkt")
    assert i.complete and i.leftover == b"pkt"


def test_settlement_responder_refuses_wrong_entry() -> None:
    ini, resp = _pair()
    other = KEYS[2]
    # The initiator claims a transport of another type.
    i = SettlementInitiator(ini.pk, ini.sk, resp.pk, TransportType.SUDPH)
    r = SettlementResponder(resp.pk, resp.sk, ini.pk, TransportType.STCPR)
    with pytest.raises(SettlementError, match="tp_id") as info:
        r.receive_data(i.data_to_send())
    assert info.value.status is SettlementStatus.INVALID_ENTRY
    assert r.data_to_send() == b"\x03"
    with pytest.raises(SettlementError):
        r.receive_data(b"more")
    # Signed by somebody else than the connection's remote key.
    forged = SignedEntry.new(make_entry(ini.pk, resp.pk, "stcpr"), ini.pk, other.sk)
    r = SettlementResponder(resp.pk, resp.sk, ini.pk, TransportType.STCPR)
    with pytest.raises(SettlementError):
        r.receive_data(forged.to_json() + b"\n")
    assert r.data_to_send() == b"\x03"
    # Garbage.
    r = SettlementResponder(resp.pk, resp.sk, ini.pk, TransportType.STCPR)
    with pytest.raises(SettlementError, match="failed to read entry"):
        r.receive_data(b"{oops}\n")
    # No newline for too long.
    r = SettlementResponder(resp.pk, resp.sk, ini.pk, TransportType.STCPR)
    with pytest.raises(SettlementError, match="too long"):
        r.receive_data(b" " * 5000)


@pytest.mark.parametrize(
    ("byte", "message"),
    [
        (0, "rejected by remote"),
        (2, "signature error"),
        (3, "invalid entry"),
        (9, "invalid remote"),
    ],
)
def test_settlement_status_bytes(byte: int, message: str) -> None:
    with pytest.raises(SettlementRejectedError, match=message) as info:
        decode_settlement_status(bytes((byte,)))
    assert info.value.raw == byte
    ini, resp = _pair()
    i = SettlementInitiator(ini.pk, ini.sk, resp.pk, "dmsg")
    with pytest.raises(SettlementRejectedError):
        i.receive_data(bytes((byte,)))
    assert decode_settlement_status(b"\x01") is SettlementStatus.OK
    with pytest.raises(SettlementError):
        decode_settlement_status(b"")


@settings(max_examples=200)
@given(st.binary(max_size=700))
def test_fuzz_settlement_responder(data: bytes) -> None:
    ini, resp = _pair()
    r = SettlementResponder(resp.pk, resp.sk, ini.pk, TransportType.STCPR)
    try:
        done = r.receive_data(data)
    except SettlementError as exc:
        assert r.data_to_send() == exc.status.encode()
        return
    assert not done or r.signed_entry is not None


# -- httpauth (the transport.json `httpauth` group) ---------------------------------------------


@pytest.mark.parametrize("item", _group("httpauth"), ids=lambda i: str(i["nonce"]))
def test_httpauth_vectors(item: dict[str, Any]) -> None:
    body = item["body"].encode()
    payload = payload_with_nonce(body, item["nonce"])
    assert payload == bytes.fromhex(item["signed_payload"])
    assert sha256(payload).hex() == item["sha256"]
    pk = PubKey.from_hex(item["pk"])
    sig = Sig.from_hex(item["sig"])
    assert item["go_verify_error"] is None
    verify_request(body, item["nonce"], pk, sig)
    assert parse_auth_headers(item["headers"]) == (pk, item["nonce"], sig)
    assert item["headers"]["SW-Sig"] == item["sig"]
    # Our own headers have the same names and shapes, and verify.
    ours = auth_headers(KEYS[0].sk, body, item["nonce"])
    assert set(ours) == set(item["headers"])
    assert ours["SW-Nonce"] == item["headers"]["SW-Nonce"]
    got_pk, got_nonce, got_sig = parse_auth_headers(ours)
    verify_request(body, got_nonce, got_pk, got_sig)
    # Any other nonce or body fails.
    with pytest.raises(SignatureError):
        verify_request(body, item["nonce"] + 1, pk, sig)
    with pytest.raises(SignatureError):
        verify_request(body + b" ", item["nonce"], pk, sig)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["SW-Public", "SW-Nonce", "SW-Sig", "X"]), st.text(max_size=140)
    )
)
def test_fuzz_auth_headers_raise_only_auth_errors(headers: dict[str, str]) -> None:
    try:
        pk, nonce, sig = parse_auth_headers(headers)
    except AuthError:
        return
    assert 0 <= nonce < 2**64
    assert len(sig.raw) == 65 and len(pk.raw) == 33
