"""skysocks, the server: SOCKS5 served on every yamux stream of every route to routing port 3.

``async with SkysocksServer(router, credentials=Passcode("…")) as server:`` — each route group
arriving on the port carries one yamux session (this side is the yamux server, hashicorp
``DefaultConfig()`` without keep-alive); each stream of it is one SOCKS5 conversation (RFC 1928,
with RFC 1929 username/password when credentials are set), answered with the sans-I/O core of
:mod:`skywire.proxy.socks5`; a CONNECT opens TCP to the target, within ``connect_timeout``, and
bytes are then copied both ways. There is no extra handshake: the first bytes on a stream are the
client's SOCKS5 greeting.

Wire facts, as upstream does them: ``internal/skysocks/server.go`` ``Serve`` (``yamux.Server``
with ``EnableKeepAlive = false`` per accepted connection, ``socks5.Serve(session)``) and
go-socks5 (``vendor/github.com/armon/go-socks5``): with credentials only method 0x02 is offered
(``socks5.go`` ``New``), so a client offering only 0x00 gets ``05 FF``; a bad login gets
``01 01`` and the stream closes (``auth.go``); BIND and UDP ASSOCIATE get 0x07, an unknown address
type 0x08 (``request.go``, ``socks5.go`` ``ServeConn``); the success reply carries the local
address of the connection to the target (``handleConnect``). Additions: the greeting, login and
request must arrive within ``handshake_timeout`` and the target must answer within
``connect_timeout`` (go-socks5 waits on both without a bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from skywire.apps.skysocks.config import SERVER_PORT, YAMUX_CONFIG, Credentials
from skywire.apps.skysocks.tunnel import CHUNK, STREAM_ERRORS, open_target, pipe, reply_for
from skywire.proxy.errors import ReplyCode, Socks5Error
from skywire.proxy.socks5 import (
    AUTH_NO_ACCEPTABLE,
    AuthReceived,
    ConnectRequested,
    DataReceived,
    Event,
    GreetingReceived,
    Socks5Server,
    Socks5State,
)
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import ByteStream, Listener, TcpStream
from skywire.wire.tasks import TaskTree, serve_each
from skywire.wire.yamux_aio import YamuxSession

__all__ = ["RouteListening", "ServerStats", "SkysocksServer"]

log = logging.getLogger(__name__)


class RouteListening(Protocol):
    """The router as the server uses it: incoming route groups on a routing port."""

    async def listen(self, port: int) -> Listener: ...


@dataclass
class ServerStats:
    """Counters since start. ``refused`` counts failure replies by reply code name."""

    routes: int = 0
    streams: int = 0
    tunnels: int = 0
    auth_failures: int = 0
    bytes_up: int = 0  # client → target
    bytes_down: int = 0  # target → client
    refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, code: ReplyCode) -> None:
        self.refused[code.name] = self.refused.get(code.name, 0) + 1


class SkysocksServer(Lifecycle):
    """Serves SOCKS5 over routes to ``port`` until closed (see the module docstring)."""

    def __init__(
        self,
        router: RouteListening,
        port: int = SERVER_PORT,
        credentials: Credentials | None = None,
        *,
        connect_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        if connect_timeout <= 0 or handshake_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.router = router
        self.port = port
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.stats = ServerStats()
        self._sessions: set[YamuxSession] = set()
        self._listener: Listener | None = None
        self._tasks = TaskTree(f"skysocks-{port}", log)

    @property
    def sessions(self) -> int:
        """Routes (yamux sessions) being served."""
        return len(self._sessions)

    async def start(self) -> None:
        """Take the routing port and serve it; raises what ``router.listen`` raises."""
        if self._listener is not None:
            return
        await self._tasks.start()
        try:
            self._listener = await self.router.listen(self.port)
        except BaseException:
            await self._tasks.close()
            raise
        self._tasks.spawn(self._accept(self._listener), f"skysocks-port-{self.port}")
        log.info("skysocks serving SOCKS5 on routing port %d", self.port)

    async def close(self) -> None:
        """Free the port, end every route and connection; twice is harmless."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*STREAM_ERRORS):
                await listener.close()
        await self._tasks.close()

    # ------------------------------------------------------------------ routes
    async def _accept(self, listener: Listener) -> None:
        await serve_each(listener.accept, self._serve_route, what="skysocks route", logger=log)

    async def _serve_route(self, group: ByteStream) -> None:
        self.stats.routes += 1
        session = YamuxSession.over_stream(group, client=False, config=YAMUX_CONFIG)
        self._sessions.add(session)
        try:
            session.start()
            await serve_each(session.accept, self._serve_stream, what="skysocks stream", logger=log)
        finally:
            self._sessions.discard(session)
            await session.close()
            with contextlib.suppress(*STREAM_ERRORS):
                await group.close()

    # ------------------------------------------------------------------ one SOCKS5 stream
    async def _serve_stream(self, stream: ByteStream) -> None:
        self.stats.streams += 1
        try:
            opened = await self._socks5(stream)
            if opened is None:
                return
            target, early = opened
            self.stats.tunnels += 1
            moved = await pipe(stream, target, early)
            self.stats.bytes_up += moved.a_to_b
            self.stats.bytes_down += moved.b_to_a
        finally:
            with contextlib.suppress(*STREAM_ERRORS):
                await stream.close()

    async def _socks5(self, stream: ByteStream) -> tuple[TcpStream, bytes] | None:
        """The conversation up to the reply: the open target and the bytes the client sent
        early, or ``None`` when the client was refused (the refusal is written)."""
        check = self.credentials.valid if self.credentials is not None else None
        core = Socks5Server(check_login=check)
        try:
            async with asyncio.timeout(self.handshake_timeout):
                request = await self._negotiate(core, stream)
        except Socks5Error as exc:
            log.debug("skysocks: SOCKS5 refused: %s", exc)
            if core.state in (Socks5State.REQUEST, Socks5State.REPLYING):
                core.reply(exc.reply)
                self.stats.refuse(exc.reply)
                with contextlib.suppress(*STREAM_ERRORS):
                    await stream.write(core.data_to_send())
            return None
        except (TimeoutError, *STREAM_ERRORS):
            return None
        if request is None:
            return None
        try:
            target = await open_target(request.host, request.port, self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            code = reply_for(exc)
            log.info("skysocks: CONNECT %s:%d: %s (%s)", request.host, request.port, code.name, exc)
            self.stats.refuse(code)
            core.reply(code)
            with contextlib.suppress(*STREAM_ERRORS):
                await stream.write(core.data_to_send())
            return None
        bound = target.sockname or ("0.0.0.0", 0)
        early = b"".join(
            e.data
            for e in core.reply(ReplyCode.SUCCEEDED, bound[0], bound[1])
            if isinstance(e, DataReceived)
        )
        try:
            await stream.write(core.data_to_send())
        except STREAM_ERRORS:
            await target.close()
            return None
        return target, early

    async def _negotiate(self, core: Socks5Server, stream: ByteStream) -> ConnectRequested | None:
        """Feed the stream to the core until a CONNECT arrives; ``None`` if the client left or
        was turned away (no acceptable method, bad login: the answer is written)."""
        while True:
            data = await stream.read(CHUNK)
            if not data:
                return None
            request = None
            for event in core.receive_data(data):
                if isinstance(event, ConnectRequested):
                    request = event
                elif _turned_away(event):
                    self.stats.auth_failures += 1
            if out := core.data_to_send():
                await stream.write(out)
            if request is not None:
                return request
            if core.state is Socks5State.CLOSED:
                return None


def _turned_away(event: Event) -> bool:
    """A bad login, or no authentication method this server accepts."""
    if isinstance(event, AuthReceived):
        return not event.accepted
    return isinstance(event, GreetingReceived) and event.chosen == AUTH_NO_ACCEPTABLE
