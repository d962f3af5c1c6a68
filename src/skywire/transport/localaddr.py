"""This host's own IPv4 addresses, as a visor declares them when it binds at the address
resolver (peers behind the same public IP dial them directly)."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct

__all__ = ["local_addresses"]

_SIOCGIFADDR = 0x8915  # Linux: the IPv4 address of an interface


def local_addresses() -> tuple[str, ...]:
    """Every IPv4 address of an interface that is up, but loopback and link-local ones; on a
    system without the Linux ioctl, the address of the default route's interface."""
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, request)
            except OSError:
                continue  # no IPv4 address, or down
            addr = ipaddress.IPv4Address(answer[20:24])
            if not (addr.is_loopback or addr.is_link_local or addr.is_unspecified):
                found.append(str(addr))
    if not found:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            addr = ipaddress.IPv4Address(s.getsockname()[0])
            if not (addr.is_loopback or addr.is_unspecified):
                found.append(str(addr))
    return tuple(dict.fromkeys(found))
