"""A deployment service's HTTP API on dmsg port 80, with ``/debug/*`` for the survey whitelist.

Upstream (skywire PR 3043) has every deployment service (setup node, transport discovery, route
finder, address resolver, dmsg discovery) serve its API or status on dmsg port 80, wrapped in
``dmsghttp.WithDebug(handler, whitelist, logSource)``. Here that is two pieces:

* :func:`with_debug` mounts ``/debug/log``, ``/debug/tasks``, ``/debug/profile`` and
  ``/debug/memory`` on a service's aiohttp app, open only to the keys of the survey whitelist
  (an empty whitelist: 403 for every caller). aiohttp freezes an app's routes when its runner is
  set up, so this comes first; an app that is served on TCP as well carries the routes there too,
  where they always answer 403 (a TCP caller has no dmsg key).
* :class:`DmsgPort` runs a dmsg client under the service's key and serves the app (or a runner
  already set up for TCP) on dmsg port 80, for as long as its ``async with`` runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from skywire.cipher import PubKey, SecKey
from skywire.debug import LogRing, mount_debug, whitelist_gate
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.http import DEFAULT_HTTP_PORT, HTTPServer
from skywire.services.dmsgdisc.client import DiscClient
from skywire.wire.lifecycle import Lifecycle

__all__ = ["DMSG_API_PORT", "DmsgPort", "DmsgPortConfig", "DmsgPortConfigError", "with_debug"]

log = logging.getLogger(__name__)

DMSG_API_PORT: Final = DEFAULT_HTTP_PORT
"""The dmsg port a service's API is served on (80, as upstream)."""


class DmsgPortConfigError(ValueError):
    """A :class:`DmsgPortConfig` that cannot work."""


def with_debug(
    app: web.Application, survey_whitelist: Collection[PubKey], *, ring: LogRing | None = None
) -> web.Application:
    """Mount ``/debug/*`` on ``app`` for the dmsg keys in ``survey_whitelist`` (copied now; an
    empty one refuses everybody) and return ``app``. Call before the app's runner is set up.

    ``/debug/log`` reads ``ring``, by default the process-wide ring fed from the root logger.
    """
    mount_debug(app, allowed=whitelist_gate(survey_whitelist), ring=ring)
    return app


@dataclass(frozen=True, slots=True)
class DmsgPortConfig:
    """Where and as whom a service serves on dmsg.

    ``sk`` is the service's key (its dmsg address is the public key); ``disc_url`` the dmsg
    discovery it finds servers through and publishes its entry to; ``survey_whitelist`` the keys
    that may read ``/debug/*``; ``min_sessions`` the dmsg servers to keep sessions with (0:
    every server, as the dmsg discovery does); ``backoff`` the reconnection wait (None: the
    client's default).
    """

    sk: SecKey
    disc_url: str
    survey_whitelist: frozenset[PubKey] = frozenset()
    port: int = DMSG_API_PORT
    min_sessions: int = 1
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if not self.disc_url:
            raise DmsgPortConfigError("a dmsg discovery URL is needed")
        if not 1 <= self.port <= 0xFFFF:
            raise DmsgPortConfigError(f"dmsg port must be from 1 to 65535, not {self.port}")
        if self.min_sessions < 0:
            raise DmsgPortConfigError(f"min_sessions must not be negative: {self.min_sessions}")
        if not isinstance(self.survey_whitelist, frozenset):
            object.__setattr__(self, "survey_whitelist", frozenset(self.survey_whitelist))

    @property
    def pk(self) -> PubKey:
        return self.sk.pubkey()

    @property
    def url(self) -> str:
        """``dmsg://<pk>:<port>``: where the API answers."""
        return f"dmsg://{self.pk.hex()}:{self.port}"


class DmsgPort(Lifecycle):
    """``async with DmsgPort(config, app) as port:`` serves ``app`` on dmsg ``config.port``.

    ``app`` is a ``web.Application`` (the server sets up and cleans up a runner of its own) or a
    ``web.BaseRunner`` already set up, for instance the one serving the same app on TCP (the
    caller keeps that). Without ``app``, only the dmsg client runs, for a service that needs it
    first (the setup node's app reads stats of a node built on the client): call :meth:`serve`
    later.

    Everything started here (the discovery client, the dmsg client, the HTTP server) is closed in
    reverse order by :meth:`close` or on leaving the block, also after a half-failed start;
    closing twice is harmless. The client connects in the background: :meth:`ready` waits for
    its sessions and published entry.
    """

    def __init__(
        self,
        config: DmsgPortConfig,
        app: web.Application | web.BaseRunner | None = None,
    ) -> None:
        self.config = config
        self._app = app
        self._stack = contextlib.AsyncExitStack()
        self._client: Client | None = None
        self._http: HTTPServer | None = None
        self._started = False

    @property
    def pk(self) -> PubKey:
        return self.config.pk

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def client(self) -> Client:
        """The running dmsg client."""
        if self._client is None:
            raise RuntimeError("DmsgPort is not running")
        return self._client

    @property
    def serving(self) -> bool:
        """Whether an app is served on the port."""
        return self._http is not None

    async def start(self) -> None:
        """Start the dmsg client and, when an app was given, serve it."""
        if self._started:
            raise RuntimeError("DmsgPort already started")
        self._started = True
        cfg = self.config
        try:
            disc = await self._stack.enter_async_context(DiscClient(cfg.disc_url))
            client = Client(cfg.sk, disc, min_sessions=cfg.min_sessions, backoff=cfg.backoff)
            self._client = await self._stack.enter_async_context(client)
            if self._app is not None:
                await self.serve(self._app)
        except BaseException:
            await self.close()
            raise

    async def serve(self, app: web.Application | web.BaseRunner) -> None:
        """Serve ``app`` on the dmsg port (once)."""
        if self._http is not None:
            raise RuntimeError(f"already serving on dmsg port {self.config.port}")
        listener = await self.client.listen(self.config.port)
        server = HTTPServer(app, listener)
        try:
            await server.start()
        except BaseException:
            await server.close()
            await listener.close()
            raise
        self._stack.push_async_callback(server.close)
        self._http = server
        log.info("serving HTTP on %s", self.url)

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until the client has its sessions and its entry is published (TimeoutError
        saying why not, after ``timeout`` seconds)."""
        await self.client.ready(timeout)

    async def close(self) -> None:
        """Stop serving, close the dmsg client (its entry is deleted) and the discovery
        client."""
        self._http = None
        self._client = None
        await self._stack.aclose()
