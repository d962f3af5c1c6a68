"""The VPN wire, sans-I/O: client and server hello, and IP packets on the route.

Upstream ``internal/vpn`` (``client_hello.go``, ``server_hello.go``, ``net.go``):

* the client sends ``{"unavailable_private_ips":[…],"passcode":"…"}`` and the server answers
  ``{"status":0..4,"tun_ip":"…","tun_gateway":"…"}``, each as Go's ``json.Marshal`` writes it
  (no spaces, ``<``, ``>``, ``&``, U+2028/U+2029 escaped, a nil IP list as ``null``, a nil IP as
  ``""``), with no framing: upstream's ``ReadJSON`` takes a read shorter than 1024 bytes as the
  end of the message. Over our route streams a read boundary means nothing, so
  :class:`HelloReader` takes bytes until they hold one whole JSON object (self-delimiting),
  and hands back whatever followed it. Each hello is written with one write.
* then raw IP packets, both ways, one route packet each (upstream ``io.Copy`` between the TUN
  and the route conn, whose reads keep packet boundaries). Our route group is a byte stream, so
  :class:`PacketReader` cuts packets out of it by the IP header's own length (IPv4 total
  length, IPv6 40 + payload length). No length prefix is added: a Go peer reading one packet per
  route packet gets exactly the bytes it would from another Go peer, and reading ours needs
  nothing from the sender but the IP header.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from skywire.apps.vpn.errors import HandshakeStatus, HelloError, PacketError

__all__ = [
    "HELLO_MAX",
    "TUN_MTU",
    "TUN_NETMASK_BITS",
    "ClientHello",
    "HelloReader",
    "PacketReader",
    "ServerHello",
    "go_json",
]

TUN_NETMASK_BITS = 29  # upstream const.go TUNNetmaskCIDR "/29"
TUN_MTU = 1500  # upstream const.go TUNMTU
HELLO_MAX = 64 * 1024  # a hello this long without ending is refused (upstream: no bound)

IPv4 = ipaddress.IPv4Address
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: object) -> bytes:
    """``value`` as Go's ``json.Marshal`` writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text.encode()


def _ip_text(ip: IP | None) -> str:
    return "" if ip is None else str(ip)


def _parse_ip(value: Any, what: str) -> IP | None:
    """Go's ``net.IP`` ``UnmarshalText``: ``""`` is nil, anything else must be an address."""
    if not isinstance(value, str):
        raise HelloError(f"{what} must be a string")
    if value == "":
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise HelloError(f"{what}: {value!r} is not an IP address") from exc


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HelloError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise HelloError(f"{what} is not a JSON object")
    return obj


# ---------------------------------------------------------------------------- hellos
@dataclass(frozen=True)
class ClientHello:
    """Upstream ``ClientHello``. ``unavailable_private_ips`` ``None`` is Go's nil slice."""

    unavailable_private_ips: tuple[IP, ...] | None = None
    passcode: str = ""

    def encode(self) -> bytes:
        ips = self.unavailable_private_ips
        return go_json(
            {
                "unavailable_private_ips": None if ips is None else [str(ip) for ip in ips],
                "passcode": self.passcode,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ClientHello:
        """As Go's ``json.Unmarshal`` into the struct: missing fields are zero; wrong types and
        bad addresses raise :class:`HelloError` (status 1)."""
        obj = _object(data, "client hello")
        raw = obj.get("unavailable_private_ips")
        ips: tuple[IP, ...] | None = None
        if raw is not None:
            if not isinstance(raw, list):
                raise HelloError("unavailable_private_ips must be a list")
            parsed = [_parse_ip(v, "unavailable_private_ips") for v in raw]
            ips = tuple(ip for ip in parsed if ip is not None)
        passcode = obj.get("passcode", "")
        if passcode is None:
            passcode = ""
        if not isinstance(passcode, str):
            raise HelloError("passcode must be a string")
        return cls(ips, passcode)

    def __repr__(self) -> str:  # the passcode stays out of logs
        return f"ClientHello(unavailable_private_ips={self.unavailable_private_ips!r})"


@dataclass(frozen=True)
class ServerHello:
    """Upstream ``ServerHello``: a status, and on status 0 the client's TUN IP and gateway."""

    status: HandshakeStatus
    tun_ip: IP | None = None
    tun_gateway: IP | None = None

    def encode(self) -> bytes:
        return go_json(
            {
                "status": int(self.status),
                "tun_ip": _ip_text(self.tun_ip),
                "tun_gateway": _ip_text(self.tun_gateway),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> ServerHello:
        """An unknown status number is kept as an ``int`` by the caller's check; here it must
        be 0–4. Status 0 needs both addresses."""
        obj = _object(data, "server hello")
        status = obj.get("status", 0)
        if not isinstance(status, int) or isinstance(status, bool):
            raise HelloError("status must be an integer")
        try:
            code = HandshakeStatus(status)
        except ValueError as exc:
            raise HelloError(f"unknown handshake status {status}") from exc
        tun_ip = _parse_ip(obj.get("tun_ip", ""), "tun_ip")
        gateway = _parse_ip(obj.get("tun_gateway", ""), "tun_gateway")
        if code is HandshakeStatus.OK and (tun_ip is None or gateway is None):
            raise HelloError("status 0 without tun_ip and tun_gateway")
        return cls(code, tun_ip, gateway)

    @classmethod
    def refusal(cls, status: HandshakeStatus) -> ServerHello:
        return cls(status)


class HelloReader:
    """Bytes in until they hold one JSON object: ``receive_data(data)`` returns the object's
    bytes once its closing brace arrives (``None`` before), and :attr:`rest` keeps what came
    after it. A hello is always an object, so the scan only tracks braces, brackets and
    strings; bytes that cannot start an object, or an object longer than ``limit``, raise
    :class:`HelloError`.
    """

    def __init__(self, limit: int = HELLO_MAX) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._pos = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self.rest = b""
        self.done = False

    def receive_data(self, data: bytes) -> bytes | None:
        if self.done:
            self.rest += data
            return None
        self._buf += data
        buf = self._buf
        while self._pos < len(buf):
            c = buf[self._pos]
            self._pos += 1
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == 0x5C:  # backslash
                    self._escaped = True
                elif c == 0x22:
                    self._in_string = False
            elif self._depth == 0:
                if c in b" \t\r\n":
                    continue
                if c != 0x7B:
                    raise HelloError(f"hello does not start with '{{' (byte {c:#04x})")
                self._depth = 1
            elif c == 0x22:
                self._in_string = True
            elif c in b"{[":
                self._depth += 1
            elif c in b"}]":
                self._depth -= 1
                if self._depth == 0:
                    message, self.rest = bytes(buf[: self._pos]).lstrip(), bytes(buf[self._pos :])
                    self._buf.clear()
                    self.done = True
                    return message
            if self._pos > self.limit:
                raise HelloError(f"hello longer than {self.limit} bytes")
        if len(buf) > self.limit:
            raise HelloError(f"hello longer than {self.limit} bytes")
        return None


# ---------------------------------------------------------------------------- packets
class PacketReader:
    """IP packets out of a byte stream: ``receive_data(data) -> list[bytes]`` (whole packets,
    in order); a partial packet waits for more. A first nibble other than 4 or 6, or a length
    shorter than its header, raises :class:`PacketError` and keeps nothing."""

    def __init__(self, max_packet: int = 65535) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[bytes]:
        self._buf += data
        packets: list[bytes] = []
        while True:
            size = self._next_size()
            if size is None or len(self._buf) < size:
                return packets
            packets.append(bytes(self._buf[:size]))
            del self._buf[:size]

    def _next_size(self) -> int | None:
        buf = self._buf
        if not buf:
            return None
        version = buf[0] >> 4
        if version == 4:
            if len(buf) < 4:
                return None
            size = int.from_bytes(buf[2:4], "big")
            header = (buf[0] & 0x0F) * 4
            if header < 20 or size < header:
                self._buf.clear()
                raise PacketError(f"IPv4 total length {size} < header length {header}")
        elif version == 6:
            if len(buf) < 6:
                return None
            size = 40 + int.from_bytes(buf[4:6], "big")
        else:
            self._buf.clear()
            raise PacketError(f"not an IP packet (version nibble {version})")
        if size > self.max_packet:
            self._buf.clear()
            raise PacketError(f"packet of {size} bytes > {self.max_packet}")
        return size


class RouteFramer:
    """What one VPN end writes, cut into the messages a Go peer reads one route packet at a
    time: its hello, then each IP packet (``receive_data(data) -> list[bytes]``). The visor's
    app server writes each message to the route group on its own, since the app's bytes reach
    it over a TCP connection that keeps no boundaries. :class:`HelloError` /
    :class:`PacketError` on bytes that are neither."""

    def __init__(self) -> None:
        self._hello: HelloReader | None = HelloReader()
        self._packets = PacketReader()

    def receive_data(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._hello is not None:
            hello = self._hello.receive_data(data)
            if hello is None:
                return out
            out.append(hello)
            data, self._hello = self._hello.rest, None
        out.extend(self._packets.receive_data(data))
        return out
