"""The app ↔ visor protocol, sans-I/O: ``PROC_CONFIG``, the Hello, the control messages.

An app process reaches the visor's network through the visor's app server (TCP
``app_server_addr``, upstream default ``localhost:5505``). Every TCP connection from the app
starts with a **Hello**, ``u16 BE length ‖ JSON`` as upstream's (``pkg/app/appcommon/hello.go``),
at most :data:`HELLO_MAX` bytes of JSON::

    {"proc_key": "<32 hex>", "kind": "control"}
    {"proc_key": "<32 hex>", "kind": "data", "conn": "<conn id>"}

**Control** (one per app): JSON lines both ways, each at most :data:`LINE_MAX` bytes::

    → {"id": n, "op": "listen", "net": "skynet"|"dmsg", "port": p}
    → {"id": n, "op": "dial", "net": …, "pk": "<hex>", "port": p[, "local_port": p]}
    → {"id": n, "op": "close_listener", "net": …, "port": p}
    → {"id": n, "op": "status", "text": "…"}          (upstream SetDetailedStatus)
    → {"id": n, "op": "error", "text": "…"}           (upstream SetError)
    ← {"id": n, "ok": true}                            (dial adds "conn" and "remote")
    ← {"id": n, "ok": false, "error": "…"[, "code": c]}
    ← {"event": "accept", "net": …, "port": p, "conn": "<id>",
       "remote": {"net": …, "pk": "<hex>", "port": p}}

**Data**: after a Hello naming a conn id handed out by a dial reply or an accept event, raw
bytes both ways, spliced by the visor onto the route group or dmsg stream.

Why not upstream's gob ``net/rpc``: upstream makes one RPC call per ``Read``/``Write`` (and per
``Accept``, ``SetDeadline``…), each a gob round trip on the one connection. Here the control
plane is a few JSON lines and every app connection gets its own TCP connection that carries raw
bytes, so the visor splices bytes with no framing, flow control is TCP's, and an app that stops
reading stalls only its own connection. A Go app built against upstream's ``pkg/app`` does not
speak this protocol.
"""

from __future__ import annotations

import json
import re
import secrets
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from skywire.cipher import CipherError, PubKey

__all__ = [
    "HELLO_MAX",
    "LINE_MAX",
    "AcceptEvent",
    "AddrInfo",
    "AppNetError",
    "AppRequestError",
    "CloseListenerRequest",
    "ConnKind",
    "DialRequest",
    "ErrorReply",
    "ErrorRequest",
    "Hello",
    "ListenRequest",
    "Net",
    "OkReply",
    "ProcConfig",
    "ProtocolError",
    "Reply",
    "Request",
    "ServerMessage",
    "StatusRequest",
    "decode_hello",
    "decode_request",
    "decode_server_message",
    "encode_hello",
    "encode_message",
    "hello_length",
    "new_conn_id",
    "new_proc_key",
]

HELLO_MAX = 4096
"""Largest Hello JSON accepted (bytes)."""
LINE_MAX = 64 * 1024
"""Largest control line accepted (bytes, newline included)."""
TEXT_MAX = 16 * 1024
"""Longest status / error text an app may set."""

_PROC_KEY = re.compile(r"[0-9a-f]{32}")
_CONN_ID = re.compile(r"[0-9a-f]{8,64}")


# ---------------------------------------------------------------------------- errors
class AppNetError(Exception):
    """Base of the app network's errors; ``code`` is the upstream numeric code, if one applies."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ProtocolError(AppNetError, ValueError):
    """Malformed input (Hello, control line, PROC_CONFIG). ``request_id`` is the request's id
    when it could be read, so that the server can still answer it."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class AppRequestError(AppNetError, ConnectionError):
    """The visor refused a request (``ok: false``) or the control connection is gone."""


# ---------------------------------------------------------------------------- values
class Net(StrEnum):
    SKYNET = "skynet"
    DMSG = "dmsg"


class ConnKind(StrEnum):
    CONTROL = "control"
    DATA = "data"


def new_proc_key() -> str:
    """A fresh per-run secret: 16 random bytes as 32 hex characters (upstream ``ProcKey``)."""
    return secrets.token_hex(16)


def new_conn_id() -> str:
    """A fresh, unguessable conn id."""
    return secrets.token_hex(12)


def _obj(data: bytes | str, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise ProtocolError(f"{what} is {len(data)} bytes, more than {limit}")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return value


def _str(obj: dict[str, Any], key: str, what: str, *, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"{what}: {key!r} must be a string")
    return value


def _int(
    obj: dict[str, Any], key: str, what: str, *, lo: int, hi: int, default: int | None = None
) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(f"{what}: {key!r} must be an integer in {lo}..{hi}")
    return value


def _pk(obj: dict[str, Any], key: str, what: str) -> PubKey:
    text = _str(obj, key, what)
    try:
        pk = PubKey.from_hex(text)
    except CipherError as exc:
        raise ProtocolError(f"{what}: {key!r} is not a public key: {exc}") from None
    return pk


def _net(obj: dict[str, Any], what: str) -> Net:
    value = obj.get("net")
    try:
        return Net(str(value) if isinstance(value, str) else "")
    except ValueError:
        raise ProtocolError(f"{what}: 'net' must be 'skynet' or 'dmsg', not {value!r}") from None


# ---------------------------------------------------------------------------- PROC_CONFIG
@dataclass(frozen=True)
class ProcConfig:
    """Upstream's ``appcommon.ProcConfig``, given to an app as the ``PROC_CONFIG`` variable."""

    app_name: str
    app_server_addr: str
    proc_key: str
    visor_pk: PubKey
    routing_port: int = 0
    proc_args: tuple[str, ...] = ()
    proc_envs: tuple[str, ...] = ()
    proc_work_dir: str = ""
    binary_loc: str = ""
    log_db_loc: str = ""
    log_store_path: str = ""

    def __post_init__(self) -> None:
        if not self.app_name:
            raise ProtocolError("PROC_CONFIG: 'app_name' is empty")
        if not _PROC_KEY.fullmatch(self.proc_key):
            raise ProtocolError("PROC_CONFIG: 'proc_key' must be 32 lower-case hex characters")
        self.server_address()  # checked once, here
        if not 0 <= self.routing_port <= 0xFFFF:
            raise ProtocolError("PROC_CONFIG: 'routing_port' must be in 0..65535")

    def server_address(self) -> tuple[str, int]:
        """``app_server_addr`` as ``(host, port)``; an empty host is localhost."""
        host, sep, port = self.app_server_addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) <= 0xFFFF:
            raise ProtocolError(f"PROC_CONFIG: bad 'app_server_addr' {self.app_server_addr!r}")
        return host.strip("[]") or "localhost", int(port)

    def to_json(self) -> str:
        return json.dumps(
            {
                "app_name": self.app_name,
                "app_server_addr": self.app_server_addr,
                "proc_key": self.proc_key,
                "proc_args": list(self.proc_args),
                "proc_envs": list(self.proc_envs),
                "proc_work_dir": self.proc_work_dir,
                "visor_pk": self.visor_pk.hex(),
                "routing_port": self.routing_port,
                "binary_loc": self.binary_loc,
                "log_db_loc": self.log_db_loc,
                "log_store_path": self.log_store_path,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ProcConfig:
        what = "PROC_CONFIG"
        obj = _obj(text, what, 1 << 20)
        lists = {}
        for key in ("proc_args", "proc_envs"):
            value = obj.get(key) or []  # Go marshals a nil slice as null
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ProtocolError(f"{what}: {key!r} must be a list of strings")
            lists[key] = tuple(value)
        return cls(
            app_name=_str(obj, "app_name", what),
            app_server_addr=_str(obj, "app_server_addr", what),
            proc_key=_str(obj, "proc_key", what),
            visor_pk=_pk(obj, "visor_pk", what),
            routing_port=_int(obj, "routing_port", what, lo=0, hi=0xFFFF, default=0),
            proc_args=lists["proc_args"],
            proc_envs=lists["proc_envs"],
            proc_work_dir=_str(obj, "proc_work_dir", what, default=""),
            binary_loc=_str(obj, "binary_loc", what, default=""),
            log_db_loc=_str(obj, "log_db_loc", what, default=""),
            log_store_path=_str(obj, "log_store_path", what, default=""),
        )


# ---------------------------------------------------------------------------- Hello
@dataclass(frozen=True)
class Hello:
    """The first message of every connection from an app."""

    proc_key: str
    kind: ConnKind
    conn: str | None = None

    def __post_init__(self) -> None:
        if not _PROC_KEY.fullmatch(self.proc_key):
            raise ProtocolError("hello: 'proc_key' must be 32 lower-case hex characters")
        if self.kind is ConnKind.DATA and (self.conn is None or not _CONN_ID.fullmatch(self.conn)):
            raise ProtocolError("hello: a data connection needs a 'conn' id")
        if self.kind is ConnKind.CONTROL and self.conn is not None:
            raise ProtocolError("hello: a control connection has no 'conn' id")


def encode_hello(hello: Hello) -> bytes:
    obj: dict[str, Any] = {"proc_key": hello.proc_key, "kind": hello.kind.value}
    if hello.conn is not None:
        obj["conn"] = hello.conn
    body = json.dumps(obj).encode()
    return struct.pack(">H", len(body)) + body


def hello_length(prefix: bytes) -> int:
    """The JSON length announced by the 2-byte prefix; refuses 0 and more than HELLO_MAX."""
    if len(prefix) != 2:
        raise ProtocolError("hello: the length prefix is 2 bytes")
    n = int.from_bytes(prefix, "big")
    if not 0 < n <= HELLO_MAX:
        raise ProtocolError(f"hello: length {n} is not in 1..{HELLO_MAX}")
    return n


def decode_hello(body: bytes) -> Hello:
    """The Hello in ``body`` (the JSON after the length prefix)."""
    obj = _obj(body, "hello", HELLO_MAX)
    try:
        kind = ConnKind(str(obj.get("kind")))
    except ValueError:
        raise ProtocolError(
            f"hello: 'kind' must be 'control' or 'data', not {obj.get('kind')!r}"
        ) from None
    conn = obj.get("conn")
    if conn is not None and not isinstance(conn, str):
        raise ProtocolError("hello: 'conn' must be a string")
    return Hello(_str(obj, "proc_key", "hello"), kind, conn)


# ---------------------------------------------------------------------------- control
@dataclass(frozen=True)
class AddrInfo:
    """A network address: upstream ``appnet.Addr``."""

    net: Net
    pk: PubKey
    port: int

    def to_obj(self) -> dict[str, Any]:
        return {"net": self.net.value, "pk": self.pk.hex(), "port": self.port}

    @classmethod
    def from_obj(cls, value: Any, what: str) -> AddrInfo:
        if not isinstance(value, dict):
            raise ProtocolError(f"{what}: 'remote' must be an object")
        return cls(
            _net(value, what), _pk(value, "pk", what), _int(value, "port", what, lo=0, hi=0xFFFF)
        )

    def __str__(self) -> str:
        return f"{self.net}:{self.pk}:{self.port}"


@dataclass(frozen=True)
class ListenRequest:
    id: int
    net: Net
    port: int


@dataclass(frozen=True)
class DialRequest:
    id: int
    net: Net
    pk: PubKey
    port: int
    local_port: int = 0  # skynet only: the route's local port (0: ephemeral)


@dataclass(frozen=True)
class CloseListenerRequest:
    id: int
    net: Net
    port: int


@dataclass(frozen=True)
class StatusRequest:
    id: int
    text: str


@dataclass(frozen=True)
class ErrorRequest:
    id: int
    text: str


Request = ListenRequest | DialRequest | CloseListenerRequest | StatusRequest | ErrorRequest


@dataclass(frozen=True)
class OkReply:
    id: int
    conn: str | None = None
    remote: AddrInfo | None = None


@dataclass(frozen=True)
class ErrorReply:
    id: int
    error: str
    code: int | None = None


Reply = OkReply | ErrorReply


@dataclass(frozen=True)
class AcceptEvent:
    net: Net
    port: int
    conn: str
    remote: AddrInfo


ServerMessage = OkReply | ErrorReply | AcceptEvent

_OPS = ("listen", "dial", "close_listener", "status", "error")


def encode_message(msg: Request | ServerMessage) -> bytes:
    """One control line (JSON and ``\\n``)."""
    obj: dict[str, Any] = {}
    match msg:
        case ListenRequest(id=i, net=net, port=port):
            obj = {"id": i, "op": "listen", "net": net.value, "port": port}
        case DialRequest(id=i, net=net, pk=pk, port=port, local_port=local):
            obj = {"id": i, "op": "dial", "net": net.value, "pk": pk.hex(), "port": port}
            if local:
                obj["local_port"] = local
        case CloseListenerRequest(id=i, net=net, port=port):
            obj = {"id": i, "op": "close_listener", "net": net.value, "port": port}
        case StatusRequest(id=i, text=text):
            obj = {"id": i, "op": "status", "text": text}
        case ErrorRequest(id=i, text=text):
            obj = {"id": i, "op": "error", "text": text}
        case OkReply(id=i, conn=conn, remote=remote):
            obj = {"id": i, "ok": True}
            if conn is not None:
                obj["conn"] = conn
            if remote is not None:
                obj["remote"] = remote.to_obj()
        case ErrorReply(id=i, error=error, code=code):
            obj = {"id": i, "ok": False, "error": error}
            if code is not None:
                obj["code"] = code
        case AcceptEvent(net=net, port=port, conn=conn, remote=remote):
            obj = {
                "event": "accept",
                "net": net.value,
                "port": port,
                "conn": conn,
                "remote": remote.to_obj(),
            }
    line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    if len(line) > LINE_MAX:
        raise ProtocolError(f"control line of {len(line)} bytes is over {LINE_MAX}")
    return line


def _id(obj: dict[str, Any], what: str) -> int:
    return _int(obj, "id", what, lo=0, hi=2**53)


def decode_request(line: bytes) -> Request:
    """An app's request; a :class:`ProtocolError` carries the id when there was a valid one."""
    obj = _obj(line, "request", LINE_MAX)
    rid = _id(obj, "request")
    try:
        return _request(obj, rid)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), rid) from None


def _port(obj: dict[str, Any], what: str) -> int:
    return _int(obj, "port", what, lo=0, hi=0xFFFF)


def _request(obj: dict[str, Any], rid: int) -> Request:
    op = obj.get("op")
    what = f"request {rid} ({op})"
    if op == "listen":
        return ListenRequest(rid, _net(obj, what), _int(obj, "port", what, lo=1, hi=0xFFFF))
    if op == "dial":
        local = _int(obj, "local_port", what, lo=0, hi=0xFFFF, default=0)
        return DialRequest(rid, _net(obj, what), _pk(obj, "pk", what), _port(obj, what), local)
    if op == "close_listener":
        return CloseListenerRequest(rid, _net(obj, what), _port(obj, what))
    if op in ("status", "error"):
        text = _str(obj, "text", what)
        if len(text) > TEXT_MAX:
            raise ProtocolError(f"{what}: 'text' is longer than {TEXT_MAX} characters")
        return StatusRequest(rid, text) if op == "status" else ErrorRequest(rid, text)
    raise ProtocolError(f"request {rid}: 'op' must be one of {', '.join(_OPS)}, not {op!r}")


def decode_server_message(line: bytes) -> ServerMessage:
    """A reply or an event from the visor."""
    obj = _obj(line, "visor message", LINE_MAX)
    if "event" in obj:
        if obj["event"] != "accept":
            raise ProtocolError(f"visor message: unknown event {obj['event']!r}")
        what = "accept event"
        conn = _str(obj, "conn", what)
        if not _CONN_ID.fullmatch(conn):
            raise ProtocolError(f"{what}: bad 'conn' id")
        return AcceptEvent(
            _net(obj, what),
            _int(obj, "port", what, lo=0, hi=0xFFFF),
            conn,
            AddrInfo.from_obj(obj.get("remote"), what),
        )
    rid = _id(obj, "reply")
    ok = obj.get("ok")
    if ok is True:
        conn_id = obj.get("conn")
        if conn_id is not None and (
            not isinstance(conn_id, str) or not _CONN_ID.fullmatch(conn_id)
        ):
            raise ProtocolError(f"reply {rid}: bad 'conn' id")
        remote = obj.get("remote")
        info = None if remote is None else AddrInfo.from_obj(remote, f"reply {rid}")
        return OkReply(rid, conn_id, info)
    if ok is False:
        code = obj.get("code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise ProtocolError(f"reply {rid}: 'code' must be an integer")
        return ErrorReply(rid, _str(obj, "error", f"reply {rid}"), code)
    raise ProtocolError(f"reply {rid}: 'ok' must be true or false")
