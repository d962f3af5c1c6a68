"""The connection handshake that opens every stcp / stcpr / sudph transport. Sans-I/O.

Lock-step, on the raw stream, before Noise KK:

==  ======================  ================================================================
F0  initiator → responder   the 9 ASCII bytes ``get_nonce`` (no newline)
F1  responder → initiator   ``{"Nonce":[n0,…,n15]}`` + ``\\n`` (16 random bytes as numbers)
F2  initiator → responder   ``{"SrcAddr":{…},"DstAddr":{…},"Nonce":[…],"Sig":"<hex>"}`` + ``\\n``
F3  responder → initiator   ``{"OK":true,"ErrMsg":""}`` + ``\\n``
==  ======================  ================================================================

F2 is signed over its own JSON line (trailing newline included) with ``Sig`` set to the null
signature and ``SrcAddr.public_key`` set to the signer's key; the responder checks the nonce is
the one it sent, verifies the signature against ``SrcAddr.public_key`` and then runs its check
(normally: is something listening on ``DstAddr.port``), answering F3 with ``OK:false`` and the
check's message when it refuses. A bad nonce or signature closes without F3, as upstream.

:class:`InitiatorHandshake` and :class:`ResponderHandshake` take bytes with ``receive_data`` and
queue bytes for ``data_to_send``; when ``complete``, ``leftover`` holds any bytes that arrived
after the last frame (they belong to the Noise layer). Every malformed input raises a
:class:`HandshakeError` subclass.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Container
from dataclasses import dataclass, replace
from typing import Any

from skywire.cipher import CipherError, PubKey, SecKey, Sig, verify
from skywire.dmsg.addr import Addr
from skywire.transport.entry import go_json_string

__all__ = [
    "FRAME0",
    "HANDSHAKE_TIMEOUT",
    "MAX_FRAME_LEN",
    "NONCE_SIZE",
    "TRANSPORT_PORT",
    "BadFrame0Error",
    "F2Check",
    "Frame1",
    "Frame2",
    "Frame3",
    "FrameDecodeError",
    "FrameTooLongError",
    "HandshakeError",
    "HandshakeRejectedError",
    "HandshakeStateError",
    "InitiatorHandshake",
    "NonceMismatchError",
    "ResponderHandshake",
    "SignatureInvalidError",
    "port_checker",
]

FRAME0 = b"get_nonce"
"""F0: the initiator's opening bytes."""

NONCE_SIZE = 16
HANDSHAKE_TIMEOUT = 10.0
"""Seconds the whole handshake may take (the shell enforces it)."""

TRANSPORT_PORT = 45
"""``DstAddr.port`` of a transport dial."""

MAX_FRAME_LEN = 4096
"""Longest JSON line accepted (a real F2 is about 450 bytes)."""


class HandshakeError(Exception):
    """The handshake failed; ``str()`` reads ``handshake failed: <reason>`` as upstream."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"handshake failed: {self.reason}"


class BadFrame0Error(HandshakeError):
    """The first bytes were not ``get_nonce``."""


class FrameDecodeError(HandshakeError):
    """A JSON frame that does not parse or does not have the expected shape."""


class FrameTooLongError(FrameDecodeError):
    """No newline within :data:`MAX_FRAME_LEN` bytes."""


class NonceMismatchError(HandshakeError):
    """F2 carries a nonce other than the one sent in F1."""


class SignatureInvalidError(HandshakeError):
    """F2's signature does not verify against ``SrcAddr.public_key``."""


class HandshakeRejectedError(HandshakeError):
    """The responder refused (F3 ``OK:false``), or a responder check refuses F2.

    ``err_msg`` is the text carried in F3.
    """

    def __init__(self, err_msg: str, *, remote: bool = True) -> None:
        super().__init__(f"handshake rejected: {err_msg}" if remote else err_msg)
        self.err_msg = err_msg


class HandshakeStateError(HandshakeError):
    """Data fed to a handshake that has already failed."""


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _load_frame(line: bytes, name: str) -> dict[str, Any]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameDecodeError(f"{name}: not valid UTF-8") from exc

    def _reject(const: str) -> Any:
        raise ValueError(f"invalid JSON literal {const}")

    try:
        obj = json.loads(text, parse_constant=_reject)
    except (ValueError, RecursionError) as exc:
        raise FrameDecodeError(f"{name}: invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise FrameDecodeError(f"{name}: expected a JSON object")
    return obj


def _require(obj: dict[str, Any], key: str, name: str) -> Any:
    if key not in obj:
        raise FrameDecodeError(f"{name}: missing {key!r}")
    return obj[key]


def _nonce_json(nonce: bytes) -> str:
    return "[" + ",".join(str(b) for b in nonce) + "]"


def _parse_nonce(value: Any, name: str) -> bytes:
    if not isinstance(value, list) or len(value) != NONCE_SIZE:
        raise FrameDecodeError(f"{name}: Nonce must be an array of {NONCE_SIZE} numbers")
    out = bytearray()
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
            raise FrameDecodeError(f"{name}: Nonce elements must be integers 0..255")
        out.append(v)
    return bytes(out)


def _check_nonce(nonce: bytes) -> bytes:
    nonce = bytes(nonce)
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    return nonce


def _addr_json(addr: Addr) -> str:
    return f'{{"public_key":"{addr.pk.hex()}","port":{addr.port}}}'


def _parse_addr(value: Any, name: str) -> Addr:
    if not isinstance(value, dict):
        raise FrameDecodeError(f"{name}: expected an address object")
    pk_text = value.get("public_key", "")
    if not isinstance(pk_text, str):
        raise FrameDecodeError(f"{name}: public_key must be a hex string")
    try:
        pk = PubKey.from_hex(pk_text)
    except CipherError as exc:
        raise FrameDecodeError(f"{name}: {exc}") from exc
    port = value.get("port", 0)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise FrameDecodeError(f"{name}: port must be an integer 0..65535")
    return Addr(pk, port)


@dataclass(frozen=True, slots=True)
class Frame1:
    """The responder's nonce."""

    nonce: bytes

    def __post_init__(self) -> None:
        _check_nonce(self.nonce)

    def to_json(self) -> bytes:
        """The JSON object without the newline (what ``json.Marshal`` gives)."""
        return f'{{"Nonce":{_nonce_json(self.nonce)}}}'.encode()

    def encode(self) -> bytes:
        """The wire bytes: JSON and ``\\n``."""
        return self.to_json() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Frame1:
        """Parse one line (with or without its newline)."""
        obj = _load_frame(line, "frame 1")
        return cls(_parse_nonce(_require(obj, "Nonce", "frame 1"), "frame 1"))


@dataclass(frozen=True, slots=True)
class Frame2:
    """The initiator's signed addresses."""

    src: Addr
    dst: Addr
    nonce: bytes
    sig: Sig = Sig.NULL

    def __post_init__(self) -> None:
        _check_nonce(self.nonce)

    def to_json(self) -> bytes:
        return (
            f'{{"SrcAddr":{_addr_json(self.src)},"DstAddr":{_addr_json(self.dst)}'
            f',"Nonce":{_nonce_json(self.nonce)},"Sig":"{self.sig.hex()}"}}'
        ).encode()

    def encode(self) -> bytes:
        """The wire bytes: JSON and ``\\n``."""
        return self.to_json() + b"\n"

    def signing_bytes(self) -> bytes:
        """The exact bytes signed: this frame's wire bytes with ``Sig`` zeroed."""
        return replace(self, sig=Sig.NULL).encode()

    def sign(self, sk: SecKey) -> Frame2:
        """A copy with ``SrcAddr.public_key`` = ``sk``'s key and the signature set."""
        unsigned = replace(self, src=Addr(sk.pubkey(), self.src.port), sig=Sig.NULL)
        return replace(unsigned, sig=sk.sign(unsigned.encode()))

    def verify(self, nonce: bytes) -> None:
        """Raise unless the nonce is ``nonce`` and the signature is ``SrcAddr.public_key``'s."""
        if self.nonce != nonce:
            raise NonceMismatchError("unexpected nonce")
        try:
            verify(self.src.pk, self.sig, self.signing_bytes())
        except CipherError as exc:
            raise SignatureInvalidError(str(exc)) from exc

    @classmethod
    def decode(cls, line: bytes) -> Frame2:
        obj = _load_frame(line, "frame 2")
        src = _parse_addr(_require(obj, "SrcAddr", "frame 2"), "frame 2 SrcAddr")
        dst = _parse_addr(_require(obj, "DstAddr", "frame 2"), "frame 2 DstAddr")
        nonce = _parse_nonce(_require(obj, "Nonce", "frame 2"), "frame 2")
        sig_text = _require(obj, "Sig", "frame 2")
        if (
            not isinstance(sig_text, str)
            or len(sig_text) != 130
            or any(c not in "0123456789abcdefABCDEF" for c in sig_text)
        ):
            raise FrameDecodeError("frame 2: Sig must be 130 hex characters")
        return cls(src, dst, nonce, Sig(bytes.fromhex(sig_text)))


@dataclass(frozen=True, slots=True)
class Frame3:
    """The responder's verdict."""

    ok: bool = True
    err_msg: str = ""

    def to_json(self) -> bytes:
        ok = "true" if self.ok else "false"
        return f'{{"OK":{ok},"ErrMsg":{go_json_string(self.err_msg)}}}'.encode()

    def encode(self) -> bytes:
        return self.to_json() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Frame3:
        obj = _load_frame(line, "frame 3")
        ok = _require(obj, "OK", "frame 3")
        if not isinstance(ok, bool):
            raise FrameDecodeError("frame 3: OK must be a boolean")
        msg = obj.get("ErrMsg", "")
        if msg is None:
            msg = ""
        if not isinstance(msg, str):
            raise FrameDecodeError("frame 3: ErrMsg must be a string")
        return cls(ok, msg)


F2Check = Callable[[Frame2], None]
"""A responder check on a verified F2; raise :class:`HandshakeRejectedError` to refuse."""


def port_checker(listening: Container[int]) -> F2Check:
    """An :data:`F2Check` refusing ``DstAddr.port`` values nobody listens on."""

    def check(f2: Frame2) -> None:
        if f2.dst.port not in listening:
            raise HandshakeRejectedError("not listening on given port", remote=False)

    return check


# --------------------------------------------------------------------------------------------
# State machines
# --------------------------------------------------------------------------------------------


class _State(enum.Enum):
    AWAIT_F0 = "await frame 0"
    AWAIT_F1 = "await frame 1"
    AWAIT_F2 = "await frame 2"
    AWAIT_F3 = "await frame 3"
    DONE = "done"
    FAILED = "failed"


class _LineReader:
    def __init__(self, max_len: int) -> None:
        self.buf = bytearray()
        self.max_len = max_len

    def next_line(self, name: str) -> bytes | None:
        nl = self.buf.find(b"\n")
        if nl < 0:
            if len(self.buf) > self.max_len:
                raise FrameTooLongError(f"{name}: no newline within {self.max_len} bytes")
            return None
        if nl > self.max_len:
            raise FrameTooLongError(f"{name}: longer than {self.max_len} bytes")
        line = bytes(self.buf[:nl])
        del self.buf[: nl + 1]
        return line


class _Machine:
    def __init__(self, state: _State, max_frame: int) -> None:
        self._state = state
        self._reader = _LineReader(max_frame)
        self._out = bytearray()
        self.leftover = b""
        self.local_addr: Addr | None = None
        self.remote_addr: Addr | None = None

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def failed(self) -> bool:
        return self._state is _State.FAILED

    def data_to_send(self) -> bytes:
        """Bytes to write now (also after a failure: a rejection frame, maybe empty)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed received bytes; raises a :class:`HandshakeError` on malformed or refused input
        (the handshake is then failed for good)."""
        if self._state is _State.FAILED:
            raise HandshakeStateError("handshake already failed")
        if self._state is _State.DONE:
            self.leftover += bytes(data)
            return
        self._reader.buf += data
        try:
            self._advance()
        except HandshakeError:
            self._state = _State.FAILED
            raise
        if self.complete:
            self.leftover = bytes(self._reader.buf)
            self._reader.buf.clear()

    def _advance(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class InitiatorHandshake(_Machine):
    """The dialing side. ``local`` is our address (its key is replaced by ``sk``'s key, as
    upstream signs), ``remote`` the address dialed (port :data:`TRANSPORT_PORT` for
    transports). F0 is queued at once."""

    def __init__(
        self, sk: SecKey, local: Addr, remote: Addr, *, max_frame: int = MAX_FRAME_LEN
    ) -> None:
        super().__init__(_State.AWAIT_F1, max_frame)
        self._sk = sk
        self._local = Addr(sk.pubkey(), local.port)
        self._remote = remote
        self._out += FRAME0

    def _advance(self) -> None:
        if self._state is _State.AWAIT_F1:
            line = self._reader.next_line("frame 1")
            if line is None:
                return
            f1 = Frame1.decode(line)
            f2 = Frame2(self._local, self._remote, f1.nonce).sign(self._sk)
            self._out += f2.encode()
            self._state = _State.AWAIT_F3
        if self._state is _State.AWAIT_F3:
            line = self._reader.next_line("frame 3")
            if line is None:
                return
            f3 = Frame3.decode(line)
            if not f3.ok:
                raise HandshakeRejectedError(f3.err_msg)
            self.local_addr, self.remote_addr = self._local, self._remote
            self._state = _State.DONE


class ResponderHandshake(_Machine):
    """The accepting side. ``check`` runs on a verified F2 (e.g. :func:`port_checker`);
    ``nonce`` is for tests (default: 16 random bytes). On completion ``local_addr`` is F2's
    ``DstAddr`` and ``remote_addr`` its ``SrcAddr`` (the peer's authenticated key)."""

    def __init__(
        self,
        check: F2Check | None = None,
        *,
        nonce: bytes | None = None,
        max_frame: int = MAX_FRAME_LEN,
    ) -> None:
        super().__init__(_State.AWAIT_F0, max_frame)
        self._check = check
        self.nonce = _check_nonce(nonce) if nonce is not None else os.urandom(NONCE_SIZE)

    def _advance(self) -> None:
        if self._state is _State.AWAIT_F0:
            buf = self._reader.buf
            head = bytes(buf[: len(FRAME0)])
            if not FRAME0.startswith(head):
                raise BadFrame0Error(f"bad handshake message: {head.decode('utf-8', 'replace')}")
            if len(head) < len(FRAME0):
                return
            del buf[: len(FRAME0)]
            self._out += Frame1(self.nonce).encode()
            self._state = _State.AWAIT_F2
        if self._state is _State.AWAIT_F2:
            line = self._reader.next_line("frame 2")
            if line is None:
                return
            f2 = Frame2.decode(line)
            f2.verify(self.nonce)
            if self._check is not None:
                try:
                    self._check(f2)
                except HandshakeRejectedError as exc:
                    self._out += Frame3(False, exc.err_msg).encode()
                    raise
            self._out += Frame3(True, "").encode()
            self.local_addr, self.remote_addr = f2.dst, f2.src
            self._state = _State.DONE
