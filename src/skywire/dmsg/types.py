"""Signed stream request/response objects exchanged when a dmsg stream is set up.

A signed object is ``sig(65) ‖ gob(value)`` where ``sig`` signs ``SHA-256(gob)``; the hash of the
whole object (signature included) is what a response's ``ReqHash`` names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from skywire.cipher import SIG_LEN, CipherError, PubKey, SecKey, Sig, sha256, verify
from skywire.dmsg.addr import Addr
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.wire.errors import GobError
from skywire.wire.gob import GoBool, GoBytes, GoInt64, GoStruct, GoUint16, gob_decode, gob_encode
from skywire.wire.gob_types import PUBKEY, SHA256

MAX_OBJECT_SIZE = 0xFFFF


def _addr(pk: PubKey = PubKey.NULL, port: int = 0) -> Addr:
    return Addr(pk if pk is not None else PubKey.NULL, port)


GO_ADDR = GoStruct("Addr", [("PK", PUBKEY, "pk"), ("Port", GoUint16, "port")], py_type=_addr)


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Sent by the dialing client; signed by ``src.pk``."""

    timestamp: int
    src: Addr
    dst: Addr
    noise_msg: bytes = b""


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """Sent back by the listening client; signed by the request's ``dst.pk``."""

    req_hash: bytes
    accepted: bool
    err_code: int = 0
    noise_msg: bytes = b""


def _request(
    timestamp: int = 0, src: Addr | None = None, dst: Addr | None = None, noise_msg: bytes = b""
) -> StreamRequest:
    return StreamRequest(timestamp, src or _addr(), dst or _addr(), noise_msg or b"")


def _response(
    req_hash: bytes = bytes(32), accepted: bool = False, err_code: int = 0, noise_msg: bytes = b""
) -> StreamResponse:
    return StreamResponse(req_hash or bytes(32), accepted, err_code, noise_msg or b"")


GO_STREAM_REQUEST = GoStruct(
    "StreamRequest",
    [
        ("Timestamp", GoInt64, "timestamp"),
        ("SrcAddr", GO_ADDR, "src"),
        ("DstAddr", GO_ADDR, "dst"),
        ("NoiseMsg", GoBytes, "noise_msg"),
    ],
    py_type=_request,
)
GO_STREAM_RESPONSE = GoStruct(
    "StreamResponse",
    [
        ("ReqHash", SHA256, "req_hash"),
        ("Accepted", GoBool, "accepted"),
        ("ErrCode", GoUint16, "err_code"),
        ("NoiseMsg", GoBytes, "noise_msg"),
    ],
    py_type=_response,
)


@dataclass(frozen=True, slots=True)
class SignedObject:
    """``sig ‖ gob`` as carried in a session-encrypted frame."""

    raw: bytes
    _hash: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def parse(cls, raw: bytes) -> SignedObject:
        if len(raw) <= SIG_LEN:
            raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID)
        return cls(bytes(raw))

    @property
    def sig(self) -> Sig:
        return Sig(self.raw[:SIG_LEN])

    @property
    def gob(self) -> bytes:
        return self.raw[SIG_LEN:]

    def hash(self) -> bytes:
        """SHA-256 of the whole object, signature included (a response's ``ReqHash``)."""
        return sha256(self.raw)

    def check_signer(self, pk: PubKey, code: ErrorCode) -> None:
        try:
            verify(pk, self.sig, self.gob)
        except CipherError as exc:
            raise DmsgError(code, str(exc)) from exc


def sign_request(req: StreamRequest, sk: SecKey) -> SignedObject:
    data = gob_encode(req, GO_STREAM_REQUEST)
    return SignedObject(sk.sign(data).raw + data)


def sign_response(resp: StreamResponse, sk: SecKey) -> SignedObject:
    data = gob_encode(resp, GO_STREAM_RESPONSE)
    return SignedObject(sk.sign(data).raw + data)


def decode_request(obj: SignedObject) -> StreamRequest:
    try:
        req = gob_decode(obj.gob, GO_STREAM_REQUEST)
    except GobError as exc:
        raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID, f"stream request: {exc}") from exc
    if not isinstance(req, StreamRequest):
        raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID, "not a stream request")
    return req


def decode_response(obj: SignedObject) -> StreamResponse:
    try:
        resp = gob_decode(obj.gob, GO_STREAM_RESPONSE)
    except GobError as exc:
        raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID, f"stream response: {exc}") from exc
    if not isinstance(resp, StreamResponse):
        raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID, "not a stream response")
    return resp


def verify_request(obj: SignedObject, req: StreamRequest) -> None:
    """The checks every hop makes on a request (keys, ports, timestamp, then the signature)."""
    if req.src.pk.is_null():
        raise DmsgError(ErrorCode.REQ_INVALID_SRC_PK)
    if req.src.port == 0:
        raise DmsgError(ErrorCode.REQ_INVALID_SRC_PORT)
    if req.dst.pk.is_null():
        raise DmsgError(ErrorCode.REQ_INVALID_DST_PK)
    if req.dst.port == 0:
        raise DmsgError(ErrorCode.REQ_INVALID_DST_PORT)
    if req.timestamp <= 0:
        raise DmsgError(ErrorCode.REQ_INVALID_TIMESTAMP)
    obj.check_signer(req.src.pk, ErrorCode.REQ_INVALID_SIG)


def verify_response(
    obj: SignedObject,
    resp: StreamResponse,
    req_obj: SignedObject,
    req: StreamRequest,
    *,
    require_accepted: bool = True,
) -> None:
    """The checks on a response: it names our request, the destination signed it, it accepts."""
    if resp.req_hash != req_obj.hash():
        raise DmsgError(ErrorCode.DIAL_RESP_INVALID_HASH)
    obj.check_signer(req.dst.pk, ErrorCode.DIAL_RESP_INVALID_SIG)
    if require_accepted and not resp.accepted:
        if resp.err_code:
            raise DmsgError(resp.err_code, "rejected by the remote")
        raise DmsgError(ErrorCode.DIAL_RESP_NOT_ACCEPTED)


def now_nanos() -> int:
    return time.time_ns()
