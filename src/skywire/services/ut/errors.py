"""The uptime tracker's errors: one base, :class:`UTError`, each class carrying the HTTP status
the API answers it with.

* :class:`QueryError` (400, also a ``ValueError``): a malformed key list, day count or version.
* :class:`StoreError` (500): the store failed; :class:`VisorNotFoundError` (404): the tracker
  has never heard from that key.

Client-side refusals (:mod:`skywire.services.ut.client`) are ``UTError`` too.
"""

from __future__ import annotations

__all__ = ["QueryError", "StoreError", "UTError", "VisorNotFoundError"]


class UTError(Exception):
    """Base of every uptime tracker error; ``status`` is the HTTP status it is answered with."""

    status = 500


class QueryError(UTError, ValueError):
    """A query or heartbeat parameter is malformed or out of bounds."""

    status = 400


class StoreError(UTError):
    """The store failed (a broken connection, a corrupt row)."""

    status = 500


class VisorNotFoundError(StoreError):
    """No heartbeat was ever recorded for that key."""

    status = 404

    def __init__(self, message: str = "visor not found") -> None:
        super().__init__(message)
