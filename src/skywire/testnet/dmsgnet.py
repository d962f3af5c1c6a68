"""A local dmsg network: a discovery service and N relay servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from aiohttp import web

from skywire.cipher import KeyPair, SecKey
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.server import Server
from skywire.services.dmsgdisc.api import make_app
from skywire.services.dmsgdisc.client import DiscClient
from skywire.services.dmsgdisc.store import DiscStore
from skywire.services.dmsgdisc.store.memory import MemoryStore
from skywire.services.dmsgdisc.store.sqlite import SqliteStore
from skywire.wire.pq import PQPolicy


class LocalDmsgNetwork:
    """``async with LocalDmsgNetwork(servers=2) as net:`` then ``await net.client()``.

    The discovery runs in test mode (loopback server addresses allowed) on an in-memory store,
    or on SQLite when ``db`` is given. Everything is closed, in order, on exit.
    """

    def __init__(
        self,
        servers: int = 2,
        *,
        db: Path | None = None,
        host: str = "127.0.0.1",
        disc_port: int = 0,
        update_interval: float = 60.0,
        client_backoff: Backoff | None = None,
        server_keys: Sequence[SecKey] = (),
        server_ports: Sequence[int] = (),
    ) -> None:
        self.n_servers = servers
        self.server_keys = list(server_keys)
        self.server_ports = list(server_ports)
        self.db = db
        self.host = host
        self.disc_port = disc_port
        self.update_interval = update_interval
        self.client_backoff = client_backoff or Backoff(initial=0.05, factor=1.5, maximum=1.0)
        self.servers: list[Server] = []
        self.clients: list[Client] = []
        self.store: DiscStore | None = None
        self._runner: web.AppRunner | None = None
        self._discs: list[DiscClient] = []
        self._stack = contextlib.AsyncExitStack()

    @property
    def disc_url(self) -> str:
        return f"http://{self.host}:{self.disc_port}"

    def disc_client(self) -> DiscClient:
        disc = DiscClient(self.disc_url)
        self._discs.append(disc)
        return disc

    async def __aenter__(self) -> LocalDmsgNetwork:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        if self.db is not None:
            self.store = await SqliteStore.open(str(self.db))
        await self.start_discovery()
        for i in range(self.n_servers):
            sk = self.server_keys[i] if i < len(self.server_keys) else None
            port = self.server_ports[i] if i < len(self.server_ports) else 0
            await self.add_server(sk, port)

    async def start_discovery(self, *, forget: bool = False) -> None:
        """Serve the discovery (again, after :meth:`stop_discovery`) on its port; ``forget``
        starts it on an empty memory store, as a restart of a memory discovery would."""
        if forget or self.store is None:
            self.store = MemoryStore()
        self._runner = web.AppRunner(make_app(self.store, test_mode=True), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.disc_port)
        await site.start()
        assert self._runner.addresses
        self.disc_port = int(self._runner.addresses[0][1])

    async def stop_discovery(self) -> None:
        """Stop serving the discovery (its store stays, for :meth:`start_discovery`)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def restart_server(self, index: int, down: float = 0.0) -> Server:
        """Close relay server ``index`` (its sessions end), wait ``down`` seconds, and start a
        new one under the same key and port."""
        old = self.servers[index]
        await old.close()
        await asyncio.sleep(down)
        new = Server(
            old.sk,
            host=self.host,
            port=old.port,
            disc=self.disc_client(),
            update_interval=self.update_interval,
        )
        await new.start()
        self.servers[index] = new
        return new

    async def add_server(self, sk: SecKey | None = None, port: int = 0) -> Server:
        srv = Server(
            sk or SecKey.generate(),
            host=self.host,
            port=port,
            disc=self.disc_client(),
            update_interval=self.update_interval,
        )
        await srv.start()
        self.servers.append(srv)
        return srv

    async def client(
        self,
        sk: SecKey | None = None,
        *,
        min_sessions: int = 1,
        ready: bool = True,
        pq: PQPolicy | None = None,
    ) -> Client:
        """A started client (ready: its sessions are up and its entry is published); ``pq``
        is its post-quantum policy (None: the process default)."""
        kp = KeyPair.from_seckey(sk) if sk is not None else KeyPair.generate()
        cl = Client(
            kp.sk,
            self.disc_client(),
            min_sessions=min_sessions,
            backoff=self.client_backoff,
            pq=pq,
        )
        await cl.start()
        self.clients.append(cl)
        if ready:
            await cl.ready()
        return cl

    async def close(self) -> None:
        for cl in reversed(self.clients):
            await cl.close()
        for srv in reversed(self.servers):
            await srv.close()
        self.clients.clear()
        self.servers.clear()
        for disc in self._discs:
            await disc.close()
        self._discs.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.store is not None:
            await self.store.close()
            self.store = None
