"""Typed errors raised by the sans-I/O wire codecs.

Every decoder in :mod:`skywire.wire` raises a subclass of :class:`WireError` for malformed,
truncated or hostile input, never another exception type.
"""

from __future__ import annotations


class WireError(Exception):
    """Base class of every error raised while encoding or decoding wire bytes."""


class NoiseError(WireError):
    """A Noise handshake or transport frame could not be processed."""


class YamuxError(WireError):
    """A yamux frame violated the protocol."""


class GobError(WireError):
    """A gob stream could not be encoded or decoded."""


class RPCError(WireError):
    """A net/rpc exchange failed (bad header, unknown sequence, server-side error string)."""
