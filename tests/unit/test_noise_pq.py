"""The post-quantum hybrid Noise handshakes (spec pq-hybrid.md), sans-I/O: sizes, the re-key,
the classical fallback in both directions, tampering, the require switch, and upstream's
replay window for session objects (the classical vectors against a hybrid responder are in
test_noise.py)."""

from __future__ import annotations

import hashlib
import logging

import pytest

from skywire.cipher import KeyPair
from skywire.wire.noise import HandshakeError, Noise, Pattern, Role
from skywire.wire.noise_frames import DecryptError, NonceWindow, frame
from skywire.wire.pq import (
    CLASSICAL,
    CT_LEN,
    EK_LEN,
    REQUIRE_PQ_ERROR,
    PQDecapsulator,
    PQPolicy,
    combine,
    encapsulate,
    policy_from_env,
)

HYBRID = PQPolicy(offer=True, require=False)
REQUIRE = PQPolicy(offer=True, require=True)


def pair(
    pattern: Pattern, init_pq: PQPolicy = HYBRID, resp_pq: PQPolicy = HYBRID
) -> tuple[Noise, Noise]:
    a, b = KeyPair.generate(), KeyPair.generate()
    init = Noise(pattern, Role.INITIATOR, a.sk, b.pk, pq=init_pq)
    resp = Noise(pattern, Role.RESPONDER, b.sk, a.pk if pattern is Pattern.KK else None, pq=resp_pq)
    return init, resp


def run(init: Noise, resp: Noise) -> list[bytes]:
    """The whole handshake; the messages as sent."""
    sent = []
    writer, reader = init, resp
    while not (init.handshake_finished and resp.handshake_finished):
        msg = writer.write_message()
        sent.append(msg)
        reader.read_message(msg)
        writer, reader = reader, writer
    return sent


def talks(init: Noise, resp: Noise) -> None:
    assert resp.decrypt(init.encrypt(b"ping")) == b"ping"
    assert init.decrypt(resp.encrypt(b"pong")) == b"pong"
    assert init.send is not None and init.send.nonce == 1  # the first frame carried nonce 1


@pytest.mark.parametrize("pattern", list(Pattern))
def test_hybrid_sizes_and_keys(pattern: Pattern) -> None:
    init, resp = pair(pattern)
    sent = run(init, resp)
    sizes = [len(m) for m in sent]
    assert sizes == ([1233, 1137, 65] if pattern is Pattern.XK else [1233, 1137])
    assert [len(frame(m)) for m in sent[:2]] == [1235, 1139]
    assert init.pq_active and resp.pq_active
    assert init.pq_secret == resp.pq_secret and len(init.pq_secret or b"") == 32
    assert init.send is not None and resp.recv is not None
    assert init.send.key == resp.recv.key and init.recv.key == resp.send.key  # type: ignore[union-attr]
    # each key is the classical one combined with the secret, salted with the final hash
    k1, k2 = init.split_keys
    assert init.handshake_hash == resp.handshake_hash
    hybrid = {combine(k, init.pq_secret or b"", init.handshake_hash) for k in (k1, k2)}
    assert {init.send.key, init.recv.key} == hybrid  # type: ignore[union-attr]
    assert not {k1, k2} & hybrid
    # the writer of the final message still sends with the second key (k2')
    last_writer = init if pattern is Pattern.XK else resp
    assert last_writer.send is not None
    assert last_writer.send.key == combine(k2, init.pq_secret or b"", init.handshake_hash)
    talks(init, resp)


def test_combiner_vector_and_sensitivity() -> None:
    k, ss, cb = b"\xa1" * 32, b"\xb2" * 32, b"\xc3" * 32
    out = combine(k, ss, cb)
    assert out.hex() == "c52120d1786217ed3c812f16a9144888613485d8a17c89b2caa31f303b70ca2d"
    for changed in ((b"\xa2" * 32, ss, cb), (k, b"\xb3" * 32, cb), (k, ss, b"\xc4" * 32)):
        assert combine(*changed) != out


def test_mlkem_keygen_known_answer() -> None:
    """FIPS 203 ML-KEM-768 (not Kyber round 3): the key from seed 00 01 .. 3f is the example
    key of the IETF LAMPS ML-KEM certificates draft (appendix C); its SHA-256."""
    key = PQDecapsulator(seed=bytes(range(64)))
    digest = hashlib.sha256(key.encapsulation_key).hexdigest()
    assert digest == "0b7934c83125c788995e2ba6bd761e33046b3e40571be53e023309a29f398cc9"


def test_mlkem_sizes_and_implicit_rejection() -> None:
    key = PQDecapsulator(seed=bytes(range(64)))
    assert key.encapsulation_key == PQDecapsulator(seed=bytes(range(64))).encapsulation_key
    assert len(key.encapsulation_key) == EK_LEN
    answered = encapsulate(key.encapsulation_key)
    assert answered is not None
    secret, ct = answered
    assert len(ct) == CT_LEN and key.decapsulate(ct) == secret
    altered = bytes([ct[0] ^ 1]) + ct[1:]
    assert key.decapsulate(altered) != secret  # no error: a different secret
    assert encapsulate(key.encapsulation_key[:-1]) is None
    assert encapsulate(b"\xff" * EK_LEN) is None  # fails the FIPS 203 modulus check


@pytest.mark.parametrize("pattern", list(Pattern))
def test_new_initiator_old_responder_falls_back_in_the_same_round_trip(
    pattern: Pattern, caplog: pytest.LogCaptureFixture
) -> None:
    init, resp = pair(pattern, HYBRID, CLASSICAL)
    classical_init, classical_resp = pair(pattern, CLASSICAL, CLASSICAL)
    with caplog.at_level(logging.WARNING, "skywire.noise"):
        sent = run(init, resp)
    assert [len(m) for m in sent][:2] == [1233, 49]  # the old responder answers classically
    assert not init.pq_active and not resp.pq_active and init.pq_downgraded
    assert init.send is not None and init.send.key in init.split_keys  # classical keys
    assert "post-quantum DOWNGRADE" in caplog.text
    talks(init, resp)
    run(classical_init, classical_resp)
    assert not classical_init.pq_downgraded


@pytest.mark.parametrize("pattern", list(Pattern))
def test_old_initiator_new_responder_is_classical(pattern: Pattern) -> None:
    init, resp = pair(pattern, CLASSICAL, HYBRID)
    sent = run(init, resp)
    assert [len(m) for m in sent][:2] == [49, 49]
    assert not init.pq_active and not resp.pq_active and not resp.pq_downgraded
    talks(init, resp)


@pytest.mark.parametrize("size", [1, EK_LEN - 1, EK_LEN + 1, CT_LEN])
def test_a_wrong_sized_offer_is_ignored_not_an_error(size: int) -> None:
    init, resp = pair(Pattern.KK)
    resp.read_message(init.write_message(b"\x01" * size))
    msg2 = resp.write_message()
    assert len(msg2) == 49  # nothing to answer
    init.read_message(msg2)
    assert not init.pq_active and not resp.pq_active
    talks(init, resp)


@pytest.mark.parametrize("which", [0, 1])
def test_a_tampered_pq_message_fails_at_the_tag(which: int) -> None:
    init, resp = pair(Pattern.KK)
    msg1 = init.write_message()
    if which == 0:
        bad = msg1[:500] + bytes([msg1[500] ^ 1]) + msg1[501:]
        with pytest.raises(HandshakeError, match="authentication"):
            resp.read_message(bad)
        return
    resp.read_message(msg1)
    msg2 = resp.write_message()
    bad = msg2[:-40] + bytes([msg2[-40] ^ 1]) + msg2[-39:]
    with pytest.raises(HandshakeError, match="authentication"):
        init.read_message(bad)


def test_require_refuses_classical_in_both_roles_and_the_writer_sends_nothing() -> None:
    # KK, initiator requires, old responder: the initiator fails on reading msg2
    init, resp = pair(Pattern.KK, REQUIRE, CLASSICAL)
    resp.read_message(init.write_message())
    with pytest.raises(HandshakeError) as info:
        init.read_message(resp.write_message())
    assert str(info.value) == REQUIRE_PQ_ERROR and "\u2014" in REQUIRE_PQ_ERROR
    assert not init.handshake_finished
    # KK, responder requires, old initiator: the responder refuses to write msg2
    init, resp = pair(Pattern.KK, CLASSICAL, REQUIRE)
    resp.read_message(init.write_message())
    with pytest.raises(HandshakeError, match="post-quantum required"):
        resp.write_message()
    assert not resp.handshake_finished
    # XK, initiator requires: it refuses to write msg3 after a classical msg2
    init, resp = pair(Pattern.XK, REQUIRE, CLASSICAL)
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    with pytest.raises(HandshakeError, match="post-quantum required"):
        init.write_message()
    # XK, responder requires: it fails on reading msg3
    init, resp = pair(Pattern.XK, CLASSICAL, REQUIRE)
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    with pytest.raises(HandshakeError, match="post-quantum required"):
        resp.read_message(init.write_message())
    # and two hybrid peers that require it complete
    init, resp = pair(Pattern.XK, REQUIRE, REQUIRE)
    run(init, resp)
    assert init.pq_active and resp.pq_active


def test_policy_from_the_environment() -> None:
    assert policy_from_env({}) == PQPolicy(offer=True, require=False)
    assert policy_from_env({"SKYWIRE_REQUIRE_PQ": ""}).require is False
    assert policy_from_env({"SKYWIRE_REQUIRE_PQ": "0"}).require is True  # any non-empty value
    assert policy_from_env({"SKYWIRE_REQUIRE_PQ": "yes"}).require is True


def test_replay_window_for_session_objects() -> None:
    w = NonceWindow(1024)
    with pytest.raises(DecryptError, match=r"\(0\) is invalid"):
        w.check(0)
    for n in (1, 3, 2, 10, 5):  # out of order within the window is fine
        w.check(n)
    with pytest.raises(DecryptError, match=r"\(3\) is repeated"):
        w.check(3)
    w.check(2000)
    with pytest.raises(DecryptError, match=r"\(10\) is too old"):
        w.check(10)
    w.check(977)  # 2000 - 1023: the oldest still inside
    with pytest.raises(DecryptError, match="too old"):
        w.check(976)
    w.check(3024)  # slots that scrolled out are free again
    w.check(2001)
    with pytest.raises(DecryptError, match="repeated"):
        w.check(2001)


def test_hybrid_messages_in_the_gob_stream_objects() -> None:
    """KK msg1 and msg2 ride in the ``NoiseMsg`` byte slices of the signed gob StreamRequest
    and StreamResponse: their gob lengths are FE 04 D1 (1233) and FE 04 71 (1137), and the
    objects decode back to the same messages."""
    from skywire.dmsg.addr import Addr
    from skywire.dmsg.types import (
        StreamRequest,
        StreamResponse,
        decode_request,
        decode_response,
        sign_request,
        sign_response,
    )

    init, resp = pair(Pattern.KK)
    a, b = init.local_pk, resp.local_pk
    msg1 = init.write_message()
    req_obj = sign_request(StreamRequest(1, Addr(a, 49153), Addr(b, 80), msg1), init.local_sk)
    assert bytes.fromhex("fe04d1") + msg1 in req_obj.raw
    assert decode_request(req_obj).noise_msg == msg1
    resp.read_message(msg1)
    msg2 = resp.write_message()
    resp_obj = sign_response(StreamResponse(req_obj.hash(), True, 0, msg2), resp.local_sk)
    assert bytes.fromhex("fe0471") + msg2 in resp_obj.raw
    init.read_message(decode_response(resp_obj).noise_msg)
    assert init.pq_active and resp.pq_active
