"""skychat: text messages between visors over routes to routing port 1, and the page to read
and write them on 127.0.0.1:8001.

``async with Skychat(router) as chat:`` takes routing port 1 and serves the web page
(:mod:`~skywire.apps.skychat.web`). Every route that arrives on the port is read until it ends;
each is one peer's (upstream keeps one connection per peer, ``conns[pk]``, the newest
winning: ``cmd/apps/skychat/commands/skychat.go`` ``listenLoop``). ``await chat.send(pk,
text)`` writes the message on the peer's open route, and dials one when there is none: a few
tries with backoff (:class:`~skywire.apps.skychat.config.DialPolicy`, after upstream's retrier
in ``messageHandler``), the whole send bounded by ``DialPolicy.wait``. A write that fails drops
that route and redials once; then :class:`PeerUnreachableError` (the page shows it, 502).
The route a send dials is kept for later sends and read like an accepted one (upstream:
``go handleConn(conn)`` after the dial).

Message bytes are :mod:`~skywire.apps.skychat.codec`'s: UTF-8 and a newline, one write each.
Messages both ways are kept in memory (:class:`~skywire.apps.skychat.history.History`, bounded)
and handed to subscribers (:meth:`Skychat.subscribe`: each event stream of the page, or a test).

``router`` is anything with the router's ``dial_routes`` / ``listen`` (the visor's
:class:`~skywire.router.Router`, or an app's connection to its visor); the routes it hands out
must say whose they are (``remote_pk``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from aiohttp.web import AppRunner, TCPSite

from skywire.apps.skychat.codec import READ_SIZE, MessageDecoder, encode_message
from skywire.apps.skychat.config import (
    CHAT_PORT,
    WEB_ADDRESS,
    ChatStats,
    ChatStatus,
    DialPolicy,
)
from skywire.apps.skychat.errors import (
    PeerUnreachableError,
    RecipientError,
    SkychatClosedError,
)
from skywire.apps.skychat.history import ChatMessage, Conversation, Direction, History
from skywire.apps.skychat.updates import Subscription, Updates
from skywire.apps.skychat.web import LOOPBACK_NAMES, make_app
from skywire.cipher import PubKey
from skywire.wire.errors import WireError
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import ByteStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = ["ChatListener", "ChatRoute", "ChatRouter", "Skychat"]

log = logging.getLogger(__name__)

STREAM_ERRORS = (OSError, WireError, EOFError)
"""What a broken route raises (ConnectionError, TimeoutError and the route errors included)."""


class ChatRoute(ByteStream, Protocol):
    """A route group as skychat uses it: a byte stream that knows its peer."""

    @property
    def remote_pk(self) -> PubKey: ...


class ChatListener(Protocol):
    async def accept(self) -> ChatRoute:
        """The next route; a ``ConnectionError`` once the listener is closed."""
        ...

    async def close(self) -> None: ...


class ChatRouter(Protocol):
    """The router as skychat uses it."""

    async def dial_routes(
        self, remote: PubKey, local_port: int = 0, remote_port: int = 0
    ) -> ChatRoute: ...

    async def listen(self, port: int) -> ChatListener: ...


class Skychat(Lifecycle):
    """See the module docstring. ``web=None`` serves no page (the library alone);
    ``address`` is where the page is, once started (``web`` may name port 0)."""

    def __init__(
        self,
        router: ChatRouter,
        *,
        port: int = CHAT_PORT,
        web: tuple[str, int] | None = WEB_ADDRESS,
        local_pk: PubKey | None = None,
        dial: DialPolicy | None = None,
        per_peer: int = 500,
        max_peers: int = 200,
        max_routes: int = 256,
        keepalive: float = 15.0,
        shutdown_timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_routes < 1:
            raise ValueError("max_routes must be at least 1")
        if keepalive <= 0 or shutdown_timeout < 0:
            raise ValueError("keepalive must be positive, shutdown_timeout not negative")
        self.router = router
        self.port = port
        self.web = web
        pk = local_pk if local_pk is not None else getattr(router, "pk", None)
        self._pk = pk if isinstance(pk, PubKey) else None
        self.dial_policy = dial if dial is not None else DialPolicy()
        self.history = History(per_peer=per_peer, peers=max_peers)
        self.max_routes = max_routes
        self.keepalive = keepalive
        self.shutdown_timeout = shutdown_timeout
        self.clock = clock
        self.stats = ChatStats()
        self.address: tuple[str, int] | None = None
        self._routes: dict[PubKey, ChatRoute] = {}  # the route each peer's sends take
        self._live: dict[ChatRoute, PubKey] = {}  # every route being read, oldest first
        self._dialing: dict[PubKey, asyncio.Future[ChatRoute]] = {}
        self._updates = Updates()
        self._changed = asyncio.Event()
        self._listener: ChatListener | None = None
        self._runner: AppRunner | None = None
        self._started = False
        self._closed = False
        self._tasks = TaskTree(f"skychat-{port}", log)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Take the routing port and serve the page; raises what ``router.listen`` raises, or
        ``OSError`` when the web address is taken (and then holds nothing)."""
        if self._started:
            return
        if self._closed:
            raise SkychatClosedError("a closed skychat cannot start again")
        self._started = True
        await self._tasks.start()
        try:
            self._listener = await self.router.listen(self.port)
            if self.web is not None:
                local = self.web[0] in LOOPBACK_NAMES
                runner = AppRunner(
                    make_app(
                        self,
                        keepalive=self.keepalive,
                        allowed_hosts=LOOPBACK_NAMES if local else None,
                    ),
                    access_log=None,
                    shutdown_timeout=self.shutdown_timeout,
                )
                await runner.setup()
                self._runner = runner
                site = TCPSite(runner, self.web[0], self.web[1])
                await site.start()
                bound = runner.addresses[0]
                self.address = (str(bound[0]), int(bound[1]))
        except BaseException:
            await self.close()
            raise
        self._tasks.spawn(self._accept(self._listener), f"skychat-port-{self.port}")
        log.info("skychat on routing port %d, %s", self.port, self.url or "no page")

    async def close(self) -> None:
        """End every route, the page and its event streams; twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._updates.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*STREAM_ERRORS):
                await listener.close()
        routes = list(self._live)
        if routes:
            async with asyncio.TaskGroup() as tg:
                for route in routes:
                    tg.create_task(_close_quietly(route))
        await self._tasks.close()  # the readers, the accept loop, dials still running
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._routes.clear()
        self._live.clear()
        self._notify()

    # ------------------------------------------------------------------ state
    @property
    def pk(self) -> PubKey | None:
        """This visor's key, when known (the router's ``pk``, or ``local_pk``)."""
        return self._pk

    @property
    def url(self) -> str | None:
        """The page's address, once served."""
        if self.address is None:
            return None
        host, port = self.address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def running(self) -> bool:
        return self._started and not self._closed

    def connected(self, peer: PubKey) -> bool:
        """Whether a route to ``peer`` is open."""
        return peer in self._routes

    def conversations(self) -> list[Conversation]:
        """Every conversation kept, the most recently active first."""
        return [
            dataclasses.replace(c, connected=c.peer in self._routes)
            for c in self.history.conversations()
        ]

    def conversation(self, peer: PubKey) -> Conversation:
        c = self.history.conversation(peer)
        return dataclasses.replace(c, connected=peer in self._routes)

    def status(self) -> ChatStatus:
        return ChatStatus(
            pk=self._pk,
            port=self.port,
            web=self.address,
            routes=len(self._live),
            peers_connected=tuple(self._routes),
            conversations=len(self.history.peers()),
            messages_kept=len(self.history),
            subscribers=len(self._updates),
            stats=dataclasses.replace(self.stats),
        )

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """New messages, both ways, from now on (see :mod:`~skywire.apps.skychat.updates`);
        :class:`SkychatClosedError` once closed."""
        return self._updates.subscribe(maxsize)

    async def wait_connected(self, peer: PubKey) -> None:
        """Until a route to ``peer`` is open (the caller bounds the wait)."""
        while peer not in self._routes:
            await self._changed.wait()

    async def wait_disconnected(self, peer: PubKey) -> None:
        """Until no route to ``peer`` is open (the caller bounds the wait)."""
        while peer in self._routes:
            await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # ------------------------------------------------------------------ sending
    async def send(self, peer: PubKey, text: str) -> ChatMessage:
        """Send ``text`` to ``peer`` and keep it; the message as kept. Raises
        :class:`MessageError` (bad text, nothing sent), :class:`RecipientError`,
        :class:`PeerUnreachableError` (no route within ``DialPolicy.wait``, or it broke twice),
        :class:`SkychatClosedError`."""
        data = encode_message(text)
        if peer.is_null() or peer == self._pk:
            raise RecipientError("cannot chat with the null key or with this visor itself")
        if not self.running:
            raise SkychatClosedError("skychat is not running")
        wait = self.dial_policy.wait
        try:
            async with asyncio.timeout(wait):
                await self._deliver(peer, data)
        except TimeoutError:
            self.stats.send_failures += 1
            raise PeerUnreachableError(f"cannot reach {peer}: not sent within {wait:g} s") from None
        except (PeerUnreachableError, SkychatClosedError):
            self.stats.send_failures += 1
            raise
        message = self.history.add(peer, Direction.OUT, text, self.clock())
        self.stats.sent += 1
        self._updates.publish(message)
        return message

    async def _deliver(self, peer: PubKey, data: bytes) -> None:
        """Write on the peer's route; when that write fails, once more on a new route."""
        failed: BaseException | None = None
        for _ in range(2):
            route = await self._route_to(peer)
            try:
                await route.write(data)
                return
            except STREAM_ERRORS as exc:
                failed = exc
                log.info("skychat: route to %s broke on write: %s", peer, exc)
                self._drop(route, peer)
                await _close_quietly(route)
        raise PeerUnreachableError(f"cannot reach {peer}: the route broke: {failed}")

    async def _route_to(self, peer: PubKey) -> ChatRoute:
        """The peer's open route, or one dialled now (one dial per peer at a time)."""
        route = self._routes.get(peer)
        if route is not None:
            return route
        pending = self._dialing.get(peer)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            try:
                self._tasks.spawn(self._dial_into(peer, pending), "skychat-dial")
            except TaskTreeClosedError:
                raise SkychatClosedError("skychat is closing") from None
            self._dialing[peer] = pending
        return await asyncio.shield(pending)

    async def _dial_into(self, peer: PubKey, done: asyncio.Future[ChatRoute]) -> None:
        """Dial ``peer`` and adopt the route; the outcome goes to ``done`` (its senders)."""
        try:
            try:
                route = await self._dial(peer)
            except PeerUnreachableError as exc:
                done.set_exception(exc)
                return
            try:
                self._adopt(route, peer, dialed=True)
            except SkychatClosedError as exc:
                await _close_quietly(route)
                done.set_exception(exc)
                return
            done.set_result(route)
        finally:
            if self._dialing.get(peer) is done:
                del self._dialing[peer]
            if not done.done():  # cancelled (closing), or a bug the tree logs
                done.set_exception(SkychatClosedError("skychat closed while dialling"))
            if not done.cancelled():
                done.exception()  # retrieved: a failure no sender waits for any more is no news

    async def _dial(self, peer: PubKey) -> ChatRoute:
        policy = self.dial_policy
        last: BaseException | None = None
        try:
            async with asyncio.timeout(policy.wait):
                for failures in range(policy.attempts):
                    await asyncio.sleep(policy.delay(failures))
                    self.stats.dials += 1
                    try:
                        return await self.router.dial_routes(peer, 0, self.port)
                    except STREAM_ERRORS as exc:
                        self.stats.dial_failures += 1
                        last = exc
                        log.info("skychat: dial %s:%d: %s", peer, self.port, exc)
        except TimeoutError:
            why = f": {last}" if last is not None else ""
            raise PeerUnreachableError(
                f"cannot reach {peer}: no route within {policy.wait:g} s{why}"
            ) from None
        tries = f"{policy.attempts} tries" if policy.attempts > 1 else "1 try"
        raise PeerUnreachableError(f"cannot reach {peer} ({tries}): {last}")

    # ------------------------------------------------------------------ routes
    async def _accept(self, listener: ChatListener) -> None:
        while True:
            try:
                route = await listener.accept()
            except ConnectionError:
                return
            self.stats.routes_accepted += 1
            try:
                adopted = self._adopt(route, route.remote_pk)
            except SkychatClosedError:
                await _close_quietly(route)
                return
            if not adopted:
                self.stats.routes_refused += 1
                log.info("skychat: %d routes open; closing the one from %s", self.max_routes, route)
                self._tasks.spawn(_close_quietly(route), "skychat-refuse")

    def _adopt(self, route: ChatRoute, peer: PubKey, *, dialed: bool = False) -> bool:
        """Read ``route`` from now on and send to ``peer`` on it (the newest route wins);
        False when ``max_routes`` are open already (only routes from peers count: a route this
        chat dialled was asked for by its user)."""
        if self._closed:
            raise SkychatClosedError("skychat is closing")
        if not dialed and len(self._live) >= self.max_routes:
            return False
        self._live[route] = peer
        self._routes[peer] = route
        self._tasks.spawn(self._read(route, peer), "skychat-route")
        self._notify()
        return True

    def _drop(self, route: ChatRoute, peer: PubKey) -> None:
        """Stop sending on ``route``; another live route of the peer takes over, if any."""
        self._live.pop(route, None)
        if self._routes.get(peer) is route:
            del self._routes[peer]
            others = [r for r, p in self._live.items() if p == peer]
            if others:
                self._routes[peer] = others[-1]
        self._notify()

    async def _read(self, route: ChatRoute, peer: PubKey) -> None:
        decoder = MessageDecoder()
        try:
            while data := await route.read(READ_SIZE):
                for text in decoder.receive_data(data, end_of_read=len(data) < READ_SIZE):
                    self._received(peer, text)
            for text in decoder.end_of_stream():
                self._received(peer, text)
            log.info("skychat: route from %s ended", peer)
        except STREAM_ERRORS as exc:
            log.info("skychat: route from %s broke: %s", peer, exc)
        finally:
            self._drop(route, peer)
            await _close_quietly(route)

    def _received(self, peer: PubKey, text: str) -> None:
        message = self.history.add(peer, Direction.IN, text, self.clock())
        self.stats.received += 1
        self._updates.publish(message)


async def _close_quietly(route: ByteStream) -> None:
    with contextlib.suppress(*STREAM_ERRORS):
        await route.close()
