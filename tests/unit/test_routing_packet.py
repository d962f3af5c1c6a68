"""Routing packets against the upstream Go vectors, plus builders, parsers and fuzzing."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.routing.packet import (
    HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    Capability,
    CloseCode,
    MalformedPayloadError,
    Packet,
    PacketDecoder,
    PacketError,
    PacketType,
    PayloadTooBigError,
    TruncatedPacketError,
    UnknownPacketTypeError,
    make_close,
    make_data,
    make_error,
    make_handshake,
    make_keepalive,
    make_mux_data,
    make_ping,
    make_pong,
    make_sack,
    parse_close,
    parse_handshake,
    parse_mux_data,
    parse_ping,
    parse_pong,
    parse_sack,
)
from tests.conftest import load_vectors

VECTORS = load_vectors("routing")
PACKET_CASE = next(c for c in VECTORS["cases"] if c["kind"] == "packet")
ITEMS: dict[str, dict[str, Any]] = {it["name"]: it for it in PACKET_CASE["items"]}


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_vector_decodes_and_reencodes(name: str) -> None:
    item = ITEMS[name]
    raw = bytes.fromhex(item["bytes"])
    packet = Packet.decode(raw)
    assert packet.type == item["type"]
    assert packet.type.go_name == item["type_name"]
    assert packet.route_id == item["route_id"]
    assert packet.size == item["size"]
    assert packet.payload.hex() == item["payload"]
    assert packet.encode() == raw
    assert Packet.decode_header(raw[:HEADER_SIZE]) == (packet.type, item["route_id"], item["size"])


def _built(name: str) -> Packet:
    item = ITEMS[name]
    rid = item["route_id"]
    payload = bytes.fromhex(item["payload"])
    if name.startswith("data"):
        return make_data(rid, payload)
    if name == "close_requested":
        return make_close(rid, CloseCode.REQUESTED)
    if name == "keepalive":
        return make_keepalive(rid)
    if name == "ping":
        return make_ping(rid, int.from_bytes(payload[:8]), int.from_bytes(payload[8:]))
    if name == "pong":
        return make_pong(rid, int.from_bytes(payload[:8]))
    if name.startswith("handshake"):
        return make_handshake(rid, name.endswith("true"))
    assert name == "error"
    return make_error(rid, payload.decode())


@pytest.mark.parametrize("name", sorted(ITEMS))
def test_builders_match_go_bytes(name: str) -> None:
    assert _built(name).encode().hex() == ITEMS[name]["bytes"]


def test_payload_parsers_read_the_vectors() -> None:
    ping = parse_ping(Packet.decode(bytes.fromhex(ITEMS["ping"]["bytes"])))
    assert (ping.timestamp_ms, ping.throughput) == (0x18BCFE5687B, 0x1000)
    assert parse_pong(Packet.decode(bytes.fromhex(ITEMS["pong"]["bytes"]))) == 0x18BCFE5687B
    assert parse_close(Packet.decode(bytes.fromhex(ITEMS["close_requested"]["bytes"]))) is (
        CloseCode.REQUESTED
    )
    hs = parse_handshake(Packet.decode(bytes.fromhex(ITEMS["handshake_enc_true"]["bytes"])))
    assert (hs.encrypt, hs.capabilities, hs.legacy) == (True, Capability.NONE, True)
    hs = parse_handshake(Packet.decode(bytes.fromhex(ITEMS["handshake_enc_false"]["bytes"])))
    assert hs.encrypt is False


def test_payload_of_65536_bytes_is_refused_with_the_go_error() -> None:
    message = PACKET_CASE["data_packet_65536_error"]
    with pytest.raises(PayloadTooBigError) as info:
        make_data(1, bytes(MAX_PAYLOAD_SIZE + 1))
    assert str(info.value) == message == "packet size exceeded"
    with pytest.raises(PayloadTooBigError):
        make_error(1, bytes(MAX_PAYLOAD_SIZE + 1))
    biggest = make_data(1, bytes(MAX_PAYLOAD_SIZE))
    assert biggest.encode()[5:7] == b"\xff\xff"
    assert Packet.decode(biggest.encode()) == biggest


def test_handshake_capabilities_are_a_little_endian_bitmap() -> None:
    caps = Capability.MUX | Capability.CASCADE
    packet = make_handshake(11, True, caps)
    assert packet.encode().hex() == "030000000b0003" + "01" + "0500"
    hs = parse_handshake(packet)
    assert (hs.encrypt, hs.capabilities, hs.legacy) == (True, caps, False)
    # bit 8 goes in the second byte
    assert make_handshake(1, False, 0x100).payload == b"\x00\x00\x01"
    # a legacy peer advertises 0 in the 3-byte form, or sends the 1-byte form
    assert parse_handshake(make_handshake(1, True, Capability.NONE)).capabilities == 0
    # extra bytes from a newer peer are ignored
    newer = Packet(PacketType.HANDSHAKE, 1, b"\x01\x02\x00\xff\xff")
    assert parse_handshake(newer).capabilities is Capability.SACK
    with pytest.raises(PacketError):
        make_handshake(1, True, 0x10000)


def test_close_codes_and_unknown_codes() -> None:
    assert make_close(4, CloseCode.LEG_RETIRED).encode().hex() == "01000000040001" + "01"
    assert parse_close(make_close(4, CloseCode.LEG_RETIRED)) is CloseCode.LEG_RETIRED
    assert parse_close(make_close(4, 9)) == 9
    with pytest.raises(PacketError):
        make_close(4, 256)


def test_mux_data_and_sack_round_trip() -> None:
    packet = make_mux_data(3, 0x01020304, b"hi")
    assert packet.payload == b"\x01\x02\x03\x04hi"
    assert parse_mux_data(packet) == (0x01020304, b"hi")
    sack = make_sack(3, 77, [1, 2**64 - 1])
    assert sack.payload == (77).to_bytes(4) + b"\x02" + (1).to_bytes(8) + b"\xff" * 8
    parsed = parse_sack(sack)
    assert (parsed.last_contiguous, parsed.words) == (77, (1, 2**64 - 1))
    with pytest.raises(PacketError):
        make_sack(3, 1, [0] * 33)


@pytest.mark.parametrize(
    ("packet", "parser"),
    [
        (Packet(PacketType.PING, 1, bytes(15)), parse_ping),
        (Packet(PacketType.PONG, 1, bytes(7)), parse_pong),
        (Packet(PacketType.CLOSE, 1), parse_close),
        (Packet(PacketType.HANDSHAKE, 1), parse_handshake),
        (Packet(PacketType.DATA, 1, b"abc"), parse_mux_data),
        (Packet(PacketType.SACK, 1, bytes(4)), parse_sack),
        (Packet(PacketType.SACK, 1, b"\x00\x00\x00\x01\x21" + bytes(33 * 8)), parse_sack),
        (Packet(PacketType.SACK, 1, b"\x00\x00\x00\x01\x01" + bytes(7)), parse_sack),
        (Packet(PacketType.DATA, 1, bytes(16)), parse_ping),  # wrong type
    ],
)
def test_malformed_payloads_raise_typed_errors(packet: Packet, parser: Any) -> None:
    with pytest.raises(MalformedPayloadError):
        parser(packet)


def test_transport_level_types_and_names() -> None:
    assert PacketType.TRANSPORT_PING.transport_level
    assert PacketType.TRANSPORT_BW_ACK.transport_level
    assert not PacketType.DATAGRAM.transport_level
    assert not PacketType.SACK.transport_level
    assert PacketType.SACK.go_name == "Sack"
    assert len(PacketType) == 20


def test_decode_errors() -> None:
    good = bytes.fromhex(ITEMS["data"]["bytes"])
    with pytest.raises(TruncatedPacketError):
        Packet.decode(good[:6])
    with pytest.raises(TruncatedPacketError):
        Packet.decode(good[:-1])
    with pytest.raises(PacketError):
        Packet.decode(good + b"\x00")
    with pytest.raises(UnknownPacketTypeError) as info:
        Packet.decode(b"\x14" + good[1:])
    assert (info.value.value, info.value.route_id) == (20, 0x01020304)
    with pytest.raises(PacketError):
        Packet(PacketType.DATA, 2**32)
    with pytest.raises(UnknownPacketTypeError):
        Packet(99, 1)  # type: ignore[arg-type]


def test_stream_decoder_splits_packets_and_skips_unknown_types() -> None:
    names = sorted(ITEMS)
    packets = [bytes.fromhex(ITEMS[n]["bytes"]) for n in names]
    unknown = b"\xc8\x00\x00\x00\x01\x00\x02zz"  # type 200 with a 2-byte payload
    data = packets[0] + unknown + b"".join(packets[1:])
    expected = [Packet.decode(p) for p in packets]
    for chunk in (1, 3, 7, 1000):
        dec = PacketDecoder()
        got: list[Packet] = []
        for i in range(0, len(data), chunk):
            got += dec.feed(data[i : i + chunk])
        assert got == expected
        assert dec.skipped_unknown == 1
        assert dec.pending == 0
    dec = PacketDecoder()
    assert dec.feed(packets[0][:-1]) == []
    assert dec.pending == len(packets[0]) - 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_decode_raises_only_packet_errors(data: bytes) -> None:
    try:
        packet = Packet.decode(data)
    except PacketError:
        return
    assert packet.encode() == data


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(ITEMS)), st.data())
def test_fuzz_truncated_vectors_are_truncation_errors(name: str, data: st.DataObject) -> None:
    raw = bytes.fromhex(ITEMS[name]["bytes"])
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(TruncatedPacketError):
        Packet.decode(raw[:cut])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(PacketType)), st.integers(0, 2**32 - 1), st.binary(max_size=40))
def test_fuzz_payload_parsers_raise_only_packet_errors(
    typ: PacketType, rid: int, payload: bytes
) -> None:
    packet = Packet(typ, rid, payload)
    assert Packet.decode(packet.encode()) == packet
    for parser in (
        parse_ping,
        parse_pong,
        parse_close,
        parse_handshake,
        parse_mux_data,
        parse_sack,
    ):
        with contextlib.suppress(PacketError):
            parser(packet)
