"""The sans-I/O cores of a route group, tested without sockets or sleeps.

* :class:`RouteHandshake` — the route handshake ([2026] rules): the initiator sends a Handshake
  right away and **retransmits** it until the responder's arrives; the responder answers every
  Handshake it gets; neither waits longer than ``timeout`` and a missing Handshake **fails** the
  dial instead of silently running in plaintext.
* :class:`RouteTimers` — KeepAlive after ``keep_alive/2`` without sending, Ping every
  ``ping_interval`` (the Pong echo gives the route latency).
"""

from __future__ import annotations

import enum

from skywire.routing.packet import Capability, Handshake, make_handshake

__all__ = [
    "DEFAULT_HANDSHAKE_RETRANSMIT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "RouteHandshake",
    "RouteTimers",
    "TimerAction",
]

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
"""[2026] bounded wait for the peer's Handshake (PR #3027 / #4057)."""
DEFAULT_HANDSHAKE_RETRANSMIT = 1.0


class RouteHandshake:
    """The route handshake as a state machine; time enters only as an argument.

    Drive it with :meth:`receive` (a Handshake packet arrived), :meth:`handle_timer` (the clock
    reached :meth:`get_timer`) and drain :meth:`packets_to_send` after each call.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        encrypt: bool,
        now: float,
        timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        retransmit: float = DEFAULT_HANDSHAKE_RETRANSMIT,
        capabilities: Capability = Capability.NONE,
    ) -> None:
        if timeout <= 0 or retransmit <= 0:
            raise ValueError("handshake timeout and retransmit interval must be positive")
        self.initiator = initiator
        self.encrypt = encrypt
        self.capabilities = capabilities
        self.deadline = now + timeout
        self.retransmit = retransmit
        self.peer: Handshake | None = None
        self.failed = False
        self.sent = 0
        self._out = 0
        self._next_send: float | None = None
        if initiator:
            self._out = 1
            self._next_send = now + retransmit

    @property
    def done(self) -> bool:
        """The handshake completed: the peer's Handshake arrived (and ours went out)."""
        return self.peer is not None and not self.failed

    @property
    def encrypted(self) -> bool:
        """Both ends advertise encryption: run Noise KK over the route."""
        return self.done and self.encrypt and self.peer is not None and self.peer.encrypt

    def payload(self) -> bytes:
        """Our Handshake payload ([2026] form: flag ‖ capability bitmap LE)."""
        return make_handshake(0, self.encrypt, self.capabilities).payload

    def packets_to_send(self) -> list[bytes]:
        """Handshake payloads to send now (each one a Handshake packet)."""
        out = [self.payload() for _ in range(self._out)]
        self.sent += self._out
        self._out = 0
        return out

    def receive(self, handshake: Handshake, now: float) -> None:
        if self.failed:
            return
        if self.initiator:
            if self.peer is None:
                self.peer = handshake
                self._next_send = None
            return
        # Responder: answer every Handshake; a repeat means ours was lost.
        if now <= self.deadline or self.peer is not None:
            if self.peer is None:
                self.peer = handshake
            self._out += 1

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (``None``: nothing pending)."""
        if self.done or self.failed:
            return None
        if self._next_send is not None:
            return min(self._next_send, self.deadline)
        return self.deadline

    def handle_timer(self, now: float) -> None:
        if self.done or self.failed:
            return
        if now >= self.deadline:
            self.failed = True
            self._out = 0
            self._next_send = None
            return
        if self._next_send is not None and now >= self._next_send:
            self._out += 1
            self._next_send = now + self.retransmit


class TimerAction(enum.Enum):
    KEEP_ALIVE = "keep_alive"
    PING = "ping"


class RouteTimers:
    """KeepAlive and Ping schedule of a running route group (sans-I/O).

    A KeepAlive goes out when nothing was sent for ``keep_alive_interval`` seconds; a Ping every
    ``ping_interval`` seconds (``0`` disables pings). Report every send with :meth:`on_sent`.
    """

    def __init__(self, keep_alive_interval: float, ping_interval: float, now: float) -> None:
        if keep_alive_interval <= 0:
            raise ValueError("keep-alive interval must be positive")
        self.keep_alive_interval = keep_alive_interval
        self.ping_interval = ping_interval
        self.last_sent = now
        self.next_ping = now + ping_interval if ping_interval > 0 else None

    def on_sent(self, now: float) -> None:
        self.last_sent = max(self.last_sent, now)

    def get_timer(self) -> float:
        due = self.last_sent + self.keep_alive_interval
        return due if self.next_ping is None else min(due, self.next_ping)

    def handle_timer(self, now: float) -> list[TimerAction]:
        out: list[TimerAction] = []
        if self.next_ping is not None and now >= self.next_ping:
            out.append(TimerAction.PING)
            self.next_ping = now + self.ping_interval
            self.last_sent = now
        if now >= self.last_sent + self.keep_alive_interval:
            out.append(TimerAction.KEEP_ALIVE)
            self.last_sent = now
        return out
