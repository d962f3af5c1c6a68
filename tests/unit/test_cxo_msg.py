"""CXO wire messages, payloads and frames against the Go vectors, plus properties."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import PubKey, Sig
from skywire.cxo import msg as m
from skywire.cxo.msg import FrameError, FrameReader, MsgError, Packet, decode_msg, encode_msg
from skywire.wire.errors import WireError
from tests.conftest import load_vectors

CXO = load_vectors("cxo")
K1 = PubKey.from_hex(CXO["context"]["keys"][0]["pk"])
K2 = PubKey.from_hex(CXO["context"]["keys"][1]["pk"])
K3 = PubKey.from_hex(CXO["context"]["keys"][2]["pk"])


def _items(kind: str) -> dict[str, dict[str, Any]]:
    for case in CXO["cases"]:
        if case["kind"] == kind:
            return {i["name"]: i for i in case["items"]}
    raise KeyError(kind)


MESSAGES = _items("message")
DECODE_ERRORS = _items("message_decode_errors")
ROOT_SEQ0 = _items("root")["root_seq0"]

VALUES: dict[str, m.Message] = {
    "Syn": m.Syn(3, K2),
    "Ack": m.Ack(K3),
    "Err_handshake_reject": m.Err("wrong protocol version"),
    "Ping": m.Ping(),
    "Pong": m.Pong(),
    "Sub": m.Sub(K1),
    "Ok": m.Ok(),
    "Err": m.Err("do not share the feed"),
    "Err_empty": m.Err(""),
    "Unsub": m.Unsub(K1),
    "RqList": m.RqList(),
    "List": m.List([K1, K2]),
    "List_empty": m.List([]),
    "Root": m.RootMsg(
        K1,
        72623859790382856,
        0,
        bytes.fromhex(ROOT_SEQ0["encoded"]),
        Sig.from_hex(ROOT_SEQ0["sig"]),
    ),
    "RqObject": m.RqObject(hashlib.sha256(b"hello object").digest()),
    "Object": m.Object(b"hello object"),
    "RqPreview": m.RqPreview(K1),
    "RqPeers": m.RqPeers(K1),
    "Peers": m.Peers(K1, [m.PeerInfo(K2, b"\x01\x02", "127.0.0.1:8870", "")]),
}


def test_every_message_vector_is_covered() -> None:
    assert set(VALUES) == set(MESSAGES)
    assert {v.TYPE for v in VALUES.values()} == set(range(1, 17))


@pytest.mark.parametrize("name", sorted(VALUES))
def test_message_vectors(name: str) -> None:
    item = MESSAGES[name]
    value = VALUES[name]
    assert item["type"] == value.TYPE
    assert encode_msg(value).hex() == item["msg"]
    assert decode_msg(bytes.fromhex(item["msg"])) == value
    packet = Packet(item["seq"], item["rseq"], value)
    assert packet.encode().hex() == item["payload"]
    assert packet.frame().hex() == item["frame_2026"]
    assert Packet.decode(bytes.fromhex(item["payload"])) == packet
    reader = FrameReader()
    assert reader.feed(bytes.fromhex(item["frame_2026"])) == [bytes.fromhex(item["payload"])]


def test_object_key_matches_rqobject() -> None:
    assert hashlib.sha256(VALUES["Object"].value).digest() == VALUES["RqObject"].key  # type: ignore[union-attr]


@pytest.mark.parametrize("name", sorted(DECODE_ERRORS))
def test_message_decode_errors(name: str) -> None:
    item = DECODE_ERRORS[name]
    with pytest.raises(MsgError) as info:
        decode_msg(bytes.fromhex(item["msg"]))
    assert str(info.value) == item["go_error"]


def test_short_payload() -> None:
    with pytest.raises(MsgError):
        Packet.decode(b"\x01\x00\x00\x00\x00\x00\x00")
    with pytest.raises(MsgError, match="empty message"):
        Packet.decode(bytes(8))


def test_frame_length_zero_and_too_big_are_refused() -> None:
    with pytest.raises(FrameError):
        FrameReader().feed(b"\x00\x00\x00\x00")
    reader = FrameReader()
    with pytest.raises(FrameError):
        reader.feed((m.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(FrameError):  # and it stays failed
        reader.feed(b"\x00\x00\x00\x01x")
    assert FrameReader().feed(m.MAX_FRAME.to_bytes(4, "big")) == []  # the cap itself is fine
    with pytest.raises(FrameError):
        m.encode_frame(b"")


def test_frames_split_anywhere() -> None:
    frames = b"".join(bytes.fromhex(i["frame_2026"]) for i in MESSAGES.values())
    payloads = [bytes.fromhex(i["payload"]) for i in MESSAGES.values()]
    for step in (1, 3, 7, 64):
        reader = FrameReader()
        out: list[bytes] = []
        for i in range(0, len(frames), step):
            out += reader.feed(frames[i : i + step])
        assert out == payloads
        assert reader.buffered == 0


def test_errors_are_wire_errors() -> None:
    assert issubclass(MsgError, WireError) and issubclass(FrameError, MsgError)


# --- properties ---------------------------------------------------------------------------------

pk_st = st.binary(min_size=33, max_size=33).map(PubKey)
msg_st: st.SearchStrategy[m.Message] = st.one_of(
    st.builds(m.Syn, st.integers(0, 0xFFFF), pk_st),
    st.builds(m.Ack, pk_st),
    st.builds(m.Err, st.text(max_size=20)),
    st.builds(m.Sub, pk_st),
    st.builds(m.Unsub, pk_st),
    st.builds(m.List, st.lists(pk_st, max_size=4)),
    st.builds(
        m.RootMsg,
        pk_st,
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.binary(max_size=64),
        st.binary(min_size=65, max_size=65).map(Sig),
    ),
    st.builds(m.RqObject, st.binary(min_size=32, max_size=32)),
    st.builds(m.Object, st.binary(max_size=64)),
    st.builds(m.RqPreview, pk_st),
    st.builds(m.RqPeers, pk_st),
    st.builds(
        m.Peers,
        pk_st,
        st.lists(
            st.builds(m.PeerInfo, pk_st, st.binary(max_size=8), st.text(max_size=8)), max_size=3
        ),
    ),
    st.sampled_from([m.Ping(), m.Pong(), m.Ok(), m.RqList()]),
)


@given(msg_st, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_roundtrip_and_strictness(value: m.Message, seq: int, rseq: int) -> None:
    data = encode_msg(value)
    assert decode_msg(data) == value
    with pytest.raises(MsgError, match="incomplete decoding"):
        decode_msg(data + b"\x00")
    for cut in range(len(data)):
        try:
            decoded = decode_msg(data[:cut])
        except MsgError:
            continue
        # a shorter prefix can only decode when the tail was optional-free and empty
        assert encode_msg(decoded) == data[:cut]
    packet = Packet(seq, rseq, value)
    assert FrameReader().feed(packet.frame()) == [packet.encode()]
    assert Packet.decode(packet.encode()) == packet


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_msg_error(data: bytes) -> None:
    try:
        value = decode_msg(data)
    except MsgError:
        return
    assert encode_msg(value) == data


@given(st.binary(max_size=300), st.integers(1, 20))
def test_random_frames_raise_only_frame_error(data: bytes, step: int) -> None:
    reader = FrameReader(max_frame=1000)
    try:
        for i in range(0, len(data), step):
            for payload in reader.feed(data[i : i + step]):
                assert 0 < len(payload) <= 1000
    except FrameError:
        pass
