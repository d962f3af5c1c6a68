"""The typed errors of the yamux core and its asyncio shell.

Each subclasses :class:`~skywire.wire.errors.YamuxError` and, where a caller would catch one,
the matching builtin (``ConnectionError``, ``ConnectionResetError``, ``TimeoutError``...). A
protocol error carries the events decoded before the fault; a go-away error carries the peer's
:class:`~skywire.wire.yamux_const.GoAwayCode`.
"""

from __future__ import annotations

from skywire.wire.errors import YamuxError
from skywire.wire.yamux_const import GoAwayCode
from skywire.wire.yamux_events import Event


class YamuxProtocolError(YamuxError):
    """The peer broke the protocol; the session is dead.

    ``events`` holds whatever the same :meth:`YamuxConnection.receive_data` call produced
    before the bad frame, so a caller can still deliver them.
    """

    def __init__(self, message: str, events: list[Event] | None = None) -> None:
        super().__init__(message)
        self.events: list[Event] = events if events is not None else []


class YamuxSessionClosedError(YamuxError, ConnectionError):
    """The session is closed (locally, by the peer, or after an error)."""


class YamuxGoAwayError(YamuxSessionClosedError):
    """The peer sent a go-away carrying an error code; the session is dead."""

    def __init__(self, message: str, code: GoAwayCode) -> None:
        super().__init__(message)
        self.code = code


class YamuxRemoteGoAwayError(YamuxError, ConnectionRefusedError):
    """The peer sent a normal go-away, so no new stream may be opened."""


class YamuxStreamsExhaustedError(YamuxError):
    """Every stream identifier of our parity has been used."""


class YamuxOpenLimitError(YamuxError):
    """Too many of our SYNs are still unacknowledged; retry after one is ACKed or closed."""


class YamuxStreamClosedError(YamuxError, ConnectionError):
    """Write on a stream whose sending side is closed (or which no longer exists)."""


class YamuxStreamResetError(YamuxError, ConnectionResetError):
    """The stream was reset."""


class YamuxTimeoutError(YamuxError, TimeoutError):
    """A ping (or another timed exchange) got no answer in time."""


class YamuxKeepAliveTimeoutError(YamuxTimeoutError, YamuxSessionClosedError):
    """A keepalive ping went unanswered; the session is dead."""


class YamuxStreamOpenTimeoutError(YamuxTimeoutError, YamuxSessionClosedError):
    """A SYN we sent was never ACKed; the session is dead."""
