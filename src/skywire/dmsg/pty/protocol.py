"""The dmsgpty wire protocol, sans-I/O (upstream ``pkg/dmsgpty``: const.go, rpc_util.go,
pty_gateway.go, whitelist_gateway.go).

A connection to a host (a dmsg stream to port 22, or the host's local CLI socket) starts with a
request ``u8 len ‖ URI`` (``dmsgpty/pty``, ``dmsgpty/proxy?pk=<pk>&port=<port>`` or
``dmsgpty/whitelist``); the host answers one byte, ``0`` accept or ``1`` reject. Then the same
connection carries Go ``net/rpc`` with the gob codec: service ``pty`` (``Start``, ``Stop``,
``Read``, ``Write``, ``SetPtySize``) or ``whitelist`` (``Whitelist``, ``WhitelistAdd``,
``WhitelistRemove``). Over dmsg a host checks the remote key against its whitelist before it
reads the request, and rejects a key not on it without reading anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from skywire.cipher import CipherError, PubKey
from skywire.dmsg.pty.errors import PtyRejectedError, PtyRequestError
from skywire.wire.gob import GoBytes, GoInt, GoPtr, GoSlice, GoString, GoStruct, GoUint16
from skywire.wire.gob_types import PUBKEY
from skywire.wire.netrpc import INVALID_REQUEST

__all__ = [
    "ACCEPT",
    "BYTES",
    "COMMAND_REQ",
    "DEFAULT_CMD",
    "DEFAULT_PORT",
    "EMPTY",
    "INT",
    "MAX_URI_LENGTH",
    "PTY_PROXY_URI",
    "PTY_RPC_NAME",
    "PTY_URI",
    "PUBKEYS",
    "REJECT",
    "WHITELIST_RPC_NAME",
    "WHITELIST_URI",
    "WIN_SIZE",
    "CommandReq",
    "PtyRequest",
    "WinSize",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "proxy_uri",
]

DEFAULT_PORT = 22
PTY_RPC_NAME = "pty"
PTY_URI = "dmsgpty/pty"
PTY_PROXY_URI = "dmsgpty/proxy"
WHITELIST_RPC_NAME = "whitelist"
WHITELIST_URI = "dmsgpty/whitelist"
DEFAULT_CMD = "/bin/bash"
"""What upstream's CLI runs when not told otherwise."""

ACCEPT = b"\x00"
REJECT = b"\x01"
MAX_URI_LENGTH = 255

_MAX_U16 = 0xFFFF


# --------------------------------------------------------------------------------------------
# RPC values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WinSize:
    """A terminal size (upstream ``WinSize``; gob fields ``X, Y, Rows, Cols``, all uint16)."""

    rows: int
    cols: int
    x: int = 0
    y: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "x", "y"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= _MAX_U16:
                raise ValueError(f"WinSize.{name} must be a uint16, not {value!r}")


@dataclass(frozen=True, slots=True)
class CommandReq:
    """``Start``'s argument: the command, its arguments and an optional initial size."""

    name: str
    args: tuple[str, ...] = field(default=())
    size: WinSize | None = None

    def __post_init__(self) -> None:
        # the decoder hands a list (or None for an absent field); keep one shape
        object.__setattr__(self, "args", tuple(self.args or ()))


WIN_SIZE = GoStruct(
    "WinSize",
    [
        ("X", GoUint16, "x"),
        ("Y", GoUint16, "y"),
        ("Rows", GoUint16, "rows"),
        ("Cols", GoUint16, "cols"),
    ],
    py_type=WinSize,
)
COMMAND_REQ = GoStruct(
    "CommandReq",
    [
        ("Name", GoString, "name"),
        ("Arg", GoSlice(GoString, "[]string"), "args"),
        ("Size", GoPtr(WIN_SIZE), "size"),
    ],
    py_type=CommandReq,
)
EMPTY = INVALID_REQUEST
"""Go's ``struct{}``: the argument or reply of the calls that carry none."""
INT = GoInt
"""``Read``'s argument (bytes wanted) and ``Write``'s reply (bytes written): Go ``int``."""
BYTES = GoBytes
"""``Read``'s reply and ``Write``'s argument: Go ``[]byte``."""
PUBKEYS = GoSlice(PUBKEY)
"""``[]cipher.PubKey`` at top level: the whitelist calls."""


# --------------------------------------------------------------------------------------------
# Request and response
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PtyRequest:
    """A parsed request URI: ``path`` is what a host matches its endpoints against."""

    uri: str
    path: str
    query: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def proxy_target(self) -> tuple[PubKey, int]:
        """The ``pk`` and ``port`` of a ``dmsgpty/proxy`` request."""
        try:
            pk = PubKey.from_hex(self.query.get("pk", ""))
        except CipherError as exc:
            raise PtyRequestError(f"invalid query value 'pk': {exc}") from exc
        if pk == PubKey.NULL:  # upstream parses it, then fails to dial it
            raise PtyRequestError("invalid query value 'pk': null public key")
        try:
            port = int(self.query.get("port", ""))
        except ValueError as exc:
            raise PtyRequestError(f"invalid query value 'port': {exc}") from exc
        if not 0 <= port <= _MAX_U16:
            raise PtyRequestError(f"invalid query value 'port': {port} out of range")
        return pk, port


def encode_request(uri: str) -> bytes:
    """``u8 len ‖ URI``; a URI over 255 bytes raises :class:`PtyRequestError`."""
    raw = uri.encode()
    if len(raw) > MAX_URI_LENGTH:
        raise PtyRequestError(f"request URI cannot be larger than {MAX_URI_LENGTH} bytes")
    return bytes([len(raw)]) + raw


def parse_uri(raw: bytes) -> PtyRequest:
    """The request of the URI bytes after the length (one leading ``/`` is dropped, as
    upstream does)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise PtyRequestError(f"failed to parse URI: {exc}") from exc
    text = text.removeprefix("/")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise PtyRequestError(f"failed to parse URI: {exc}") from exc
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return PtyRequest(text, parts.path, query)


def decode_request(data: bytes) -> tuple[PtyRequest, int] | None:
    """The request at the start of ``data`` and how many bytes it took, or ``None`` while it
    is incomplete."""
    if not data:
        return None
    end = 1 + data[0]
    if len(data) < end:
        return None
    return parse_uri(bytes(data[1:end])), end


def encode_response(accepted: bool) -> bytes:
    return ACCEPT if accepted else REJECT


def decode_response(data: bytes) -> None:
    """Check the host's one-byte answer; anything but ``0`` raises :class:`PtyRejectedError`."""
    if len(data) != 1:
        raise PtyRequestError(f"a response is one byte, not {len(data)}")
    if data != ACCEPT:
        raise PtyRejectedError()


def proxy_uri(pk: PubKey, port: int = DEFAULT_PORT) -> str:
    """The URI asking a local host to proxy a pty from ``pk:port`` (upstream's spelling)."""
    return f"{PTY_PROXY_URI}?pk={pk}&port={port}"
