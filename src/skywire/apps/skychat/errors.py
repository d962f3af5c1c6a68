"""Errors of skychat: one base, each also the builtin a caller would catch, each with the HTTP
status the web endpoints answer it with (as h11's ``error_status_hint``)."""

from __future__ import annotations

__all__ = [
    "MessageError",
    "MessageTooLongError",
    "PeerUnreachableError",
    "RecipientError",
    "RequestError",
    "SkychatClosedError",
    "SkychatError",
    "SubscriptionEndedError",
]


class SkychatError(Exception):
    """Something skychat could not do."""

    status: int = 500


class MessageError(SkychatError, ValueError):
    """A message that cannot be sent as it is (empty, not one line, not text)."""

    status = 400


class MessageTooLongError(MessageError):
    """A message longer than one route frame can carry; ``limit`` is the most, in bytes."""

    status = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message is {size} bytes of UTF-8; at most {limit} fit in one frame")
        self.size = size
        self.limit = limit


class RecipientError(SkychatError, ValueError):
    """Not a peer one can chat with: not a public key, the null key, or this visor's own."""

    status = 400


class RequestError(SkychatError, ValueError):
    """A web request skychat does not take: bad JSON, a missing field (400), a page of another
    site posting here (403)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PeerUnreachableError(SkychatError, ConnectionError):
    """No route to the peer could be made (or kept) within the bounded wait."""

    status = 502


class SkychatClosedError(SkychatError, ConnectionError):
    """The chat is not running (not started yet, or closing)."""

    status = 503


class SubscriptionEndedError(SkychatError, ConnectionError):
    """A subscription to new messages ended: the chat closed, or the reader fell behind."""

    status = 503
