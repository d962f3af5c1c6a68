"""Public autoconnect, the decisions (pure: no I/O, time is an argument).

A visor with ``transport.public_autoconnect`` keeps transports to a few public visors: the
``visor`` entries of service discovery (:mod:`skywire.visor.public`). Upstream
(``pkg/servicedisc/autoconnect.go``) looks every ten seconds and dials ``stcpr`` to at most
three of them; here the same, and also:

* a key is tried over each of :attr:`AutoconnectConfig.types` in turn, ``stcpr`` first and
  ``sudph`` when ``stcpr`` fails (upstream #2031); never ``dmsg`` (refused in the config);
* a key whose every type failed is skipped for :attr:`AutoconnectConfig.retry_after` seconds
  (upstream gives up on it after two failed rounds, for good);
* a public visor whose transport went away is tried after the others for the same time: it is
  likely dead, and its entry may outlive it in the listing for minutes;
* the loop keeps going once the count is reached (upstream returns), so a transport that dies is
  replaced.

:class:`Autoconnector` is told the listing (:meth:`~Autoconnector.update_public`), the live
transports (:meth:`~Autoconnector.update_transports`) and how each dial ended; it answers which
dials to start (:meth:`~Autoconnector.next_dials`). The asyncio loop around it is
:mod:`skywire.visor.autoconnect_aio`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from skywire.cipher import PubKey

__all__ = [
    "AUTOCONNECT_TYPES",
    "INTERVAL",
    "MAX_CONNS",
    "RETRY_AFTER",
    "AutoconnectConfig",
    "Autoconnector",
    "Dial",
    "LiveTransport",
]

MAX_CONNS = 3
"""Public visors kept (upstream's ``MakeConnector(…, 3, …)``)."""
INTERVAL = 10.0
"""Seconds between looks at the listing (upstream ``PublicServiceDelay``)."""
RETRY_AFTER = 60.0
"""Seconds a key that failed (or whose transport died) is passed over."""
DIAL_TIMEOUT = 20.0
AUTOCONNECT_TYPES = ("stcpr", "sudph")
"""The transport types autoconnect may use, in the order tried."""


@dataclass(frozen=True, slots=True)
class AutoconnectConfig:
    """How many public visors to keep, how often to look, and over what."""

    max_conns: int = MAX_CONNS
    interval: float = INTERVAL
    retry_after: float = RETRY_AFTER
    dial_timeout: float = DIAL_TIMEOUT
    types: tuple[str, ...] = AUTOCONNECT_TYPES

    def __post_init__(self) -> None:
        if self.max_conns < 1:
            raise ValueError("autoconnect: max_conns must be at least 1")
        if self.interval <= 0 or self.retry_after < 0 or self.dial_timeout <= 0:
            raise ValueError("autoconnect: interval and dial_timeout must be positive")
        if not self.types:
            raise ValueError("autoconnect: no transport type to use")
        bad = [t for t in self.types if t not in AUTOCONNECT_TYPES]
        if bad:  # dmsg above all: autoconnect never makes dmsg transports
            raise ValueError(f"autoconnect: type {bad[0]!r} not allowed {AUTOCONNECT_TYPES}")
        if len(set(self.types)) != len(self.types):
            raise ValueError("autoconnect: a type is named twice")


@dataclass(frozen=True, slots=True)
class LiveTransport:
    """A transport that is up, as the decisions see it."""

    pk: PubKey
    tp_type: str


@dataclass(frozen=True, slots=True)
class Dial:
    """Start a transport to ``pk`` over ``tp_type`` (labelled ``automatic``)."""

    pk: PubKey
    tp_type: str


@dataclass(slots=True)
class _Attempt:
    """One key being tried, type after type."""

    next_type: int = 0
    in_flight: bool = False


@dataclass(slots=True)
class Autoconnector:
    """The autoconnect decisions of the visor ``local_pk``."""

    local_pk: PubKey
    config: AutoconnectConfig = field(default_factory=AutoconnectConfig)
    _public: list[PubKey] = field(default_factory=list)
    _connected: set[PubKey] = field(default_factory=set)
    _attempts: dict[PubKey, _Attempt] = field(default_factory=dict)
    _failed_at: dict[PubKey, float] = field(default_factory=dict)
    _lost_at: dict[PubKey, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ inputs
    def update_public(self, pks: Sequence[PubKey]) -> None:
        """The public visors listed now, in the listing's order (this visor left out)."""
        seen: set[PubKey] = set()
        self._public = []
        for pk in pks:
            if pk != self.local_pk and pk not in seen:
                seen.add(pk)
                self._public.append(pk)
        for pk in [pk for pk, a in self._attempts.items() if pk not in seen and not a.in_flight]:
            del self._attempts[pk]

    def update_transports(self, live: Iterable[LiveTransport], now: float) -> None:
        """The transports up now. A public visor counts as kept while a transport of an allowed
        type to it is up, whoever dialed it; one that was kept and is no longer is noted lost."""
        public = set(self._public)
        connected = {t.pk for t in live if t.pk in public and t.tp_type in self.config.types}
        for pk in self._connected - connected:
            self._lost_at[pk] = now
        for pk in connected:  # up, whoever dialed: not failing
            self._failed_at.pop(pk, None)
        self._connected = connected
        for pk in [pk for pk, a in self._attempts.items() if pk in connected and not a.in_flight]:
            del self._attempts[pk]

    def dial_succeeded(self, dial: Dial, now: float) -> None:
        self._attempts.pop(dial.pk, None)
        self._failed_at.pop(dial.pk, None)
        self._lost_at.pop(dial.pk, None)
        if dial.pk in self._public:
            self._connected.add(dial.pk)

    def dial_failed(self, dial: Dial, now: float) -> None:
        """``dial`` failed: the key's next type is tried next, or, when none is left, the key
        is passed over for ``retry_after`` seconds."""
        attempt = self._attempts.get(dial.pk)
        if attempt is None:
            return
        attempt.in_flight = False
        attempt.next_type = self.config.types.index(dial.tp_type) + 1
        if attempt.next_type >= len(self.config.types) or dial.pk not in self._public:
            del self._attempts[dial.pk]
            self._failed_at[dial.pk] = now

    # ------------------------------------------------------------------ outputs
    @property
    def public(self) -> list[PubKey]:
        return list(self._public)

    @property
    def connected(self) -> frozenset[PubKey]:
        """The public visors a transport is kept to."""
        return frozenset(self._connected)

    @property
    def in_flight(self) -> frozenset[PubKey]:
        return frozenset(pk for pk, a in self._attempts.items() if a.in_flight)

    def missing(self) -> int:
        """How many more public visors are wanted, counting the dials under way as kept."""
        return max(0, self.config.max_conns - len(self._connected | self.in_flight))

    def next_dials(self, now: float) -> list[Dial]:
        """The dials to start now: a key already being tried continues with its next type,
        then fresh keys in listing order (those lost recently last) fill what is missing. A
        key that failed recently is skipped; each returned dial is counted in flight."""
        free = self.missing()
        if free == 0:
            return []
        waiting = [pk for pk, a in self._attempts.items() if not a.in_flight]
        fresh = [
            pk
            for pk in self._public
            if pk not in self._connected
            and pk not in self._attempts
            and not self._recent(self._failed_at, pk, now)
        ]
        fresh.sort(key=lambda pk: self._recent(self._lost_at, pk, now))  # stable
        out = []
        for pk in [*waiting, *fresh][:free]:
            attempt = self._attempts.setdefault(pk, _Attempt())
            attempt.in_flight = True
            out.append(Dial(pk, self.config.types[attempt.next_type]))
        return out

    def _recent(self, table: dict[PubKey, float], pk: PubKey, now: float) -> bool:
        at = table.get(pk)
        if at is None:
            return False
        if now - at >= self.config.retry_after:
            del table[pk]
            return False
        return True
