"""Go encoding/gob: golden vectors, decoding rules, hostile input and round trips."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import PubKey
from skywire.wire.errors import GobError
from skywire.wire.gob import (
    GO120_FIRST_USER_TYPE_ID,
    GoAny,
    GoArray,
    GobDecoder,
    GobEncoder,
    GoBinaryMarshaler,
    GobLimitError,
    GoBool,
    GobTypeMismatchError,
    GobTypeRegistry,
    GoBytes,
    GoComplex128,
    GoFloat32,
    GoFloat64,
    GoInt,
    GoInt8,
    GoInt64,
    GoInterface,
    GoInterfaceValue,
    GoMap,
    GoPtr,
    GoSlice,
    GoString,
    GoStruct,
    GoType,
    GoUint,
    GoUint8,
    GoUint16,
    GoUint32,
    gob_decode,
    gob_decode_prefix,
    gob_encode,
)
from skywire.wire.gob_types import (
    BIDIRECTIONAL_ROUTE,
    EDGE_RULES,
    PUBKEY,
    ROUTE_DESCRIPTOR,
    ROUTE_IDS,
    RULES,
    STREAM_REQUEST,
    STREAM_RESPONSE,
    UUID,
)
from skywire.wire.netrpc import REQUEST_HEADER, RESPONSE_HEADER, RequestHeader, ResponseHeader

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "gob.json").read_text())
CASES = {c["name"]: c for c in VECTORS["cases"] if c["name"] != "netrpc_stream"}
CTX = VECTORS["context"]
KEYS = CTX["keys"]


def pk(name: str) -> PubKey:
    return PubKey.from_hex(KEYS[name])


C_PK = PubKey.from_hex(CASES["dmsg_stream_request"]["signer_pk"])
D_PK = PubKey.from_hex(CASES["dmsg_stream_response"]["signer_pk"])
TP1, TP2 = uuid.UUID(CTX["tp1"]), uuid.UUID(CTX["tp2"])
FORWARD_DESC = bytes.fromhex(CTX["forward_desc"])


def go_byte_lists(value_go: str, type_name: str) -> list[bytes]:
    """Every ``type_name{0x.., ...}`` literal in a Go ``%#v`` dump, as bytes."""
    found = re.findall(re.escape(type_name) + r"\{((?:0x[0-9a-f]+(?:, )?)+)\}", value_go)
    return [bytes(int(x, 16) for x in body.split(", ")) for body in found]


def edge_rules_from_go(value_go: str) -> dict[str, Any]:
    (desc,) = go_byte_lists(value_go, "Desc:routing.RouteDescriptor")
    (fwd,) = go_byte_lists(value_go, "Forward:routing.Rule")
    (rev,) = go_byte_lists(value_go, "Reverse:routing.Rule")
    return {"Desc": desc, "Forward": fwd, "Reverse": rev}


def hop(tp: uuid.UUID, frm: PubKey, to: PubKey) -> dict[str, Any]:
    return {"TpID": tp, "From": frm, "To": to}


def expected_values() -> dict[str, tuple[GoType, Any]]:
    a, b = pk("A_pk"), pk("B_pk")
    route = {
        "Desc": FORWARD_DESC,
        "KeepAlive": 30_000_000_000,
        "Forward": [hop(TP1, a, C_PK), hop(TP2, C_PK, b)],
        "Reverse": [hop(TP2, b, C_PK), hop(TP1, C_PK, a)],
    }
    return {
        "rpc_request_header_seq0": (REQUEST_HEADER, RequestHeader("RPCGateway.ReserveIDs", 0)),
        "rpc_request_header_seq1": (REQUEST_HEADER, RequestHeader("RPCGateway.ReserveIDs", 1)),
        "rpc_response_header_seq1": (
            RESPONSE_HEADER,
            ResponseHeader("RPCGateway.ReserveIDs", 1),
        ),
        "rpc_response_header_error": (
            RESPONSE_HEADER,
            ResponseHeader("RPCGateway.ReserveIDs", 1, "failure code 4 (example)"),
        ),
        "reserve_ids_arg": (GoUint8, 2),
        "reserve_ids_reply": (ROUTE_IDS, [5, 300]),
        "add_intermediary_rules_arg": (
            RULES,
            go_byte_lists(CASES["add_intermediary_rules_arg"]["value_go"], "routing.Rule"),
        ),
        "bool_reply_true": (GoBool, True),
        "add_edge_rules_arg": (
            EDGE_RULES,
            edge_rules_from_go(CASES["add_edge_rules_arg"]["value_go"]),
        ),
        "dial_route_group_arg": (BIDIRECTIONAL_ROUTE, route),
        "dial_route_group_reply": (
            EDGE_RULES,
            edge_rules_from_go(CASES["dial_route_group_reply"]["value_go"]),
        ),
        "route_descriptor": (ROUTE_DESCRIPTOR, FORWARD_DESC),
        "uuid": (UUID, TP1),
        "pubkey": (PUBKEY, pk("A_pk")),
    }


EXPECTED = expected_values()


def stream_request_value(case: dict[str, Any]) -> dict[str, Any]:
    v = case["value"]

    def addr(a: dict[str, Any]) -> dict[str, Any]:
        return {"PK": PubKey.from_hex(a["public_key"]), "Port": a["port"]}

    return {
        "Timestamp": v["Timestamp"],
        "SrcAddr": addr(v["SrcAddr"]),
        "DstAddr": addr(v["DstAddr"]),
        "NoiseMsg": base64.b64decode(v["NoiseMsg"]),
    }


def stream_response_value(case: dict[str, Any]) -> dict[str, Any]:
    v = case["value"]
    return {
        "ReqHash": bytes.fromhex(v["ReqHash"]),
        "Accepted": v["Accepted"],
        "ErrCode": v["ErrCode"],
        "NoiseMsg": bytes.fromhex(v["NoiseMsg"]),
    }


# ------------------------------------------------------------------------------------------
# Golden vectors
# ------------------------------------------------------------------------------------------


def test_every_standalone_case_is_covered() -> None:
    dmsg = {n for n in CASES if n.startswith("dmsg_")}
    assert set(CASES) - dmsg == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_standalone_vector_encode(name: str) -> None:
    typ, value = EXPECTED[name]
    assert gob_encode(value, typ).hex() == CASES[name]["gob"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_standalone_vector_decode(name: str) -> None:
    typ, value = EXPECTED[name]
    assert gob_decode(bytes.fromhex(CASES[name]["gob"]), typ) == value


def test_stream_request_vector() -> None:
    case = CASES["dmsg_stream_request"]
    data = bytes.fromhex(case["gob"])
    decoded = gob_decode(data, STREAM_REQUEST)
    expected = stream_request_value(case)
    # The JSON dump went through float64: compare the timestamp at that precision.
    assert float(decoded["Timestamp"]) == float(expected["Timestamp"])
    assert decoded["Timestamp"] == 1_700_000_000_123_456_789
    expected["Timestamp"] = decoded["Timestamp"]
    assert decoded == expected
    assert gob_encode(decoded, STREAM_REQUEST) == data
    signed = bytes.fromhex(case["signed_object"])
    assert signed == bytes.fromhex(case["sig"]) + data
    assert hashlib.sha256(signed).hexdigest() == case["signed_object_sha256"]


@pytest.mark.parametrize("name", ["dmsg_stream_response", "dmsg_stream_response_rejected"])
def test_stream_response_vectors(name: str) -> None:
    case = CASES[name]
    data = bytes.fromhex(case["gob"])
    expected = stream_response_value(case)
    assert gob_decode(data, STREAM_RESPONSE) == expected
    assert gob_encode(expected, STREAM_RESPONSE) == data
    assert expected["ReqHash"].hex() == CASES["dmsg_stream_request"]["signed_object_sha256"]


def test_shifted_type_ids_reproduced_with_a_shared_registry() -> None:
    case = CASES["dmsg_stream_request_shifted_type_ids"]
    value = gob_decode(bytes.fromhex(CASES["dmsg_stream_request"]["gob"]), STREAM_REQUEST)
    registry = GobTypeRegistry()
    # The Go process had encoded a StreamResponse and an rpc.Request before.
    GobEncoder(registry).encode(
        stream_response_value(CASES["dmsg_stream_response"]), STREAM_RESPONSE
    )
    GobEncoder(registry).encode(RequestHeader("x.y", 0), REQUEST_HEADER)
    assert gob_encode(value, STREAM_REQUEST, registry=registry).hex() == case["gob"]
    # A decoder learns the ids from the stream: same value either way.
    assert gob_decode(bytes.fromhex(case["gob"]), STREAM_REQUEST) == value


def test_go120_first_type_id() -> None:
    typ, value = EXPECTED["dial_route_group_arg"]
    old = GobEncoder(first_type_id=GO120_FIRST_USER_TYPE_ID).encode(value, typ)
    new = gob_encode(value, typ)
    assert old != new
    assert old[1:3] == b"\xff\x81"  # -65: the first definition
    assert gob_decode(old, typ) == value


def test_registry_assigns_struct_before_fields_and_containers_after_elements() -> None:
    registry = GobTypeRegistry()
    assert registry.type_id(BIDIRECTIONAL_ROUTE) == 64
    assert registry.type_id(ROUTE_DESCRIPTOR) == 65
    hop_type = BIDIRECTIONAL_ROUTE.fields[2].type
    assert isinstance(hop_type, GoSlice)
    assert registry.type_id(hop_type.elem) == 66
    assert registry.type_id(UUID) == 67
    assert registry.type_id(PUBKEY) == 68
    assert registry.type_id(hop_type) == 69
    assert registry.type_id(GoPtr(PUBKEY)) == 68
    assert registry.type_id(GoInt64) == 2


def test_type_definitions_are_sent_once_per_encoder() -> None:
    enc = GobEncoder()
    first = enc.encode(RequestHeader("RPCGateway.ReserveIDs", 0), REQUEST_HEADER)
    second = enc.encode(RequestHeader("RPCGateway.ReserveIDs", 1), REQUEST_HEADER)
    assert first.hex() == CASES["rpc_request_header_seq0"]["gob"]
    assert CASES["rpc_request_header_seq1"]["gob"].endswith(second.hex())
    assert second[1:3] == b"\xff\x80"


def test_failed_encode_leaves_encoder_unchanged() -> None:
    enc = GobEncoder()
    with pytest.raises(GobError):
        enc.encode({"ServiceMethod": 5}, REQUEST_HEADER)
    assert (
        enc.encode(RequestHeader("RPCGateway.ReserveIDs", 0), REQUEST_HEADER).hex()
        == (CASES["rpc_request_header_seq0"]["gob"])
    )


# ------------------------------------------------------------------------------------------
# Primitive encodings
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "value", "encoded"),
    [
        (GoUint, 200, "ffc8"),
        (GoUint, 1000, "fe03e8"),
        (GoUint, (1 << 64) - 1, "f8ffffffffffffffff"),
        (GoInt, 65, "ff82"),
        (GoInt, -65, "ff81"),
        (GoInt, -1, "01"),
        (GoInt64, -(1 << 63), "f8ffffffffffffffff"),
        (GoFloat64, 17.0, "fe3140"),
        (GoBool, False, "00"),
        (GoString, "hé", "0368c3a9"),
        (GoComplex128, 17 + 1j, "fe3140fef03f"),
    ],
)
def test_top_level_scalars(typ: GoType, value: Any, encoded: str) -> None:
    ids = {GoUint: 3, GoInt: 2, GoInt64: 2, GoFloat64: 4, GoBool: 1, GoString: 6, GoComplex128: 7}
    body = bytes([ids[typ] << 1, 0]) + bytes.fromhex(encoded)
    data = gob_encode(value, typ)
    assert data == bytes([len(body)]) + body
    assert gob_decode(data, typ) == value


def test_zero_fields_omitted_but_arrays_and_structs_sent() -> None:
    inner = GoStruct("In", [("X", GoInt)])
    outer = GoStruct(
        "Out",
        [
            ("I", GoInt),
            ("S", GoString),
            ("B", GoBool),
            ("Y", GoBytes),
            ("L", GoSlice(GoInt)),
            ("A", GoArray(GoUint8, 2)),
            ("N", inner),
            ("P", GoPtr(inner)),
            ("M", GoMap(GoString, GoInt)),
            ("K", PUBKEY),
        ],
    )
    value = {"I": 0, "S": "", "B": False, "Y": b"", "L": [], "A": b"\0\0", "N": {"X": 0}}
    value.update({"P": None, "M": {}, "K": PubKey.NULL})
    data = gob_encode(value, outer)
    dec = GobDecoder()
    dec.feed(data)
    item = dec.next_value()
    assert item is not None
    # Sent: the array (field 5: delta 6), the struct (delta 1) and the empty non-nil map (delta 2).
    assert item.value == {"A": [0, 0], "N": {}, "M": {}}
    decoded = gob_decode(data, outer)
    assert decoded == {**value, "A": b"\0\0"}
    assert gob_decode(gob_encode({**value, "M": None}, outer), outer)["M"] == {}


def test_float32_and_ranges() -> None:
    assert gob_decode(gob_encode(0.1, GoFloat32), GoFloat32) != 0.1
    assert gob_decode(gob_encode(0.5, GoFloat32), GoFloat32) == 0.5
    with pytest.raises(GobError):
        gob_encode(1e300, GoFloat32)
    with pytest.raises(GobError):
        gob_decode(gob_encode(1e300, GoFloat64), GoFloat32)
    with pytest.raises(GobError):
        gob_encode(128, GoInt8)
    with pytest.raises(GobError):
        gob_encode(-1, GoUint)
    with pytest.raises(GobError):
        gob_encode(True, GoInt)
    with pytest.raises(GobError):
        gob_decode(gob_encode(300, GoUint), GoUint8)
    with pytest.raises(GobError):
        gob_decode(gob_encode(-129, GoInt), GoInt8)


# ------------------------------------------------------------------------------------------
# Decoding by the wire's definitions
# ------------------------------------------------------------------------------------------


def test_generic_decode_without_target() -> None:
    data = bytes.fromhex(CASES["dial_route_group_arg"]["gob"])
    value = gob_decode(data)
    assert value["Desc"] == list(FORWARD_DESC)
    assert value["KeepAlive"] == 30_000_000_000
    assert value["Forward"][0] == {
        "TpID": TP1.bytes,
        "From": pk("A_pk").raw,
        "To": C_PK.raw,
    }
    assert gob_decode(data, GoAny)["Reverse"][1]["To"] == pk("A_pk").raw
    dec = GobDecoder()
    dec.feed(data)
    item = dec.next_value()
    assert item is not None
    assert (item.type_id, item.type_name) == (64, "BidirectionalRoute")
    assert dec.wire_types[69].name == "[]routing.Hop"


def test_struct_fields_matched_by_name() -> None:
    data = bytes.fromhex(CASES["dmsg_stream_request"]["gob"])
    partial = GoStruct(
        "Whatever",
        [("Extra", GoString), ("NoiseMsg", GoBytes), ("Timestamp", GoInt64), ("Gone", GoUint)],
    )
    value = gob_decode(data, partial)
    assert value["Extra"] == "" and value["Gone"] == 0
    assert value["Timestamp"] == 1_700_000_000_123_456_789
    assert len(value["NoiseMsg"]) == 49


@dataclass(frozen=True)
class Addr:
    pk: PubKey
    port: int


@dataclass(frozen=True)
class StreamRequest:
    timestamp: int
    src: Addr
    dst: Addr
    noise: bytes


ADDR_DC = GoStruct("Addr", [("PK", PUBKEY, "pk"), ("Port", GoUint16, "port")], py_type=Addr)
STREAM_REQUEST_DC = GoStruct(
    "StreamRequest",
    [
        ("Timestamp", GoInt64, "timestamp"),
        ("SrcAddr", ADDR_DC, "src"),
        ("DstAddr", ADDR_DC, "dst"),
        ("NoiseMsg", GoBytes, "noise"),
    ],
    py_type=StreamRequest,
)


def test_dataclass_binding() -> None:
    data = bytes.fromhex(CASES["dmsg_stream_request"]["gob"])
    req = gob_decode(data, STREAM_REQUEST_DC)
    assert isinstance(req, StreamRequest)
    assert req.src == Addr(C_PK, 49153)
    assert req.dst == Addr(D_PK, 80)
    assert gob_encode(req, STREAM_REQUEST_DC) == data
    # A missing PubKey field decodes as the null key.
    assert gob_decode(gob_encode({"Port": 7}, ADDR_DC), ADDR_DC) == Addr(PubKey.NULL, 7)


def test_type_mismatches() -> None:
    data = bytes.fromhex(CASES["dmsg_stream_request"]["gob"])
    with pytest.raises(GobTypeMismatchError):
        gob_decode(data, GoStruct("Other", [("Nope", GoInt)]))
    with pytest.raises(GobTypeMismatchError):
        gob_decode(data, GoString)
    with pytest.raises(GobTypeMismatchError):
        gob_decode(data, GoStruct("S", [("Timestamp", GoUint)]))
    with pytest.raises(GobTypeMismatchError):
        gob_decode(bytes.fromhex(CASES["route_descriptor"]["gob"]), GoArray(GoUint8, 69))
    with pytest.raises(GobTypeMismatchError):
        gob_decode(bytes.fromhex(CASES["pubkey"]["gob"]), GoBytes)
    with pytest.raises(GobError):
        # Not a valid public key: the marshaler's error becomes a GobError.
        gob_decode(gob_encode(b"\x05" * 33, GoBinaryMarshaler("PubKey", bytes)), PUBKEY)
    with pytest.raises(GobError):
        gob_decode(gob_encode(b"\x05" * 15, GoBinaryMarshaler("UUID", bytes)), UUID)


def test_maps_and_interfaces_round_trip() -> None:
    point = GoStruct("Point", [("X", GoInt), ("Y", GoInt)])
    holder = GoStruct(
        "Holder",
        [
            ("M", GoMap(GoString, GoSlice(GoInt))),
            ("V", GoInterface({"main.Point": point})),
            ("W", GoInterface()),
            ("Z", GoInterface()),
        ],
    )
    value = {
        "M": {"a": [1, -2], "b": []},
        "V": GoInterfaceValue("main.Point", {"X": 3, "Y": 0}, point),
        "W": GoInterfaceValue("int", 7, GoInt),
        "Z": None,
    }
    data = gob_encode(value, holder)
    decoded = gob_decode(data, holder)
    assert decoded["M"] == value["M"]
    assert decoded["V"] == value["V"]
    assert decoded["W"] == GoInterfaceValue("int", 7)
    assert decoded["Z"] is None
    generic = gob_decode(data)
    assert generic["V"] == GoInterfaceValue("main.Point", {"X": 3})


def test_incremental_decoding_byte_by_byte() -> None:
    enc = GobEncoder()
    items: list[tuple[Any, GoType]] = [
        (RequestHeader("RPCGateway.ReserveIDs", 0), REQUEST_HEADER),
        (2, GoUint8),
        (RequestHeader("RPCGateway.ReserveIDs", 1), REQUEST_HEADER),
        (EXPECTED["dial_route_group_arg"][1], BIDIRECTIONAL_ROUTE),
    ]
    stream = b"".join(enc.encode(v, t) for v, t in items)
    dec = GobDecoder()
    got: list[Any] = []
    targets = [t for _, t in items]
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        item = dec.next_value(targets[len(got)])
        if item is not None:
            got.append(item.value)
    assert got == [v for v, _ in items]
    assert dec.consumed == len(stream) and dec.buffered == 0
    assert dec.next_value() is None


def test_value_error_does_not_poison_the_stream() -> None:
    enc = GobEncoder()
    stream = enc.encode(300, GoUint) + enc.encode(5, GoUint)
    dec = GobDecoder()
    dec.feed(stream)
    with pytest.raises(GobError):
        dec.next_value(GoUint8)
    item = dec.next_value(GoUint8)
    assert item is not None and item.value == 5


def test_decode_prefix_reports_consumed() -> None:
    data = bytes.fromhex(CASES["pubkey"]["gob"])
    value, used = gob_decode_prefix(data + b"\x99\x98", PUBKEY)
    assert value == pk("A_pk") and used == len(data)
    with pytest.raises(GobError):
        gob_decode(data + b"\x01", PUBKEY)


# ------------------------------------------------------------------------------------------
# Hostile input
# ------------------------------------------------------------------------------------------

ALL_VECTOR_BYTES = [bytes.fromhex(c["gob"]) for c in CASES.values()]


def drain(data: bytes, target: GoType | None = None, chunk: int = 0) -> list[Any]:
    """Feed ``data`` and decode until the decoder wants more; GobError propagates."""
    dec = GobDecoder()
    out: list[Any] = []
    pieces = [data] if chunk <= 0 else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        dec.feed(piece)
        while (item := dec.next_value(target)) is not None:
            out.append(item.value)
    return out


@pytest.mark.parametrize("data", ALL_VECTOR_BYTES, ids=sorted(CASES))
def test_truncated_vectors_raise_gob_error(data: bytes) -> None:
    for cut in range(len(data)):
        with pytest.raises(GobError):
            gob_decode(data[:cut])
        assert drain(data[:cut]) == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL_VECTOR_BYTES), st.data())
def test_mutated_vectors_raise_only_gob_error(data: bytes, draw: st.DataObject) -> None:
    pos = draw.draw(st.integers(0, len(data) - 1))
    byte = draw.draw(st.integers(0, 255))
    mutated = data[:pos] + bytes([byte]) + data[pos + 1 :]
    target = draw.draw(st.sampled_from([None, STREAM_REQUEST, BIDIRECTIONAL_ROUTE, PUBKEY]))
    with contextlib.suppress(GobError):
        drain(mutated, target, chunk=draw.draw(st.integers(0, 7)))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_gob_error(data: bytes) -> None:
    for target in (None, STREAM_RESPONSE):
        with contextlib.suppress(GobError):
            drain(data, target)


def _message(body: bytes) -> bytes:
    assert len(body) < 0x80
    return bytes([len(body)]) + body


# type 64: struct "T" { N T } -- a recursive definition.
RECURSIVE_DEF = _message(bytes.fromhex("7f030101015401ff8000010101014e01ff80000000"))


def test_nesting_depth_is_capped() -> None:
    depth = 5000
    value = b"\xff\x80" + b"\x01" * depth + b"\x00" * (depth + 1)
    data = RECURSIVE_DEF + bytes([0xFE]) + len(value).to_bytes(2, "big") + value
    with pytest.raises(GobLimitError):
        drain(data)
    shallow = b"\xff\x80\x01\x01\x00\x00\x00"
    assert drain(RECURSIVE_DEF + _message(shallow)) == [{"N": {"N": {}}}]


def test_message_size_is_capped() -> None:
    dec = GobDecoder(max_message_size=1000)
    dec.feed(b"\xfe\x03\xe9")
    with pytest.raises(GobLimitError):
        dec.next_value()
    with pytest.raises(GobError):
        dec.next_value()  # poisoned
    huge = GobDecoder()
    huge.feed(b"\xf8\xff\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(GobLimitError):
        huge.next_value()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # empty message
        b"\x80\x01",  # bad length prefix
        _message(b"\x00"),  # type id 0
        _message(b"\xff\x80\x00"),  # value of an undefined type
        _message(b"\x7f"),  # definition with no body
        _message(b"\x06\x00"),  # uint value missing
        _message(b"\x06\x00\x81\x01"),  # uint with a 127-byte prefix
        _message(b"\x0c\x00\x05ab"),  # string longer than the message
        _message(b"\x06\x01\x05"),  # non-zero singleton delta
        _message(b"\x06\x00\x05\x07"),  # trailing data after value
        _message(bytes.fromhex("0d")),  # definition of builtin id 7
        _message(bytes.fromhex("1f030101015401ff80000000")),  # definition of reserved id 15
        RECURSIVE_DEF + RECURSIVE_DEF,  # duplicate definition
        _message(bytes.fromhex("7f0000")),  # definition with no kind
        _message(bytes.fromhex("7f01010101540001ff00")),  # truncated array definition
        _message(bytes.fromhex("7f02010101540001000000")),  # slice of type 0
        RECURSIVE_DEF + _message(b"\xff\x80\x02\x00"),  # field number out of range
        _message(bytes.fromhex("7f02010101540001060000"))
        + _message(b"\xff\x80\x00\x7f\x01"),  # 127 elements in 1 byte
    ],
)
def test_malformed_streams(data: bytes) -> None:
    with pytest.raises(GobError):
        drain(data)


def test_type_count_is_capped() -> None:
    dec = GobDecoder(max_types=1)
    dec.feed(RECURSIVE_DEF)
    assert dec.next_value() is None
    dec.feed(_message(bytes.fromhex("ff81030101015401ff82000000")))
    with pytest.raises(GobLimitError):
        dec.next_value()


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------

INNER = GoStruct("Inner", [("Name", GoString), ("Flag", GoBool)])
SAMPLE = GoStruct(
    "Sample",
    [
        ("I", GoInt64),
        ("U", GoUint32),
        ("F", GoFloat64),
        ("S", GoString),
        ("B", GoBytes),
        ("T", GoBool),
        ("L", GoSlice(GoInt)),
        ("M", GoMap(GoString, GoUint)),
        ("A", GoArray(GoUint8, 4)),
        ("N", INNER),
        ("NS", GoSlice(INNER, "[]main.Inner")),
        ("K", UUID),
    ],
)

inner_values = st.fixed_dictionaries({"Name": st.text(max_size=8), "Flag": st.booleans()})
sample_values = st.fixed_dictionaries(
    {
        "I": st.integers(-(1 << 63), (1 << 63) - 1),
        "U": st.integers(0, (1 << 32) - 1),
        "F": st.floats(allow_nan=False),
        "S": st.text(max_size=20),
        "B": st.binary(max_size=20),
        "T": st.booleans(),
        "L": st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=5),
        "M": st.dictionaries(st.text(max_size=5), st.integers(0, (1 << 64) - 1), max_size=4),
        "A": st.binary(min_size=4, max_size=4),
        "N": inner_values,
        "NS": st.lists(inner_values, max_size=3),
        "K": st.builds(uuid.UUID, int=st.integers(0, (1 << 128) - 1)),
    }
)


@settings(max_examples=200, deadline=None)
@given(st.lists(sample_values, min_size=1, max_size=3))
def test_round_trip_property(values: list[dict[str, Any]]) -> None:
    enc = GobEncoder()
    stream = b"".join(enc.encode(v, SAMPLE) for v in values)
    assert drain(stream, SAMPLE, chunk=3) == values
    generic = drain(stream)
    assert len(generic) == len(values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, (1 << 32) - 1), max_size=10), st.booleans())
def test_round_trip_route_ids(ids: list[int], flag: bool) -> None:
    assert gob_decode(gob_encode(ids, ROUTE_IDS), ROUTE_IDS) == ids
    assert gob_decode(gob_encode(flag, GoBool), GoBool) is flag


class Token:
    """A marshaler exposing only ``to_bytes``/``from_bytes``."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 4:
            raise ValueError("need 4 bytes")
        self.raw = raw

    def to_bytes(self) -> bytes:
        return self.raw

    @classmethod
    def from_bytes(cls, data: bytes) -> Token:
        return cls(data)


def test_marshaler_fallbacks_and_descriptor_checks() -> None:
    token = GoBinaryMarshaler("Token", Token)
    holder = GoStruct("H", [("T", token), ("U", token)])
    data = gob_encode({"T": Token(b"abcd"), "U": Token(bytes(4))}, holder)
    decoded = gob_decode(data, holder)
    assert decoded["T"].raw == b"abcd" and decoded["U"] is None  # zero omitted, no factory
    with pytest.raises(GobError):
        gob_decode(gob_encode(b"abc", GoBinaryMarshaler("Token", bytes)), token)
    with pytest.raises(ValueError):
        GoSlice(GoUint8)
    with pytest.raises(ValueError):
        GoArray(GoUint8, -1)
    with pytest.raises(GobError):
        gob_encode(None, holder)
    with pytest.raises(GobError):
        gob_encode(1, GoAny)
