"""Address resolver (AR): where visors bind their stcpr (TCP) and sudph (UDP) addresses.

* :class:`~skywire.services.ar.api.ARServer` / :func:`~.api.make_app`: the HTTP API and the
  sudph UDP side (:class:`~skywire.services.ar.udp.SUDPHBindServer`, KCP on port 30178).
* :class:`~skywire.services.ar.client.ARClient`: the typed async client, including the sudph
  bind with heartbeats and hole-punch requests.
* :mod:`~skywire.services.ar.store`: memory and Redis stores.
"""

from __future__ import annotations

from skywire.services.ar.api import ARServer, make_app
from skywire.services.ar.client import ARClient, ARError, SUDPHBind
from skywire.services.ar.store import ARStore, NoEntryError, VisorData, open_store
from skywire.services.ar.udp import HolePunchRequest, SUDPHBindServer

__all__ = [
    "ARClient",
    "ARError",
    "ARServer",
    "ARStore",
    "HolePunchRequest",
    "NoEntryError",
    "SUDPHBind",
    "SUDPHBindServer",
    "VisorData",
    "make_app",
    "open_store",
]
