"""The dmsg relay server: accepts client sessions and relays streams between two of its clients.

A stream arrives as a yamux stream on the dialing client's session carrying a signed request.
The server checks it, opens a yamux stream on the destination's session, passes the request on
(re-sealed with that session's keys), checks the response that comes back, passes it to the
dialer, then copies raw bytes both ways; the payload is end-to-end encrypted between the two
clients, so the server never re-encrypts it. When either direction ends both streams are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from skywire import __version__
from skywire.cipher import KeyPair, PubKey, SecKey
from skywire.debug.metrics import Registry, instrument_app
from skywire.dmsg.disc_entry import Entry, ServerInfo
from skywire.dmsg.discovery import DISCOVERY_ERRORS, Discovery
from skywire.dmsg.entry_keeper import EntryKeeper
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.dmsg.mesh import Mesh
from skywire.dmsg.session import (
    STREAM_HANDSHAKE_TIMEOUT,
    Session,
    server_handshake,
)
from skywire.dmsg.types import decode_request, decode_response, verify_request, verify_response
from skywire.wire.errors import WireError
from skywire.wire.stream import TcpStream
from skywire.wire.tasks import Leave, TaskTree, TaskTreeClosedError, guarded, leaving
from skywire.wire.yamux import YamuxConfig
from skywire.wire.yamux_aio import YamuxStream

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 2048
DEFAULT_UPDATE_INTERVAL = 60.0
DEFAULT_MAX_STREAMS = 1024
"""Streams one session may have relayed at once (more are reset at once)."""
DEFAULT_MAX_PENDING_STREAMS = 64
"""Streams of one session still in their request/response exchange (more are reset)."""
DEFAULT_LIMIT_IP = 15
"""Concurrent connections per remote IP of ``dmsg server start`` (upstream's --limit-ip)."""
COPY_CHUNK = 1 << 18


@dataclass
class ServerConfig:
    """The server's JSON configuration, in the reference's field names."""

    public_key: PubKey
    secret_key: SecKey
    discovery: str = "http://127.0.0.1:9090"
    public_address: str = "127.0.0.1:8081"
    local_address: str = ":8081"
    health_endpoint_address: str = ":8082"
    log_level: str = "info"
    update_interval: int = 0  # nanoseconds, as a Go time.Duration; 0 = the default minute
    max_sessions: int = DEFAULT_MAX_SESSIONS

    @classmethod
    def generate(cls, **overrides: Any) -> ServerConfig:
        """A fresh key pair; the health endpoint listens one port above the server."""
        kp = KeyPair.generate()
        if "health_endpoint_address" not in overrides:
            local = str(overrides.get("local_address", cls.local_address))
            host, _, port = local.rpartition(":")
            if port.isdigit():
                overrides["health_endpoint_address"] = f"{host}:{int(port) + 1}"
        return cls(public_key=kp.pk, secret_key=kp.sk, **overrides)

    def to_json(self) -> str:
        doc = {
            "public_key": self.public_key.hex(),
            "secret_key": self.secret_key.hex(),
            "discovery": self.discovery,
            "public_address": self.public_address,
            "local_address": self.local_address,
            "health_endpoint_address": self.health_endpoint_address,
            "log_level": self.log_level,
            "update_interval": self.update_interval,
            "max_sessions": self.max_sessions,
        }
        return json.dumps(doc, indent="\t")

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("the configuration must be a JSON object")
            sk = SecKey.from_hex(str(doc["secret_key"]))
            pk = PubKey.from_hex(str(doc.get("public_key", ""))) or sk.pubkey()
            if pk.is_null():
                pk = sk.pubkey()
            if pk != sk.pubkey():
                raise ValueError("public_key does not belong to secret_key")
            return cls(
                public_key=pk,
                secret_key=sk,
                discovery=str(doc.get("discovery", cls.discovery)),
                public_address=str(doc.get("public_address", cls.public_address)),
                local_address=str(doc.get("local_address", cls.local_address)),
                health_endpoint_address=str(
                    doc.get("health_endpoint_address", cls.health_endpoint_address)
                ),
                log_level=str(doc.get("log_level", cls.log_level)),
                update_interval=int(doc.get("update_interval", 0)),
                max_sessions=int(doc.get("max_sessions", DEFAULT_MAX_SESSIONS)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid dmsg server configuration: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> ServerConfig:
        return cls.from_json(Path(path).read_text())


def split_listen_address(address: str) -> tuple[str, int]:
    """``":8081"`` → ``("0.0.0.0", 8081)``; ``"localhost:8081"`` → ``("localhost", 8081)``."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"invalid listen address {address!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass
class _SessionLoad:
    pending: int = 0  # streams in their request/response exchange
    relaying: int = 0  # streams being relayed


_STAT_HELP = {
    "sessions_accepted": "Client sessions accepted.",
    "sessions_refused": "Second sessions of a key refused.",
    "connections_refused": "Connections refused over the per-IP limit.",
    "streams_relayed": "Streams accepted by both ends and relayed.",
    "streams_failed": "Streams refused by the destination, or failed, before relaying.",
    "streams_refused": "Streams reset at once, over a session's stream limits.",
    "bytes_relayed": "Bytes copied between clients (their end-to-end encrypted frames).",
}
"""The :class:`ServerStats` counters exposed as ``skywire_dmsg_server_<name>_total``."""


@dataclass
class ServerStats:
    sessions_accepted: int = 0
    sessions_refused: int = 0
    connections_refused: int = 0  # over the per-IP limit
    streams_refused: int = 0  # over a session's stream limits
    streams_relayed: int = 0
    streams_failed: int = 0
    bytes_relayed: int = 0
    started: float = field(default_factory=time.time)


class Server:
    """A dmsg relay server (``async with Server(...) as srv``).

    ``disc`` is optional: without it the server runs unadvertised (tests that hand the address
    to clients directly). ``address`` is the public address advertised; by default the bound one.
    """

    def __init__(
        self,
        sk: SecKey,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_address: str | None = None,
        disc: Discovery | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        update_interval: float = DEFAULT_UPDATE_INTERVAL,
        yamux_config: YamuxConfig | None = None,
        handshake_timeout: float = 5.0,
        health_address: str | None = None,
        ephemeral_keys: Iterator[SecKey] | None = None,
        max_streams_per_session: int = DEFAULT_MAX_STREAMS,
        max_pending_streams: int = DEFAULT_MAX_PENDING_STREAMS,
        limit_ip: int = 0,
        reuse_port: bool = False,
        mesh: Mesh | None = None,
    ) -> None:
        self.sk = sk
        self.pk = sk.pubkey()
        self.host = host
        self.port = port
        self._public_address = public_address
        self.disc = disc
        self.max_sessions = max_sessions
        self.update_interval = update_interval
        self.yamux_config = yamux_config
        self.handshake_timeout = handshake_timeout
        self.sessions: dict[PubKey, Session] = {}
        self.stats = ServerStats()
        self.max_streams_per_session = max_streams_per_session
        self.max_pending_streams = max_pending_streams
        self.limit_ip = limit_ip  # 0: no limit
        self._per_ip: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        # every task of the server: one per connection, and the advertiser
        self._tasks = TaskTree(f"dmsg-server-{self.pk}", log)
        self._keeper = EntryKeeper(disc, sk) if disc is not None else None
        self._entry_dirty = asyncio.Event()
        self._session_waiters: list[asyncio.Future[None]] = []
        self._closing = False
        self.health_address = health_address
        # several workers on one port: SO_REUSEPORT, and streams to the others' sessions
        self.reuse_port = reuse_port
        self.mesh = mesh
        # Fixed handshake ephemerals, one per accepted connection: only to replay recordings.
        self._ephemeral_keys = ephemeral_keys
        self._health_runner: web.AppRunner | None = None
        self.health_port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> str:
        """The public ``host:port`` clients dial."""
        if self._public_address:
            return self._public_address
        return f"{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """TCP connections being served (handshaking or carrying a session)."""
        return sum(self._per_ip.values())

    @property
    def available_sessions(self) -> int:
        return max(0, self.max_sessions - len(self.sessions))

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self._tasks.start()
        if self.mesh is not None:
            await self.mesh.start(local=self.sessions.get, relay=self._relay)
        self._server = await asyncio.start_server(
            self._on_connection,
            self.host,
            self.port,
            limit=1 << 20,
            backlog=1024,
            reuse_port=self.reuse_port or None,
        )
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        if self._keeper is not None:
            await self._publish()
            self._tasks.spawn(self._advertise_loop(), f"dmsg-server-advertise-{self.port}")
        if self.health_address is not None:
            await self._start_health()
        log.info("dmsg server %s listening on %s:%d", self.pk, self.host, self.port)

    def health(self) -> dict[str, object]:
        """What ``GET /health`` answers."""
        return {
            "build_info": {"version": __version__, "commit": "unknown", "date": "unknown"},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.stats.started)),
            "public_key": self.pk.hex(),
            "address": self.address,
            "sessions": len(self.sessions),
            "sessions_post_quantum": sum(s.noise.pq_active for s in self.sessions.values()),
            "available_sessions": self.available_sessions,
            "max_sessions": self.max_sessions,
            "streams_relayed": self.stats.streams_relayed,
            "streams_failed": self.stats.streams_failed,
            "streams_refused": self.stats.streams_refused,
            "bytes_relayed": self.stats.bytes_relayed,
        }

    def metrics(self) -> Registry:
        """A registry reading this server's sessions and :class:`ServerStats` at each scrape."""
        reg, p = Registry(), "skywire_dmsg_server_"
        sessions = self.sessions
        reg.gauge(p + "sessions", "Client sessions open.", callback=lambda: len(sessions))
        reg.gauge(
            p + "sessions_post_quantum",
            "Client sessions with a post-quantum (hybrid) handshake.",
            callback=lambda: sum(s.noise.pq_active for s in sessions.values()),
        )
        reg.gauge(p + "available_sessions", "Sessions still free.", callback=self._free)
        reg.gauge(p + "open_connections", "TCP connections served.", callback=self._open)
        for field_name, help in _STAT_HELP.items():
            read = functools.partial(getattr, self.stats, field_name)
            reg.counter(f"{p}{field_name}_total", help, callback=read)
        return reg

    def _free(self) -> int:
        return self.available_sessions

    def _open(self) -> int:
        return self.open_connections

    async def _start_health(self) -> None:
        assert self.health_address is not None
        host, port = split_listen_address(self.health_address)

        async def handle(_: web.Request) -> web.Response:
            return web.json_response(self.health())

        app = web.Application()
        app.router.add_get("/health", handle)
        instrument_app(app, self.metrics())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._health_runner = runner
        if runner.addresses:
            self.health_port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop accepting, close every session, remove the entry, await every task."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        await self._tasks.close()  # each connection task closes its session and socket
        if self.mesh is not None:
            await self.mesh.close()
        for session in list(self.sessions.values()):
            await session.close()
        self.sessions.clear()
        if self._keeper is not None:
            await self._keeper.delete()
        if self._health_runner is not None:
            await self._health_runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------------ discovery
    def _build_entry(self, current: Entry | None) -> Entry:
        info = ServerInfo(self.address, self.available_sessions)
        if current is None:
            return Entry.new_server(self.pk, 0, info.address, info.available_sessions)
        return Entry(
            version=current.version,
            sequence=current.sequence,
            timestamp=current.timestamp,
            static=self.pk,
            server=info,
        )

    async def _publish(self) -> None:
        assert self._keeper is not None
        try:
            await self._keeper.publish(self._build_entry)
        except DISCOVERY_ERRORS as exc:
            log.warning("dmsg server: could not publish entry: %s", exc)

    async def _advertise_loop(self) -> None:
        """Re-post the entry on every session change and at least once per interval."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.update_interval):
                    await self._entry_dirty.wait()
            self._entry_dirty.clear()
            await self._publish()

    def _sessions_changed(self) -> None:
        self._entry_dirty.set()
        for waiter in self._session_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._session_waiters.clear()

    async def wait_sessions(self, count: int) -> None:
        """Wait until exactly ``count`` sessions are registered."""
        while len(self.sessions) != count:
            await self._session_change()

    async def wait_session_ended(self, pk: PubKey) -> None:
        """Wait until ``pk`` holds no session here."""
        while pk in self.sessions:
            await self._session_change()

    async def _session_change(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._session_waiters.append(waiter)
        await waiter

    # ------------------------------------------------------------------ sessions
    def _on_connection(self, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # A plain callback: the connection's task belongs to this server's tree, not to asyncio.
        if self._closing:
            w.close()
            return
        peer = w.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self.limit_ip and self._per_ip.get(ip, 0) >= self.limit_ip:
            self.stats.connections_refused += 1
            log.info("dmsg server: %s has %d connections already: refused", ip, self.limit_ip)
            w.close()
            return
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        try:
            self._tasks.spawn(self._handle_connection(reader, w, ip), "dmsg-server-conn")
        except TaskTreeClosedError:
            self._release_ip(ip)
            w.close()

    def _release_ip(self, ip: str) -> None:
        left = self._per_ip.get(ip, 0) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    async def _handle_connection(
        self, reader: asyncio.StreamReader, w: asyncio.StreamWriter, ip: str
    ) -> None:
        tcp = TcpStream(reader, w)
        session: Session | None = None
        try:
            try:
                eph = next(self._ephemeral_keys, None) if self._ephemeral_keys else None
                noise = await server_handshake(
                    tcp, self.sk, timeout=self.handshake_timeout, ephemeral=eph
                )
            except (WireError, OSError) as exc:
                log.debug("dmsg server: handshake from %s failed: %s", tcp.peername, exc)
                return
            session = Session(tcp, noise, client=False, yamux_config=self.yamux_config)
            remote = session.remote_pk
            if remote in self.sessions:
                # As the reference does: the newcomer is refused. Unlike the reference, the
                # existing session keeps its registration.
                self.stats.sessions_refused += 1
                log.info("dmsg server: refusing second session from %s", remote)
                return
            self.sessions[remote] = session
            self.stats.sessions_accepted += 1
            self._sessions_changed()
            try:
                await self._serve_session(session)
            finally:
                if self.sessions.get(remote) is session:
                    del self.sessions[remote]
                    self._sessions_changed()
        finally:
            self._release_ip(ip)
            if session is not None:
                await session.close()
            else:
                await tcp.close()

    async def _serve_session(self, session: Session) -> None:
        """One task per accepted stream, within the session's limits: a stream over them is
        reset at once, so a flood of idle streams costs a counter, not a task. When the
        session ends (or the server closes) the streams it carried end with it."""
        load = _SessionLoad()
        async with leaving() as tg:
            while True:
                try:
                    ystr = await session.accept_stream()
                except ConnectionError:
                    raise Leave from None
                busy = load.pending + load.relaying
                if load.pending >= self.max_pending_streams or busy >= self.max_streams_per_session:
                    self.stats.streams_refused += 1
                    await _abort(ystr)
                    continue
                load.pending += 1
                tg.create_task(
                    guarded(self._serve_stream(session, ystr, load), "dmsg relay stream", log)
                )

    async def _serve_stream(self, src: Session, ystr: YamuxStream, load: _SessionLoad) -> None:
        try:
            relay = await self._exchange(src, ystr)
        finally:
            load.pending -= 1
        if relay is None:
            return
        load.relaying += 1
        try:
            await self._relay(ystr, relay)
        finally:
            load.relaying -= 1

    async def _exchange(self, src: Session, ystr: YamuxStream) -> YamuxStream | None:
        """The request/response exchange of one stream; the destination stream to relay to,
        or None when the stream ended here (refused or failed)."""
        dst_stream: YamuxStream | None = None
        try:
            async with asyncio.timeout(STREAM_HANDSHAKE_TIMEOUT):
                req_obj = await src.read_object(ystr)
                req = decode_request(req_obj)
                verify_request(req_obj, req)
                if req.src.pk != src.remote_pk:
                    raise DmsgError(ErrorCode.REQ_INVALID_SRC_PK)
                dst = self.sessions.get(req.dst.pk)
                if (dst is None or dst.closed) and self.mesh is not None:
                    # held by another worker of this server (or by none)
                    dst_stream, resp_obj = await self.mesh.exchange(req.dst.pk, req_obj)
                else:
                    if dst is None or dst.closed:
                        raise DmsgError(ErrorCode.REQ_NO_NEXT_SESSION)
                    dst_stream = await dst.open_stream()
                    await dst.write_object(dst_stream, req_obj)
                    resp_obj = await dst.read_object(dst_stream)
                resp = decode_response(resp_obj)
                # A signed refusal is passed on (the dialer learns why at once) and the
                # stream ends there.
                verify_response(resp_obj, resp, req_obj, req, require_accepted=False)
                await src.write_object(ystr, resp_obj)
            if not resp.accepted:
                self.stats.streams_failed += 1
                await _close_quietly(ystr)
                await _close_quietly(dst_stream)
                return None
        except (DmsgError, WireError, ConnectionError, TimeoutError, OSError) as exc:
            self.stats.streams_failed += 1
            log.debug("dmsg server: stream from %s failed: %s", src.remote_pk, exc)
            await _abort(ystr)
            if dst_stream is not None:
                await _abort(dst_stream)
            return None
        self.stats.streams_relayed += 1
        return dst_stream

    async def _relay(self, a: YamuxStream, b: YamuxStream) -> None:
        """Copy both ways; as soon as either direction ends, close both streams."""

        async def copy(src: YamuxStream, dst: YamuxStream) -> None:
            with contextlib.suppress(ConnectionError, WireError, OSError):
                while data := await src.read_view(COPY_CHUNK):  # no copy: straight on
                    await dst.write(data)
                    self.stats.bytes_relayed += len(data)

        t1 = asyncio.ensure_future(copy(a, b))
        t2 = asyncio.ensure_future(copy(b, a))
        try:
            await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (t1, t2):
                t.cancel()
            await asyncio.gather(t1, t2, return_exceptions=True)
        # Reached only when a direction ended by itself; when the server shuts down the
        # sessions are torn down instead, and the clients see the connection go.
        await _close_quietly(a)
        await _close_quietly(b)


async def _close_quietly(stream: YamuxStream) -> None:
    with contextlib.suppress(ConnectionError, WireError, OSError):
        await stream.close()


async def _abort(stream: YamuxStream) -> None:
    with contextlib.suppress(ConnectionError, WireError, OSError):
        await stream.reset()
