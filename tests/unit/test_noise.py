"""Noise XK/KK over secp256k1: handshakes, key split and transport frames against upstream bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import KeyPair, SecKey
from skywire.wire.errors import NoiseError
from skywire.wire.noise import HandshakeError, Noise, Pattern, Role, TransportDecoder
from skywire.wire.noise_aio import WRITE_PIECE, NoiseStream
from skywire.wire.noise_frames import MAX_PLAINTEXT, DecryptError, FrameError, FrameReader, frame
from skywire.wire.pq import CLASSICAL, PQPolicy
from tests.conftest import load_vectors

CASES: list[dict[str, Any]] = load_vectors("noise")["cases"]


def _pair(case: dict[str, Any], resp_pq: PQPolicy = CLASSICAL) -> tuple[Noise, Noise]:
    pattern = Pattern(case["pattern"])
    i_sk = SecKey.from_hex(case["initiator_static_sk"])
    r_sk = SecKey.from_hex(case["responder_static_sk"])
    init = Noise(
        pattern,
        Role.INITIATOR,
        i_sk,
        r_sk.pubkey(),
        ephemeral=SecKey.from_hex(case["initiator_ephemeral_sk"]),
        pq=CLASSICAL,  # the vectors are a classical upstream peer's
    )
    resp = Noise(
        pattern,
        Role.RESPONDER,
        r_sk,
        i_sk.pubkey() if pattern is Pattern.KK else None,
        ephemeral=SecKey.from_hex(case["responder_ephemeral_sk"]),
        pq=resp_pq,
    )
    return init, resp


def _handshake(case: dict[str, Any]) -> tuple[Noise, Noise]:
    init, resp = _pair(case)
    sides = {"initiator": (init, resp), "responder": (resp, init)}
    for hf in case["handshake_frames"]:
        writer, reader = sides[hf["from"]]
        msg = writer.write_message()
        assert msg.hex() == hf["message"]
        assert frame(msg).hex() == hf["bytes"]
        assert reader.read_message(msg) == b""
    return init, resp


@pytest.mark.parametrize("case", CASES, ids=[f"{c['pattern']}-{i}" for i, c in enumerate(CASES)])
def test_a_hybrid_responder_answers_the_classical_vectors_byte_for_byte(
    case: dict[str, Any],
) -> None:
    """The recorded initiators are classical upstream peers: a responder that offers the
    post-quantum hybrid sees no key in their msg1 and answers exactly what was recorded."""
    _, resp = _pair(case, resp_pq=PQPolicy(offer=True, require=False))
    for hf in case["handshake_frames"]:
        msg = bytes.fromhex(hf["message"])
        if hf["from"] == "initiator":
            assert resp.read_message(msg) == b""
        else:
            assert resp.write_message() == msg
    assert resp.handshake_finished and not resp.pq_active


@pytest.mark.parametrize("case", CASES, ids=[f"{c['pattern']}-{i}" for i, c in enumerate(CASES)])
def test_handshake_matches_vector(case: dict[str, Any]) -> None:
    init, resp = _handshake(case)
    assert case["protocol_name"] == Pattern(case["pattern"]).protocol_name.decode()
    for side in (init, resp):
        assert side.handshake_hash.hex() == case["handshake_hash"]
        assert side.split_keys[0].hex() == case["split_cs1_key"]
        assert side.split_keys[1].hex() == case["split_cs2_key"]
    assert init.send is not None and resp.send is not None
    assert init.send.key.hex() == case["initiator_send_key"]
    assert resp.send.key.hex() == case["responder_send_key"]
    assert resp.remote_pk == init.local_pk


@pytest.mark.parametrize("case", CASES, ids=[f"{c['pattern']}-{i}" for i, c in enumerate(CASES)])
def test_transport_frames_match_vector(case: dict[str, Any]) -> None:
    init, resp = _handshake(case)
    sides = {"initiator": (init, resp), "responder": (resp, init)}
    decoders = {"initiator": TransportDecoder(resp), "responder": TransportDecoder(init)}
    for write in case["transport"]:
        writer, _ = sides[write["from"]]
        pt = bytes.fromhex(write["plaintext"])
        wire = writer.encode_frames(pt)
        assert wire.hex() == "".join(f["wire"] for f in write["frames"])
        for f in write["frames"]:
            assert len(bytes.fromhex(f["ciphertext_and_tag"])) <= MAX_PLAINTEXT + 16
        got = b"".join(decoders[write["from"]].feed(wire))
        assert got == pt


def test_xk_initiator_sends_with_second_split_key() -> None:
    case = next(c for c in CASES if c["pattern"] == "XK")
    init, resp = _handshake(case)
    assert init.send is not None and resp.send is not None
    assert init.send.key == init.split_keys[1]
    assert resp.send.key == resp.split_keys[0]


def _fresh(pattern: Pattern) -> tuple[Noise, Noise]:
    a, b = KeyPair.generate(), KeyPair.generate()
    init = Noise(pattern, Role.INITIATOR, a.sk, b.pk)
    resp = Noise(pattern, Role.RESPONDER, b.sk, a.pk if pattern is Pattern.KK else None)
    while not (init.handshake_finished and resp.handshake_finished):
        if not init.handshake_finished or init.my_turn():
            resp.read_message(init.write_message())
        if not resp.handshake_finished:
            init.read_message(resp.write_message())
    return init, resp


def test_replayed_and_out_of_order_nonces_rejected() -> None:
    init, resp = _fresh(Pattern.KK)
    f1 = init.encrypt(b"one")
    f2 = init.encrypt(b"two")
    assert resp.decrypt(f2) == b"two"
    with pytest.raises(DecryptError):
        resp.decrypt(f1)  # older nonce
    with pytest.raises(DecryptError):
        resp.decrypt(f2)  # replay
    # a session's signed objects may come out of order (the replay window), each once
    assert resp.decrypt(f1, strict=False) == b"one"
    with pytest.raises(DecryptError, match="repeated"):
        resp.decrypt(f1, strict=False)


def test_tampered_frame_rejected() -> None:
    init, resp = _fresh(Pattern.XK)
    body = bytearray(init.encrypt(b"hello"))
    body[-1] ^= 1
    with pytest.raises(DecryptError):
        resp.decrypt(bytes(body))


def test_stream_frames_opened_in_any_slicing_match_one_per_frame_opening() -> None:
    """Frames split anywhere across feeds (one byte at a time, mid-prefix, mid-body) open to
    the same plaintext as one frame at a time; empty frames add nothing."""
    data = bytes(range(256)) * 70 + b"tail"  # five frames, the last one short
    for step in (1, 2, 3, 4093, 4096, 9000, 1 << 20):
        init, resp = _fresh(Pattern.KK)
        wire = init.encode_frames(data) + frame(init.encrypt(b"")) + init.encode_frames(b"end")
        dec = TransportDecoder(resp)
        got = bytearray()
        for off in range(0, len(wire), step):
            for chunk in dec.feed(wire[off : off + step]):
                assert chunk
                got += chunk
        assert bytes(got) == data + b"end"
        assert dec.buffered == 0


@pytest.mark.parametrize(
    ("mangle", "error"),
    [
        (lambda f1, f2: f2 + f1, DecryptError),  # an older nonce after a newer one
        (lambda f1, f2: f1 + f1, DecryptError),  # a replayed frame
        (lambda f1, f2: f1[:-1] + bytes([f1[-1] ^ 1]), DecryptError),  # a flipped tag bit
        (lambda f1, f2: b"\x0f\xff" + bytes(4095), FrameError),  # announced over 4094
        (lambda f1, f2: b"\x00\x17" + f1[2:25], DecryptError),  # shorter than nonce + tag
    ],
    ids=["older", "replayed", "tampered", "too-long", "too-short"],
)
def test_stream_frames_refused_with_typed_errors(mangle: Any, error: type[Exception]) -> None:
    init, resp = _fresh(Pattern.KK)
    f1, f2 = init.encode_frames(b"first"), init.encode_frames(b"second")
    with pytest.raises(error):
        TransportDecoder(resp).feed(mangle(f1, f2))


def test_wrong_static_key_fails_kk() -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    init = Noise(Pattern.KK, Role.INITIATOR, a.sk, b.pk)
    resp = Noise(Pattern.KK, Role.RESPONDER, b.sk, c.pk)  # expects somebody else
    with pytest.raises(HandshakeError):
        resp.read_message(init.write_message())


def test_out_of_turn_refused() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    resp = Noise(Pattern.XK, Role.RESPONDER, b.sk)
    with pytest.raises(HandshakeError):
        resp.write_message()
    with pytest.raises(HandshakeError):
        Noise(Pattern.KK, Role.INITIATOR, a.sk, None)


def test_large_write_split_and_empty_write() -> None:
    init, resp = _fresh(Pattern.KK)
    assert init.encode_frames(b"") == b""
    data = bytes(range(256)) * 100
    wire = init.encode_frames(data)
    reader = FrameReader()
    reader.feed(wire)
    bodies = []
    while (b := reader.next_frame()) is not None:
        bodies.append(b)
    assert len(bodies) == -(-len(data) // MAX_PLAINTEXT)
    assert b"".join(resp.decrypt(b) for b in bodies) == data


class _HeldStream:
    """An inner stream that takes each write only when the test lets it (flow control)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.arrived = asyncio.Event()
        self.go = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.arrived.set()
        await self.go.wait()
        self.go.clear()


async def test_a_large_stream_write_is_sealed_a_piece_at_a_time() -> None:
    init, resp = _fresh(Pattern.KK)
    inner = _HeldStream()
    stream = NoiseStream(inner, init)  # type: ignore[arg-type]
    data = bytes(range(256)) * 4096  # 1 MiB
    writer = asyncio.create_task(stream.write(data))
    pieces = -(-len(data) // WRITE_PIECE)
    async with asyncio.timeout(10):
        for piece in range(1, pieces + 1):
            await inner.arrived.wait()
            inner.arrived.clear()
            # held by the stream below: one sealed piece, the next not yet sealed
            assert len(inner.writes) == piece
            assert not writer.done()
            inner.go.set()
        await writer
    assert len(inner.writes) == pieces
    reader = FrameReader()
    reader.feed(b"".join(inner.writes))
    bodies = []
    while (b := reader.next_frame()) is not None:
        bodies.append(b)
    assert b"".join(resp.decrypt(b) for b in bodies) == data


def test_oversized_frame_prefix_is_fatal() -> None:
    reader = FrameReader()
    with pytest.raises(FrameError):
        reader.feed(b"\x10\x00" + bytes(10))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_handshake_bytes_raise_typed(data: bytes) -> None:
    case = CASES[0]
    _, resp = _pair(case)
    with pytest.raises(NoiseError):
        resp.read_message(data)


@settings(max_examples=300)
@given(st.binary(max_size=9000))
def test_random_transport_bytes_raise_typed(data: bytes) -> None:
    _init, resp = _fresh(Pattern.KK)
    dec = TransportDecoder(resp)
    try:
        out = dec.feed(data)
    except NoiseError:
        return
    assert out == []  # random bytes never authenticate


@given(st.integers(min_value=0, max_value=400))
def test_truncated_vector_handshake_raises_typed(cut: int) -> None:
    case = CASES[1]
    init, resp = _pair(case)
    msg = init.write_message()
    if cut >= len(msg):
        return
    with pytest.raises(NoiseError):
        resp.read_message(msg[:cut])
