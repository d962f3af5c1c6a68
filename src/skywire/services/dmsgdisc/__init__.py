"""dmsg discovery service: where dmsg clients and servers publish signed entries.

* :func:`~skywire.services.dmsgdisc.api.make_app` / :class:`~.api.DiscoveryServer`: the HTTP API.
* :class:`~skywire.services.dmsgdisc.client.DiscClient`: the typed async client.
* :mod:`~skywire.services.dmsgdisc.store`: memory, SQLite and Redis stores.

The entry model, its JSON and its errors live in :mod:`skywire.dmsg.disc_entry`.
"""

from __future__ import annotations

from skywire.services.dmsgdisc.api import DiscoveryServer, make_app
from skywire.services.dmsgdisc.client import DiscClient
from skywire.services.dmsgdisc.store import DiscStore, open_store

__all__ = ["DiscClient", "DiscStore", "DiscoveryServer", "make_app", "open_store"]
