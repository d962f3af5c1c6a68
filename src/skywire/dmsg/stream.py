"""A dmsg stream between two clients (Noise KK over a relayed yamux stream), and the
reconnection back-off of a client."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from skywire.cipher import PubKey
from skywire.dmsg.addr import Addr, PortAllocator
from skywire.dmsg.session import Session
from skywire.wire.errors import WireError
from skywire.wire.noise import Noise
from skywire.wire.noise_aio import NoiseStream
from skywire.wire.yamux_aio import YamuxStream

__all__ = ["Backoff", "DmsgStream"]


@dataclass(frozen=True)
class Backoff:
    """Reconnection wait: ``initial``, times ``factor`` per failure, at most ``maximum``."""

    initial: float = 5.0
    factor: float = 1.3
    maximum: float = 60.0


class DmsgStream(NoiseStream):
    """An end-to-end encrypted dmsg stream between two clients."""

    def __init__(
        self,
        ystream: YamuxStream,
        noise: Noise,
        *,
        local_addr: Addr,
        remote_addr: Addr,
        session: Session,
        on_close: list[PortAllocator] | None = None,
    ) -> None:
        super().__init__(ystream, noise)
        self.ystream = ystream
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.session = session
        self._ports = on_close
        self._closed = False

    @property
    def server_pk(self) -> PubKey:
        """The server this stream is relayed through."""
        return self.session.remote_pk

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ports:
            for ports in self._ports:
                ports.release(self.local_addr.port)
        with contextlib.suppress(ConnectionError, WireError, OSError):
            await self.ystream.close()

    def __repr__(self) -> str:
        return f"DmsgStream({self.local_addr} -> {self.remote_addr})"
