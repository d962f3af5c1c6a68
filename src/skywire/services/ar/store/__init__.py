"""Storage of the address resolver: one interface, two backends.

* :class:`~skywire.services.ar.store.memory.MemoryStore`: a dict with expiry, for tests;
* :class:`~skywire.services.ar.store.redis.RedisStore`: Redis, the upstream engine, keyed as
  upstream (``address-resolver:<type>:<pk>`` → :class:`VisorData` JSON, with a TTL).

Every bind lives ``ttl`` seconds after it is written (an ``stcpr`` visor re-binds, an ``sudph``
visor's heartbeats refresh it); ``ttl=None`` keeps it until deleted.
"""

from __future__ import annotations

import abc
import enum
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from skywire.cipher import PubKey
from skywire.transport.resolver import (
    NoEntryError,
    ResolverError,
    VisorData,
    VisorDataError,
    string_list,
)

__all__ = [
    "BIND_TYPES",
    "ARStore",
    "ARStoreError",
    "NoEntryError",
    "StoreKind",
    "UnknownTransportTypeError",
    "VisorData",
    "VisorDataError",
    "check_type",
    "open_store",
    "parse_local_addresses",
]

BIND_TYPES = ("stcpr", "sudph")
"""The transport types a visor can bind at the address resolver."""

Clock = Callable[[], float]
"""Seconds (monotonic or wall, as long as it is one clock)."""


class ARStoreError(ResolverError):
    """Base of the store's errors (a :class:`NoEntryError` is a resolver error as well)."""


class UnknownTransportTypeError(ARStoreError, ValueError):
    """A type other than ``stcpr`` / ``sudph``."""


def check_type(tp_type: str) -> str:
    """``tp_type`` if a visor can bind it, else :class:`UnknownTransportTypeError`."""
    if tp_type not in BIND_TYPES:
        raise UnknownTransportTypeError(f"unknown transport type {tp_type!r}")
    return tp_type


def parse_local_addresses(data: bytes | str) -> tuple[str, tuple[str, ...]]:
    """``(port, addresses)`` from a bind body ``{"port":"…","addresses":[…]}``."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise VisorDataError(f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise VisorDataError("expected a JSON object")
    port = obj.get("port", "")
    if not isinstance(port, str):
        raise VisorDataError("port must be a string")
    return port, string_list(obj.get("addresses"), "addresses")


class ARStore(abc.ABC):
    """Binds per ``(type, pk)``. Every method is safe to call concurrently; expired binds are
    never returned."""

    @abc.abstractmethod
    async def bind(
        self, tp_type: str, pk: PubKey, data: VisorData, *, ttl: float | None = None
    ) -> None:
        """Store (or replace) the bind of ``pk`` for ``tp_type``, living ``ttl`` seconds."""

    @abc.abstractmethod
    async def del_bind(self, tp_type: str, pk: PubKey) -> None:
        """Remove the bind; no error when there is none."""

    @abc.abstractmethod
    async def resolve(self, tp_type: str, pk: PubKey) -> VisorData:
        """The live bind; raises :class:`NoEntryError`."""

    @abc.abstractmethod
    async def get_all(self, tp_type: str) -> list[PubKey]:
        """Keys with a live bind of ``tp_type``, sorted."""

    async def transports(self) -> dict[str, list[PubKey]]:
        """Bound keys per type (types with none are left out)."""
        out: dict[str, list[PubKey]] = {}
        for tp_type in BIND_TYPES:
            pks = await self.get_all(tp_type)
            if pks:
                out[tp_type] = pks
        return out

    async def close(self) -> None:  # noqa: B027 - the memory store owns nothing
        """Release connections; the store is unusable afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class StoreKind(enum.StrEnum):
    """The backends :func:`open_store` opens (the command line's ``--store`` choices)."""

    memory = "memory"
    redis = "redis"


async def open_store(
    kind: StoreKind | str,
    *,
    redis_url: str = "redis://localhost:6379",
    redis_password: str | None = None,
    namespace: str = "",
    clock: Clock = time.monotonic,
) -> ARStore:
    """Open a store by name: ``memory`` or ``redis``."""
    if kind == StoreKind.memory:
        from skywire.services.ar.store.memory import MemoryStore

        return MemoryStore(clock=clock)
    if kind == StoreKind.redis:
        from skywire.services.ar.store.redis import RedisStore

        return await RedisStore.open(redis_url, namespace=namespace, password=redis_password)
    raise ValueError(f"unknown store {kind!r} (memory or redis)")
