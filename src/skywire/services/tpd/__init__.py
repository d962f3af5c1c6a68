"""Transport discovery (TPD): the registry of signed transport entries and their latency.

* :func:`~skywire.services.tpd.api.make_app` / :class:`~.api.TPDServer`: the HTTP API.
* :class:`~skywire.services.tpd.client.TPDClient`: the typed async client.
* :mod:`~skywire.services.tpd.store`: memory, SQLite and PostgreSQL stores.

The entry model and its JSON live in :mod:`skywire.transport.entry`; request signing in
:mod:`skywire.services.httpauth`.
"""

from __future__ import annotations

from skywire.services.tpd.api import TPDServer, make_app
from skywire.services.tpd.client import TPDClient, TPDError, TPDRegistry
from skywire.services.tpd.store import TransportStore, open_store

__all__ = [
    "TPDClient",
    "TPDError",
    "TPDRegistry",
    "TPDServer",
    "TransportStore",
    "make_app",
    "open_store",
]
