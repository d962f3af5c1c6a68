"""In-memory transport discovery store (tests, ``--store memory``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from skywire.cipher import PubKey
from skywire.services.httpauth import MemoryNonceStore, NonceStore
from skywire.services.tpd.store import (
    AlreadyRegisteredError,
    Clock,
    TransportNotFoundError,
    TransportStore,
    check_unique_ids,
)
from skywire.transport.entry import Entry, SignedEntry

__all__ = ["MemoryStore"]


@dataclass
class _Record:
    signed: SignedEntry
    latency_ms: float | None = None
    reporter: PubKey | None = None


class MemoryStore(TransportStore):
    """Transports in a dict keyed by ID. No method awaits, so each is atomic."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._records: dict[uuid.UUID, _Record] = {}
        self._nonces = MemoryNonceStore()

    async def register(self, entries: Sequence[SignedEntry]) -> None:
        check_unique_ids(entries)
        if any(se.entry.id in self._records for se in entries):
            raise AlreadyRegisteredError()
        now = int(self._clock())
        for se in entries:
            stored = replace(se, entry=se.entry.without_latency(), registered=now)
            self._records[se.entry.id] = _Record(stored)

    async def deregister(self, tp_id: uuid.UUID) -> None:
        if self._records.pop(tp_id, None) is None:
            raise TransportNotFoundError()

    def _record(self, tp_id: uuid.UUID) -> _Record:
        rec = self._records.get(tp_id)
        if rec is None:
            raise TransportNotFoundError()
        return rec

    @staticmethod
    def _overlaid(rec: _Record) -> Entry:
        return replace(rec.signed.entry, latency_ms=rec.latency_ms)

    async def get_signed(self, tp_id: uuid.UUID) -> SignedEntry:
        return self._record(tp_id).signed

    async def get_by_id(self, tp_id: uuid.UUID) -> Entry:
        return self._overlaid(self._record(tp_id))

    def _sorted(self) -> list[_Record]:
        return [self._records[k] for k in sorted(self._records, key=str)]

    async def get_by_edge(self, pk: PubKey) -> list[Entry]:
        return [self._overlaid(r) for r in self._sorted() if r.signed.entry.has_edge(pk)]

    async def all_transports(self, *, with_latency: bool = False) -> list[Entry]:
        if with_latency:
            return [self._overlaid(r) for r in self._sorted()]
        return [r.signed.entry for r in self._sorted()]

    async def set_latency(self, tp_id: uuid.UUID, latency_ms: float, reporter: PubKey) -> None:
        rec = self._record(tp_id)
        rec.latency_ms = float(latency_ms)
        rec.reporter = reporter

    async def count_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self._records.values():
            counts[rec.signed.entry.type] = counts.get(rec.signed.entry.type, 0) + 1
        return counts

    def nonce_store(self) -> NonceStore:
        return self._nonces

    async def close(self) -> None:
        self._records.clear()
