"""The dmsg client: sessions to servers, a published client entry, dial and listen.

``async with Client(sk, disc) as client:`` keeps sessions to ``min_sessions`` servers taken from
discovery (reconnecting with backoff when one goes away), publishes its entry listing those
servers as its delegated servers, and lets the application ``dial(pk, port)`` and
``listen(port)``. Streams are end-to-end Noise KK between the two clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from typing import ClassVar

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.addr import Addr, PortAllocator
from skywire.dmsg.ctrl import CTRL_PORT, Control
from skywire.dmsg.disc_entry import (
    ClientInfo,
    DiscError,
    Entry,
    KeyNotFoundError,
    NoAvailableServersError,
)
from skywire.dmsg.discovery import DISCOVERY_ERRORS, Discovery
from skywire.dmsg.entry_cache import EntryCache
from skywire.dmsg.entry_keeper import EntryKeeper
from skywire.dmsg.errors import DmsgClosedError, DmsgError, DmsgPQRequiredError, ErrorCode
from skywire.dmsg.netaddr import parse_server_address
from skywire.dmsg.session import (
    SESSION_HANDSHAKE_TIMEOUT,
    STREAM_HANDSHAKE_TIMEOUT,
    Session,
    client_handshake,
)
from skywire.dmsg.stream import Backoff, DmsgStream

__all__ = ["Backoff", "Client", "DmsgListener", "DmsgStream"]
from skywire.dmsg.types import (
    SignedObject,
    StreamRequest,
    StreamResponse,
    decode_request,
    decode_response,
    now_nanos,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from skywire.wire.errors import NoiseError, WireError
from skywire.wire.noise import Noise, Pattern, PQRequiredError, Role
from skywire.wire.pq import PQPolicy
from skywire.wire.stream import AcceptQueue, TcpStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError, serve_each
from skywire.wire.yamux import YamuxConfig
from skywire.wire.yamux_aio import YamuxStream

log = logging.getLogger(__name__)

ACCEPT_BUFFER_SIZE = 20
DIAL_TIMEOUT = 10.0
# Hold back the first yamux frame after msg3 for a moment: a reference server fails the
# session (error 203) when yamux bytes arrive together with the last handshake message.
MIN_WRITE_HOLD = 0.005
MAX_WRITE_HOLD = 0.2


class DmsgListener:
    """Incoming streams on one port (``accept()`` until ``close()``)."""

    def __init__(self, client: Client, port: int) -> None:
        self.client = client
        self.addr = Addr(client.pk, port)
        self._queue: AcceptQueue[DmsgStream] = AcceptQueue(
            ACCEPT_BUFFER_SIZE,
            lambda: DmsgClosedError(ErrorCode.ENTITY_CLOSED, f"listener on port {port} closed"),
        )

    @property
    def port(self) -> int:
        return self.addr.port

    @property
    def closed(self) -> bool:
        return self._queue.closed

    def _offer(self, stream: DmsgStream) -> None:
        self._queue.put_nowait(stream)

    def _full(self) -> bool:
        return self._queue.full()

    async def accept(self) -> DmsgStream:
        return await self._queue.get()

    async def close(self) -> None:
        if self._queue.closed:
            return
        left = self._queue.close()
        self.client._listeners.pop(self.port, None)
        self.client.ports.release(self.port)
        for stream in left:
            await stream.close()

    async def __aenter__(self) -> DmsgListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client:
    """A dmsg client. One per public key per process."""

    _active: ClassVar[dict[PubKey, Client]] = {}

    def __init__(
        self,
        sk: SecKey,
        disc: Discovery,
        *,
        min_sessions: int = 1,
        client_type: str = "",
        backoff: Backoff | None = None,
        yamux_config: YamuxConfig | None = None,
        serve_ctrl: bool = True,
        refresh_interval: float = 60.0,
        pq: PQPolicy | None = None,
    ) -> None:
        self.sk = sk
        self.pq = pq  # the post-quantum policy of its handshakes (None: the process default)
        self.pk = sk.pubkey()
        self.disc = disc
        self.min_sessions = min_sessions
        self.client_type = client_type
        self.backoff = backoff or Backoff()
        self.yamux_config = yamux_config
        self.serve_ctrl = serve_ctrl
        self.refresh_interval = refresh_interval
        self.ports = PortAllocator()
        self.sessions: dict[PubKey, Session] = {}
        self._pending: dict[PubKey, asyncio.Future[Session]] = {}
        self._listeners: dict[int, DmsgListener] = {}
        self._keeper = EntryKeeper(disc, sk)
        self._changed = asyncio.Event()
        self._published = asyncio.Event()
        self._publish_wanted = asyncio.Event()
        # every task of the client: the publisher, the server selection, dmsgctrl, one per session
        self._tasks = TaskTree(f"dmsg-client-{self.pk}", log)
        self._service: list[asyncio.Task[None]] = []
        self._closed = False
        self._started = False
        #: why the client has fewer sessions than it wants (the last failure), for messages
        self.last_problem = ""
        # entries fetched last, used only while discovery cannot be asked
        self.entries = EntryCache(disc, str(self.pk))

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        other = Client._active.get(self.pk)
        if other is not None and other is not self:
            raise DmsgError(
                ErrorCode.ENTITY_CLOSED,
                f"a dmsg client for {self.pk} already runs in this process; share it",
            )
        Client._active[self.pk] = self
        self._started = True
        await self._tasks.start()
        self._service = [
            self._tasks.spawn(self._publisher(), f"dmsg-publisher-{self.pk}"),
            self._tasks.spawn(self._serve(), f"dmsg-servers-{self.pk}"),
        ]
        if self.serve_ctrl:
            listener = await self.listen(CTRL_PORT)
            self._service.append(self._tasks.spawn(self._serve_ctrl(listener), "dmsgctrl"))

    async def close(self) -> None:
        """Close listeners and sessions, delete the entry, await every task."""
        if self._closed:
            return
        self._closed = True
        for listener in list(self._listeners.values()):
            await listener.close()
        for task in self._service:
            task.cancel()
        for fut in self._pending.values():
            fut.cancel()
        if self._service:
            await asyncio.wait(self._service)
        # The entry goes first, while the sessions still stand: a discovery reached over dmsg
        # needs them to hear the deletion.
        await self._keeper.delete()
        for session in list(self.sessions.values()):
            await session.close()
        await self._tasks.close()
        self.sessions.clear()
        if Client._active.get(self.pk) is self:
            del Client._active[self.pk]

    @property
    def closed(self) -> bool:
        return self._closed

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until the wanted sessions exist and the entry listing them is published."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    want = self.min_sessions or 1
                    if len(self.sessions) >= want and self._published.is_set():
                        return
                    await self._wait_change()
        except TimeoutError:
            why = self.last_problem or "no dmsg server answered"
            raise TimeoutError(f"dmsg not ready after {timeout:g} s: {why}") from None

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    async def wait_session_ended(self, server: PubKey) -> None:
        """Wait until this client holds no session with ``server``."""
        while server in self.sessions:
            await self._wait_change()

    # ------------------------------------------------------------------ server selection
    async def _serve(self) -> None:
        wait = self.backoff.initial
        while True:
            try:
                await self._top_up()
            except DISCOVERY_ERRORS as exc:
                self.last_problem = f"discovery unavailable: {exc or type(exc).__name__}"
                log.info("dmsg client %s: %s", self.pk, self.last_problem)
            await self.entries.warm_up()
            self._schedule_publish()
            want = self.min_sessions or 1
            if len(self.sessions) >= want:
                wait = self.backoff.initial
                timeout = self.refresh_interval
            else:
                timeout = wait
                wait = min(wait * self.backoff.factor, self.backoff.maximum)
            try:
                async with asyncio.timeout(timeout):
                    await self._wait_session_lost()
            except TimeoutError:
                if len(self.sessions) >= want:
                    await self._check_published()

    async def _check_published(self) -> None:
        """Once a refresh period: is discovery still holding our entry (not deleted, not
        older than ours, e.g. after it restarted on a memory store)? If not, publish again."""
        try:
            if await self._keeper.check_remote():
                self._schedule_publish()
        except DISCOVERY_ERRORS as exc:
            self.last_problem = f"discovery unavailable: {exc or type(exc).__name__}"
            log.info("dmsg client %s: %s", self.pk, self.last_problem)

    async def _wait_session_lost(self) -> None:
        count = len(self.sessions)
        while len(self.sessions) >= count:
            await self._wait_change()

    async def _top_up(self) -> None:
        want = self.min_sessions
        if want and len(self.sessions) >= want:
            return
        try:
            servers = await self.disc.available_servers()
        except NoAvailableServersError:
            servers = []
            self.last_problem = "discovery lists no dmsg server with free sessions"
        random.shuffle(servers)
        for entry in servers:
            if want and len(self.sessions) >= want:
                break
            if entry.static in self.sessions:
                continue
            try:
                await self.ensure_session(entry)
            except (DmsgError, WireError, OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                self.last_problem = f"session to dmsg server {entry.static} failed: {why}"
                log.info("dmsg client %s: %s", self.pk, self.last_problem)

    def _build_entry(self, current: Entry | None) -> Entry:
        servers = tuple(sorted(self.sessions))
        if current is None:
            return Entry.new_client(self.pk, 0, servers, client_type=self.client_type)
        return Entry(
            version=current.version,
            sequence=current.sequence,
            timestamp=current.timestamp,
            static=self.pk,
            client=ClientInfo(servers),
            client_type=self.client_type,
        )

    async def _publish_if_needed(self) -> None:
        current = self._keeper.entry
        servers = tuple(sorted(self.sessions))
        if (
            current is not None
            and current.client is not None
            and tuple(current.client.delegated_servers or ()) == servers
        ):
            self._published.set()
            return
        self._published.clear()
        try:
            await self._keeper.publish(self._build_entry)
        except DISCOVERY_ERRORS as exc:
            log.info("dmsg client %s: could not publish entry: %s", self.pk, exc)
            return
        if tuple(sorted(self.sessions)) == servers:
            self._published.set()
        self._notify()

    def _schedule_publish(self) -> None:
        """Ask the publisher task for a fresh entry (requests made meanwhile coalesce)."""
        if not self._closed:
            self._published.clear()
            self._publish_wanted.set()

    async def _publisher(self) -> None:
        while True:
            await self._publish_wanted.wait()
            self._publish_wanted.clear()
            await self._publish_if_needed()

    # ------------------------------------------------------------------ sessions
    async def ensure_session(self, server: Entry) -> Session:
        """A session to ``server``: the existing one, the one being set up, or a new one."""
        if self._closed:
            raise DmsgClosedError(ErrorCode.ENTITY_CLOSED)
        existing = self.sessions.get(server.static)
        if existing is not None and not existing.closed:
            return existing
        pending = self._pending.get(server.static)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._pending[server.static] = fut
        try:
            session = await self._dial_session(server)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            fut.set_result(session)
            self.entries.remember(server)  # a server we may have to reach without discovery
            return session
        finally:
            self._pending.pop(server.static, None)

    async def _dial_session(self, server: Entry) -> Session:
        if server.server is None or not server.server.address:
            raise DmsgError(ErrorCode.DISC_ENTRY_IS_NOT_SERVER, str(server.static))
        try:
            host, port = parse_server_address(server.server.address)
        except ValueError as exc:
            raise DmsgError(
                ErrorCode.DISC_ENTRY_IS_NOT_SERVER,
                f"{server.static}: unusable address {server.server.address[:80]!r}: {exc}",
            ) from exc
        async with asyncio.timeout(DIAL_TIMEOUT):
            tcp = await TcpStream.connect(host, port)
        try:
            noise, rtt = await client_handshake(
                tcp, self.sk, server.static, timeout=SESSION_HANDSHAKE_TIMEOUT, pq=self.pq
            )
        except BaseException:
            await tcp.close()
            raise
        hold = min(max(2 * rtt, MIN_WRITE_HOLD), MAX_WRITE_HOLD)
        session = Session(
            tcp,
            noise,
            client=True,
            yamux_config=self.yamux_config,
            writes_after=time.monotonic() + hold,
        )
        if self._closed:
            await session.close()
            raise DmsgClosedError(ErrorCode.ENTITY_CLOSED)
        try:
            self._tasks.spawn(self._run_session(session), f"dmsg-session-{server.static}")
        except TaskTreeClosedError:
            await session.close()
            raise DmsgClosedError(ErrorCode.ENTITY_CLOSED) from None
        self.sessions[server.static] = session
        self._notify()
        self._schedule_publish()
        kind = "post-quantum hybrid" if noise.pq_active else "classical"
        log.info("dmsg client %s: session with %s (%s)", self.pk, server.static, kind)
        return session

    async def _run_session(self, session: Session) -> None:
        try:
            await session.serve_streams(lambda ystr: self._accept_stream(session, ystr))
        finally:
            await session.close()
            if self.sessions.get(session.remote_pk) is session:
                del self.sessions[session.remote_pk]
            log.info("dmsg client %s: session with %s ended", self.pk, session.remote_pk)
            self._notify()
            self._schedule_publish()

    # ------------------------------------------------------------------ incoming streams
    async def _accept_stream(self, session: Session, ystr: YamuxStream) -> None:
        try:
            async with asyncio.timeout(STREAM_HANDSHAKE_TIMEOUT):
                req_obj = await session.read_object(ystr)
                req = decode_request(req_obj)
                verify_request(req_obj, req)
                if req.dst.pk != self.pk:
                    raise DmsgError(ErrorCode.REQ_INVALID_DST_PK)
                noise = Noise(Pattern.KK, Role.RESPONDER, self.sk, req.src.pk, pq=self.pq)
                try:
                    noise.read_message(req.noise_msg)
                except NoiseError as exc:
                    raise DmsgError(ErrorCode.REQ_INVALID_SIG, f"noise: {exc}") from exc
                listener = self._listeners.get(req.dst.port)
                if listener is None or listener.closed:
                    await self._refuse(session, ystr, req_obj, ErrorCode.REQ_NO_LISTENER)
                    return
                if listener._full():
                    await self._refuse(session, ystr, req_obj, ErrorCode.ACCEPT_CHAN_MAXED)
                    return
                resp = StreamResponse(req_obj.hash(), True, 0, noise.write_message())
                await session.write_object(ystr, sign_response(resp, self.sk))
        except (DmsgError, WireError, ConnectionError, TimeoutError, OSError) as exc:
            # a refusal by policy is the operator's business; the rest is the dialer's
            level = logging.INFO if isinstance(exc, PQRequiredError) else logging.DEBUG
            log.log(level, "dmsg client %s: incoming stream refused: %s", self.pk, exc)
            with contextlib.suppress(ConnectionError, WireError, OSError):
                await ystr.reset()
            return
        stream = DmsgStream(ystr, noise, local_addr=req.dst, remote_addr=req.src, session=session)
        listener._offer(stream)

    async def _refuse(
        self, session: Session, ystr: YamuxStream, req_obj: SignedObject, code: ErrorCode
    ) -> None:
        resp = StreamResponse(req_obj.hash(), False, int(code))
        await session.write_object(ystr, sign_response(resp, self.sk))
        with contextlib.suppress(ConnectionError, WireError, OSError):
            await ystr.close()

    async def listen(self, port: int) -> DmsgListener:
        """Take ``port`` for incoming streams (400 if it is taken)."""
        if self._closed:
            raise DmsgClosedError(ErrorCode.ENTITY_CLOSED)
        if not self.ports.reserve(port):
            raise DmsgError(ErrorCode.PORT_OCCUPIED, str(port))
        listener = DmsgListener(self, port)
        self._listeners[port] = listener
        return listener

    # ------------------------------------------------------------------ dialing
    async def dial(self, pk: PubKey, port: int) -> DmsgStream:
        """Open a stream to ``pk:port`` through one of its delegated servers."""
        if self._closed:
            raise DmsgClosedError(ErrorCode.ENTITY_CLOSED)
        try:
            entry = await self.entries.lookup(pk)
        except (DiscError, OSError, TimeoutError) as exc:
            # Discovery cannot say (away, or it lost the entry): a client that shares a relay
            # server with us is reached through it without any lookup.
            if self.sessions:
                try:
                    return await self.dial_via(pk, port, list(self.sessions), shared_only=True)
                except DmsgError as found:
                    if found.code != ErrorCode.CANNOT_CONNECT_TO_DELEGATED:
                        raise  # the peer was there and answered
            if isinstance(exc, KeyNotFoundError):
                raise DmsgError(ErrorCode.DISC_ENTRY_NOT_FOUND, str(pk)) from exc
            raise DmsgError(ErrorCode.DISC_ENTRY_NOT_FOUND, str(exc) or repr(exc)) from exc
        if entry.client is None:
            raise DmsgError(ErrorCode.DISC_ENTRY_IS_NOT_CLIENT, str(pk))
        delegated = list(entry.client.delegated_servers or ())
        if not delegated:
            raise DmsgError(ErrorCode.DISC_ENTRY_HAS_NO_DELEGATED, str(pk))
        return await self.dial_via(pk, port, delegated)

    async def dial_via(
        self, pk: PubKey, port: int, servers: Iterable[PubKey], *, shared_only: bool = False
    ) -> DmsgStream:
        """Dial through the first usable server of ``servers`` (ones with a session first;
        with ``shared_only``, only those)."""
        ordered = sorted(servers, key=lambda s: s not in self.sessions)
        errors: list[str] = []
        for server_pk in ordered:
            try:
                session = self.sessions.get(server_pk)
                if session is None or session.closed:
                    if shared_only:
                        continue
                    session = await self.ensure_session(await self.entries.lookup(server_pk))
                return await self._dial_stream(session, pk, port)
            except DmsgError as exc:
                if exc.code in (ErrorCode.REQ_NO_LISTENER, ErrorCode.ACCEPT_CHAN_MAXED):
                    raise  # the remote answered: another server would not change that
                if isinstance(exc, DmsgPQRequiredError):
                    raise  # nor would it make the remote's handshake hybrid
                errors.append(f"{server_pk}: {exc}")
            except (DiscError, WireError, OSError, TimeoutError) as exc:
                errors.append(f"{server_pk}: {exc}")
        raise DmsgError(ErrorCode.CANNOT_CONNECT_TO_DELEGATED, "; ".join(errors))

    async def _dial_stream(self, session: Session, pk: PubKey, port: int) -> DmsgStream:
        local = Addr(self.pk, self.ports.reserve_ephemeral())
        remote = Addr(pk, port)
        noise = Noise(Pattern.KK, Role.INITIATOR, self.sk, pk, pq=self.pq)
        req = StreamRequest(now_nanos(), local, remote, noise.write_message())
        req_obj = sign_request(req, self.sk)
        ystr: YamuxStream | None = None
        try:
            ystr = await session.open_stream()
            async with asyncio.timeout(STREAM_HANDSHAKE_TIMEOUT):
                await session.write_object(ystr, req_obj)
                resp_obj = await session.read_object(ystr)
            resp = decode_response(resp_obj)
            verify_response(resp_obj, resp, req_obj, req)
            try:
                noise.read_message(resp.noise_msg)
            except PQRequiredError as exc:
                raise DmsgPQRequiredError(str(pk)) from exc
            except NoiseError as exc:
                raise DmsgError(ErrorCode.DIAL_RESP_INVALID_SIG, f"noise: {exc}") from exc
        except BaseException as exc:
            self.ports.release(local.port)
            if ystr is not None:
                with contextlib.suppress(ConnectionError, WireError, OSError):
                    await ystr.reset()
            if isinstance(exc, TimeoutError):
                raise DmsgError(ErrorCode.SESSION_CLOSED, "stream handshake timed out") from exc
            if isinstance(exc, ConnectionError | WireError) and not isinstance(exc, DmsgError):
                raise DmsgError(ErrorCode.SESSION_CLOSED, str(exc)) from exc
            raise
        return DmsgStream(
            ystr,
            noise,
            local_addr=local,
            remote_addr=remote,
            session=session,
            on_close=[self.ports],
        )

    # ------------------------------------------------------------------ dmsgctrl
    async def _serve_ctrl(self, listener: DmsgListener) -> None:
        await serve_each(
            listener.accept, lambda stream: Control(stream).serve(), what="dmsgctrl", logger=log
        )

    def listening_ports(self) -> list[int]:
        """The dmsg ports this client accepts streams on."""
        return sorted(self._listeners)

    async def ping(self, pk: PubKey, count: int = 1) -> list[float]:
        """dmsgctrl round trips to ``pk`` (port 7), in seconds."""
        stream = await self.dial(pk, CTRL_PORT)
        ctrl = Control(stream)
        reader = asyncio.create_task(ctrl.serve())
        try:
            return [await ctrl.ping() for _ in range(count)]
        finally:
            reader.cancel()
            await asyncio.wait({reader})
            await stream.close()
