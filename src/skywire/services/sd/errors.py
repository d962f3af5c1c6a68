"""The service discovery's errors: one base, :class:`SDError`, each class carrying the HTTP status
the API answers it with (upstream's ``servicedisc.HTTPError`` pairs a status with a message the
same way).

* :class:`EntryError` (400, also a ``ValueError``): a service entry, address, type, version or
  geolocation that does not parse or is out of bounds; :class:`SWAddrError`,
  :class:`ServiceTypeError`, :class:`VersionError` and :class:`GeoError` say which part.
* :class:`StoreError` (500): the store failed; :class:`ServiceNotFoundError` (404) is the store
  saying there is no such (live) entry.

Client-side refusals (:mod:`skywire.services.sd.client`) are ``SDError`` too.
"""

from __future__ import annotations

__all__ = [
    "EntryError",
    "GeoError",
    "SDError",
    "SWAddrError",
    "ServiceNotFoundError",
    "ServiceTypeError",
    "StoreError",
    "VersionError",
]


class SDError(Exception):
    """Base of every service discovery error; ``status`` is the HTTP status it is answered with."""

    status = 500


class EntryError(SDError, ValueError):
    """A service entry (or a part of one) is malformed or out of bounds."""

    status = 400


class SWAddrError(EntryError):
    """A skywire address (``<pk>:<port>`` or its 35-byte binary form) is invalid."""


class ServiceTypeError(EntryError):
    """A service type is missing or not one of the known types."""


class VersionError(EntryError):
    """A version string is too long or holds characters it may not."""


class GeoError(EntryError):
    """A geolocation is out of range: latitude, longitude, country code or region."""


class StoreError(SDError):
    """The store failed (a broken connection, a corrupt row)."""

    status = 500


class ServiceNotFoundError(StoreError):
    """No live entry of that type for that key."""

    status = 404

    def __init__(self, message: str = "service not found") -> None:
        super().__init__(message)
