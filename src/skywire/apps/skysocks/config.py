"""skysocks constants and configuration values: ports, the yamux config, credentials, redial.

Upstream facts (skycoin/skywire, the mirror's HEAD, 2024-03):

* ports: ``pkg/skyenv/skyenv.go`` ``SkysocksPort = 3``, ``SkysocksClientPort = 13``,
  ``SkysocksClientAddr = ":1080"``; the server listens on skynet port 3
  (``cmd/apps/skysocks/commands/skysocks.go``), the client dials ``<pk>:3``
  (``cmd/apps/skysocks-client/commands/skysocks-client.go``, ``socksPort``). Port 13 is the
  client app's registered port; its route is dialled from an *ephemeral* local port
  (``pkg/app/appnet/skywire_networker.go`` ``DialContext`` → ``porter.ReserveEphemeral``).
* yamux: ``yamux.DefaultConfig()`` with ``EnableKeepAlive = false`` on both ends
  (``internal/skysocks/client.go`` ``NewClient``, ``internal/skysocks/server.go`` ``Serve``),
  hashicorp/yamux v0.1.1 (``vendor/modules.txt``).
* credentials: the server's ``--passcode`` is accepted as the RFC 1929 user name *or*
  password (``internal/skysocks/server.go`` ``passcodeCredentials.Valid``); go-socks5's own
  ``StaticCredentials`` is a user → password map (``vendor/github.com/armon/go-socks5/
  credentials.go``).
* the client's first dial is retried forever, 1 s apart, backoff capped at 20 s
  (``skysocks-client.go`` ``netutil.NewRetrier(nil, time.Second, DefaultMaxBackoff, 0, 1)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from skywire.wire.yamux import YamuxConfig

__all__ = [
    "CLIENT_ADDRESS",
    "CLIENT_PORT",
    "SERVER_PORT",
    "YAMUX_CONFIG",
    "Credentials",
    "Passcode",
    "RedialPolicy",
    "StaticCredentials",
]

SERVER_PORT: Final = 3
"""The skysocks server's routing port."""
CLIENT_PORT: Final = 13
"""The skysocks-client app's routing port (its routes leave from ephemeral ports)."""
CLIENT_ADDRESS: Final = ("127.0.0.1", 1080)
"""Where the client serves SOCKS5 (upstream ``:1080``, all interfaces; here loopback only)."""

YAMUX_CONFIG: Final = YamuxConfig(enable_keepalive=False)
"""hashicorp ``DefaultConfig()`` with ``EnableKeepAlive = false``, as both upstream ends use."""


class Credentials(Protocol):
    """What the server asks of a credential store (go-socks5 ``CredentialStore``)."""

    def valid(self, username: str, password: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Passcode:
    """Upstream skysocks' ``--passcode``: right if it is the user name or the password."""

    passcode: str

    def __post_init__(self) -> None:
        if not self.passcode:
            raise ValueError("an empty passcode means no authentication: pass credentials=None")
        if len(self.passcode.encode()) > 255:
            raise ValueError("a passcode longer than 255 bytes cannot be sent (RFC 1929)")

    def valid(self, username: str, password: str) -> bool:
        return self.passcode in (username, password)


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """User name → password (go-socks5 ``StaticCredentials``)."""

    users: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("no users: pass credentials=None for no authentication")
        for user, password in self.users.items():
            if not user or len(user.encode()) > 255 or len(password.encode()) > 255:
                raise ValueError(f"user {user!r}: names and passwords are 1..255 bytes")

    def valid(self, username: str, password: str) -> bool:
        return username in self.users and self.users[username] == password


@dataclass(frozen=True, slots=True)
class RedialPolicy:
    """How the client waits between failed route dials: ``initial`` after the first failure,
    times ``factor`` after each further one, never more than ``maximum`` (seconds). A route
    that broke after living less than ``initial`` is also redialled only after ``initial``."""

    initial: float = 1.0
    factor: float = 1.3
    maximum: float = 20.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("need 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")

    def delay(self, failures: int) -> float:
        """The wait before the next dial after ``failures`` failed dials in a row."""
        if failures <= 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** min(failures - 1, 64))
