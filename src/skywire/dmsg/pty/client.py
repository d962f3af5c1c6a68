"""The client end of dmsgpty (upstream ``pty_client.go``, ``whitelist_client.go``).

``await PtyClient.connect(stream)`` sends the request, checks the host's answer byte and then
speaks net/rpc on the stream. The stream is a dmsg stream to a host's port 22 (``dmsgpty/pty``)
or a local host's CLI socket (``dmsgpty/pty``, ``dmsgpty/proxy?…``, ``dmsgpty/whitelist``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from skywire.cipher import PubKey
from skywire.dmsg.pty.errors import (
    EIO_READ_TEXT,
    EOF_TEXT,
    NOT_RUNNING_TEXT,
    PtyEOFError,
    PtyError,
    PtyNotRunningError,
    PtyRejectedError,
    PtyRemoteError,
)
from skywire.dmsg.pty.protocol import (
    BYTES,
    COMMAND_REQ,
    EMPTY,
    INT,
    PTY_RPC_NAME,
    PTY_URI,
    PUBKEYS,
    WHITELIST_RPC_NAME,
    WHITELIST_URI,
    WIN_SIZE,
    CommandReq,
    WinSize,
    decode_response,
    encode_request,
)
from skywire.wire.errors import WireError
from skywire.wire.gob import GoType
from skywire.wire.netrpc import RPCClient, RPCConnectionShutdown, RPCServerError
from skywire.wire.stream import ByteStream, TcpStream

__all__ = ["READ_SIZE", "PtyClient", "WhitelistClient", "connect_cli", "request"]

READ_SIZE = 32 * 1024
"""What upstream's CLI asks for per ``Read`` (``io.Copy``'s buffer)."""
STOP_TIMEOUT = 1.0
_EOF_TEXTS = frozenset({EIO_READ_TEXT, EOF_TEXT, "io: read/write on closed pipe"})


async def connect_cli(path: str) -> ByteStream:
    """A connection to a host's local CLI socket (upstream ``cli_network`` ``unix``)."""
    reader, writer = await asyncio.open_unix_connection(path)
    return TcpStream(reader, writer)


async def request(stream: ByteStream, uri: str) -> None:
    """Send the request line and wait for the host's answer; a reject, or a stream that ends
    first, raises :class:`PtyRejectedError`."""
    await stream.write(encode_request(uri))
    try:
        answer = await stream.readexactly(1)
    except asyncio.IncompleteReadError as exc:
        raise PtyRejectedError("failed to read response: EOF") from exc
    decode_response(answer)


def _remote_error(exc: RPCServerError) -> PtyError:
    if exc.message in _EOF_TEXTS:
        return PtyEOFError(exc.message)
    if exc.message == NOT_RUNNING_TEXT:
        return PtyNotRunningError()
    return PtyRemoteError(exc.message)


class _Calls:
    def __init__(self, rpc: RPCClient, service: str) -> None:
        self.rpc = rpc
        self.service = service

    async def call(self, method: str, arg: Any, arg_type: GoType, reply_type: GoType) -> Any:
        try:
            return await self.rpc.call(f"{self.service}.{method}", arg, arg_type, reply_type)
        except RPCServerError as exc:
            raise _remote_error(exc) from exc
        except RPCConnectionShutdown as exc:
            raise PtyEOFError("dmsgpty: connection closed") from exc


class PtyClient:
    """A pty on a host, driven over RPC (also a :class:`~skywire.dmsg.pty.gateway.PtyBackend`,
    which is how a host proxies one).

    ``read`` raises :class:`PtyEOFError` once the remote command has ended (or the connection
    has); other host errors raise :class:`PtyRemoteError` with the host's text.
    """

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.rpc = RPCClient(stream)
        self._calls = _Calls(self.rpc, PTY_RPC_NAME)
        self._closed = False

    @classmethod
    async def connect(cls, stream: ByteStream, uri: str = PTY_URI) -> PtyClient:
        """Request ``uri`` on ``stream`` (closed again if the host refuses)."""
        try:
            await request(stream, uri)
        except BaseException:
            await stream.close()
            raise
        return cls(stream)

    async def start(self, name: str, args: Sequence[str] = (), size: WinSize | None = None) -> None:
        """Run ``name args…`` on the host's pty, sized ``size`` (upstream ``StartWithSize``;
        without a size, upstream ``Start``)."""
        await self._calls.call("Start", CommandReq(name, tuple(args), size), COMMAND_REQ, EMPTY)

    async def stop(self) -> None:
        await self._calls.call("Stop", {}, EMPTY, EMPTY)

    async def read(self, n: int = READ_SIZE) -> bytes:
        data = await self._calls.call("Read", n, INT, BYTES)
        return bytes(data or b"")

    async def write(self, data: bytes) -> int:
        return int(await self._calls.call("Write", bytes(data), BYTES, INT) or 0)

    async def set_size(self, size: WinSize) -> None:
        await self._calls.call("SetPtySize", size, WIN_SIZE, EMPTY)

    async def close(self) -> None:
        """Ask the host to stop the pty (not waiting long), then close the stream."""
        if self._closed:
            return
        self._closed = True
        if not self.rpc.is_shut_down:
            with contextlib.suppress(PtyError, WireError, OSError, TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.stop()
        await self.rpc.close()

    async def __aenter__(self) -> PtyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class WhitelistClient:
    """A host's whitelist, over its CLI socket."""

    def __init__(self, stream: ByteStream) -> None:
        self.rpc = RPCClient(stream)
        self._calls = _Calls(self.rpc, WHITELIST_RPC_NAME)

    @classmethod
    async def connect(cls, stream: ByteStream) -> WhitelistClient:
        try:
            await request(stream, WHITELIST_URI)
        except BaseException:
            await stream.close()
            raise
        return cls(stream)

    async def all(self) -> list[PubKey]:
        return list(await self._calls.call("Whitelist", {}, EMPTY, PUBKEYS) or ())

    async def add(self, *pks: PubKey) -> None:
        await self._calls.call("WhitelistAdd", list(pks), PUBKEYS, EMPTY)

    async def remove(self, *pks: PubKey) -> None:
        await self._calls.call("WhitelistRemove", list(pks), PUBKEYS, EMPTY)

    async def close(self) -> None:
        await self.rpc.close()
