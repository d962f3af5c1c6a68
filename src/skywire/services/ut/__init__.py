"""Uptime tracker (UT): visors send a signed heartbeat every few minutes; the tracker credits
the time between two of them to the days it fell on and answers each visor's uptime per day.

* :func:`~skywire.services.ut.api.make_app` / :class:`~.api.UTServer`: the HTTP API.
* :class:`~skywire.services.ut.client.UTClient`: the typed async client (the heartbeat too).
* :mod:`~skywire.services.ut.store`: memory, SQLite and PostgreSQL stores.
* :mod:`~skywire.services.ut.uptime`: the accounting, pure (credits, days, percentages);
  :mod:`~skywire.services.ut.errors`: the errors.

Request signing is :mod:`skywire.services.httpauth`.
"""

from __future__ import annotations

from skywire.services.ut.api import UTServer, make_app
from skywire.services.ut.client import UTClient, UTClientError, UTUnreachableError
from skywire.services.ut.errors import QueryError, StoreError, UTError, VisorNotFoundError
from skywire.services.ut.store import StoreKind, UptimeStore, open_store
from skywire.services.ut.uptime import DEFAULT_INTERVAL, DEFAULT_TOLERANCE, Credit, VisorUptime

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TOLERANCE",
    "Credit",
    "QueryError",
    "StoreError",
    "StoreKind",
    "UTClient",
    "UTClientError",
    "UTError",
    "UTServer",
    "UTUnreachableError",
    "UptimeStore",
    "VisorNotFoundError",
    "VisorUptime",
    "make_app",
    "open_store",
]
