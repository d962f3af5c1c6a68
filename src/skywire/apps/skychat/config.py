"""skychat constants, the dial policy, and the counters it reports.

Upstream facts (skycoin/skywire, the mirror's HEAD 0e7420a, 2024-03):

* routing port 1: ``cmd/apps/skychat/commands/skychat.go`` ``port = routing.Port(1)`` with
  ``netType = appnet.TypeSkynet`` (``listenLoop`` listens there, ``messageHandler`` dials
  ``<pk>:1``); ``pkg/skyenv/skyenv.go`` ``SkychatPort = 1``.
* web address: the ``--addr`` flag, default ``":8001"``, served on ``127.0.0.1:8001`` (an
  address starting with ``*:`` binds all interfaces; same file, ``RootCmd.Run``).
* dialling: ``netutil.NewRetrier(nil, 50*time.Millisecond, netutil.DefaultMaxBackoff, 5, 2)``:
  5 tries, 50 ms after the first failure, doubling (``vendor/github.com/skycoin/
  skywire-utilities/pkg/netutil/retrier.go``), with no bound on the whole wait; ours has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from skywire.cipher import PubKey

__all__ = ["CHAT_PORT", "WEB_ADDRESS", "ChatStats", "ChatStatus", "DialPolicy"]

CHAT_PORT: Final = 1
"""skychat's routing port."""
WEB_ADDRESS: Final = ("127.0.0.1", 8001)
"""Where the web page is served (upstream ``--addr :8001`` → 127.0.0.1:8001)."""


@dataclass(frozen=True, slots=True)
class DialPolicy:
    """How a send reaches a peer with no open route: up to ``attempts`` dials, ``initial``
    seconds after the first failure, times ``factor`` after each further one; the whole send
    (dials and the write) gives up after ``wait`` seconds."""

    attempts: int = 5
    initial: float = 0.05
    factor: float = 2.0
    wait: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial < 0 or self.factor < 1:
            raise ValueError("need initial >= 0 and factor >= 1")
        if self.wait <= 0:
            raise ValueError("wait must be positive")

    def delay(self, failures: int) -> float:
        """The pause before the next dial after ``failures`` failed dials."""
        if failures <= 0:
            return 0.0
        return float(self.initial * self.factor ** min(failures - 1, 32))


@dataclass
class ChatStats:
    """Counters since start."""

    received: int = 0  # messages in
    sent: int = 0  # messages out
    send_failures: int = 0
    dials: int = 0
    dial_failures: int = 0
    routes_accepted: int = 0
    routes_refused: int = 0  # accepted routes closed at once: too many open


@dataclass(frozen=True, slots=True)
class ChatStatus:
    """What ``chat.status()`` reports (also ``GET /status``)."""

    pk: PubKey | None
    port: int
    web: tuple[str, int] | None
    routes: int  # open route groups, both directions
    peers_connected: tuple[PubKey, ...]
    conversations: int
    messages_kept: int
    subscribers: int  # live event streams
    stats: ChatStats
