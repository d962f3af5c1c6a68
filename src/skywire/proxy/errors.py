"""Errors of the resolving proxies: each says what failed and carries the answer a client gets.

Every error is a :class:`ProxyError` with the SOCKS5 reply code (RFC 1928) and the HTTP status
the proxy answers with, so one failure reads the same through either mode.
"""

from __future__ import annotations

import enum

__all__ = [
    "DestinationRefusedError",
    "HopError",
    "HostnameError",
    "NotOverlayError",
    "NotReadyError",
    "ProxyError",
    "ReplyCode",
    "Socks5Error",
    "UnreachableError",
]


class ReplyCode(enum.IntEnum):
    """SOCKS5 reply codes (RFC 1928 §6)."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_TYPE_NOT_SUPPORTED = 8


class ProxyError(Exception):
    """A request the proxy cannot serve; ``reply`` and ``status`` are what the client sees."""

    reply: ReplyCode = ReplyCode.GENERAL_FAILURE
    status: int = 502


class HostnameError(ProxyError, ValueError):
    """A ``.dmsg`` / ``.skynet`` name that does not parse; the message names the label."""

    reply = ReplyCode.HOST_UNREACHABLE
    status = 400


class NotOverlayError(ProxyError):
    """A name outside the overlay (neither ``.dmsg`` nor ``.skynet``, or a suffix this proxy
    does not serve)."""

    reply = ReplyCode.NOT_ALLOWED
    status = 403


class UnreachableError(ProxyError):
    """The destination is unknown or no way to it exists (no entry, no route)."""

    reply = ReplyCode.HOST_UNREACHABLE
    status = 502


class HopError(UnreachableError):
    """A hop named in a source route does not exist (no such transport or visor link)."""


class DestinationRefusedError(ProxyError):
    """The destination answered and refused (nothing listens on that port)."""

    reply = ReplyCode.CONNECTION_REFUSED
    status = 502


class NotReadyError(ProxyError):
    """The overlay behind the proxy did not become ready in time, or the dial timed out."""

    reply = ReplyCode.TTL_EXPIRED
    status = 504


class Socks5Error(ProxyError):
    """A SOCKS5 conversation that breaks the protocol (RFC 1928) or asks for what is not
    served; ``reply`` is the code to answer with, if an answer is still possible."""

    def __init__(self, message: str, reply: ReplyCode = ReplyCode.GENERAL_FAILURE) -> None:
        super().__init__(message)
        self.reply = reply
