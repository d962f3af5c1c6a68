"""dmsgctrl: one-byte ping (0x09) / pong (0x0A) on any stream; skywire runs it on dmsg port 7."""

from __future__ import annotations

import asyncio
import time

from skywire.wire.stream import ByteStream

CTRL_PORT = 7
PING = 0x09
PONG = 0x0A


class CtrlError(Exception):
    """The peer sent something other than ping or pong, or went away."""


class Control:
    """One end of a dmsgctrl stream: answers pings, measures round trips."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self._pongs: asyncio.Queue[float] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()
        self.error: BaseException | None = None

    async def serve(self) -> None:
        """Read until the stream ends: answer every ping, deliver every pong."""
        try:
            while True:
                data = await self.stream.read(64)
                if not data:
                    raise CtrlError("dmsgctrl: stream closed")
                for b in data:
                    if b == PING:
                        await self.stream.write(bytes((PONG,)))
                    elif b == PONG:
                        self._pongs.put_nowait(time.monotonic())
                    else:
                        raise CtrlError(f"dmsgctrl: unexpected byte 0x{b:02x}")
        except (CtrlError, ConnectionError, OSError) as exc:
            self.error = exc
        finally:
            self._done.set()
            await self.stream.close()

    async def ping(self) -> float:
        """Send a ping and wait for the next pong; returns the round trip in seconds."""
        async with self._lock:
            if self._done.is_set():
                raise CtrlError(f"dmsgctrl: closed ({self.error})")
            start = time.monotonic()
            await self.stream.write(bytes((PING,)))
            pong = asyncio.ensure_future(self._pongs.get())
            done = asyncio.ensure_future(self._done.wait())
            try:
                await asyncio.wait({pong, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (pong, done):
                    if not t.done():
                        t.cancel()
                await asyncio.gather(pong, done, return_exceptions=True)
            if not pong.done() or pong.cancelled():
                raise CtrlError(f"dmsgctrl: closed ({self.error})")
            return pong.result() - start
