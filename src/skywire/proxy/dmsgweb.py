"""dmsgweb's connector: a ``.dmsg`` name becomes a dmsg stream.

``<pk>.dmsg[:port]`` dials ``pk:port`` through the delegated servers its discovery entry
names; ``<pk>.<server>.dmsg`` (the server next to the suffix) dials through that server's
session instead, with no discovery lookup for ``pk`` (so it reaches a client whose entry is
missing or stale); ``<alias>.dmsg`` is this node itself. Exactly one dmsg client serves the
proxy; a request that arrives before it is ready waits a bounded time, then fails with
:class:`~skywire.proxy.errors.NotReadyError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from skywire.cipher import PubKey
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.proxy.errors import (
    DestinationRefusedError,
    NotReadyError,
    ProxyError,
    UnreachableError,
)
from skywire.proxy.hostname import ProxyTarget
from skywire.wire.stream import ByteStream

__all__ = ["DmsgConnector", "DmsgDialer"]


class DmsgDialer(Protocol):
    """The dmsg client as the proxy uses it."""

    @property
    def pk(self) -> PubKey: ...

    async def ready(self, timeout: float = 10.0) -> None: ...

    async def dial(self, pk: PubKey, port: int) -> ByteStream: ...

    async def dial_via(self, pk: PubKey, port: int, servers: Iterable[PubKey]) -> ByteStream: ...


_UNKNOWN = {
    ErrorCode.DISC_ENTRY_NOT_FOUND,
    ErrorCode.DISC_ENTRY_IS_NOT_CLIENT,
    ErrorCode.DISC_ENTRY_HAS_NO_DELEGATED,
}
_REFUSED = {ErrorCode.REQ_NO_LISTENER, ErrorCode.ACCEPT_CHAN_MAXED}


def _as_proxy_error(exc: DmsgError, what: str) -> ProxyError:
    code = exc.code
    if code in _UNKNOWN:
        return UnreachableError(f"{what}: unknown to dmsg discovery ({exc})")
    if code in _REFUSED:
        return DestinationRefusedError(f"{what}: refused ({exc})")
    return UnreachableError(f"{what}: {exc}")


class DmsgConnector:
    """Opens dmsg streams for ``.dmsg`` names through one dmsg client."""

    def __init__(self, dmsg: DmsgDialer, *, ready_timeout: float = 10.0) -> None:
        self.dmsg = dmsg
        self.ready_timeout = ready_timeout
        self._ready = False
        self._lock = asyncio.Lock()

    async def wait_ready(self) -> None:
        """Wait, at most ``ready_timeout`` seconds, for the dmsg client's sessions."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            try:
                await self.dmsg.ready(self.ready_timeout)
            except TimeoutError as exc:
                raise NotReadyError(
                    f"dmsg is not ready: no session to a dmsg server within "
                    f"{self.ready_timeout:g} s ({exc})"
                ) from None
            self._ready = True

    async def open(self, target: ProxyTarget) -> ByteStream:
        await self.wait_ready()
        peer = target.dmsg_peer
        dest = peer if peer is not None else self.dmsg.pk
        what = f"{dest}:{target.port}"
        server = target.pinned_server
        try:
            if server is not None:
                return await self.dmsg.dial_via(dest, target.port, [server])
            return await self.dmsg.dial(dest, target.port)
        except DmsgError as exc:
            if server is not None and exc.code is ErrorCode.CANNOT_CONNECT_TO_DELEGATED:
                raise UnreachableError(
                    f"{what}: through pinned dmsg server {server}: {exc}"
                ) from exc
            raise _as_proxy_error(exc, what) from exc
