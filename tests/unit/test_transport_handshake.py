"""The stcp/stcpr/sudph connection handshake: vector bytes, both state machines, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import PubKey, SecKey, Sig, deterministic_keypair, sha256
from skywire.dmsg.addr import Addr
from skywire.transport.handshake import (
    FRAME0,
    MAX_FRAME_LEN,
    TRANSPORT_PORT,
    BadFrame0Error,
    Frame1,
    Frame2,
    Frame3,
    FrameDecodeError,
    FrameTooLongError,
    HandshakeError,
    HandshakeRejectedError,
    HandshakeStateError,
    InitiatorHandshake,
    NonceMismatchError,
    ResponderHandshake,
    SignatureInvalidError,
    port_checker,
)
from tests.conftest import load_vectors


def _vector() -> dict[str, Any]:
    for case in load_vectors("transport")["cases"]:
        if case["kind"] == "connection_handshake":
            item: dict[str, Any] = case["items"][0]
            return item
    raise KeyError("connection_handshake")


V = _vector()
NONCE = bytes.fromhex(V["nonce"])
SK = SecKey.from_hex(V["signer_sk"])
F2_WIRE = V["frame2_wire_with_sig"].encode()
F2 = Frame2.decode(F2_WIRE)
REMOTE = deterministic_keypair(b"handshake-responder")


def test_frame0_bytes() -> None:
    assert V["frame0_ascii"].encode() == FRAME0 == b"get_nonce"


def test_frame1_bytes() -> None:
    f1 = Frame1(NONCE)
    assert f1.to_json() == V["frame1_json_marshal"].encode()
    assert f1.encode() == V["frame1_json_marshal"].encode() + b"\n"
    assert Frame1.decode(f1.encode()) == f1


def test_frame2_bytes_and_signature() -> None:
    assert F2.encode() == F2_WIRE
    assert F2.signing_bytes() == V["frame2_signed_bytes"].encode()
    assert sha256(F2.signing_bytes()).hex() == V["frame2_signed_bytes_sha256"]
    assert V["frame2_go_verify_error"] is None
    F2.verify(NONCE)
    assert F2.src.pk == SK.pubkey()
    assert F2.dst.port == TRANSPORT_PORT
    # Signing the unsigned frame again gives the same signed bytes; the signature is fresh
    # (random nonce) but verifies.
    resigned = replace(F2, sig=Sig.NULL, src=Addr(PubKey.NULL, F2.src.port)).sign(SK)
    assert resigned.signing_bytes() == V["frame2_signed_bytes"].encode()
    resigned.verify(NONCE)


def test_frame3_bytes() -> None:
    assert Frame3().to_json() == V["frame3_ok_json_marshal"].encode()
    assert Frame3().encode() == b'{"OK":true,"ErrMsg":""}\n'
    refused = Frame3(False, "not listening on given port <&>")
    assert refused.encode() == (
        b'{"OK":false,"ErrMsg":"not listening on given port \\u003c\\u0026\\u003e"}\n'
    )
    assert Frame3.decode(refused.encode()) == refused


def test_frame2_verification_failures() -> None:
    with pytest.raises(NonceMismatchError):
        F2.verify(bytes(16))
    tampered = replace(F2, dst=Addr(F2.dst.pk, 46))
    with pytest.raises(SignatureInvalidError):
        tampered.verify(NONCE)
    other = deterministic_keypair(b"someone else")
    claimed = replace(F2, src=Addr(other.pk, F2.src.port))
    with pytest.raises(SignatureInvalidError):
        claimed.verify(NONCE)
    with pytest.raises(SignatureInvalidError):
        replace(F2, sig=Sig.NULL).verify(NONCE)


def _run(
    ini: InitiatorHandshake, resp: ResponderHandshake, chunk: int = 1 << 20
) -> tuple[bytes, bytes]:
    """Shuttle bytes both ways in ``chunk``-sized pieces; returns the full transcripts."""
    to_resp = b""
    to_ini = b""
    for _ in range(20):
        out = ini.data_to_send()
        to_resp += out
        for k in range(0, len(out), chunk):
            resp.receive_data(out[k : k + chunk])
        back = resp.data_to_send()
        to_ini += back
        for k in range(0, len(back), chunk):
            ini.receive_data(back[k : k + chunk])
        if ini.complete and resp.complete:
            break
    return to_resp, to_ini


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_full_handshake_reproduces_vector_frames(chunk: int) -> None:
    local = Addr(PubKey.NULL, 49153)
    remote = Addr(F2.dst.pk, TRANSPORT_PORT)
    ini = InitiatorHandshake(SK, local, remote)
    resp = ResponderHandshake(port_checker({TRANSPORT_PORT}), nonce=NONCE)
    to_resp, to_ini = _run(ini, resp, chunk)
    assert ini.complete and resp.complete
    f1_line = V["frame1_json_marshal"].encode() + b"\n"
    f3_line = V["frame3_ok_json_marshal"].encode() + b"\n"
    assert to_ini == f1_line + f3_line
    assert to_resp.startswith(FRAME0)
    sent_f2 = Frame2.decode(to_resp[len(FRAME0) :])
    assert sent_f2.signing_bytes() == V["frame2_signed_bytes"].encode()
    assert to_resp == FRAME0 + sent_f2.encode()
    assert resp.remote_addr == Addr(SK.pubkey(), 49153)
    assert resp.local_addr == remote
    assert ini.local_addr == Addr(SK.pubkey(), 49153)
    assert ini.remote_addr == remote


def test_leftover_bytes_go_to_the_next_layer() -> None:
    resp = ResponderHandshake(nonce=NONCE)
    resp.receive_data(FRAME0)
    assert resp.data_to_send() == Frame1(NONCE).encode()
    resp.receive_data(F2_WIRE + b"noise-msg-1")
    assert resp.complete
    assert resp.leftover == b"noise-msg-1"
    resp.receive_data(b"+more")
    assert resp.leftover == b"noise-msg-1+more"

    ini = InitiatorHandshake(SK, Addr(PubKey.NULL, 49153), F2.dst)
    assert ini.data_to_send() == FRAME0
    ini.receive_data(Frame1(NONCE).encode())
    assert ini.data_to_send().endswith(b"\n")
    ini.receive_data(Frame3().encode() + b"\x00\x10")
    assert ini.complete and ini.leftover == b"\x00\x10"


def test_port_check_refusal_sends_f3_and_fails() -> None:
    ini = InitiatorHandshake(SK, Addr(PubKey.NULL, 1), Addr(REMOTE.pk, 46))
    resp = ResponderHandshake(port_checker({TRANSPORT_PORT}), nonce=NONCE)
    resp.receive_data(ini.data_to_send())
    ini.receive_data(resp.data_to_send())
    with pytest.raises(HandshakeRejectedError) as info:
        resp.receive_data(ini.data_to_send())
    assert str(info.value) == "handshake failed: not listening on given port"
    refusal = resp.data_to_send()
    assert refusal == b'{"OK":false,"ErrMsg":"not listening on given port"}\n'
    assert resp.failed and not resp.complete
    with pytest.raises(HandshakeStateError):
        resp.receive_data(b"x")
    with pytest.raises(HandshakeRejectedError) as info2:
        ini.receive_data(refusal)
    assert info2.value.err_msg == "not listening on given port"
    assert str(info2.value) == "handshake failed: handshake rejected: not listening on given port"


def test_bad_nonce_or_signature_closes_without_f3() -> None:
    resp = ResponderHandshake(nonce=bytes(16))
    resp.receive_data(FRAME0)
    resp.data_to_send()
    with pytest.raises(NonceMismatchError):
        resp.receive_data(F2_WIRE)
    assert resp.data_to_send() == b""

    resp = ResponderHandshake(nonce=NONCE)
    resp.receive_data(FRAME0)
    resp.data_to_send()
    tampered = F2_WIRE.replace(b'"port":45', b'"port":46')
    with pytest.raises(SignatureInvalidError):
        resp.receive_data(tampered)
    assert resp.data_to_send() == b""


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1", b"get_noncx", b"x", b"get_nonc\x00"])
def test_bad_frame0(data: bytes) -> None:
    resp = ResponderHandshake(nonce=NONCE)
    with pytest.raises(BadFrame0Error):
        resp.receive_data(data)
    assert resp.data_to_send() == b""


def test_partial_frame0_waits() -> None:
    resp = ResponderHandshake(nonce=NONCE)
    resp.receive_data(b"get_")
    assert resp.data_to_send() == b""
    resp.receive_data(b"nonce")
    assert resp.data_to_send() == Frame1(NONCE).encode()


def _f2_obj() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(F2_WIRE)
    return obj


def _bad_f2_lines() -> list[bytes]:
    lines: list[bytes] = [b"", b"[]", b"null", b"{", b"\xff", b'{"SrcAddr":1}']
    for key in ("SrcAddr", "DstAddr", "Nonce", "Sig"):
        obj = _f2_obj()
        del obj[key]
        lines.append(json.dumps(obj).encode())
    mutations: list[tuple[str, Any]] = [
        ("Nonce", list(range(15))),
        ("Nonce", [*range(15), 256]),
        ("Nonce", [*range(15), -1]),
        ("Nonce", [*range(15), 1.5]),
        ("Nonce", [*range(15), True]),
        ("Nonce", "AAECAwQFBgcICQoLDA0ODw=="),
        ("Sig", "00"),
        ("Sig", "zz" * 65),
        ("Sig", 5),
        ("SrcAddr", {"public_key": "02" + "00" * 31, "port": 1}),
        ("SrcAddr", {"public_key": 7, "port": 1}),
        ("SrcAddr", {"public_key": "", "port": 70000}),
        ("DstAddr", {"public_key": "", "port": -1}),
        ("DstAddr", {"public_key": "", "port": "45"}),
        ("DstAddr", "02ab"),
    ]
    for key, value in mutations:
        obj = _f2_obj()
        obj[key] = value
        lines.append(json.dumps(obj).encode())
    return lines


@pytest.mark.parametrize("line", _bad_f2_lines(), ids=lambda b: b[:50].decode("utf-8", "replace"))
def test_malformed_frame2_is_refused(line: bytes) -> None:
    with pytest.raises(FrameDecodeError):
        Frame2.decode(line)
    resp = ResponderHandshake(nonce=NONCE)
    resp.receive_data(FRAME0)
    with pytest.raises(FrameDecodeError):
        resp.receive_data(line + b"\n")
    assert resp.failed


@pytest.mark.parametrize(
    "line",
    [b"{}", b'{"Nonce":null}', b'{"Nonce":[1,2]}', b"[1]", b"nope", b'{"Nonce":"abc"}'],
)
def test_malformed_frame1_is_refused(line: bytes) -> None:
    ini = InitiatorHandshake(SK, Addr(PubKey.NULL, 1), F2.dst)
    ini.data_to_send()
    with pytest.raises(FrameDecodeError):
        ini.receive_data(line + b"\n")
    assert ini.data_to_send() == b""


@pytest.mark.parametrize(
    "line", [b"{}", b'{"OK":"yes"}', b'{"OK":true,"ErrMsg":5}', b"true", b'{"OK":1}']
)
def test_malformed_frame3_is_refused(line: bytes) -> None:
    ini = InitiatorHandshake(SK, Addr(PubKey.NULL, 1), F2.dst)
    ini.data_to_send()
    ini.receive_data(Frame1(NONCE).encode())
    ini.data_to_send()
    with pytest.raises(FrameDecodeError):
        ini.receive_data(line + b"\n")


def test_frame_without_newline_is_bounded() -> None:
    ini = InitiatorHandshake(SK, Addr(PubKey.NULL, 1), F2.dst)
    with pytest.raises(FrameTooLongError):
        ini.receive_data(b" " * (MAX_FRAME_LEN + 1))
    resp = ResponderHandshake(nonce=NONCE)
    resp.receive_data(FRAME0)
    resp.receive_data(b"{" + b" " * 100)
    assert not resp.complete and not resp.failed
    with pytest.raises(FrameTooLongError):
        resp.receive_data(b" " * MAX_FRAME_LEN)


def test_frame_constructors_check_nonce_length() -> None:
    with pytest.raises(ValueError):
        Frame1(b"short")
    with pytest.raises(ValueError):
        ResponderHandshake(nonce=b"\x00" * 17)


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_responder(data: bytes) -> None:
    resp = ResponderHandshake(nonce=NONCE)
    try:
        resp.receive_data(FRAME0 + data)
    except HandshakeError:
        assert resp.failed
        return
    assert resp.complete or not resp.failed


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fuzz_frame_decoders(data: bytes) -> None:
    for cls in (Frame1, Frame2, Frame3):
        try:
            frame = cls.decode(data)  # type: ignore[attr-defined]
        except FrameDecodeError:
            continue
        assert cls.decode(frame.encode()) == frame  # type: ignore[attr-defined]


@settings(max_examples=100)
@given(
    st.binary(min_size=16, max_size=16),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.text(max_size=60),
)
def test_round_trips(nonce: bytes, sport: int, dport: int, msg: str) -> None:
    f2 = Frame2(Addr(PubKey.NULL, sport), Addr(REMOTE.pk, dport), nonce).sign(SK)
    assert Frame2.decode(f2.encode()) == f2
    f2.verify(nonce)
    assert Frame1.decode(Frame1(nonce).encode()) == Frame1(nonce)
    if not any("\ud800" <= c <= "\udfff" for c in msg):
        assert Frame3.decode(Frame3(False, msg).encode()) == Frame3(False, msg)
