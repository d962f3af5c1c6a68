"""The server's TUN subnet allocator, and its answer to a client hello; sans-I/O.

A port of upstream ``internal/vpn/ip_generator.go`` and ``subnet_ip_incrementer.go``: three
ranges (192.168.2.0–192.168.255.255, 172.16.0.0–172.31.255.255, 10.0.0.0–10.255.255.255), each
walked in /29 steps (``step`` 8) with uint8 wrap-around as in Go. A subnet is handed out when
none of its 8 addresses is reserved; the subnet address itself becomes reserved. A client's
``unavailable_private_ips`` are reserved in every range (upstream: "it really doesn't matter").

Upstream's ``Next`` starts at ``currentRange + 1`` and never moves ``currentRange``, so the
first subnet comes from the 172.16 range (172.16.0.8, then .16, …); kept. Where upstream spins
forever once every range is full (its loop sets ``i = 0`` inside the body and then compares
``i != currentRange`` again), :meth:`IPGenerator.next` tries each range once and raises
:class:`NoFreeIPsError` (status 2).

In a subnet ``s``: server TUN gateway ``s+1``, server TUN IP ``s+2``, client gateway ``s+3``,
client IP ``s+4`` (upstream ``shakeHands``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from skywire.apps.vpn.errors import HandshakeStatus, HelloError, NoFreeIPsError
from skywire.apps.vpn.protocol import ClientHello, ServerHello

__all__ = ["Allocation", "IPGenerator", "SubnetIncrementer", "answer_hello"]

Octets = tuple[int, int, int, int]
IPv4 = ipaddress.IPv4Address


class SubnetIncrementer:
    """Upstream ``subnetIPIncrementer``: walks ``lower``..``upper`` in ``step`` subnets."""

    def __init__(self, lower: Octets, upper: Octets, step: int = 8) -> None:
        if not 0 < step < 256:
            raise ValueError("step must be in 1..255")
        self.lower = lower
        self.upper = upper
        self.step = step
        self.octets = list(lower)
        self.reserved: set[Octets] = set()

    def reserve(self, octets: Octets) -> None:
        self.reserved.add(octets)

    def next(self) -> IPv4:
        """The next free subnet address; :class:`NoFreeIPsError` after a full turn."""
        o = self.octets
        lo, hi, step = self.lower, self.upper, self.step
        o1, o2, o3 = o[0], o[1], o[2]
        while True:
            while True:
                while True:
                    o4 = (o[3] + step) & 0xFF
                    while o4 != o[3]:
                        if o4 >= hi[3]:
                            o4 = (lo[3] + step) & 0xFF  # Go: o4 = lower; continue (o4 += step)
                            continue
                        if not any(
                            (o[0], o[1], o[2], i) in self.reserved
                            for i in range(o4, min(o4 + step, 256))
                        ):
                            o[3] = o4
                            found = (o[0], o[1], o[2], o4)
                            self.reserved.add(found)
                            return IPv4(bytes(found))
                        o4 = (o4 + step) & 0xFF
                    o[3] = lo[3]
                    o[2] = lo[2] if o[2] == hi[2] else o[2] + 1
                    if o[2] == o3:
                        o[2] = lo[2]
                        break
                o[1] = lo[1] if o[1] == hi[1] else o[1] + 1
                if o[1] == o2:
                    o[1] = lo[1]
                    break
            o[0] = lo[0] if o[0] == hi[0] else o[0] + 1
            if o[0] == o1:
                o[0] = lo[0]
                break
        raise NoFreeIPsError("no free IPs left")


def default_ranges() -> list[SubnetIncrementer]:
    return [
        SubnetIncrementer((192, 168, 2, 0), (192, 168, 255, 255)),
        SubnetIncrementer((172, 16, 0, 0), (172, 31, 255, 255)),
        SubnetIncrementer((10, 0, 0, 0), (10, 255, 255, 255)),
    ]


class IPGenerator:
    """Upstream ``IPGenerator`` over ``ranges`` (the three private ranges by default)."""

    def __init__(self, ranges: Sequence[SubnetIncrementer] | None = None) -> None:
        self.ranges = list(ranges) if ranges is not None else default_ranges()
        self.current = 0

    def reserve(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        """Keep ``ip`` out of every range; :class:`HelloError` if it is not IPv4 (status 1)."""
        if not isinstance(ip, IPv4):
            raise HelloError(f"{ip} is not an IPv4 address")
        octets = tuple(ip.packed)
        for inc in self.ranges:
            inc.reserve((octets[0], octets[1], octets[2], octets[3]))

    def next(self) -> IPv4:
        n = len(self.ranges)
        for k in range(1, n + 1):
            try:
                return self.ranges[(self.current + k) % n].next()
            except NoFreeIPsError:
                continue
        raise NoFreeIPsError("no free IPs left")


@dataclass(frozen=True)
class Allocation:
    """What the server sends, and on status 0 its own TUN's address and gateway."""

    hello: ServerHello
    server_ip: IPv4 | None = None
    server_gateway: IPv4 | None = None


def answer_hello(data: bytes, passcode: str, gen: IPGenerator) -> Allocation:
    """Upstream ``shakeHands``, decided: a wrong passcode (when the server has one) is 4, a
    malformed hello or a non-IPv4 reserved address 1, no free subnet 2. Upstream closes the
    connection without an answer when the JSON does not decode; this answers 1."""
    try:
        hello = ClientHello.decode(data)
    except HelloError:
        return Allocation(ServerHello.refusal(HandshakeStatus.BAD_REQUEST))
    if passcode and hello.passcode != passcode:
        return Allocation(ServerHello.refusal(HandshakeStatus.FORBIDDEN))
    try:
        for ip in hello.unavailable_private_ips or ():
            gen.reserve(ip)
    except HelloError:
        return Allocation(ServerHello.refusal(HandshakeStatus.BAD_REQUEST))
    try:
        subnet = gen.next()
    except NoFreeIPsError:
        return Allocation(ServerHello.refusal(HandshakeStatus.NO_FREE_IPS))
    if int(subnet) & 0xFF > 0xFF - 4:  # upstream would wrap the last octet (Go uint8)
        return Allocation(ServerHello.refusal(HandshakeStatus.INTERNAL_ERROR))
    return Allocation(
        ServerHello(HandshakeStatus.OK, tun_ip=subnet + 4, tun_gateway=subnet + 3),
        server_ip=subnet + 2,
        server_gateway=subnet + 1,
    )
