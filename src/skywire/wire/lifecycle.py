"""One shape for components that start and close: ``async with`` calls :meth:`start` and,
on the way out, :meth:`close`."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Lifecycle"]


class Lifecycle:
    """A component used as ``async with Thing(...) as thing:``; subclasses define ``start``
    (idempotent, undoing what it did when it fails) and ``close`` (safe to call twice)."""

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
