"""Discovery reachable only over dmsg: its HTTP rides the client's own sessions.

A discovery started with a key also serves its API on dmsg port 80 and keeps a session with
every server. A client that knows only the discovery's public key and a bootstrap list of server
entries connects to those servers first, then talks to the discovery through them — with the
same client (one client per key: a second client under the same key would fight the first for
its sessions).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
from aiohttp import web

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.client import Backoff, Client, DmsgStream
from skywire.dmsg.disc_entry import Entry
from skywire.dmsg.disc_errors import DiscUnreachableError, error_from_response
from skywire.dmsg.http import DmsgTransport, HTTPServer
from skywire.services.dmsgdisc.client import DEFAULT_TIMEOUT, DiscClient
from skywire.services.httpclient import describe
from skywire.wire.stream import ByteStream

DISC_DMSG_PORT = 80


class DmsgDiscClient(DiscClient):
    """A :class:`DiscClient` whose requests are HTTP over dmsg streams to ``disc_pk:80``."""

    def __init__(
        self,
        disc_pk: PubKey,
        bootstrap: Sequence[Entry],
        *,
        port: int = DISC_DMSG_PORT,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(f"dmsg://{disc_pk.hex()}:{port}", timeout=timeout)
        self.disc_pk = disc_pk
        self.port = port
        self.bootstrap = list(bootstrap)
        self.client: Client | None = None
        self._http_client: httpx.AsyncClient | None = None

    def bind(self, client: Client) -> None:
        """Use ``client``'s sessions for every request."""
        self.client = client

    async def _dial(self, pk: PubKey, port: int) -> ByteStream:
        if self.client is None:
            raise ConnectionError("dmsg discovery client is not bound to a dmsg client")
        servers = [e.static for e in self.bootstrap]
        known = [s for s in self.client.sessions if s not in servers]
        stream: DmsgStream = await self.client.dial_via(pk, port, [*servers, *known])
        return stream

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> bytes:
        if self._http_client is None:
            self._http_client = httpx.AsyncClient(
                transport=DmsgTransport(self._dial), timeout=self.timeout
            )
        headers = {"Content-Type": "application/json"} if body is not None else None
        url = self.base_url + path
        try:
            resp = await self._http_client.request(
                method, url, content=body, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise DiscUnreachableError(f"{method} {url}: {describe(exc)}") from exc
        payload = resp.content
        if resp.status_code != 200:
            raise error_from_response(resp.status_code, payload)
        return payload

    async def available_servers(self) -> list[Entry]:
        """Through discovery once reachable; the bootstrap list before that."""
        if self.client is None or not self.client.sessions:
            return list(self.bootstrap)
        return await super().available_servers()

    async def close(self) -> None:
        if self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None
        await super().close()


def direct_client(
    sk: SecKey,
    disc_pk: PubKey,
    bootstrap: Sequence[Entry],
    *,
    min_sessions: int = 1,
    backoff: Backoff | None = None,
) -> Client:
    """A dmsg client whose discovery is reached over its own sessions."""
    disc = DmsgDiscClient(disc_pk, bootstrap)
    client = Client(sk, disc, min_sessions=min_sessions, backoff=backoff)
    disc.bind(client)
    return client


class DiscoveryOverDmsg:
    """Serves a running discovery's API on dmsg port 80 as well.

    A dmsg client under the discovery's key keeps a session with every server
    (``min_sessions=0``) and publishes its own entry through the discovery's local HTTP address.
    """

    def __init__(
        self,
        sk: SecKey,
        runner: web.BaseRunner,
        local_url: str,
        *,
        port: int = DISC_DMSG_PORT,
        backoff: Backoff | None = None,
    ) -> None:
        self.sk = sk
        self.runner = runner
        self.local_url = local_url
        self.port = port
        self.backoff = backoff
        self.client: Client | None = None
        self._disc: DiscClient | None = None
        self._http: HTTPServer | None = None

    @property
    def pk(self) -> PubKey:
        return self.sk.pubkey()

    async def __aenter__(self) -> DiscoveryOverDmsg:
        self._disc = DiscClient(self.local_url)
        self.client = Client(self.sk, self._disc, min_sessions=0, backoff=self.backoff)
        try:
            await self.client.start()
            listener = await self.client.listen(self.port)
            self._http = HTTPServer(self.runner, listener)
            await self._http.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._disc is not None:
            await self._disc.close()
            self._disc = None
