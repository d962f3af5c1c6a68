"""A dmsg session: TCP, a Noise XK handshake, then plaintext yamux on the same socket.

The Noise keys of the session are kept after the handshake: every signed stream object (request
and response) travels on its yamux stream as one frame sealed with them,
``u16 BE length ‖ u64 BE nonce ‖ ciphertext``. The nonce counter is session-wide, so a reader
accepts any nonce there; stream payload is encrypted separately, end to end.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.dmsg.types import SignedObject
from skywire.wire.errors import NoiseError
from skywire.wire.noise import Noise, Pattern, Role
from skywire.wire.noise_aio import handshake
from skywire.wire.pq import PQPolicy
from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.tasks import serve_each
from skywire.wire.yamux import YamuxConfig
from skywire.wire.yamux_aio import YamuxSession, YamuxStream

log = logging.getLogger(__name__)

SESSION_HANDSHAKE_TIMEOUT = 5.0
STREAM_HANDSHAKE_TIMEOUT = 20.0

_U16 = struct.Struct(">H")


class Session:
    """One side of a client ⇄ server session."""

    def __init__(
        self,
        tcp: TcpStream,
        noise: Noise,
        *,
        client: bool,
        yamux_config: YamuxConfig | None = None,
        writes_after: float = 0.0,
    ) -> None:
        assert noise.remote_pk is not None
        self.tcp = tcp
        self.noise = noise
        self.local_pk = noise.local_pk
        self.remote_pk: PubKey = noise.remote_pk
        self.is_client = client
        self.yamux = YamuxSession(tcp.reader, tcp.writer, client=client, config=yamux_config)
        self.yamux.start()
        # A reference server refuses bytes that arrive together with the last handshake message,
        # so a client holds back its first yamux frame a moment (see dial()).
        self._writes_after = writes_after
        self.created = time.monotonic()

    @property
    def closed(self) -> bool:
        return self.yamux.closed

    @property
    def peername(self) -> tuple[str, int] | None:
        return self.tcp.peername

    async def open_stream(self) -> YamuxStream:
        delay = self._writes_after - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            return await self.yamux.open_stream()
        except ConnectionError as exc:
            raise DmsgError(ErrorCode.SESSION_CLOSED, str(exc)) from exc

    async def accept_stream(self) -> YamuxStream:
        return await self.yamux.accept()

    async def serve_streams(
        self, handle: Callable[[YamuxStream], Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``handle`` on every incoming stream until the session ends; the handlers still
        running then (or when this is cancelled) are cancelled and awaited."""
        await serve_each(self.accept_stream, handle, what="dmsg stream handler", logger=log)

    async def write_object(self, stream: ByteStream, obj: SignedObject) -> None:
        await stream.write(self.noise.encode_object(obj.raw))

    async def read_object(self, stream: ByteStream) -> SignedObject:
        try:
            (n,) = _U16.unpack(await stream.readexactly(2))
            body = await stream.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise DmsgError(ErrorCode.SESSION_CLOSED, "stream ended before the object") from exc
        try:
            raw = self.noise.decrypt(body, strict=False)
        except NoiseError as exc:
            raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID, str(exc)) from exc
        return SignedObject.parse(raw)

    async def ping(self) -> float:
        return await self.yamux.ping()

    async def wait_closed(self) -> None:
        await self.yamux.wait_closed()

    async def close(self) -> None:
        await self.yamux.close()
        await self.tcp.close()


async def client_handshake(
    tcp: TcpStream,
    sk: SecKey,
    server_pk: PubKey,
    *,
    timeout: float = SESSION_HANDSHAKE_TIMEOUT,
    ephemeral: SecKey | None = None,
    pq: PQPolicy | None = None,
) -> tuple[Noise, float]:
    """Run XK as initiator; returns the state and the round trip seen during the handshake."""
    noise = Noise(Pattern.XK, Role.INITIATOR, sk, server_pk, ephemeral=ephemeral, pq=pq)
    start = time.monotonic()
    await handshake(tcp, noise, timeout)
    return noise, time.monotonic() - start


async def server_handshake(
    tcp: TcpStream,
    sk: SecKey,
    *,
    timeout: float = SESSION_HANDSHAKE_TIMEOUT,
    ephemeral: SecKey | None = None,
    pq: PQPolicy | None = None,
) -> Noise:
    """Run XK as responder; the client's static key arrives in the last message."""
    noise = Noise(Pattern.XK, Role.RESPONDER, sk, ephemeral=ephemeral, pq=pq)
    await handshake(tcp, noise, timeout)
    return noise
