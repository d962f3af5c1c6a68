"""In-memory service discovery store (tests, ``--store memory``)."""

from __future__ import annotations

import time

from skywire.cipher import PubKey
from skywire.services.httpauth import MemoryNonceStore, NonceStore
from skywire.services.sd.entry import ServiceEntry, ServiceType
from skywire.services.sd.store import (
    DEFAULT_TTL,
    Clock,
    ServiceNotFoundError,
    ServiceStore,
    check_ttl,
)

__all__ = ["MemoryStore"]


class MemoryStore(ServiceStore):
    """Entries in a dict keyed by (type, key), each with its expiry time (None: never). No
    method awaits, so each is atomic."""

    def __init__(self, *, ttl: float | None = DEFAULT_TTL, clock: Clock = time.time) -> None:
        self.ttl = check_ttl(ttl)
        self._clock = clock
        self._entries: dict[tuple[ServiceType, PubKey], tuple[ServiceEntry, float | None]] = {}
        self._nonces = MemoryNonceStore()

    def _live(self) -> list[ServiceEntry]:
        now = self._clock()
        live = [e for e, expires in self._entries.values() if expires is None or now < expires]
        return sorted(live, key=lambda e: (e.type.value, e.pk.raw))

    async def register(self, entry: ServiceEntry) -> None:
        expires = None if self.ttl is None else self._clock() + self.ttl
        self._entries[(entry.type, entry.pk)] = (entry, expires)

    async def get(self, service_type: ServiceType, pk: PubKey) -> ServiceEntry:
        item = self._entries.get((service_type, pk))
        if item is None or (item[1] is not None and self._clock() >= item[1]):
            raise ServiceNotFoundError()
        return item[0]

    async def services(
        self, service_type: ServiceType, *, version: str = "", country: str = ""
    ) -> list[ServiceEntry]:
        return [
            e
            for e in self._live()
            if e.type == service_type
            and (not version or e.version == version)
            and (not country or (e.geo is not None and e.geo.country == country))
        ]

    async def delete(self, service_type: ServiceType, pk: PubKey) -> bool:
        item = self._entries.pop((service_type, pk), None)
        return item is not None and (item[1] is None or self._clock() < item[1])

    async def count_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self._live():
            counts[e.type.value] = counts.get(e.type.value, 0) + 1
        return counts

    async def purge_expired(self) -> int:
        now = self._clock()
        gone = [k for k, (_, exp) in self._entries.items() if exp is not None and now >= exp]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        self._entries.clear()
