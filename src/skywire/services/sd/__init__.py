"""Service discovery (SD): where visors announce their public services (skysocks proxies, VPN
servers, public visors) and where clients find them by type, version and country.

* :func:`~skywire.services.sd.api.make_app` / :class:`~.api.SDServer`: the HTTP API.
* :class:`~skywire.services.sd.client.SDClient`: the typed async client.
* :mod:`~skywire.services.sd.store`: memory, SQLite and PostgreSQL stores, with expiry.
* :mod:`~skywire.services.sd.entry`: the service entry and the skywire address (``SWAddr``),
  their JSON and binary forms; :mod:`~skywire.services.sd.errors`: the errors.

Request signing is :mod:`skywire.services.httpauth`.
"""

from __future__ import annotations

from skywire.services.sd.api import SDServer, make_app
from skywire.services.sd.client import SDClient, SDClientError, SDUnreachableError
from skywire.services.sd.entry import Geo, ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.errors import EntryError, SDError, ServiceNotFoundError, StoreError
from skywire.services.sd.store import DEFAULT_TTL, ServiceStore, StoreKind, open_store

__all__ = [
    "DEFAULT_TTL",
    "EntryError",
    "Geo",
    "SDClient",
    "SDClientError",
    "SDError",
    "SDServer",
    "SDUnreachableError",
    "SWAddr",
    "ServiceEntry",
    "ServiceNotFoundError",
    "ServiceStore",
    "ServiceType",
    "StoreError",
    "StoreKind",
    "make_app",
    "open_store",
]
