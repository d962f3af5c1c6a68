"""The dmsgpty host (upstream ``host.go``, ``host_mux.go``).

``async with PtyHost(dmsg_client, whitelist):`` listens on dmsg port 22. For each stream it first
checks the remote key against the whitelist: a key not on it gets the reject byte and the stream
is closed, before anything is read and before any shell exists. An accepted stream's request
must name ``dmsgpty/pty``; the host answers the accept byte and serves the ``pty`` RPC service
over a fresh :class:`~skywire.dmsg.pty.local.LocalPty`, whose command is killed and reaped when
the stream ends.

``await host.serve_cli(path)`` also serves the local CLI socket, as upstream's ``ServeCLI``
does: ``dmsgpty/pty`` (a local shell), ``dmsgpty/proxy?pk=…&port=…`` (a remote host's pty,
reached over dmsg from this host's key) and ``dmsgpty/whitelist``. Anyone who can open the
socket is trusted: its permissions are the access control.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from skywire.cipher import PubKey
from skywire.dmsg.addr import Addr
from skywire.dmsg.errors import DmsgError
from skywire.dmsg.pty.client import PtyClient
from skywire.dmsg.pty.errors import PtyError
from skywire.dmsg.pty.gateway import Whitelist, pty_service, whitelist_service
from skywire.dmsg.pty.local import KILL_GRACE, LocalPty
from skywire.dmsg.pty.protocol import (
    ACCEPT,
    DEFAULT_PORT,
    PTY_PROXY_URI,
    PTY_RPC_NAME,
    PTY_URI,
    REJECT,
    WHITELIST_RPC_NAME,
    WHITELIST_URI,
    PtyRequest,
    parse_uri,
)
from skywire.wire.errors import WireError
from skywire.wire.netrpc import RPCMethod, RPCServer
from skywire.wire.stream import AcceptQueue, ByteStream, TcpStream
from skywire.wire.tasks import TaskTree, serve_each

__all__ = ["DmsgPtyNetwork", "PtyHost", "PtyHostConfig"]

log = logging.getLogger(__name__)


def _remove_socket(where: Path) -> None:
    with contextlib.suppress(OSError):
        if stat.S_ISSOCK(os.stat(where).st_mode):
            os.unlink(where)


class PeerStream(ByteStream, Protocol):
    """A dmsg stream: a byte stream that knows the remote address."""

    remote_addr: Addr


class PeerListener(Protocol):
    async def accept(self) -> PeerStream: ...

    async def close(self) -> None: ...


class DmsgPtyNetwork(Protocol):
    """What a host needs of a dmsg client (:class:`skywire.dmsg.client.Client` is one)."""

    async def listen(self, port: int) -> PeerListener: ...

    async def dial(self, pk: PubKey, port: int) -> PeerStream: ...


@dataclass(frozen=True, slots=True)
class PtyHostConfig:
    """``shell`` runs for a ``Start`` naming no command (default ``$SHELL`` or ``/bin/sh``);
    ``env`` is the commands' environment (default this process's); ``request_timeout`` bounds
    the wait for a request line; ``kill_grace`` is the wait between SIGHUP and SIGKILL."""

    shell: str | None = None
    env: Mapping[str, str] | None = None
    request_timeout: float = 10.0
    kill_grace: float = KILL_GRACE

    def __post_init__(self) -> None:
        if self.request_timeout <= 0 or self.kill_grace < 0:
            raise ValueError("request_timeout must be > 0 and kill_grace >= 0")


Service = tuple[str, dict[str, RPCMethod]]
Endpoint = Callable[[PtyRequest, contextlib.AsyncExitStack], Awaitable[Service]]


class PtyHost:
    """Serves shells over dmsg to the keys on ``whitelist``."""

    def __init__(
        self,
        dmsg: DmsgPtyNetwork,
        whitelist: Whitelist,
        *,
        port: int = DEFAULT_PORT,
        config: PtyHostConfig | None = None,
    ) -> None:
        self.dmsg = dmsg
        self.whitelist = whitelist
        self.port = port
        self.config = config or PtyHostConfig()
        self.shells_started = 0
        self.rejected = 0
        self._ptys: set[LocalPty] = set()
        self._tree = TaskTree("dmsgpty host", log)
        self._listener: PeerListener | None = None
        self._cli_servers: list[asyncio.Server] = []
        self._cli_paths: list[Path] = []
        self._dmsg_endpoints: dict[str, Endpoint] = {PTY_URI: self._pty}
        self._cli_endpoints: dict[str, Endpoint] = {
            WHITELIST_URI: self._whitelist,
            PTY_URI: self._pty,
            PTY_PROXY_URI: self._proxy,
        }

    @property
    def live_pids(self) -> list[int]:
        """Processes of the shells running now."""
        return [p.pid for p in self._ptys if p.pid is not None and p.returncode is None]

    async def start(self) -> None:
        if self._listener is not None:
            return
        self._listener = await self.dmsg.listen(self.port)
        await self._tree.start()
        self._tree.spawn(
            serve_each(self._listener.accept, self._serve_dmsg, what="dmsgpty stream", logger=log),
            "accept",
        )

    async def serve_cli(self, path: str | os.PathLike[str]) -> None:
        """Also serve the local CLI socket at ``path`` (a stale socket file is replaced)."""
        await self._tree.start()
        where = Path(path)
        _remove_socket(where)
        queue: AcceptQueue[TcpStream] = AcceptQueue(
            16, lambda: ConnectionAbortedError("CLI socket closed")
        )

        async def offer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            stream = TcpStream(reader, writer)
            try:
                queue.put_nowait(stream)
            except asyncio.QueueFull:
                await stream.close()

        server = await asyncio.start_unix_server(offer, str(where))
        self._cli_servers.append(server)
        self._cli_paths.append(where)

        async def serve() -> None:
            try:
                await serve_each(queue.get, self._serve_cli, what="dmsgpty CLI conn", logger=log)
            finally:
                for left in queue.close():
                    await left.close()

        self._tree.spawn(serve(), "cli")

    async def close(self) -> None:
        """Stop listening, end every connection and reap every shell; twice is harmless."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        for server in self._cli_servers:
            server.close()
        await self._tree.close()
        for server in self._cli_servers:
            with contextlib.suppress(OSError):
                await server.wait_closed()
        self._cli_servers.clear()
        for where in self._cli_paths:
            _remove_socket(where)
        self._cli_paths.clear()
        for pty in list(self._ptys):
            await pty.close()

    async def __aenter__(self) -> PtyHost:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ connections
    async def _serve_dmsg(self, stream: PeerStream) -> None:
        pk = stream.remote_addr.pk
        if not self.whitelist.get(pk):
            self.rejected += 1
            log.warning("dmsgpty: %s is not on the whitelist: rejected", pk)
            await self._reject(stream)
            return
        log.debug("dmsgpty: stream from %s accepted", pk)
        await self._serve(stream, self._dmsg_endpoints)

    async def _serve_cli(self, stream: ByteStream) -> None:
        await self._serve(stream, self._cli_endpoints)

    async def _serve(self, stream: ByteStream, endpoints: Mapping[str, Endpoint]) -> None:
        try:
            async with asyncio.timeout(self.config.request_timeout):
                size = await stream.readexactly(1)
                req = parse_uri(await stream.readexactly(size[0]))
        except (asyncio.IncompleteReadError, TimeoutError, PtyError, WireError, OSError) as exc:
            log.debug("dmsgpty: bad request: %r", exc)
            await self._reject(stream)
            return
        endpoint = endpoints.get(req.path)
        if endpoint is None:
            log.debug("dmsgpty: no endpoint for %r", req.uri)
            await self._reject(stream)
            return
        async with contextlib.AsyncExitStack() as stack:
            try:
                name, methods = await endpoint(req, stack)
            except (PtyError, DmsgError, WireError, OSError) as exc:
                log.info("dmsgpty: %s refused: %s", req.uri, exc)
                await self._reject(stream)
                return
            server = RPCServer()
            server.register(name, methods)
            try:
                await stream.write(ACCEPT)
            except (WireError, OSError):
                await stream.close()
                return
            await server.serve(stream)  # until the peer stops sending; closes the stream

    def _started(self, pty: LocalPty) -> None:
        self.shells_started += 1

    @staticmethod
    async def _reject(stream: ByteStream) -> None:
        with contextlib.suppress(WireError, OSError):
            await stream.write(REJECT)
        await stream.close()

    # ------------------------------------------------------------------ endpoints
    async def _pty(self, req: PtyRequest, stack: contextlib.AsyncExitStack) -> Service:
        pty = LocalPty(
            shell=self.config.shell,
            env=self.config.env,
            kill_grace=self.config.kill_grace,
            on_start=self._started,
        )
        self._ptys.add(pty)

        async def forget() -> None:
            await pty.close()
            self._ptys.discard(pty)  # not when cancelled halfway: close() finishes it

        stack.push_async_callback(forget)
        return PTY_RPC_NAME, pty_service(pty)

    async def _proxy(self, req: PtyRequest, stack: contextlib.AsyncExitStack) -> Service:
        pk, port = req.proxy_target()
        stream = await self.dmsg.dial(pk, port)
        client = await PtyClient.connect(stream)
        stack.push_async_callback(client.close)
        return PTY_RPC_NAME, pty_service(client)

    async def _whitelist(self, req: PtyRequest, stack: contextlib.AsyncExitStack) -> Service:
        return WHITELIST_RPC_NAME, whitelist_service(self.whitelist)
