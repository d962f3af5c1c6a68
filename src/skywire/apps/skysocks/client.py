"""skysocks-client: SOCKS5 on 127.0.0.1:1080, every connection one yamux stream over one route.

``async with SkysocksClient(router, server_pk) as client:`` listens on TCP and keeps one route
group to ``server_pk:3`` with one yamux session over it (this side is the yamux *client*, so its
streams have odd IDs; hashicorp ``DefaultConfig()`` without keep-alive). Each accepted local
connection becomes one stream, and the bytes are piped raw: the SOCKS5 conversation, credentials
included, is the server's. Nothing is sent on a stream before the browser's own bytes (upstream
``internal/skysocks/client.go`` ``ListenAndServe``: ``session.Open()`` then two ``io.Copy``).

Where this differs from upstream, on purpose:

* **The route is kept.** Upstream dials once (retrying every second until it works:
  ``cmd/apps/skysocks-client/commands/skysocks-client.go`` ``dialServer``), then, once the
  session closes, shuts its listener and the app exits (``client.go`` ``sessionKeepAliveLoop``,
  ``handleStream``). Here the route is redialled at once and then with backoff
  (:class:`~skywire.apps.skysocks.config.RedialPolicy`); the listener stays up.
* **A connection with no route is answered.** It waits up to ``route_wait`` seconds for a route;
  if none comes the client itself answers the SOCKS5 greeting and refuses the request with
  0x01, general failure (:mod:`~skywire.apps.skysocks.refusal`), so the browser shows an error
  instead of a reset. Connections already piped end when their stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from skywire.apps.skysocks.config import (
    CLIENT_ADDRESS,
    SERVER_PORT,
    YAMUX_CONFIG,
    RedialPolicy,
)
from skywire.apps.skysocks.errors import NoRouteError
from skywire.apps.skysocks.refusal import Socks5Refusal
from skywire.apps.skysocks.tunnel import CHUNK, STREAM_ERRORS, pipe
from skywire.cipher import PubKey
from skywire.proxy.errors import Socks5Error
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError
from skywire.wire.yamux_aio import YamuxSession, YamuxStream

__all__ = ["ClientStats", "ClientStatus", "RouteDialer", "SkysocksClient"]

log = logging.getLogger(__name__)


class RouteDialer(Protocol):
    """The router as the client uses it."""

    async def dial_routes(
        self, remote: PubKey, local_port: int = 0, remote_port: int = 0
    ) -> ByteStream: ...


@dataclass
class ClientStats:
    """Counters since start."""

    dials: int = 0
    dial_failures: int = 0
    redials: int = 0  # routes made after the first one
    connections: int = 0  # local connections accepted
    piped: int = 0  # ... that got a stream
    refused: int = 0  # ... answered with a failure (no route)
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """What ``client.status()`` reports."""

    connected: bool
    server: PubKey
    server_port: int
    listening: tuple[str, int] | None
    route_age: float | None  # seconds the current route has been up
    redials: int
    dial_failures: int
    active: int  # local connections being served
    last_error: str | None


class SkysocksClient(Lifecycle):
    """See the module docstring. ``address`` is where it listens once started."""

    def __init__(
        self,
        router: RouteDialer,
        server_pk: PubKey,
        *,
        listen: tuple[str, int] = CLIENT_ADDRESS,
        local_port: int = 0,
        server_port: int = SERVER_PORT,
        route_wait: float = 10.0,
        handshake_timeout: float = 10.0,
        redial: RedialPolicy | None = None,
    ) -> None:
        if route_wait <= 0 or handshake_timeout <= 0:
            raise ValueError("route_wait and handshake_timeout must be positive")
        self.router = router
        self.server_pk = server_pk
        self.listen = listen
        self.local_port = local_port
        self.server_port = server_port
        self.route_wait = route_wait
        self.handshake_timeout = handshake_timeout
        self.redial = redial if redial is not None else RedialPolicy()
        self.stats = ClientStats()
        self.address: tuple[str, int] | None = None
        self.last_error: str | None = None
        self._session: YamuxSession | None = None
        self._since: float | None = None
        self._changed = asyncio.Event()
        self._active = 0
        self._server: asyncio.Server | None = None
        self._tasks = TaskTree("skysocks-client", log)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the SOCKS5 port (an ``OSError`` if taken) and start keeping the route."""
        if self._server is not None:
            return
        await self._tasks.start()
        try:
            self._server = await asyncio.start_server(self._on_local, *self.listen)
        except BaseException:
            await self._tasks.close()
            raise
        sock = self._server.sockets[0].getsockname()
        self.address = (str(sock[0]), int(sock[1]))
        self._tasks.spawn(self._keep_route(), "skysocks-client-route")
        host, port = self.address
        log.info("skysocks-client on %s:%d → %s:%d", host, port, self.server_pk, self.server_port)

    async def close(self) -> None:
        """Stop listening, end every connection and the route; twice is harmless."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no wait_closed(): the connections are the tree's to end
        await self._tasks.close()

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        return self._session is not None and not self._session.closed

    def status(self) -> ClientStatus:
        age = None
        if self.connected and self._since is not None:
            age = asyncio.get_running_loop().time() - self._since
        return ClientStatus(
            connected=self.connected,
            server=self.server_pk,
            server_port=self.server_port,
            listening=self.address,
            route_age=age,
            redials=self.stats.redials,
            dial_failures=self.stats.dial_failures,
            active=self._active,
            last_error=self.last_error,
        )

    async def wait_connected(self) -> None:
        """Wait until a route is up (the caller bounds the wait)."""
        while not self.connected:
            await self._changed.wait()

    async def wait_disconnected(self) -> None:
        """Wait until the route is down (the caller bounds the wait)."""
        while self.connected:
            await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def open_stream(self) -> YamuxStream:
        """A new stream to the server, waiting up to ``route_wait`` seconds for a route;
        raises :class:`NoRouteError` when none came."""
        try:
            async with asyncio.timeout(self.route_wait):
                while True:
                    await self.wait_connected()
                    session = self._session
                    assert session is not None
                    with contextlib.suppress(*STREAM_ERRORS):
                        return await session.open_stream()
                    await self.wait_disconnected()  # that session just died: wait for the next
        except TimeoutError:
            why = f": {self.last_error}" if self.last_error else ""
            raise NoRouteError(
                f"no route to {self.server_pk}:{self.server_port} within {self.route_wait:g} s{why}"
            ) from None

    # ------------------------------------------------------------------ the route
    async def _keep_route(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        routes = 0
        while True:
            await asyncio.sleep(self.redial.delay(failures))
            self.stats.dials += 1
            try:
                group = await self.router.dial_routes(
                    self.server_pk, self.local_port, self.server_port
                )
            except (TimeoutError, *STREAM_ERRORS) as exc:
                failures += 1
                self.stats.dial_failures += 1
                self.last_error = f"dial: {exc or type(exc).__name__}"
                log.info(
                    "skysocks-client: %s (next try in %.1f s)",
                    self.last_error,
                    self.redial.delay(failures),
                )
                continue
            routes += 1
            if routes > 1:
                self.stats.redials += 1
            failures = 0
            started = loop.time()
            await self._run_session(group)
            if loop.time() - started < self.redial.initial:
                failures = 1  # a route that breaks at once is not redialled in a tight loop

    async def _run_session(self, group: ByteStream) -> None:
        session = YamuxSession.over_stream(group, client=True, config=YAMUX_CONFIG)
        try:
            session.start()
            self._session, self._since = session, asyncio.get_running_loop().time()
            self._notify()
            log.info("skysocks-client: route to %s:%d is up", self.server_pk, self.server_port)
            await session.wait_closed()
            error = session.error
            self.last_error = f"route: {error}" if error is not None else "route closed"
            log.info("skysocks-client: %s; redialling", self.last_error)
        finally:
            self._session = None
            self._notify()
            await session.close()
            with contextlib.suppress(*STREAM_ERRORS):
                await group.close()

    # ------------------------------------------------------------------ local connections
    def _on_local(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self._tasks.spawn(self._serve_local(TcpStream(reader, writer)), "skysocks-local")
        except TaskTreeClosedError:
            writer.close()

    async def _serve_local(self, local: TcpStream) -> None:
        self.stats.connections += 1
        self._active += 1
        try:
            try:
                stream = await self.open_stream()
            except NoRouteError as exc:
                self.stats.refused += 1
                log.info("skysocks-client: refusing %s: %s", local.peername, exc)
                await self._refuse(local)
                return
            self.stats.piped += 1
            moved = await pipe(local, stream)
            self.stats.bytes_up += moved.a_to_b
            self.stats.bytes_down += moved.b_to_a
        finally:
            self._active -= 1
            with contextlib.suppress(*STREAM_ERRORS):
                await local.close()

    async def _refuse(self, local: TcpStream) -> None:
        """Answer the SOCKS5 conversation with a failure (see :mod:`.refusal`)."""
        core = Socks5Refusal()
        with contextlib.suppress(Socks5Error, TimeoutError, *STREAM_ERRORS):
            async with asyncio.timeout(self.handshake_timeout):
                while not core.done:
                    data = await local.read(CHUNK)
                    if not data:
                        return
                    core.receive_data(data)
                    if out := core.data_to_send():
                        await local.write(out)
