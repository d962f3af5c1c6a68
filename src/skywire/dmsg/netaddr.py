"""The ``host:port`` a dmsg server advertises, checked before anyone dials it (sans-I/O).

A discovery refuses entries whose address cannot be dialled, and a client skips such an entry
instead of failing its whole pass over the server list.
"""

from __future__ import annotations

import ipaddress
import re

from skywire.dmsg.disc_entry import split_host_port

__all__ = ["MAX_ADDRESS_LENGTH", "parse_server_address"]

MAX_ADDRESS_LENGTH = 261
"""A 253-character host name, a colon and a 5-digit port, with brackets for IPv6."""

_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def parse_server_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of an advertised address; ``ValueError`` says what is wrong with it."""
    if len(address) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"address of {len(address)} characters (max {MAX_ADDRESS_LENGTH})")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in address):
        raise ValueError("address contains a control character or a space")
    host, port_text = split_host_port(address)
    if not port_text.isdigit() or len(port_text) > 5:
        raise ValueError(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1-65535")
    if not host:
        raise ValueError("no host before the port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise ValueError(
                f"host {host[:64]!r} is neither an IP address nor a host name"
            ) from None
    return host, port
