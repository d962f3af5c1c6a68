"""A whole Skywire network on loopback: every service and a row of visors.

On top of a :class:`~skywire.testnet.dmsgnet.LocalDmsgNetwork` (discovery + relay servers) it
runs transport discovery, service discovery and the uptime tracker (SQLite with a
``data_dir``, else memory), the address resolver (test mode: loopback addresses), the route
finder (fed by transport discovery, with measured latencies), a route setup node and ``visors``
visors configured for them.
:meth:`chain` links the visors with ``stcpr`` transports in a row, so that a route from the
first to the last crosses every intermediate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from skywire.cipher import SecKey
from skywire.services.ar import ARServer
from skywire.services.ar.store.memory import MemoryStore as ARMemoryStore
from skywire.services.rf.api import RouteFinder, RouteFinderServer
from skywire.services.rf.source import HttpTransportSource
from skywire.services.rsn import SetupNode
from skywire.services.sd import SDServer
from skywire.services.sd.store.memory import MemoryStore as SDMemoryStore
from skywire.services.sd.store.sqlite import SqliteStore as SDSqliteStore
from skywire.services.tpd.api import TPDServer
from skywire.services.tpd.client import TPDRegistry
from skywire.services.tpd.store.memory import MemoryStore as TPDMemoryStore
from skywire.services.tpd.store.sqlite import SqliteStore as TPDSqliteStore
from skywire.services.ut import UTServer
from skywire.services.ut.store.memory import MemoryStore as UTMemoryStore
from skywire.services.ut.store.sqlite import SqliteStore as UTSqliteStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.transport.manager import ManagedTransport
from skywire.visor.autoconnect import AutoconnectConfig
from skywire.visor.config import VisorConfig
from skywire.visor.visor import Visor


class LocalSkywire:
    """``async with LocalSkywire(dmsg_net, visors=4) as sky:``; closes what it started."""

    def __init__(
        self,
        dmsg: LocalDmsgNetwork,
        *,
        visors: int = 4,
        data_dir: Path | None = None,
        latency_interval: float = 2.0,
        tpd_port: int = 0,
        rf_port: int = 0,
        ar_port: int = 0,
        sd_port: int = 0,
        ut_port: int = 0,
        configure: Callable[[int, VisorConfig], None] | None = None,
        keys: Callable[[str], SecKey] | None = None,
        cli_ports: Sequence[int] = (),
        apps: bool = False,
        autoconnect: AutoconnectConfig | None = None,
    ) -> None:
        self.dmsg = dmsg
        self.autoconnect = autoconnect  # visors' autoconnect timing (those that turn it on)
        self.apps = apps  # visors run their launchers' apps (each its own process)
        self.configure = configure
        self.keys = keys  # named keys ("setup-node", "visor-0"...) kept across runs
        self.cli_ports = list(cli_ports)
        self.n_visors = visors
        self.data_dir = data_dir
        self.latency_interval = latency_interval
        self.ports = {"tpd": tpd_port, "rf": rf_port, "ar": ar_port, "sd": sd_port, "ut": ut_port}
        self.visors: list[Visor] = []
        self.tpd: TPDServer | None = None
        self.ar: ARServer | None = None
        self.sd: SDServer | None = None
        self.ut: UTServer | None = None
        self.rf: RouteFinderServer | None = None
        self.finder: RouteFinder | None = None
        self.rsn: SetupNode | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> LocalSkywire:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        st = self._stack
        if self.data_dir is not None:
            tpd_store: TPDMemoryStore | TPDSqliteStore = await TPDSqliteStore.open(
                str(self.data_dir / "transport-discovery.db")
            )
        else:
            tpd_store = TPDMemoryStore()
        await st.enter_async_context(tpd_store)
        self.tpd = await st.enter_async_context(TPDServer(tpd_store, port=self.ports["tpd"]))
        sd_store: SDMemoryStore | SDSqliteStore
        if self.data_dir is not None:
            sd_store = await SDSqliteStore.open(str(self.data_dir / "service-discovery.db"))
        else:
            sd_store = SDMemoryStore()
        await st.enter_async_context(sd_store)
        self.sd = await st.enter_async_context(SDServer(sd_store, port=self.ports["sd"]))
        ut_store: UTMemoryStore | UTSqliteStore = UTMemoryStore()
        if self.data_dir is not None:
            ut_store = await UTSqliteStore.open(str(self.data_dir / "uptime-tracker.db"))
        await st.enter_async_context(ut_store)
        self.ut = await st.enter_async_context(UTServer(ut_store, port=self.ports["ut"]))
        ar_store = await st.enter_async_context(ARMemoryStore())
        self.ar = await st.enter_async_context(
            # the UDP side on the HTTP port: where visors look when the URL names a port
            ARServer(ar_store, "127.0.0.1", self.ports["ar"], self.ports["ar"], test_mode=True)
        )
        source = HttpTransportSource(self.tpd.url)
        st.push_async_callback(source.close)
        self.finder = RouteFinder(source, refresh_interval=1.0)
        self.rf = await st.enter_async_context(
            RouteFinderServer(self.finder, port=self.ports["rf"])
        )
        rsn_client = await self.dmsg.client(self.keys("setup-node") if self.keys else None)
        self.rsn = SetupNode(rsn_client)
        await self.rsn.start()
        st.push_async_callback(self.rsn.close)
        for _ in range(self.n_visors):
            await self.add_visor()

    def config(self, sk: SecKey | None = None) -> VisorConfig:
        assert self.tpd is not None and self.ar is not None and self.rf is not None
        assert self.rsn is not None and self.rsn.pk is not None
        cfg = VisorConfig.generate(
            sk=sk,
            dmsg_discovery=self.dmsg.disc_url,
            tpd=self.tpd.url,
            ar=self.ar.url,
            rf=self.rf.url,
            setup_nodes=[self.rsn.pk],
            cli_addr="127.0.0.1:0",
        )
        cfg.skywire_tcp.listening_address = ""
        if self.sd is not None:
            cfg.launcher.service_discovery = self.sd.url
        if self.ut is not None:
            cfg.uptime_tracker.addr = self.ut.url
        cfg.transport.public_autoconnect = False  # a test turns it on in ``configure``
        cfg.dmsgpty.cli_address = ""  # several visors in one process: no shared socket
        if self.apps:  # several visors in one process: each app server on its own port
            cfg.launcher.server_addr = "127.0.0.1:0"
        return cfg

    async def add_visor(self, sk: SecKey | None = None) -> Visor:
        """One more visor; ``configure(index, cfg)`` (if given) edits its config first."""
        assert self.ar is not None and self.tpd is not None
        index = len(self.visors)
        if sk is None and self.keys is not None:
            sk = self.keys(f"visor-{index}")
        cfg = self.config(sk)
        if index < len(self.cli_ports):
            cfg.cli_addr = f"127.0.0.1:{self.cli_ports[index]}"
        if self.configure is not None:
            self.configure(len(self.visors), cfg)
        registry = await self._stack.enter_async_context(TPDRegistry(self.tpd.url, cfg.sk))
        visor = Visor(
            cfg,
            registry=registry,
            ar_udp=self.ar.udp_addr,
            latency_interval=self.latency_interval,
            apps=self.apps,
            autoconnect=self.autoconnect,
        )
        await self._stack.enter_async_context(visor)
        await visor.ready()
        self.visors.append(visor)
        return visor

    async def restart_visor(self, index: int, down: float = 0.0) -> Visor:
        """Stop visor ``index`` (its transports and dmsg sessions end), wait ``down`` seconds,
        and start it again from the same configuration (same key)."""
        assert self.ar is not None and self.tpd is not None
        old = self.visors[index]
        await old.close()
        await asyncio.sleep(down)
        registry = await self._stack.enter_async_context(TPDRegistry(self.tpd.url, old.cfg.sk))
        visor = Visor(
            old.cfg,
            registry=registry,
            ar_udp=self.ar.udp_addr,
            latency_interval=self.latency_interval,
            apps=self.apps,
            autoconnect=self.autoconnect,
        )
        await self._stack.enter_async_context(visor)
        self.visors[index] = visor
        return visor

    async def chain(self, tp_type: str = "stcpr") -> list[ManagedTransport]:
        """Link visor i to visor i+1 with one transport each; refresh the route finder."""
        out = []
        for left, right in zip(self.visors, self.visors[1:], strict=False):
            assert left.tm is not None and right.tm is not None
            tp = await left.add_transport(right.pk, tp_type)
            await right.tm.wait_for(tp.id)
            out.append(tp)
        assert self.finder is not None
        await self.finder.refresh()
        return out
