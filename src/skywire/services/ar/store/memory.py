"""In-memory address-resolver store (tests, ``--store memory``), with an injectable clock."""

from __future__ import annotations

import time

from skywire.cipher import PubKey
from skywire.services.ar.store import ARStore, Clock, NoEntryError, VisorData, check_type

__all__ = ["MemoryStore"]


class MemoryStore(ARStore):
    """Binds in a dict; an expired bind is dropped when met. ``clock`` gives seconds."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._binds: dict[tuple[str, PubKey], tuple[VisorData, float | None]] = {}

    def _live(self, key: tuple[str, PubKey]) -> VisorData | None:
        item = self._binds.get(key)
        if item is None:
            return None
        data, expires = item
        if expires is not None and self._clock() >= expires:
            del self._binds[key]
            return None
        return data

    async def bind(
        self, tp_type: str, pk: PubKey, data: VisorData, *, ttl: float | None = None
    ) -> None:
        check_type(tp_type)
        expires = None if ttl is None else self._clock() + ttl
        self._binds[(tp_type, pk)] = (data, expires)

    async def del_bind(self, tp_type: str, pk: PubKey) -> None:
        check_type(tp_type)
        self._binds.pop((tp_type, pk), None)

    async def resolve(self, tp_type: str, pk: PubKey) -> VisorData:
        check_type(tp_type)
        data = self._live((tp_type, pk))
        if data is None:
            raise NoEntryError()
        return data

    async def get_all(self, tp_type: str) -> list[PubKey]:
        check_type(tp_type)
        keys = [key for key in list(self._binds) if key[0] == tp_type]
        return sorted(key[1] for key in keys if self._live(key) is not None)
