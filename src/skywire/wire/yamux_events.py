"""What the yamux core reports: one frozen dataclass per event, and the :data:`Event` union.

:meth:`~skywire.wire.yamux.YamuxConnection.receive_data` and
:meth:`~skywire.wire.yamux.YamuxConnection.handle_timer` return lists of these; the asyncio
shell (:mod:`skywire.wire.yamux_aio`) turns them into stream wake-ups, accepted streams and ping
results.
"""

from __future__ import annotations

from dataclasses import dataclass

from skywire.wire.errors import YamuxError
from skywire.wire.yamux_const import GoAwayCode


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream; it waits in the accept backlog."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamEstablished:
    """The peer ACKed a stream we opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload bytes for a stream (a data frame may arrive in several pieces); a view into the
    received chunk when the connection's ``payload_views`` is set."""

    stream_id: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer granted ``delta`` more bytes of send credit on a stream."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed a stream (FIN): no more data will arrive on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """A stream was torn down: RST from the peer, or our close timeout expired."""

    stream_id: int
    by_peer: bool = True


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged us; the answer is already queued."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    """The peer answered one of our pings after ``rtt`` seconds."""

    ping_id: int
    rtt: float


@dataclass(frozen=True, slots=True)
class PingTimedOut:
    """One of our pings went unanswered for ``connection_write_timeout`` seconds."""

    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer sent a go-away frame."""

    code: GoAwayCode


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The session is over; ``error`` says why (``None`` for a local close)."""

    error: YamuxError | None


Event = (
    StreamOpened
    | StreamEstablished
    | DataReceived
    | WindowUpdated
    | StreamEnded
    | StreamReset
    | PingReceived
    | PingAcknowledged
    | PingTimedOut
    | GoAwayReceived
    | ConnectionTerminated
)
