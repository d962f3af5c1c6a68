"""A public visor listed in service discovery.

A visor with ``is_public`` registers the entry ``<pk>:<stcpr port>`` of type ``visor`` with its
local addresses (the service refuses a ``visor`` entry unless they include the address the
request comes from), registers it again every ``refresh`` seconds (the service forgets entries
after 300 s), and deletes it when it closes, as upstream's ``initPublicVisor`` /
``VisorUpdater`` do. Other visors' autoconnect (:mod:`skywire.visor.autoconnect_aio`) finds it
there and dials it over ``stcpr``.

Discovery being down costs nothing but the listing: a failed registration is logged once per
outage and retried after ``retry`` seconds.

``transport.autoconnect_count`` (an integer) and ``transport.autoconnect_interval`` (a Go
duration, e.g. ``"3s"``) are ours: how many public visors autoconnect keeps and how often it
looks (absent: upstream's 3 and 10 s, :func:`autoconnect_config`). They are kept among the
block's extra keys, so a config without them is upstream's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from skywire import __version__
from skywire.cipher import PubKey
from skywire.services.sd.client import SDClient
from skywire.services.sd.entry import ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.errors import SDError
from skywire.transport.manager import TransportManager
from skywire.transport.resolved import StcprNetwork
from skywire.visor.appdisc import DELETE_TIMEOUT, REFRESH, RETRY, ServiceRegistry
from skywire.visor.autoconnect import INTERVAL, MAX_CONNS, AutoconnectConfig
from skywire.visor.autoconnect_aio import PublicAutoconnect
from skywire.visor.config import TransportConfig, VisorConfig, parse_duration
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.tasks import TaskTree

__all__ = ["PublicVisor", "autoconnect_config", "start_public", "visor_entry"]

log = logging.getLogger(__name__)


def autoconnect_config(block: TransportConfig) -> AutoconnectConfig:
    """The autoconnect count and interval of a ``transport`` block: its extra keys
    ``autoconnect_count`` and ``autoconnect_interval`` when present, else upstream's
    (``ValueError`` for a malformed or out-of-range one)."""
    extra = block.model_extra or {}
    count = extra.get("autoconnect_count", MAX_CONNS)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"transport.autoconnect_count must be an integer above 0, not {count!r}")
    text = extra.get("autoconnect_interval")
    interval = INTERVAL
    if text is not None:
        if not isinstance(text, str):
            raise ValueError(
                f"transport.autoconnect_interval must be a duration string, not {text!r}"
            )
        interval = parse_duration(text)
        if interval <= 0:
            raise ValueError(f"transport.autoconnect_interval must be above zero, not {text!r}")
    return AutoconnectConfig(max_conns=count, interval=interval)


def visor_entry(
    pk: PubKey,
    stcpr_port: int,
    local_ips: Sequence[str],
    *,
    version: str = "",
    display_node_ip: bool = False,
) -> ServiceEntry:
    """The ``visor`` entry of a public visor whose ``stcpr`` listens on ``stcpr_port``."""
    return ServiceEntry(
        SWAddr(pk, stcpr_port),
        ServiceType.VISOR,
        version=version,
        display_node_ip=display_node_ip,
        local_ips=tuple(local_ips),
    )


class PublicVisor(Lifecycle):
    """``async with PublicVisor(sd_client, entry) as pv:`` keeps ``entry`` registered."""

    def __init__(
        self,
        registry: ServiceRegistry,
        entry: ServiceEntry,
        *,
        refresh: float = REFRESH,
        retry: float = RETRY,
    ) -> None:
        if refresh <= 0 or retry <= 0:
            raise ValueError("refresh and retry must be positive")
        self.entry = entry
        self._registry = registry
        self._refresh = refresh
        self._retry = retry
        self._tree = TaskTree("public-visor", log)
        self._registered = asyncio.Event()
        self.registered = False
        """The service holds the entry, as far as this visor knows."""
        self._sent = False  # a registration went out (it may have landed though cut short)

    async def start(self) -> None:
        await self._tree.start()
        self._tree.spawn(self._keep(), "public-visor")

    async def close(self) -> None:
        await self._tree.close()
        if self._sent:
            self._sent = self.registered = False
            try:
                async with asyncio.timeout(DELETE_TIMEOUT):
                    await self._registry.delete(self.entry.type, self.entry.addr)
            except (SDError, OSError, TimeoutError) as exc:
                log.warning("service discovery: cannot delete %s: %s", self.entry.addr, exc)

    async def wait_registered(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._registered.wait()

    async def _keep(self) -> None:
        failing = False
        while True:
            try:
                self._sent = True
                await self._registry.register(self.entry)
            except (SDError, OSError, TimeoutError) as exc:
                if not failing:
                    log.warning("service discovery: cannot list this visor as public: %s", exc)
                failing = True
                wait = self._retry
            else:
                if not self.registered:
                    log.info("service discovery: listed as public visor %s", self.entry.addr)
                self.registered = True
                self._registered.set()
                failing = False
                wait = self._refresh
            await asyncio.sleep(wait)


async def start_public(
    stack: contextlib.AsyncExitStack,
    cfg: VisorConfig,
    tm: TransportManager,
    autoconnect: AutoconnectConfig | None = None,
) -> tuple[PublicVisor | None, PublicAutoconnect | None]:
    """What a visor's ``is_public`` and ``transport.public_autoconnect`` start, entered into
    ``stack`` (closed with it): the listing of this visor with its stcpr port, and autoconnect.
    Neither runs without a ``launcher.service_discovery`` URL. Autoconnect's count and interval
    are ``autoconnect`` when given, else the config's (:func:`autoconnect_config`)."""
    url = cfg.launcher.service_discovery
    if not url or not (cfg.is_public or cfg.transport.public_autoconnect):
        return None, None
    sd = await stack.enter_async_context(SDClient(url, cfg.sk))
    public = None
    if cfg.is_public:
        stcpr = tm.networks.get("stcpr")
        if isinstance(stcpr, StcprNetwork):
            entry = visor_entry(
                cfg.pk,
                stcpr.port,
                stcpr.addresses,
                version=__version__,
                display_node_ip=cfg.launcher.display_node_ip,
            )
            public = await stack.enter_async_context(PublicVisor(sd, entry))
        else:
            log.warning("is_public: no stcpr transports here: not listed as a public visor")
    connector = None
    if cfg.transport.public_autoconnect:
        settings = autoconnect or autoconnect_config(cfg.transport)
        connector = PublicAutoconnect(sd, tm, cfg.pk, settings)
        connector = await stack.enter_async_context(connector)
    return public, connector
