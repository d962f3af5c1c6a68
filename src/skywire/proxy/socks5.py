"""The server side of a SOCKS5 conversation (RFC 1928, with RFC 1929 username/password), sans-I/O.

Bytes go in with :meth:`Socks5Server.receive_data`, which returns what happened as events;
the answer to a ``CONNECT`` is given with :meth:`Socks5Server.reply`; bytes to send are taken
with :meth:`Socks5Server.data_to_send`. Once a request succeeded the conversation is over and
every later byte comes out as :class:`DataReceived` for the tunnel.

Bad bytes raise :class:`~skywire.proxy.errors.Socks5Error` and leave the server as it was; its
``reply`` is the code to answer with when the conversation has reached the request (the shell
then calls :meth:`Socks5Server.reply` with it and closes).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from skywire.proxy.errors import ReplyCode, Socks5Error

__all__ = [
    "AUTH_NONE",
    "AUTH_NO_ACCEPTABLE",
    "AUTH_USERPASS",
    "AddressType",
    "AuthReceived",
    "ConnectRequested",
    "DataReceived",
    "Event",
    "GreetingReceived",
    "Socks5Server",
    "Socks5State",
    "encode_reply",
]

VERSION = 5
AUTH_NONE = 0x00
AUTH_USERPASS = 0x02
AUTH_NO_ACCEPTABLE = 0xFF
CMD_CONNECT = 0x01
MAX_EARLY = 64 * 1024
"""Bytes a client may send after its request before the answer (kept for the tunnel)."""


class AddressType(enum.IntEnum):
    IPV4 = 1
    DOMAIN = 3
    IPV6 = 4


class Socks5State(enum.Enum):
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    REPLYING = "replying"  # a CONNECT came in; waiting for reply()
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class GreetingReceived:
    methods: tuple[int, ...]
    chosen: int  # AUTH_NO_ACCEPTABLE: the conversation is over (state CLOSED)


@dataclass(frozen=True, slots=True)
class AuthReceived:
    username: str
    accepted: bool  # False: the conversation is over (state CLOSED)


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    host: str
    port: int
    address_type: AddressType


@dataclass(frozen=True, slots=True)
class DataReceived:
    data: bytes


Event = GreetingReceived | AuthReceived | ConnectRequested | DataReceived


def encode_reply(code: ReplyCode, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """``VER REP RSV ATYP BND.ADDR BND.PORT`` for an IPv4/IPv6 bind address."""
    addr = ipaddress.ip_address(host)
    atyp = AddressType.IPV4 if addr.version == 4 else AddressType.IPV6
    return bytes([VERSION, int(code), 0, int(atyp)]) + addr.packed + struct.pack(">H", port)


class Socks5Server:
    """One SOCKS5 conversation, server side.

    ``check_login(username, password)`` turns on username/password authentication (method 2,
    RFC 1929), which the client must then offer; without it only "no authentication" is
    accepted.
    """

    def __init__(self, *, check_login: Callable[[str, str], bool] | None = None) -> None:
        self._check_login = check_login
        self._buf = b""
        self._out = bytearray()
        self.state = Socks5State.GREETING
        self.username = ""

    def data_to_send(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the client; returns the events they complete."""
        if self.state is Socks5State.ESTABLISHED:
            return [DataReceived(bytes(data))] if data else []
        if self.state is Socks5State.CLOSED:
            return []
        buf = self._buf + bytes(data)
        if self.state is Socks5State.REPLYING:
            if len(buf) > MAX_EARLY:
                raise Socks5Error(f"{len(buf)} bytes sent before the answer (max {MAX_EARLY})")
            self._buf = buf  # the client sent early: kept for after the reply
            return []
        events: list[Event] = []
        state: Socks5State = self.state
        out = bytearray()
        username = self.username
        while True:
            if state is Socks5State.GREETING:
                parsed = _greeting(buf)
                if parsed is None:
                    break
                methods, used = parsed
                chosen = self._choose(methods)
                out += bytes([VERSION, chosen])
                events.append(GreetingReceived(methods, chosen))
                buf = buf[used:]
                if chosen == AUTH_NO_ACCEPTABLE:
                    state = Socks5State.CLOSED
                    break
                state = Socks5State.AUTH if chosen == AUTH_USERPASS else Socks5State.REQUEST
            elif state is Socks5State.AUTH:
                login = _login(buf)
                if login is None:
                    break
                user, password, used = login
                assert self._check_login is not None
                ok = self._check_login(user, password)
                out += bytes([1, 0 if ok else 1])
                events.append(AuthReceived(user, ok))
                buf = buf[used:]
                if not ok:
                    state = Socks5State.CLOSED
                    break
                username = user
                state = Socks5State.REQUEST
            elif state is Socks5State.REQUEST:
                request = _request(buf)
                if request is None:
                    break
                event, used = request
                events.append(event)
                buf = buf[used:]
                state = Socks5State.REPLYING
                break
            else:
                break
        if state is Socks5State.REPLYING and len(buf) > MAX_EARLY:
            raise Socks5Error(f"{len(buf)} bytes sent before the answer (max {MAX_EARLY})")
        self._buf, self.state, self.username = buf, state, username
        self._out += out
        return events

    def _choose(self, methods: tuple[int, ...]) -> int:
        if self._check_login is not None:
            return AUTH_USERPASS if AUTH_USERPASS in methods else AUTH_NO_ACCEPTABLE
        return AUTH_NONE if AUTH_NONE in methods else AUTH_NO_ACCEPTABLE

    def reply(self, code: ReplyCode, host: str = "0.0.0.0", port: int = 0) -> list[Event]:
        """Answer the request (or a refused one, from the REQUEST state); success opens the
        tunnel and returns bytes the client already sent as :class:`DataReceived`."""
        if self.state not in (Socks5State.REPLYING, Socks5State.REQUEST):
            raise Socks5Error(f"no request to answer in state {self.state.value}")
        self._out += encode_reply(code, host, port)
        if code is not ReplyCode.SUCCEEDED:
            self.state = Socks5State.CLOSED
            self._buf = b""
            return []
        self.state = Socks5State.ESTABLISHED
        early, self._buf = self._buf, b""
        return [DataReceived(early)] if early else []


def _greeting(buf: bytes) -> tuple[tuple[int, ...], int] | None:
    if len(buf) < 2:
        return None
    if buf[0] != VERSION:
        raise Socks5Error(f"not SOCKS5: version byte {buf[0]}")
    n = buf[1]
    if n == 0:
        raise Socks5Error("greeting offers no authentication method")
    if len(buf) < 2 + n:
        return None
    return tuple(buf[2 : 2 + n]), 2 + n


def _login(buf: bytes) -> tuple[str, str, int] | None:
    if len(buf) < 2:
        return None
    if buf[0] != 1:
        raise Socks5Error(f"username/password version {buf[0]} (want 1)")
    ulen = buf[1]
    if len(buf) < 3 + ulen:
        return None
    plen = buf[2 + ulen]
    end = 3 + ulen + plen
    if len(buf) < end:
        return None
    user = buf[2 : 2 + ulen].decode("utf-8", "replace")
    password = buf[3 + ulen : end].decode("utf-8", "replace")
    return user, password, end


def _request(buf: bytes) -> tuple[ConnectRequested, int] | None:
    if len(buf) < 4:
        return None
    ver, cmd, _rsv, atyp = buf[:4]
    if ver != VERSION:
        raise Socks5Error(f"request version byte {ver} (want 5)")
    if atyp == AddressType.IPV4:
        end = 4 + 4
        if len(buf) < end + 2:
            return None
        host = str(ipaddress.IPv4Address(buf[4:end]))
    elif atyp == AddressType.IPV6:
        end = 4 + 16
        if len(buf) < end + 2:
            return None
        host = str(ipaddress.IPv6Address(buf[4:end]))
    elif atyp == AddressType.DOMAIN:
        if len(buf) < 5:
            return None
        end = 5 + buf[4]
        if len(buf) < end + 2:
            return None
        if buf[4] == 0:
            raise Socks5Error("empty domain name", ReplyCode.HOST_UNREACHABLE)
        try:
            host = buf[5:end].decode("ascii")
        except UnicodeDecodeError:
            raise Socks5Error("domain name is not ASCII", ReplyCode.HOST_UNREACHABLE) from None
    else:
        raise Socks5Error(f"address type {atyp}", ReplyCode.ADDRESS_TYPE_NOT_SUPPORTED)
    if cmd != CMD_CONNECT:
        raise Socks5Error(f"command {cmd} (only CONNECT)", ReplyCode.COMMAND_NOT_SUPPORTED)
    (port,) = struct.unpack(">H", buf[end : end + 2])
    return ConnectRequested(host, port, AddressType(atyp)), end + 2
