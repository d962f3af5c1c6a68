"""Sans-I/O yamux multiplexer, wire-compatible with hashicorp/yamux v0.1.1.

:class:`YamuxConnection` is a pure state machine: feed it received bytes with
:meth:`~YamuxConnection.receive_data`, collect the :data:`Event` values it returns, drive its
clocks with :meth:`~YamuxConnection.get_timer` / :meth:`~YamuxConnection.handle_timer` and
send whatever :meth:`~YamuxConnection.data_to_send` hands back. It never touches a socket and
never reads a clock: every time is an argument (seconds on any monotonic scale).

Frame layout (12-byte big-endian header, optional payload for data frames)::

    version:u8 (0) | type:u8 | flags:u16 | stream id:u32 | length:u32

The behaviour mirrors the reference session: streams open with a SYN window update and are
accepted with an ACK window update; flow control grants credit once half the window has been
consumed; a SYN beyond the accept backlog is refused with RST; an unanswered keepalive ping or
an un-ACKed SYN terminates the session.

This module is the public face of the core and holds the frame :class:`Header` codec; the parts
live apart: constants, enums and :class:`YamuxConfig` in :mod:`~skywire.wire.yamux_const`, events
in :mod:`~skywire.wire.yamux_events`, errors in :mod:`~skywire.wire.yamux_errors` and the state
machine in :mod:`~skywire.wire.yamux_connection`. Import from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from skywire.wire.yamux_connection import (
    YamuxConnection,
)
from skywire.wire.yamux_const import (
    GO_AWAY,
    HEADER_SIZE,
    HEADER_STRUCT,
    INITIAL_STREAM_WINDOW,
    PROTOCOL_VERSION,
    Flag,
    FrameType,
    GoAwayCode,
    StreamState,
    YamuxConfig,
)
from skywire.wire.yamux_errors import (
    YamuxGoAwayError,
    YamuxKeepAliveTimeoutError,
    YamuxOpenLimitError,
    YamuxProtocolError,
    YamuxRemoteGoAwayError,
    YamuxSessionClosedError,
    YamuxStreamClosedError,
    YamuxStreamOpenTimeoutError,
    YamuxStreamResetError,
    YamuxStreamsExhaustedError,
    YamuxTimeoutError,
)
from skywire.wire.yamux_events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    PingTimedOut,
    StreamEnded,
    StreamEstablished,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)

__all__ = [
    "HEADER_SIZE",
    "INITIAL_STREAM_WINDOW",
    "PROTOCOL_VERSION",
    "ConnectionTerminated",
    "DataReceived",
    "Event",
    "Flag",
    "FrameType",
    "GoAwayCode",
    "GoAwayReceived",
    "Header",
    "PingAcknowledged",
    "PingReceived",
    "PingTimedOut",
    "StreamEnded",
    "StreamEstablished",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "WindowUpdated",
    "YamuxConfig",
    "YamuxConnection",
    "YamuxGoAwayError",
    "YamuxKeepAliveTimeoutError",
    "YamuxOpenLimitError",
    "YamuxProtocolError",
    "YamuxRemoteGoAwayError",
    "YamuxSessionClosedError",
    "YamuxStreamClosedError",
    "YamuxStreamOpenTimeoutError",
    "YamuxStreamResetError",
    "YamuxStreamsExhaustedError",
    "YamuxTimeoutError",
]


@dataclass(frozen=True, slots=True)
class Header:
    """One decoded frame header."""

    type: FrameType
    flags: Flag
    stream_id: int
    length: int
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """The 12 wire bytes of this header."""
        return HEADER_STRUCT.pack(self.version, self.type, self.flags, self.stream_id, self.length)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Header:
        """Parse exactly one 12-byte header; raise :class:`YamuxProtocolError` if invalid."""
        if len(data) != HEADER_SIZE:
            raise YamuxProtocolError(f"header must be {HEADER_SIZE} bytes, got {len(data)}")
        version, ftype, flags, stream_id, length = HEADER_STRUCT.unpack(data)
        if version != PROTOCOL_VERSION:
            raise YamuxProtocolError(f"invalid protocol version {version}")
        if ftype > GO_AWAY:
            raise YamuxProtocolError(f"invalid message type {ftype}")
        return cls(FrameType(ftype), Flag(flags), stream_id, length, version)
