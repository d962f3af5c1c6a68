"""dmsg discovery service: where dmsg clients and servers publish signed entries.

* :func:`~skywire.services.dmsgdisc.api.make_app` / :class:`~.api.DiscoveryServer`: the HTTP API.
* :class:`~skywire.services.dmsgdisc.client.DiscClient`: the typed async client.
* :mod:`~skywire.services.dmsgdisc.store`: memory, SQLite and Redis stores.

The entry model, its JSON and its errors live in :mod:`skywire.dmsg.disc_entry`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skywire.services.dmsgdisc.api import DiscoveryServer, make_app
    from skywire.services.dmsgdisc.client import DiscClient
    from skywire.services.dmsgdisc.store import DiscStore, open_store

# Imported on first use: a client (every dmsg node) loads neither the server nor the stores.
_WHERE = {
    "DiscoveryServer": "skywire.services.dmsgdisc.api",
    "make_app": "skywire.services.dmsgdisc.api",
    "DiscClient": "skywire.services.dmsgdisc.client",
    "DiscStore": "skywire.services.dmsgdisc.store",
    "open_store": "skywire.services.dmsgdisc.store",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'skywire.services.dmsgdisc' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = ["DiscClient", "DiscStore", "DiscoveryServer", "make_app", "open_store"]
