"""vpn-server (routing port 44) and vpn-client (43): IP packets between TUN devices over a route.

* :mod:`~skywire.apps.vpn.protocol` — client / server hello as upstream's JSON, IP packet
  cutting; sans-I/O.
* :mod:`~skywire.apps.vpn.ipgen` — the server's /29 allocator and its answer to a hello.
* :mod:`~skywire.apps.vpn.state` — what was changed on the host, recorded before each change.
* :mod:`~skywire.apps.vpn.tun`, :mod:`~skywire.apps.vpn.system` — the TUN device; ``ip``,
  ``iptables``, ``sysctl``, ``resolv.conf``.
* :mod:`~skywire.apps.vpn.server`, :mod:`~skywire.apps.vpn.client` — the two apps.
"""

from __future__ import annotations

from skywire.apps.vpn.errors import (
    HandshakeRefusedError,
    HandshakeStatus,
    HelloError,
    NoFreeIPsError,
    PacketError,
    SystemConfigError,
    VpnError,
)
from skywire.apps.vpn.protocol import ClientHello, HelloReader, PacketReader, ServerHello

CLIENT_PORT = 43
SERVER_PORT = 44

__all__ = [
    "CLIENT_PORT",
    "SERVER_PORT",
    "ClientHello",
    "HandshakeRefusedError",
    "HandshakeStatus",
    "HelloError",
    "HelloReader",
    "NoFreeIPsError",
    "PacketError",
    "PacketReader",
    "ServerHello",
    "SystemConfigError",
    "VpnError",
]
