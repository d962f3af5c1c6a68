"""dmsg signed stream objects against the upstream vectors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.dmsg.addr import Addr, AddrError, PortAllocator
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.dmsg.types import (
    GO_STREAM_REQUEST,
    GO_STREAM_RESPONSE,
    SignedObject,
    StreamRequest,
    StreamResponse,
    decode_request,
    decode_response,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from skywire.wire.gob import gob_encode
from tests.conftest import load_vectors

GOB = {c["name"]: c for c in load_vectors("gob")["cases"] if c["name"] != "netrpc_stream"}


@pytest.mark.parametrize("name", ["dmsg_stream_request", "dmsg_stream_request_shifted_type_ids"])
def test_request_vector_decodes_and_verifies(name: str) -> None:
    case = GOB[name]
    obj = SignedObject.parse(bytes.fromhex(case["signed_object"]))
    assert obj.hash().hex() == case["signed_object_sha256"]
    req = decode_request(obj)
    assert req.src.pk.hex() == case["signer_pk"]
    assert req.src.port == 49153 and req.dst.port == 80
    verify_request(obj, req)
    if name == "dmsg_stream_request":
        # a fresh encoder reproduces Go's bytes exactly
        assert gob_encode(req, GO_STREAM_REQUEST).hex() == case["gob"]


@pytest.mark.parametrize("name", ["dmsg_stream_response", "dmsg_stream_response_rejected"])
def test_response_vector(name: str) -> None:
    case = GOB[name]
    req_obj = SignedObject.parse(bytes.fromhex(GOB["dmsg_stream_request"]["signed_object"]))
    req = decode_request(req_obj)
    obj = SignedObject.parse(bytes.fromhex(case["signed_object"]))
    resp = decode_response(obj)
    assert resp.req_hash.hex() == case["value"]["ReqHash"]
    assert gob_encode(resp, GO_STREAM_RESPONSE).hex() == case["gob"]
    want = case["go_verify_error_against_request"]
    if want is None:
        verify_response(obj, resp, req_obj, req)
    else:
        with pytest.raises(DmsgError) as exc:
            verify_response(obj, resp, req_obj, req)
        assert str(exc.value).startswith(want)


def _req(a: KeyPair, b: KeyPair, **kw: Any) -> StreamRequest:
    base: dict[str, Any] = {
        "timestamp": 1,
        "src": Addr(a.pk, 49153),
        "dst": Addr(b.pk, 80),
        "noise_msg": b"x" * 49,
    }
    base.update(kw)
    return StreamRequest(**base)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"src": Addr(PubKey.NULL, 5)}, ErrorCode.REQ_INVALID_SRC_PK),
        ({"src": None}, ErrorCode.REQ_INVALID_SRC_PORT),
        ({"dst": Addr(PubKey.NULL, 5)}, ErrorCode.REQ_INVALID_DST_PK),
        ({"dst": None}, ErrorCode.REQ_INVALID_DST_PORT),
        ({"timestamp": 0}, ErrorCode.REQ_INVALID_TIMESTAMP),
    ],
)
def test_request_checks(change: dict[str, Any], code: ErrorCode) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    if change.get("src", 1) is None:
        change = {"src": Addr(a.pk, 0)}
    if change.get("dst", 1) is None:
        change = {"dst": Addr(b.pk, 0)}
    req = _req(a, b, **change)
    obj = sign_request(req, a.sk)
    with pytest.raises(DmsgError) as exc:
        verify_request(obj, decode_request(obj))
    assert exc.value.code == code


def test_forged_request_and_response() -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    req = _req(a, b)
    forged = sign_request(req, c.sk)  # signed by somebody else
    with pytest.raises(DmsgError) as exc:
        verify_request(forged, decode_request(forged))
    assert exc.value.code == ErrorCode.REQ_INVALID_SIG
    good = sign_request(req, a.sk)
    resp = StreamResponse(good.hash(), True, 0, b"y" * 49)
    bad_signer = sign_response(resp, c.sk)
    with pytest.raises(DmsgError) as exc:
        verify_response(bad_signer, resp, good, req)
    assert exc.value.code == ErrorCode.DIAL_RESP_INVALID_SIG
    wrong_hash = StreamResponse(bytes(32), True)
    obj = sign_response(wrong_hash, b.sk)
    with pytest.raises(DmsgError) as exc:
        verify_response(obj, wrong_hash, good, req)
    assert exc.value.code == ErrorCode.DIAL_RESP_INVALID_HASH
    not_accepted = StreamResponse(good.hash(), False)
    obj = sign_response(not_accepted, b.sk)
    with pytest.raises(DmsgError) as exc:
        verify_response(obj, not_accepted, good, req)
    assert exc.value.code == ErrorCode.DIAL_RESP_NOT_ACCEPTED


def test_short_object_refused() -> None:
    with pytest.raises(DmsgError) as exc:
        SignedObject.parse(bytes(65))
    assert exc.value.code == ErrorCode.SIGNED_OBJECT_INVALID


@given(st.binary(min_size=66, max_size=400))
def test_random_objects_raise_dmsg_error(data: bytes) -> None:
    obj = SignedObject.parse(data)
    for decode in (decode_request, decode_response):
        try:
            decode(obj)
        except DmsgError as exc:
            assert exc.code == ErrorCode.SIGNED_OBJECT_INVALID


def test_error_text_and_flags() -> None:
    e = DmsgError(202)
    assert str(e) == "dmsg error 202 - cannot connect to delegated server"
    assert e.transient and not e.temporary
    assert DmsgError(306).temporary
    assert str(DmsgError(307, "x")).endswith("non-existent: x")


def test_addr_parse_and_ports() -> None:
    pk = SecKey.generate().pubkey()
    assert Addr.parse(f"{pk.hex()}:80") == Addr(pk, 80)
    assert str(Addr(pk, 0)).endswith(":~")
    assert Addr.parse(f"{pk.hex()}:~").port == 0
    assert Addr.parse(":7").pk.is_null()
    with pytest.raises(AddrError):
        Addr.parse("zz:1")
    ports = PortAllocator()
    assert ports.reserve_ephemeral() == 49153
    assert ports.reserve(80) and not ports.reserve(80)
    ports.release(80)
    assert ports.reserve(80)
