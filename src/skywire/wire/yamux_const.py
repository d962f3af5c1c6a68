"""Constants, enumerations and configuration of the yamux core (hashicorp's ``const.go``).

The protocol version, header size and layout, the initial stream window, the raw frame-type and
flag integers used on the hot path, the :class:`FrameType` / :class:`Flag` / :class:`GoAwayCode`
/ :class:`StreamState` enumerations and the checked :class:`YamuxConfig`. Plain values with no
behaviour, shared by the events, the errors, the header codec and the state machine.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from typing import Final

PROTOCOL_VERSION: Final = 0
HEADER_SIZE: Final = 12
INITIAL_STREAM_WINDOW: Final = 256 * 1024
U32: Final = 0xFFFFFFFF
HEADER_STRUCT: Final = struct.Struct(">BBHII")

# Raw integer values used on the hot path (enum construction is comparatively slow).
DATA: Final = 0
WINDOW_UPDATE: Final = 1
PING: Final = 2
GO_AWAY: Final = 3
SYN: Final = 1
ACK: Final = 2
FIN: Final = 4
RST: Final = 8


class FrameType(IntEnum):
    """The ``type`` byte of a frame header."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(IntFlag):
    """The ``flags`` field of a frame header (unknown bits are kept and ignored)."""

    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(IntEnum):
    """The reason carried in the length field of a go-away frame."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class StreamState(Enum):
    """Lifecycle of one stream, as the reference implementation names it."""

    INIT = 0
    SYN_SENT = 1
    SYN_RECEIVED = 2
    ESTABLISHED = 3
    LOCAL_CLOSE = 4
    REMOTE_CLOSE = 5
    CLOSED = 6
    RESET = 7


@dataclass(frozen=True, slots=True)
class YamuxConfig:
    """Session tunables; the defaults are those of the reference ``DefaultConfig``.

    Durations are in seconds; a zero open/close timeout disables that timer.
    """

    accept_backlog: int = 256
    enable_keepalive: bool = True
    keepalive_interval: float = 30.0
    connection_write_timeout: float = 10.0
    max_stream_window: int = INITIAL_STREAM_WINDOW
    stream_open_timeout: float = 75.0
    stream_close_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.accept_backlog <= 0:
            raise ValueError("accept_backlog must be positive")
        if self.keepalive_interval <= 0:
            raise ValueError("keepalive_interval must be positive")
        if self.connection_write_timeout <= 0:
            raise ValueError("connection_write_timeout must be positive")
        if not INITIAL_STREAM_WINDOW <= self.max_stream_window <= U32:
            raise ValueError(f"max_stream_window must be in [{INITIAL_STREAM_WINDOW}, 2**32)")
        if self.stream_open_timeout < 0 or self.stream_close_timeout < 0:
            raise ValueError("timeouts must not be negative")
