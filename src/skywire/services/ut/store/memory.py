"""In-memory uptime tracker store (tests, ``--store memory``)."""

from __future__ import annotations

from collections.abc import Sequence

from skywire.cipher import PubKey
from skywire.services.httpauth import MemoryNonceStore, NonceStore
from skywire.services.ut.store import UptimeStore
from skywire.services.ut.uptime import Credit, VisorRecord, credits, day_start

__all__ = ["MemoryStore"]


class MemoryStore(UptimeStore):
    """Records and days in dicts. No method awaits, so each is atomic."""

    def __init__(self) -> None:
        self._visors: dict[PubKey, VisorRecord] = {}
        self._days: dict[PubKey, dict[str, float]] = {}
        self._nonces = MemoryNonceStore()

    async def heartbeat(
        self, pk: PubKey, version: str, now: float, tolerance: float
    ) -> list[Credit]:
        old = self._visors.get(pk)
        got = credits(old.last_seen if old is not None else None, now, tolerance)
        days = self._days.setdefault(pk, {})
        for c in got:
            days[c.day] = days.get(c.day, 0.0) + c.seconds
        first = old.first_seen if old is not None else now
        self._visors[pk] = VisorRecord(pk, version, first, now)
        return got

    async def visors(self, pks: Sequence[PubKey] | None = None) -> list[VisorRecord]:
        keys = self._visors.keys() if pks is None else [k for k in pks if k in self._visors]
        return [self._visors[k] for k in sorted(set(keys), key=lambda k: k.raw)]

    async def daily(
        self, pks: Sequence[PubKey] | None, since: str
    ) -> dict[PubKey, dict[str, float]]:
        keys = list(self._days) if pks is None else [k for k in pks if k in self._days]
        out: dict[PubKey, dict[str, float]] = {}
        for k in keys:
            days = {d: s for d, s in self._days[k].items() if d >= since}
            if days:
                out[k] = days
        return out

    async def purge_before(self, day: str) -> int:
        dropped = 0
        for days in self._days.values():
            for d in [d for d in days if d < day]:
                del days[d]
                dropped += 1
        cutoff = day_start(day)
        for pk in [pk for pk, r in self._visors.items() if r.last_seen < cutoff]:
            del self._visors[pk]
            self._days.pop(pk, None)
            dropped += 1
        return dropped

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        pass
