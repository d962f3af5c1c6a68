"""In-memory discovery store (tests, throw-away networks). Expiry follows an injectable clock."""

from __future__ import annotations

import time
from dataclasses import dataclass

from skywire.cipher import PubKey
from skywire.dmsg.disc_entry import Clock, Entry, KeyNotFoundError
from skywire.services.dmsgdisc.store import DiscStore, entry_ttl

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Record:
    entry: Entry
    expires_at: int | None  # Unix ns


class MemoryStore(DiscStore):
    """A dict of entries. ``clock`` returns Unix nanoseconds; expiry is checked on every read."""

    def __init__(self, *, clock: Clock = time.time_ns) -> None:
        self._clock = clock
        self._records: dict[PubKey, _Record] = {}
        self._closed = False

    def _live(self) -> list[Entry]:
        now = self._clock()
        return [
            r.entry for r in self._records.values() if r.expires_at is None or r.expires_at > now
        ]

    async def get(self, pk: PubKey) -> Entry:
        record = self._records.get(pk)
        if record is None:
            raise KeyNotFoundError()
        if record.expires_at is not None and record.expires_at <= self._clock():
            del self._records[pk]
            raise KeyNotFoundError()
        return record.entry

    async def set(self, entry: Entry, *, timeout: bool = False) -> None:
        ttl = entry_ttl(entry, timeout)
        expires = None if ttl is None else self._clock() + int(ttl * 1_000_000_000)
        self._records[entry.static] = _Record(entry, expires)

    async def delete(self, pk: PubKey) -> None:
        self._records.pop(pk, None)

    async def client_pks(self) -> list[PubKey]:
        return sorted(e.static for e in self._live() if e.client is not None)

    async def visor_client_pks(self) -> list[PubKey]:
        return sorted(e.static for e in self._live() if e.is_visor)

    async def all_servers(self) -> list[Entry]:
        return sorted((e for e in self._live() if e.server is not None), key=lambda e: e.static)

    async def count(self) -> tuple[int, int]:
        live = self._live()
        return sum(e.server is not None for e in live), sum(e.client is not None for e in live)

    async def purge(self) -> None:
        now = self._clock()
        expired = [
            pk
            for pk, r in self._records.items()
            if r.expires_at is not None and r.expires_at <= now
        ]
        for pk in expired:
            del self._records[pk]

    async def close(self) -> None:
        self._records.clear()
        self._closed = True
