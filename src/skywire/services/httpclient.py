"""The HTTP session a service client uses: its own (opened lazily, closed by ``close``) or one
the caller lends (left open)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import aiohttp


class HTTPClientBase:
    """Base of the typed service clients; usable as ``async with``."""

    def __init__(self, session: aiohttp.ClientSession | None, timeout: float) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session
