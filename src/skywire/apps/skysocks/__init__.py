"""skysocks: a SOCKS5 proxy whose exit is another visor, reached over one route.

* :mod:`~skywire.apps.skysocks.server` — :class:`SkysocksServer`: SOCKS5 on every yamux stream
  of every route to routing port 3.
* :mod:`~skywire.apps.skysocks.client` — :class:`SkysocksClient`: SOCKS5 on 127.0.0.1:1080,
  each local connection piped raw over one yamux stream of one kept route to the server.
* :mod:`~skywire.apps.skysocks.refusal` — the client's own SOCKS5 failure answer, sans-I/O.
* :mod:`~skywire.apps.skysocks.tunnel` — target dial, reply codes, two-way copy.
* :mod:`~skywire.apps.skysocks.config` — ports, yamux config, credentials, redial policy.
"""

from __future__ import annotations

from skywire.apps.skysocks.client import ClientStats, ClientStatus, RouteDialer, SkysocksClient
from skywire.apps.skysocks.config import (
    CLIENT_ADDRESS,
    CLIENT_PORT,
    SERVER_PORT,
    YAMUX_CONFIG,
    Credentials,
    Passcode,
    RedialPolicy,
    StaticCredentials,
)
from skywire.apps.skysocks.errors import NoRouteError, SkysocksError
from skywire.apps.skysocks.refusal import RequestRefused, Socks5Refusal
from skywire.apps.skysocks.server import RouteListening, ServerStats, SkysocksServer

__all__ = [
    "CLIENT_ADDRESS",
    "CLIENT_PORT",
    "SERVER_PORT",
    "YAMUX_CONFIG",
    "ClientStats",
    "ClientStatus",
    "Credentials",
    "NoRouteError",
    "Passcode",
    "RedialPolicy",
    "RequestRefused",
    "RouteDialer",
    "RouteListening",
    "ServerStats",
    "SkysocksClient",
    "SkysocksError",
    "SkysocksServer",
    "Socks5Refusal",
    "StaticCredentials",
]
