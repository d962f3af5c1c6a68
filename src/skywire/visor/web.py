"""The visor's way in for a browser: the embedded resolving proxies and the published services.

* ``dmsg_web`` (127.0.0.1:4445) and ``skynet_web`` (127.0.0.1:4446): SOCKS5 and HTTP proxy for
  ``.dmsg`` and ``.skynet`` names, each port serving both suffixes (dmsgweb chains to
  skynetweb), sharing one connector per suffix and so one route pool;
* ``skynet_web.services``: local TCP services published on routing ports.

Everything here is entered in the visor's exit stack, after the router.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from types import TracebackType
from typing import Any, Self

from skywire.cipher import PubKey
from skywire.dmsg.client import Client
from skywire.proxy.dmsgweb import DmsgConnector
from skywire.proxy.errors import UnreachableError
from skywire.proxy.hostname import Suffix
from skywire.proxy.publish import SkynetPublisher
from skywire.proxy.server import Connector, ProxyServer
from skywire.proxy.skynet import SkynetConnector, TransportLookup
from skywire.router import Router
from skywire.transport.entry import Entry
from skywire.transport.manager import TransportManager
from skywire.visor.config import VisorConfig

__all__ = ["VisorWeb", "split_address"]

log = logging.getLogger(__name__)


def split_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``host:port`` (or ``:port``) as a pair; ``ValueError`` names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]") or default_host, int(port)


class _NoDiscovery:
    """Transport lookups when no transport discovery is configured."""

    async def find_transport(self, tp_id: uuid.UUID) -> Entry | None:
        raise UnreachableError("no transport discovery configured: transport hops are unknown")

    async def get_transports_by_edge(self, pk: PubKey) -> list[Entry]:
        raise UnreachableError("no transport discovery configured: hops between other visors")


class VisorWeb:
    """``async with VisorWeb(cfg, dmsg, router, tm, lookup)``: publisher, connectors, proxies."""

    def __init__(
        self,
        cfg: VisorConfig,
        dmsg: Client,
        router: Router,
        tm: TransportManager,
        lookup: TransportLookup | None,
    ) -> None:
        self.cfg = cfg
        self.publisher = SkynetPublisher(router)
        self.dmsg_connector = DmsgConnector(dmsg, ready_timeout=cfg.dmsg_web.ready_timeout)
        self.skynet_connector = SkynetConnector(
            router,
            tm,
            lookup if lookup is not None else _NoDiscovery(),
            published=self.publisher.lookup,
            idle_timeout=cfg.skynet_web.idle_timeout,
        )
        self.proxies: dict[str, ProxyServer] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        st = self._stack
        await self.publisher.start()
        st.push_async_callback(self.publisher.close)
        for service in self.cfg.skynet_web.services:
            await self.publisher.add(service.port, split_address(service.address))
        await self.skynet_connector.start()
        st.push_async_callback(self.skynet_connector.close)
        connectors: dict[Suffix, Connector] = {
            Suffix.DMSG: self.dmsg_connector,
            Suffix.SKYNET: self.skynet_connector,
        }
        blocks = (
            (
                "dmsg_web",
                self.cfg.dmsg_web.enabled,
                self.cfg.dmsg_web.listen,
                self.cfg.dmsg_web.alias,
            ),
            (
                "skynet_web",
                self.cfg.skynet_web.enabled,
                self.cfg.skynet_web.listen,
                self.cfg.skynet_web.alias,
            ),
        )
        for name, enabled, listen, alias in blocks:
            if not enabled:
                continue
            host, port = split_address(listen)
            proxy = ProxyServer(connectors, host=host, port=port, alias=alias, name=name)
            await st.enter_async_context(proxy)
            self.proxies[name] = proxy

    async def publish(self, port: int, address: str) -> None:
        await self.publisher.add(port, split_address(address))

    async def unpublish(self, port: int) -> bool:
        if port not in self.publisher.services:
            return False
        await self.publisher.remove(port)
        return True

    def info(self) -> dict[str, Any]:
        pool = self.skynet_connector.pool
        return {
            "proxies": {name: p.address for name, p in self.proxies.items()},
            "published": {
                str(port): f"{h}:{p}" for port, (h, p) in self.publisher.services.items()
            },
            "route_pool": {
                "routes": pool.routes,
                "routes_dialed": pool.routes_dialed,
                "streams_opened": pool.streams_opened,
            },
            "proxy_stats": {
                name: {"served": p.stats.served, "failed": dict(p.stats.failed)}
                for name, p in self.proxies.items()
            },
        }
