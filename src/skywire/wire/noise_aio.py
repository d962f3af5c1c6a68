"""asyncio shell around :mod:`skywire.wire.noise`: a handshake, then an encrypted stream."""

from __future__ import annotations

import asyncio
import struct

from skywire.cipher import PubKey, SecKey
from skywire.wire.errors import NoiseError
from skywire.wire.noise import HandshakeError, Noise, Pattern, Role, TransportDecoder
from skywire.wire.noise_frames import MAX_BODY_LEN, MAX_PLAINTEXT, FrameError, frame
from skywire.wire.pq import PQPolicy
from skywire.wire.stream import ByteStream

HANDSHAKE_TIMEOUT = 5.0  # dmsg sessions; route groups and transports use their own bounds

_U16 = struct.Struct(">H")
WRITE_PIECE = 16 * MAX_PLAINTEXT
"""Plaintext sealed per write to the stream below: 16 full Noise frames (65,120 bytes)."""


async def read_frame(stream: ByteStream, max_body: int = 0xFFFF) -> bytes:
    """Read one ``u16 BE length ‖ body`` frame."""
    try:
        (n,) = _U16.unpack(await stream.readexactly(2))
        if n > max_body:
            raise FrameError(f"noise: frame length {n} exceeds {max_body}")
        return await stream.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise HandshakeError("noise: connection closed during the handshake") from exc


async def handshake(stream: ByteStream, noise: Noise, timeout: float = HANDSHAKE_TIMEOUT) -> None:
    """Drive ``noise`` to completion over ``stream`` (the initiator writes first)."""

    async def run() -> None:
        while not noise.handshake_finished:
            if noise.my_turn():
                await stream.write(frame(noise.write_message()))
            else:
                noise.read_message(await read_frame(stream))

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError as exc:
        raise HandshakeError(f"noise: handshake timed out after {timeout:g}s") from exc


class NoiseStream:
    """A :class:`ByteStream` that encrypts into Noise transport frames over another stream."""

    def __init__(self, inner: ByteStream, noise: Noise) -> None:
        if not noise.handshake_finished:
            raise NoiseError("noise: handshake not finished")
        self.inner = inner
        self.noise = noise
        self._decoder = TransportDecoder(noise)
        self._buf = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._write_lock = asyncio.Lock()

    @property
    def local_pk(self) -> PubKey:
        return self.noise.local_pk

    @property
    def remote_pk(self) -> PubKey:
        assert self.noise.remote_pk is not None
        return self.noise.remote_pk

    @classmethod
    async def initiate(
        cls,
        inner: ByteStream,
        pattern: Pattern,
        local_sk: SecKey,
        remote_pk: PubKey,
        *,
        timeout: float = HANDSHAKE_TIMEOUT,
        pq: PQPolicy | None = None,
    ) -> NoiseStream:
        noise = Noise(pattern, Role.INITIATOR, local_sk, remote_pk, pq=pq)
        await handshake(inner, noise, timeout)
        return cls(inner, noise)

    @classmethod
    async def respond(
        cls,
        inner: ByteStream,
        pattern: Pattern,
        local_sk: SecKey,
        remote_pk: PubKey | None = None,
        *,
        timeout: float = HANDSHAKE_TIMEOUT,
        pq: PQPolicy | None = None,
    ) -> NoiseStream:
        noise = Noise(pattern, Role.RESPONDER, local_sk, remote_pk, pq=pq)
        await handshake(inner, noise, timeout)
        return cls(inner, noise)

    async def _fill(self) -> None:
        while not self._buf and not self._eof:
            await self._fill_more()

    async def read(self, max_bytes: int = 65536) -> bytes:
        if not self._buf:
            await self._fill()
        buf = self._buf
        if len(buf) <= max_bytes:
            self._buf = bytearray()
            return bytes(buf)
        with memoryview(buf) as view:
            out = bytes(view[:max_bytes])
        del buf[:max_bytes]
        return out

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self._eof:
                partial = bytes(self._buf)
                self._buf.clear()
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill_more()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def _fill_more(self) -> None:
        if self._error is not None:
            raise self._error
        data = await self.inner.read(MAX_BODY_LEN * 16)
        if not data:
            self._eof = True
            return
        try:
            for pt in self._decoder.feed(data):
                if self._buf:
                    self._buf += pt
                else:
                    self._buf = pt  # opened in a buffer of its own: taken as it is
        except NoiseError as exc:
            self._error = exc
            raise

    async def write(self, data: bytes) -> None:
        """Seal and send ``data``, a piece of :data:`WRITE_PIECE` bytes at a time: the next
        piece is sealed only once the stream below took the last, so a large write waiting for
        flow-control credit holds no more than one sealed piece (1,000 streams each writing
        1 MiB no longer seal a gigabyte, one stream after the other, before any byte leaves)."""
        if not data:
            return
        async with self._write_lock:
            view = memoryview(data)
            for off in range(0, len(view), WRITE_PIECE):
                await self.inner.write(self.noise.encode_frames(view[off : off + WRITE_PIECE]))

    async def close(self) -> None:
        await self.inner.close()
