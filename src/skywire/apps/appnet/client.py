"""The app side of the app network: :class:`AppClient`, run inside an app's own process.

``async with AppClient.from_env() as app:`` reads ``PROC_CONFIG``, opens the control connection
to the visor's app server (Hello ``kind: control``) and owns the task that reads it. Then:

* ``await app.listen(port, net="skynet")`` → :class:`AppListener`; ``accept()`` returns an
  :class:`AppConn` once a route group (or dmsg stream) arrives on the port;
* ``await app.dial(pk, port, net=…)`` / ``await app.dial_routes(pk, local_port, remote_port)``
  → :class:`AppConn`;
* ``await app.set_status(text)`` / ``await app.set_error(text)`` (upstream SetDetailedStatus /
  SetError).

An :class:`AppConn` is a :class:`~skywire.wire.stream.ByteStream`: its own TCP connection to the
app server (Hello ``kind: data`` naming the conn id from the dial reply or accept event), whose
bytes the visor splices onto the route group or dmsg stream. So :class:`AppClient` is a
:class:`~skywire.apps.skysocks.client.RouteDialer` and a
:class:`~skywire.apps.skysocks.server.RouteListening`: ``SkysocksServer(app)`` and
``SkysocksClient(app, server_pk)`` run in an app process unchanged.

The wire protocol, and why it is not upstream's gob net/rpc: :mod:`skywire.apps.appnet.proto`.
When the control connection ends, every listener's ``accept()`` raises
:class:`~skywire.apps.appnet.proto.AppRequestError` (a ``ConnectionError``) and pending requests
fail with it; the visor closes the app's connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Mapping
from typing import Self

from skywire.apps.appnet.proto import (
    LINE_MAX,
    AcceptEvent,
    AddrInfo,
    AppRequestError,
    CloseListenerRequest,
    ConnKind,
    DialRequest,
    ErrorReply,
    ErrorRequest,
    Hello,
    ListenRequest,
    Net,
    OkReply,
    ProcConfig,
    ProtocolError,
    Request,
    StatusRequest,
    decode_server_message,
    encode_hello,
    encode_message,
)
from skywire.cipher import PubKey
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import AcceptQueue, TcpStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = ["ENV_VAR", "AppClient", "AppConn", "AppListener"]

log = logging.getLogger(__name__)

ENV_VAR = "PROC_CONFIG"
ACCEPT_BACKLOG = 64


class AppConn(TcpStream):
    """A connection through the visor (see the module docstring); ``remote`` is the peer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn_id: str,
        remote: AddrInfo,
    ) -> None:
        super().__init__(reader, writer)
        self.conn_id = conn_id
        self.remote = remote

    @property
    def remote_pk(self) -> PubKey:
        return self.remote.pk

    @property
    def remote_port(self) -> int:
        return self.remote.port

    def __repr__(self) -> str:
        return f"AppConn({self.conn_id} ↔ {self.remote})"


class AppListener:
    """Incoming connections on one port of one network; a :class:`Listener`."""

    def __init__(self, client: AppClient, net: Net, port: int) -> None:
        self.client = client
        self.net = net
        self.port = port
        self._queue: AcceptQueue[AcceptEvent] = AcceptQueue(
            ACCEPT_BACKLOG,
            lambda: AppRequestError(f"{net} listener on port {port} closed"),
        )

    @property
    def closed(self) -> bool:
        return self._queue.closed

    def offer(self, event: AcceptEvent) -> bool:
        """Queue an accept event; False when closed or full (the caller refuses it)."""
        if self._queue.closed or self._queue.full():
            return False
        self._queue.put_nowait(event)
        return True

    def shut(self) -> list[AcceptEvent]:
        """Close locally (the control connection is gone); returns the events nobody took."""
        return self._queue.close()

    async def accept(self) -> AppConn:
        """The next incoming connection; ``AppRequestError`` once the listener is closed."""
        event = await self._queue.get()
        return await self.client.open_data(event.conn, event.remote)

    async def close(self) -> None:
        """Stop listening (tells the visor); twice is harmless."""
        if self._queue.closed:
            return
        self._queue.close()
        await self.client.forget_listener(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AppClient(Lifecycle):
    """See the module docstring. ``config`` is the app's :class:`ProcConfig`."""

    def __init__(self, config: ProcConfig, *, connect_timeout: float = 10.0) -> None:
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        self.config = config
        self.connect_timeout = connect_timeout
        self._control: TcpStream | None = None
        self._write_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[OkReply]] = {}
        self._listeners: dict[tuple[Net, int], AppListener] = {}
        self._closed_why: str | None = None
        self._gone = asyncio.Event()  # set once the control connection is over
        self._tasks = TaskTree(f"app-{config.app_name}", log)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AppClient:
        """From ``PROC_CONFIG`` (``ProtocolError`` when unset or malformed)."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_VAR)
        if not text:
            raise ProtocolError(f"{ENV_VAR} is not set: apps are started by a visor")
        return cls(ProcConfig.from_json(text))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the control connection (an ``OSError`` / ``TimeoutError`` if the app server
        cannot be reached)."""
        if self._control is not None or self._closed_why is not None:
            return
        await self._tasks.start()
        try:
            self._control = await self._connect(Hello(self.config.proc_key, ConnKind.CONTROL))
        except BaseException:
            await self._tasks.close()
            raise
        self._tasks.spawn(self._read_control(self._control), "app-control")

    async def close(self) -> None:
        """Close the listeners and the control connection; twice is harmless."""
        self._fail("the app client is closed")
        control, self._control = self._control, None
        if control is not None:
            await control.close()
        await self._tasks.close()

    @property
    def closed(self) -> bool:
        return self._closed_why is not None

    async def _connect(self, hello: Hello) -> TcpStream:
        host, port = self.config.server_address()
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=LINE_MAX)
        stream = TcpStream(reader, writer)
        try:
            await stream.write(encode_hello(hello))
        except BaseException:
            await stream.close()
            raise
        return stream

    async def wait_closed(self) -> str:
        """Until the control connection is over (the visor went away, or :meth:`close`);
        why it ended."""
        await self._gone.wait()
        return self._closed_why or "closed"

    def _fail(self, why: str) -> None:
        """The control connection is over: fail every request, end every listener."""
        self._gone.set()
        if self._closed_why is None:
            self._closed_why = why
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(AppRequestError(f"{self.config.app_name}: {why}"))
        self._waiting.clear()
        for listener in list(self._listeners.values()):
            listener.shut()
        self._listeners.clear()

    # ------------------------------------------------------------------ control
    async def _read_control(self, control: TcpStream) -> None:
        why = "the visor closed the control connection"
        try:
            while line := await control.reader.readline():
                try:
                    msg = decode_server_message(line)
                except ProtocolError as exc:
                    why = f"bad message from the visor: {exc}"
                    log.warning("%s: %s", self.config.app_name, why)
                    return
                self._dispatch(msg)
        except (OSError, ValueError) as exc:  # ValueError: a line over LINE_MAX
            why = f"control connection failed: {exc}"
        finally:
            self._fail(why)
            await control.close()

    def _dispatch(self, msg: OkReply | ErrorReply | AcceptEvent) -> None:
        if isinstance(msg, AcceptEvent):
            listener = self._listeners.get((msg.net, msg.port))
            if listener is None or not listener.offer(msg):
                self._refuse(msg.conn)
            return
        fut = self._waiting.pop(msg.id, None)
        if fut is None or fut.done():
            log.info("%s: reply to no request (%d)", self.config.app_name, msg.id)
        elif isinstance(msg, OkReply):
            fut.set_result(msg)
        else:
            fut.set_exception(AppRequestError(msg.error, msg.code))

    def _refuse(self, conn_id: str) -> None:
        """An accept nobody takes: claim the conn and close it, so the peer learns at once."""
        with contextlib.suppress(TaskTreeClosedError):
            self._tasks.spawn(self._claim_and_close(conn_id), "app-refuse")

    async def _claim_and_close(self, conn_id: str) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            hello = Hello(self.config.proc_key, ConnKind.DATA, conn_id)
            stream = await self._connect(hello)
            await stream.close()

    async def _request(self, req: Request) -> OkReply:
        if self._closed_why is not None or self._control is None:
            raise AppRequestError(f"{self.config.app_name}: {self._closed_why or 'not started'}")
        fut: asyncio.Future[OkReply] = asyncio.get_running_loop().create_future()
        self._waiting[req.id] = fut
        try:
            try:
                async with self._write_lock:
                    await self._control.write(encode_message(req))
            except OSError as exc:
                why = f"{self.config.app_name}: control connection: {exc}"
                raise AppRequestError(why) from exc
            return await fut
        finally:
            self._waiting.pop(req.id, None)

    async def open_data(self, conn_id: str, remote: AddrInfo) -> AppConn:
        """The data connection for ``conn_id`` (from a dial reply or an accept event)."""
        hello = Hello(self.config.proc_key, ConnKind.DATA, conn_id)
        try:
            stream = await self._connect(hello)
        except (OSError, TimeoutError) as exc:
            raise AppRequestError(f"data connection to the visor: {exc}") from exc
        return AppConn(stream.reader, stream.writer, conn_id, remote)

    async def forget_listener(self, listener: AppListener) -> None:
        """Called by :meth:`AppListener.close`: drop it and tell the visor."""
        key = (listener.net, listener.port)
        if self._listeners.get(key) is listener:
            del self._listeners[key]
        if self._closed_why is None:
            with contextlib.suppress(AppRequestError):
                await self._request(
                    CloseListenerRequest(next(self._ids), listener.net, listener.port)
                )

    # ------------------------------------------------------------------ the API
    async def listen(self, port: int, net: Net | str = Net.SKYNET) -> AppListener:
        """Accept connections to ``port`` on ``net``; ``AppRequestError`` if the visor refuses
        (the port is taken, no dmsg…)."""
        net = Net(net)
        key = (net, port)
        if key in self._listeners:
            raise AppRequestError(f"{net} port {port} is already listened on by this app")
        listener = AppListener(self, net, port)
        self._listeners[key] = listener  # before the request: an accept may follow the reply
        try:
            await self._request(ListenRequest(next(self._ids), net, port))
        except BaseException:
            if self._listeners.get(key) is listener:
                del self._listeners[key]
            listener.shut()
            raise
        return listener

    async def dial(
        self, pk: PubKey, port: int, net: Net | str = Net.SKYNET, *, local_port: int = 0
    ) -> AppConn:
        """A connection to ``pk:port`` on ``net``; ``AppRequestError`` (a ``ConnectionError``,
        with the visor's error text and code) if it cannot be made."""
        reply = await self._request(DialRequest(next(self._ids), Net(net), pk, port, local_port))
        if reply.conn is None:
            raise AppRequestError("the visor's dial reply has no conn id")
        remote = reply.remote or AddrInfo(Net(net), pk, port)
        return await self.open_data(reply.conn, remote)

    async def dial_routes(
        self, remote: PubKey, local_port: int = 0, remote_port: int = 0
    ) -> AppConn:
        """A route to ``remote:remote_port`` (the router's ``dial_routes``, through the visor)."""
        return await self.dial(remote, remote_port, Net.SKYNET, local_port=local_port)

    async def set_status(self, text: str) -> None:
        """The app's detailed status, as the visor shows it."""
        await self._request(StatusRequest(next(self._ids), text))

    async def set_error(self, text: str) -> None:
        """The app's error, as the visor shows it."""
        await self._request(ErrorRequest(next(self._ids), text))
