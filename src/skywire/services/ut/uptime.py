"""Uptime accounting, pure: which seconds a heartbeat credits to which day, and what a visor's
uptime over a window of days comes to. No I/O, no clock: ``now`` is always an argument.

A visor sends a heartbeat every interval (upstream: every 5 minutes). A heartbeat credits the
time since the same visor's previous one, when that gap is above zero and at most the tracker's
``tolerance``; a longer gap (the visor was down, or cut off) credits nothing, and neither does a
visor's first heartbeat. The credited interval is split at UTC midnight, so each day gets the
seconds that fell on it. A visor is *online* while its last heartbeat is at most ``tolerance``
seconds old.

A day's percentage is its credited seconds over the day's length (today: the seconds of it
gone so far); a window starts at the later of its first day and the day the visor was first
seen, so a visor is not counted down for days before it existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from skywire.cipher import CipherError, PubKey
from skywire.services.ut.errors import QueryError

__all__ = [
    "DAY",
    "DEFAULT_DAYS",
    "DEFAULT_INTERVAL",
    "DEFAULT_TOLERANCE",
    "MAX_DAYS",
    "MAX_KEYS",
    "MAX_VERSION",
    "Credit",
    "DayUptime",
    "VisorRecord",
    "VisorUptime",
    "check_tolerance",
    "check_version",
    "credits",
    "day_of",
    "day_start",
    "parse_days",
    "parse_keys",
    "summarize",
    "window",
]

DAY = 86400.0
DEFAULT_INTERVAL = 300.0
"""Seconds between two heartbeats of a visor (upstream ``initUptimeTracker``: 5 minutes)."""
DEFAULT_TOLERANCE = 600.0
"""The longest gap between two heartbeats that is still credited: one missed beat forgiven."""
DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_KEYS = 1000
"""Keys one ``/uptimes?visors=`` query names at most."""
MAX_VERSION = 64


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` if it is a finite number of seconds above zero and at most a day."""
    if not math.isfinite(tolerance) or not 0 < tolerance <= DAY:
        raise ValueError(f"tolerance must be above 0 and at most {DAY:g} s, not {tolerance!r}")
    return tolerance


def day_of(ts: float) -> str:
    """The UTC day of Unix time ``ts``, ISO (``2023-11-14``)."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def day_start(day: str) -> float:
    """Unix time of the UTC midnight that starts ``day``."""
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Credit:
    """``seconds`` of uptime credited to UTC ``day``."""

    day: str
    seconds: float


def credits(last_seen: float | None, now: float, tolerance: float) -> list[Credit]:
    """What a heartbeat at ``now`` credits, the previous one being at ``last_seen`` (None: it
    is the first): the gap split at UTC midnights, or nothing when the gap is not in
    ``(0, tolerance]``."""
    if last_seen is None or not 0 < now - last_seen <= tolerance:
        return []
    out: list[Credit] = []
    t = last_seen
    while t < now:
        day = day_of(t)
        end = min(now, day_start(day) + DAY)
        out.append(Credit(day, end - t))
        t = end
    return out


@dataclass(frozen=True, slots=True)
class VisorRecord:
    """What a tracker keeps of one visor besides its days: the version it last reported, and
    when it was first and last heard from."""

    pk: PubKey
    version: str
    first_seen: float
    last_seen: float

    def online(self, now: float, tolerance: float) -> bool:
        return now - self.last_seen <= tolerance


@dataclass(frozen=True, slots=True)
class DayUptime:
    """One UTC day: ``up`` seconds credited out of ``span`` (the day's length, or its part gone
    by when it is today)."""

    day: str
    up: float
    span: float

    @property
    def pct(self) -> float:
        return min(100.0, 100.0 * self.up / self.span) if self.span > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day, "up": round(min(self.up, self.span), 3), "pct": _pct(self.pct)}


def _pct(value: float) -> float:
    return round(value, 2)


@dataclass(frozen=True, slots=True)
class VisorUptime:
    """A visor's uptime over a window of days (oldest first)."""

    record: VisorRecord
    online: bool
    days: tuple[DayUptime, ...]

    @property
    def pk(self) -> PubKey:
        return self.record.pk

    @property
    def up(self) -> float:
        return sum(min(d.up, d.span) for d in self.days)

    @property
    def span(self) -> float:
        return sum(d.span for d in self.days)

    @property
    def down(self) -> float:
        return max(0.0, self.span - self.up)

    @property
    def pct(self) -> float:
        return min(100.0, 100.0 * self.up / self.span) if self.span > 0 else 0.0

    def to_v2(self) -> dict[str, Any]:
        """Upstream's ``/uptimes?v=v2`` element: ``pk``, ``up`` / ``down`` (seconds), ``pct``,
        ``on``, ``version`` and ``daily`` (day → percentage as a string)."""
        return {
            "pk": self.pk.hex(),
            "up": round(self.up),
            "down": round(self.down),
            "pct": _pct(self.pct),
            "on": self.online,
            "version": self.record.version,
            "daily": {d.day: f"{d.pct:.2f}" for d in self.days},
        }

    def to_json(self) -> dict[str, Any]:
        """``GET /uptimes/{pk}`` (ours): the v2 totals, when the visor was first and last seen,
        and every day of the window with its seconds."""
        return {
            "pk": self.pk.hex(),
            "version": self.record.version,
            "on": self.online,
            "first_seen": _rfc3339(self.record.first_seen),
            "last_seen": _rfc3339(self.record.last_seen),
            "up": round(self.up, 3),
            "down": round(self.down, 3),
            "pct": _pct(self.pct),
            "days": [d.to_json() for d in self.days],
        }


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def window(now: float, days: int, first_seen: float | None = None) -> list[str]:
    """The UTC days of a window of ``days`` ending today (oldest first), starting no earlier
    than the day of ``first_seen`` when given."""
    today = date.fromisoformat(day_of(now))
    first = today - timedelta(days=days - 1)
    if first_seen is not None:
        first = max(first, date.fromisoformat(day_of(first_seen)))
    return [(first + timedelta(days=i)).isoformat() for i in range((today - first).days + 1)]


def summarize(
    record: VisorRecord,
    seconds_by_day: dict[str, float],
    now: float,
    days: int,
    tolerance: float,
) -> VisorUptime:
    """``record``'s uptime over the ``days`` days ending today, from its credited seconds."""
    today = day_of(now)
    out = []
    for day in window(now, days, record.first_seen):
        span = now - day_start(day) if day == today else DAY
        out.append(DayUptime(day, seconds_by_day.get(day, 0.0), max(span, 0.0)))
    return VisorUptime(record, record.online(now, tolerance), tuple(out))


# ------------------------------------------------------------------------------ queries
def parse_keys(text: str) -> list[PubKey]:
    """``visors=``: keys separated by commas or semicolons (upstream documents ``;``), each
    once, in the order given; empty: none named."""
    out: list[PubKey] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            pk = PubKey.from_hex(part)
        except CipherError as exc:
            raise QueryError(f"invalid public key {part[:80]!r}: {exc}") from exc
        if pk not in out:
            out.append(pk)
    if len(out) > MAX_KEYS:
        raise QueryError(f"at most {MAX_KEYS} visors per query")
    return out


def parse_days(text: str) -> int:
    """``days=``: 1 to :data:`MAX_DAYS` (empty: :data:`DEFAULT_DAYS`)."""
    if not text:
        return DEFAULT_DAYS
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise QueryError(f"days must be a whole number from 1 to {MAX_DAYS}")
    return int(text)


def check_version(text: str) -> str:
    """A reported visor version: at most :data:`MAX_VERSION` printable ASCII characters."""
    if len(text) > MAX_VERSION or not all(" " < c <= "~" for c in text):
        raise QueryError(f"version must be at most {MAX_VERSION} printable ASCII characters")
    return text
