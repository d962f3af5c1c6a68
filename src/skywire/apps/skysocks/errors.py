"""Errors of skysocks: one base, each also the builtin a caller would catch."""

from __future__ import annotations

from skywire.proxy.errors import ReplyCode

__all__ = ["NoRouteError", "SkysocksError"]


class SkysocksError(Exception):
    """Something skysocks could not do; ``reply`` is the SOCKS5 code a client is sent."""

    reply: ReplyCode = ReplyCode.GENERAL_FAILURE


class NoRouteError(SkysocksError, ConnectionError):
    """The client has no route to its server, and none came within the wait."""
