"""One TCP port, two protocols: the JSON/HTTP control API and upstream's gob net/rpc.

Upstream's ``skywire cli`` speaks Go net/rpc with the gob codec to ``localhost:3435``; our
``skywire cli`` (and ``curl``) speak HTTP to the same address. Which one a connection speaks is
plain from its first two bytes (:func:`sniff`): an HTTP request begins with its method, upper-case
ASCII letters; a gob stream begins with ``uint(length) ‖ int(type id)``, and net/rpc's first
message is always a type definition (the ``rpc.Request`` header's), whose negative id ≤ -64
encodes as ``0x7f`` or a ``0xff…`` prefix, never a letter.

How: one ``loop.create_server`` whose protocol (:class:`_Sniffer`) buffers the first bytes, then
swaps itself out with the public ``Transport.set_protocol``:

* HTTP goes to aiohttp's own protocol factory, ``AppRunner.server`` (what ``TCPSite`` hands to
  ``create_server``), which then owns the connection exactly as if aiohttp had accepted it:
  keep-alive, shutdown and ``runner.cleanup()`` all work unchanged, with no copying and no
  second socket;
* gob goes to a ``StreamReaderProtocol`` (what ``asyncio.start_server`` builds), and the
  stream pair is served by :class:`~skywire.wire.netrpc.RPCServer` in a task of this port's
  :class:`~skywire.wire.tasks.TaskTree`.

The alternative (aiohttp on an internal socket, HTTP connections spliced to it) costs a copy
task per connection and hides the client's address from aiohttp; serving the accepted
transport directly needs neither.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from types import TracebackType
from typing import Self

from aiohttp import web

from skywire.wire.netrpc import RPCServer
from skywire.wire.stream import TcpStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = ["SNIFF_TIMEOUT", "ControlPort", "Wire", "sniff"]

log = logging.getLogger(__name__)

SNIFF_TIMEOUT = 10.0
"""Seconds a new connection may take to send the two bytes that tell its protocol."""

_STREAM_LIMIT = 1 << 20


class Wire(enum.Enum):
    """What a connection to the control port speaks."""

    HTTP = "http"
    GOB = "gob"


def _is_method_char(byte: int) -> bool:
    return 0x41 <= byte <= 0x5A  # A-Z


def sniff(prefix: bytes) -> Wire | None:
    """The protocol of a connection that began with ``prefix``; ``None``: too few bytes yet."""
    if not prefix:
        return None
    if not _is_method_char(prefix[0]):
        return Wire.GOB
    if len(prefix) < 2:
        return None
    return Wire.HTTP if _is_method_char(prefix[1]) else Wire.GOB


class _Sniffer(asyncio.Protocol):
    """A new connection until it has told its protocol; then it hands itself over."""

    def __init__(self, port: ControlPort) -> None:
        self._port = port
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._port.pending.add(transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(SNIFF_TIMEOUT, transport.close)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        wire = sniff(self._buffer)
        if wire is not None and self._transport is not None:
            self._hand_over(self._transport, wire)

    def eof_received(self) -> bool | None:
        return None  # undecided and the peer stopped sending: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle()

    def _settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._port.pending.discard(self._transport)

    def _hand_over(self, transport: asyncio.Transport, wire: Wire) -> None:
        self._settle()
        self._transport = None
        data, self._buffer = self._buffer, b""
        if wire is Wire.HTTP:
            factory = self._port.http_factory
            if factory is None:  # closing
                transport.close()
                return
            http = factory()
            transport.set_protocol(http)
            http.connection_made(transport)
            http.data_received(data)
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._port.serve_gob(TcpStream(reader, writer))


class ControlPort:
    """``async with``: serve ``app`` (HTTP) and ``rpc`` (gob net/rpc) on ``host:port``.

    ``port=0`` picks a free port (read it back from :attr:`port`). Closing stops listening,
    drops connections still undecided, ends the gob connections and cleans up the aiohttp
    runner (which closes the HTTP ones).
    """

    def __init__(self, app: web.Application, rpc: RPCServer, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._app = app
        self._rpc = rpc
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._tree = TaskTree("control port gob", log)
        self.pending: set[asyncio.Transport] = set()
        """Connections that have not told their protocol yet."""

    @property
    def runner(self) -> web.AppRunner | None:
        """The set-up aiohttp runner while serving."""
        return self._runner

    @property
    def http_factory(self) -> web.Server | None:
        """aiohttp's protocol factory while serving."""
        return None if self._runner is None else self._runner.server

    def serve_gob(self, stream: TcpStream) -> None:
        try:
            self._tree.spawn(self._rpc.serve(stream), name="gob connection")
        except TaskTreeClosedError:
            stream.writer.close()

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            await self._tree.start()
            loop = asyncio.get_running_loop()
            self._server = await loop.create_server(
                lambda: _Sniffer(self), self.host or None, self.port
            )
        except BaseException:
            self._runner = None
            await self._tree.close()
            await runner.cleanup()
            raise
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop serving; closing twice is harmless."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self.pending):
            transport.close()
        self.pending.clear()
        await self._tree.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if server is not None:
            await server.wait_closed()
