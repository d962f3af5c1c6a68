"""The visor's app server: how app processes reach the router and dmsg.

Apps run as separate processes, so that one that raises, hangs or leaks cannot stop the visor or
another app. The launcher :meth:`AppServer.register` s a random ``proc_key`` per run and hands it
to the process in ``PROC_CONFIG``; the process connects to :attr:`AppServer.address` (TCP,
default ``127.0.0.1:5505``) with :class:`~skywire.apps.appnet.client.AppClient`.

The protocol is ours, not upstream's gob ``net/rpc`` (upstream makes one RPC round trip per
``Read`` / ``Write`` of every connection, all on one TCP connection): a control connection of JSON
lines (listen, dial, close_listener, status, error; accept events back), and one TCP connection
per app connection whose raw bytes are spliced here onto the route group or dmsg stream. The
exact messages are in :mod:`skywire.apps.appnet.proto`.

Rules kept here:

* A connection whose Hello is malformed, too big, late, or names an unknown ``proc_key`` is
  closed (and logged); nothing is registered. One control connection per registered app.
* A listen on a port another app holds fails with "… is taken by app <name>"; on a route port
  the router already has a listener for (the visor's own echo, proxy…) it fails with the
  router's error text; a failed dmsg listen carries the dmsg error code.
* A conn id (dial reply or accept event) is usable once, by the same app, within
  ``claim_timeout`` seconds; after that the route group / stream is closed.
* When the control connection ends, or :meth:`AppServer.unregister` is called, the app's
  listeners, pending and live connections and running dials end with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from skywire.apps.appnet.proto import (
    LINE_MAX,
    AcceptEvent,
    AddrInfo,
    CloseListenerRequest,
    ConnKind,
    DialRequest,
    ErrorReply,
    ErrorRequest,
    ListenRequest,
    Net,
    OkReply,
    ProtocolError,
    Request,
    StatusRequest,
    decode_hello,
    decode_request,
    encode_message,
    hello_length,
    new_conn_id,
)
from skywire.apps.skysocks.tunnel import STREAM_ERRORS, pipe
from skywire.apps.vpn.protocol import RouteFramer
from skywire.cipher import PubKey
from skywire.dmsg.client import Client
from skywire.dmsg.errors import DmsgError
from skywire.dmsg.stream import DmsgStream
from skywire.router.route_group import RouteGroup
from skywire.router.router import Router
from skywire.router.setup_client import RoutingFailure
from skywire.routing.route import RouteQueryError
from skywire.routing.table import RoutingTableError
from skywire.services.rf.graph import RouteFinderError
from skywire.wire.errors import WireError
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import ByteStream, Listener, TcpStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = ["DEFAULT_ADDRESS", "AppReport", "AppServer"]

log = logging.getLogger(__name__)

VPN_APPS = frozenset({"vpn-client", "vpn-server"})
"""Apps whose route connections carry one message (hello, IP packet) per route packet."""

DEFAULT_ADDRESS = ("127.0.0.1", 5505)
HELLO_TIMEOUT = 10.0
CLAIM_TIMEOUT = 10.0

DIAL_ERRORS = (
    OSError,  # ConnectionError: RouteDialError, RouteSetupError, DmsgClosedError…
    TimeoutError,
    ValueError,
    DmsgError,
    WireError,
    RouteQueryError,
    RoutingTableError,
    RoutingFailure,
    RouteFinderError,
)
"""What dialing or listening on the router or dmsg raises for a refusal."""


@dataclass
class AppReport:
    """What the visor knows of one app (see :meth:`AppServer.report`)."""

    connected: bool = False
    status: str = ""
    error: str = ""
    listening: list[tuple[str, int]] = field(default_factory=list)
    conns: int = 0


@dataclass
class Pending:
    """A conn id handed out and not yet claimed by a data connection."""

    proc_key: str
    stream: ByteStream
    timer: asyncio.TimerHandle


class AppProc:
    """One registered run of an app: its control connection and everything it opened."""

    def __init__(self, proc_key: str, app_name: str) -> None:
        self.proc_key = proc_key
        self.app_name = app_name
        self.registered = True
        self.control: TcpStream | None = None
        self.status = ""
        self.error = ""
        self.listeners: dict[tuple[Net, int], Listener] = {}
        self.pending: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # control, accept loops, dials, splices
        self.conns = 0
        self._write_lock = asyncio.Lock()

    def track(self) -> None:
        """The current task belongs to this app: unregistering cancels it."""
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)

    def untrack(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.discard(task)

    async def send(self, msg: OkReply | ErrorReply | AcceptEvent) -> None:
        """One line on the control connection (an ``OSError`` once it is gone)."""
        control = self.control
        if control is None:
            raise ConnectionResetError(f"app {self.app_name} has no control connection")
        async with self._write_lock:
            await control.write(encode_message(msg))

    def report(self) -> AppReport:
        return AppReport(
            connected=self.control is not None,
            status=self.status,
            error=self.error,
            listening=sorted((net.value, port) for net, port in self.listeners),
            conns=self.conns,
        )


def error_code(exc: BaseException) -> int | None:
    """The upstream numeric code an error carries, if any (dmsg, setup, route finder)."""
    code = getattr(exc, "code", None)
    return int(code) if isinstance(code, int) and not isinstance(code, bool) else None


def remote_of(net: Net, stream: ByteStream, default: AddrInfo) -> AddrInfo:
    """The far end of a route group or dmsg stream (``default`` for another stream)."""
    if isinstance(stream, RouteGroup):
        return AddrInfo(net, stream.remote_pk, stream.remote_port)
    if isinstance(stream, DmsgStream):
        return AddrInfo(net, stream.remote_addr.pk, stream.remote_addr.port)
    return default


class AppServer(Lifecycle):
    """``async with AppServer(router, dmsg, ("127.0.0.1", 0)) as server:`` (see the module
    docstring). Every task it starts is in one :class:`TaskTree`."""

    def __init__(
        self,
        router: Router,
        dmsg: Client | None,
        addr: tuple[str, int] = DEFAULT_ADDRESS,
        *,
        claim_timeout: float = CLAIM_TIMEOUT,
        hello_timeout: float = HELLO_TIMEOUT,
        on_listen: Callable[[str, str, int, bool], None] | None = None,
    ) -> None:
        if claim_timeout <= 0 or hello_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.router = router
        self.dmsg = dmsg
        self.addr = addr
        self.claim_timeout = claim_timeout
        self.hello_timeout = hello_timeout
        self._on_listen = on_listen  # (app name, net, port, listening now)
        self._procs: dict[str, AppProc] = {}  # by proc key, while registered
        self._by_name: dict[str, AppProc] = {}  # the latest run of each app (kept for reports)
        self._ports: dict[tuple[Net, int], AppProc] = {}
        self._pending: dict[str, Pending] = {}
        self._server: asyncio.Server | None = None
        self._bound: tuple[str, int] | None = None
        self._tasks = TaskTree("appserver", log)
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the address (an ``OSError`` if it is taken)."""
        if self._server is not None:
            return
        await self._tasks.start()
        try:
            self._server = await asyncio.start_server(self._on_connect, *self.addr, limit=LINE_MAX)
        except BaseException:
            await self._tasks.close()
            raise
        sock = self._server.sockets[0].getsockname()
        self._bound = (str(sock[0]), int(sock[1]))
        log.info("app server on %s", self.address)

    async def close(self) -> None:
        """Stop accepting, end every app's session; twice is harmless."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no wait_closed(): the connections are the tree's to end
        for proc in list(self._procs.values()):
            await self.unregister(proc.proc_key)
        await self._tasks.close()

    @property
    def address(self) -> str:
        """``host:port`` actually bound (what goes into ``PROC_CONFIG``)."""
        if self._bound is None:
            raise RuntimeError("the app server is not started")
        host, port = self._bound
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Wait until ``condition()`` holds, checked whenever an app connects, disconnects,
        listens, stops listening or reports a status; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def task_count(self) -> int:
        """Tasks running under this server (connections, accept loops, dials, splices)."""
        return len(self._tasks.live())

    # ------------------------------------------------------------------ registry
    def register(self, proc_key: str, app_name: str) -> None:
        """Accept connections carrying ``proc_key`` (the launcher calls this before spawning)."""
        if proc_key in self._procs:
            raise ValueError(f"proc key of {app_name} is already registered")
        proc = AppProc(proc_key, app_name)
        self._procs[proc_key] = proc
        self._by_name[app_name] = proc

    async def unregister(self, proc_key: str) -> None:
        """The process ended: close its listeners, connections and control connection."""
        proc = self._procs.pop(proc_key, None)
        if proc is None:
            return
        proc.registered = False
        await self._end_session(proc)

    def report(self, app_name: str) -> AppReport:
        """The latest run of ``app_name`` (an empty report for an app never registered)."""
        proc = self._by_name.get(app_name)
        return AppReport() if proc is None else proc.report()

    async def _end_session(self, proc: AppProc) -> None:
        """End everything of ``proc`` but the calling task. Idempotent: state is taken first."""
        control, proc.control = proc.control, None
        listeners = list(proc.listeners.items())
        proc.listeners.clear()
        for key, _ in listeners:
            if self._ports.get(key) is proc:
                del self._ports[key]
            self._listening(proc, key, False)
        streams = []
        for conn_id in list(proc.pending):
            entry = self._pending.pop(conn_id, None)
            if entry is not None:
                entry.timer.cancel()
                streams.append(entry.stream)
        proc.pending.clear()
        me = asyncio.current_task()
        tasks = {t for t in proc.tasks if t is not me}
        proc.tasks.difference_update(tasks)
        for task in tasks:
            task.cancel()
        for _, listener in listeners:
            with contextlib.suppress(*STREAM_ERRORS, DmsgError):
                await listener.close()
        for stream in streams:
            with contextlib.suppress(*STREAM_ERRORS, DmsgError):
                await stream.close()
        if control is not None:
            await control.close()
        if tasks:
            await asyncio.wait(tasks)

    # ------------------------------------------------------------------ connections
    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self._tasks.spawn(self._serve(TcpStream(reader, writer)), "appserver-conn")
        except TaskTreeClosedError:
            writer.close()

    async def _serve(self, stream: TcpStream) -> None:
        try:
            try:
                async with asyncio.timeout(self.hello_timeout):
                    hello = decode_hello(
                        await stream.readexactly(hello_length(await stream.readexactly(2)))
                    )
            except (ProtocolError, asyncio.IncompleteReadError, OSError, TimeoutError) as exc:
                log.info("app server: closing %s: bad hello: %s", stream.peername, exc or "timeout")
                return
            proc = self._procs.get(hello.proc_key)
            if proc is None:
                log.warning("app server: closing %s: unknown proc key", stream.peername)
                return
            if hello.kind is ConnKind.CONTROL:
                await self._serve_control(proc, stream)
            else:
                assert hello.conn is not None
                await self._serve_data(proc, hello.conn, stream)
        finally:
            await stream.close()

    async def _serve_control(self, proc: AppProc, stream: TcpStream) -> None:
        if proc.control is not None or not proc.registered:
            log.warning("app server: %s: a second control connection, closed", proc.app_name)
            return
        proc.control = stream
        proc.track()
        log.info("app server: %s connected", proc.app_name)
        self._notify()
        try:
            while line := await stream.reader.readline():
                try:
                    req = decode_request(line)
                except ProtocolError as exc:
                    if exc.request_id is None:
                        log.warning("app server: %s: closing control: %s", proc.app_name, exc)
                        return
                    await proc.send(ErrorReply(exc.request_id, str(exc)))
                    continue
                if isinstance(req, DialRequest):
                    try:
                        self._tasks.spawn(self._dial(proc, req), f"appserver-dial-{req.id}")
                    except TaskTreeClosedError:
                        return  # the server is closing
                else:
                    await self._handle(proc, req)
        except (OSError, ValueError) as exc:  # ValueError: a line over LINE_MAX
            log.info("app server: %s: control connection: %s", proc.app_name, exc)
        finally:
            proc.untrack()
            log.info("app server: %s disconnected", proc.app_name)
            if proc.control is stream:
                await self._end_session(proc)
            self._notify()

    async def _handle(self, proc: AppProc, req: Request) -> None:
        match req:
            case StatusRequest(text=text):
                proc.status = text
                self._notify()
            case ErrorRequest(text=text):
                proc.error = text
                self._notify()
            case CloseListenerRequest(net=net, port=port):
                listener = proc.listeners.pop((net, port), None)
                if listener is None:
                    await proc.send(ErrorReply(req.id, f"no {net} listener on port {port}"))
                    return
                if self._ports.get((net, port)) is proc:
                    del self._ports[(net, port)]
                self._listening(proc, (net, port), False)
                with contextlib.suppress(*STREAM_ERRORS, DmsgError):
                    await listener.close()
            case ListenRequest(net=net, port=port):
                if not await self._listen(proc, req.id, net, port):
                    return
        await proc.send(OkReply(req.id))

    async def _listen(self, proc: AppProc, rid: int, net: Net, port: int) -> bool:
        owner = self._ports.get((net, port))
        if owner is not None:
            why = f"{net} port {port} is already taken by app {owner.app_name}"
            await proc.send(ErrorReply(rid, why))
            return False
        try:
            listener: Listener
            if net is Net.SKYNET:
                listener = await self.router.listen(port)
            elif self.dmsg is None:
                raise ConnectionRefusedError("this visor has no dmsg client")
            else:
                listener = await self.dmsg.listen(port)
        except DIAL_ERRORS as exc:
            await proc.send(ErrorReply(rid, f"listen {net} port {port}: {exc}", error_code(exc)))
            return False
        if not proc.registered or proc.control is None:  # the app left meanwhile
            await listener.close()
            return False
        self._ports[(net, port)] = proc
        proc.listeners[(net, port)] = listener
        self._tasks.spawn(self._accept(proc, net, port, listener), f"appserver-accept-{port}")
        self._listening(proc, (net, port), True)
        return True

    def _listening(self, proc: AppProc, key: tuple[Net, int], up: bool) -> None:
        self._notify()
        if self._on_listen is None:
            return
        try:
            self._on_listen(proc.app_name, key[0].value, key[1], up)
        except Exception:  # the listener's bug must not break the app's session
            log.exception("app server on_listen callback failed")

    async def _accept(self, proc: AppProc, net: Net, port: int, listener: Listener) -> None:
        proc.track()
        try:
            while True:
                try:
                    stream = await listener.accept()
                except (ConnectionError, DmsgError):
                    return  # closed
                remote = remote_of(net, stream, AddrInfo(net, PubKey.NULL, 0))
                conn_id = self._hand_out(proc, stream)
                try:
                    await proc.send(AcceptEvent(net, port, conn_id, remote))
                except OSError:
                    return  # the control connection is gone: _end_session closes the stream
        finally:
            proc.untrack()

    async def _dial(self, proc: AppProc, req: DialRequest) -> None:
        proc.track()
        try:
            net, target = req.net, f"{req.net} {req.pk}:{req.port}"
            try:
                stream: ByteStream
                if net is Net.SKYNET:
                    stream = await self.router.dial_routes(req.pk, req.local_port, req.port)
                elif self.dmsg is None:
                    raise ConnectionRefusedError("this visor has no dmsg client")
                else:
                    stream = await self.dmsg.dial(req.pk, req.port)
            except DIAL_ERRORS as exc:
                with contextlib.suppress(OSError):
                    await proc.send(ErrorReply(req.id, f"dial {target}: {exc}", error_code(exc)))
                return
            except Exception as exc:  # the one top-level handler: the app still gets an answer
                log.exception("app server: %s: dial %s", proc.app_name, target)
                with contextlib.suppress(OSError):
                    await proc.send(ErrorReply(req.id, f"dial {target}: internal error: {exc!r}"))
                return
            remote = remote_of(net, stream, AddrInfo(net, req.pk, req.port))
            if not proc.registered or proc.control is None:
                await stream.close()
                return
            conn_id = self._hand_out(proc, stream)
            with contextlib.suppress(OSError):
                await proc.send(OkReply(req.id, conn_id, remote))
        finally:
            proc.untrack()

    # ------------------------------------------------------------------ conn ids
    def _hand_out(self, proc: AppProc, stream: ByteStream) -> str:
        conn_id = new_conn_id()
        timer = asyncio.get_running_loop().call_later(self.claim_timeout, self._expire, conn_id)
        self._pending[conn_id] = Pending(proc.proc_key, stream, timer)
        proc.pending.add(conn_id)
        return conn_id

    def _expire(self, conn_id: str) -> None:
        entry = self._pending.pop(conn_id, None)
        if entry is None:
            return
        proc = self._procs.get(entry.proc_key)
        if proc is not None:
            proc.pending.discard(conn_id)
            log.info("app server: %s: conn %s unclaimed, closed", proc.app_name, conn_id)
        with contextlib.suppress(TaskTreeClosedError):
            self._tasks.spawn(self._close_quietly(entry.stream), "appserver-expire")

    @staticmethod
    async def _close_quietly(stream: ByteStream) -> None:
        with contextlib.suppress(*STREAM_ERRORS, DmsgError):
            await stream.close()

    async def _serve_data(self, proc: AppProc, conn_id: str, stream: TcpStream) -> None:
        entry = self._pending.get(conn_id)
        if entry is None or entry.proc_key != proc.proc_key:
            log.info(
                "app server: %s: closing data connection for unknown conn %s",
                proc.app_name,
                conn_id,
            )
            return
        del self._pending[conn_id]
        entry.timer.cancel()
        proc.pending.discard(conn_id)
        proc.track()
        proc.conns += 1
        frame = None
        if proc.app_name in VPN_APPS and isinstance(entry.stream, RouteGroup):
            frame = RouteFramer().receive_data  # a Go peer takes one route packet per message
        try:
            await pipe(stream, entry.stream, frame=frame)
        finally:
            proc.conns -= 1
            proc.untrack()
