"""The visor: keys, a dmsg client, a transport manager and the local RPC the CLI talks to.

``async with Visor(cfg) as v:`` starts everything in order and, on exit, undoes it in reverse:
the RPC stops, transports this visor registered are removed from transport discovery, address
resolver binds are released, the dmsg entry is deleted and every task is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skywire import __version__
from skywire.cipher import PubKey
from skywire.debug import install_ring_handler, whitelist_gate
from skywire.debug.metrics import Registry as MetricsRegistry
from skywire.dmsg.client import Client
from skywire.dmsg.http import HTTPServer
from skywire.dmsg.pty import MemoryWhitelist, PtyHost
from skywire.proxy.skynet import TransportLookup, reverse_of, route_address, source_route
from skywire.router import Router, RouterConfig
from skywire.routing.route import Hop
from skywire.routing.rule import Rule
from skywire.services.ar.client import ARClient
from skywire.services.dmsgdisc.client import DiscClient
from skywire.services.rf.client import RFClient
from skywire.services.sd.client import SDClient
from skywire.transport.localaddr import local_addresses
from skywire.transport.manager import (
    REGISTRY_ERRORS,
    ManagedTransport,
    Registry,
    TransportManager,
)
from skywire.transport.network import DmsgNetwork, Network, TCPNetwork, static_table
from skywire.transport.resolved import StcprNetwork, SudphNetwork
from skywire.visor.appdisc import AppAnnouncer
from skywire.visor.appenv import app_env
from skywire.visor.appserver import AppServer
from skywire.visor.autoconnect import AutoconnectConfig
from skywire.visor.autoconnect_aio import PublicAutoconnect
from skywire.visor.config import AppConfig, VisorConfig
from skywire.visor.echo import PingResult, RouteEcho, route_ping
from skywire.visor.hypervisor import Hypervisor, HypervisorClient, client_of, hypervisor_of
from skywire.visor.launcher import Launcher
from skywire.visor.logfile import LogFile
from skywire.visor.logserver import LOG_SERVER_PORT, logserver_app
from skywire.visor.metrics import visor_metrics
from skywire.visor.public import PublicVisor, start_public
from skywire.visor.rpc import RPCServer, split_addr
from skywire.visor.uptime import UptimeReporter, uptime_reporter
from skywire.visor.web import VisorWeb
from skywire.wire.pq import PQPolicy, default_policy, set_default_policy
from skywire.wire.pq import stats as pq_stats

log = logging.getLogger(__name__)

_DMSG_PORTS = {7: "dmsgctrl", 22: "dmsgpty", 46: "hypervisor", 47: "transport setup",
               80: "log server", 136: "route setup (from the setup node)"}  # fmt: skip
_ROUTE_PORTS = {1: "skychat", 3: "skysocks", 7: "route echo", 13: "skysocks-client",
                43: "vpn-client", 44: "vpn-server", 80: "published service"}  # fmt: skip


class Visor:
    """One Skywire node."""

    def __init__(
        self,
        cfg: VisorConfig,
        *,
        registry: Registry | None = None,
        extra_networks: list[Network] | None = None,
        rpc: bool = True,
        latency_interval: float = 10.0,
        ar_udp: tuple[str, int] | None = None,
        log_file: bool = False,
        apps: bool = False,
        config_path: str | Path | None = None,
        autoconnect: AutoconnectConfig | None = None,
    ) -> None:
        """``log_file``: also write the process's log to ``<local_path>/log/skywire.log``
        (what ``skywire visor`` does; in-process visors of tests and testnets share a log).
        ``apps``: run the app server and launch the config's apps (each its own process).
        ``config_path``: where the config was read from (app autostart changes go there)."""
        self.cfg = cfg
        self.sk = cfg.sk
        self.pk: PubKey = cfg.pk
        self._registry = registry
        self._extra_networks = extra_networks or []
        self._rpc_enabled = rpc
        self._latency_interval = latency_interval
        self._ar_udp = ar_udp
        self.ar: ARClient | None = None
        self.router: Router | None = None
        self._rf: RFClient | None = None
        self.started = time.time()
        self.dmsg: Client | None = None
        self.tm: TransportManager | None = None
        self.rpc: RPCServer | None = None
        self.web: VisorWeb | None = None
        self._disc: DiscClient | None = None
        self.log_file = LogFile(cfg.local_path) if log_file else None
        self._apps_enabled = apps
        self.config_path = Path(config_path) if config_path is not None else None
        self.app_server: AppServer | None = None
        self._launcher: Launcher | None = None
        self.announcer: AppAnnouncer | None = None
        self.hypervisor: Hypervisor | None = None
        self.hypervisor_links: HypervisorClient | None = None
        self.halted = asyncio.Event()
        self.pty_host: PtyHost | None = None
        self.reload_requested = False  # set with halted: start again from config_path
        self.uptime: UptimeReporter | None = None  # heartbeats to uptime_tracker.addr
        self.autoconnect_config = autoconnect  # None: the config's (absent: upstream's)
        self.public_visor: PublicVisor | None = None  # is_public: listed in service discovery
        self.autoconnect: PublicAutoconnect | None = None  # transport.public_autoconnect
        # What start() brought up, closed in reverse by close().
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Visor:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.cfg
        st = self._stack
        if cfg.require_pq:  # process-wide, as upstream's environment switch
            set_default_policy(PQPolicy(offer=True, require=True))
        install_ring_handler()  # /debug/log
        if self.log_file is not None:
            self.log_file.open()
            st.callback(self.log_file.close)
        self._disc = await st.enter_async_context(DiscClient(cfg.dmsg.discovery))
        client = Client(self.sk, self._disc, min_sessions=cfg.dmsg.sessions_count)
        # the setup nodes must stay reachable while discovery is away
        client.entries.warm.update(cfg.routing.route_setup_nodes)
        self.dmsg = await st.enter_async_context(client)
        networks: list[Network] = [DmsgNetwork(self.dmsg), *self._extra_networks]
        if cfg.skywire_tcp.listening_address:
            host, _, port = cfg.skywire_tcp.listening_address.rpartition(":")
            networks.append(
                TCPNetwork(
                    self.sk,
                    "stcp",
                    host=host or "0.0.0.0",
                    port=int(port or 0),
                    resolve=static_table(cfg.skywire_tcp.pk_table),
                )
            )
        if cfg.transport.address_resolver:
            self.ar = await st.enter_async_context(
                ARClient(cfg.transport.address_resolver, self.sk, self._ar_udp)
            )
            host = "127.0.0.1" if _is_loopback_url(cfg.transport.address_resolver) else "0.0.0.0"
            # the local addresses, as upstream visors declare them (an upstream resolver
            # refuses a bind without them)
            local = ("127.0.0.1",) if host == "127.0.0.1" else local_addresses()
            networks.append(
                StcprNetwork(
                    self.sk, self.ar, host=host, port=cfg.transport.stcpr_port, addresses=local
                )
            )
            networks.append(
                SudphNetwork(
                    self.sk, self.ar, host=host, port=cfg.transport.sudph_port, addresses=local
                )
            )
        persistent = [(p.pk, p.type) for p in cfg.persistent_transports or []]
        self.tm = TransportManager(
            self.sk,
            networks,
            registry=self._registry,
            persistent=persistent,
            latency_interval=self._latency_interval,
        )
        await st.enter_async_context(self.tm)
        st.push_async_callback(self._deregister_transports)
        if cfg.routing.route_finder:
            self._rf = await st.enter_async_context(RFClient(cfg.routing.route_finder))
        self.router = Router(
            self.tm,
            self.dmsg,
            rf=self._rf,
            config=RouterConfig(
                setup_nodes=tuple(cfg.routing.route_setup_nodes),
                min_hops=max(cfg.routing.min_hops, 1),
            ),
        )
        await st.enter_async_context(self.router)
        await st.enter_async_context(RouteEcho(self.router))
        lookup = self._registry if isinstance(self._registry, TransportLookup) else None
        self.web = await st.enter_async_context(
            VisorWeb(cfg, self.dmsg, self.router, self.tm, lookup)
        )
        if self._rpc_enabled:
            self.rpc = await st.enter_async_context(RPCServer(self, cfg.cli_addr))
        await self._serve_log_server()
        await self._start_dmsgpty()
        if self._apps_enabled and cfg.launcher.apps:
            await self._start_apps()
        await self._start_hypervisor()
        await self._connect_hypervisors()
        await self._start_public()
        await self._start_uptime()
        log.info("visor %s up", self.pk)

    async def _start_apps(self) -> None:
        """The app server (apps reach routes and dmsg through it), then the launcher, which
        starts the auto-start apps; closed in reverse (every app stopped first)."""
        assert self.router is not None
        cfg = self.cfg
        host, port = split_addr(cfg.launcher.server_addr)
        announcer = await self._announcer()
        server = AppServer(
            self.router,
            self.dmsg,
            (host if host != "localhost" else "127.0.0.1", port),
            on_listen=announcer.listening if announcer is not None else None,
        )
        self.app_server = await self._stack.enter_async_context(server)
        self._launcher = await self._stack.enter_async_context(
            Launcher(
                cfg.launcher.apps,
                server=server,
                visor_pk=self.pk.hex(),
                local_path=cfg.local_path,
                bin_path=cfg.launcher.bin_path,
                extra_env=self._app_env,
            )
        )

    def _app_env(self, app: AppConfig) -> dict[str, str]:
        """What an app is told at its start (:mod:`skywire.visor.appenv`)."""
        peers = [s.peername for s in self.dmsg.sessions.values()] if self.dmsg else []
        streams = [tp.conn.stream for tp in self.tm.transports.values()] if self.tm else []
        return app_env(app, self.cfg, peers, streams)

    async def _announcer(self) -> AppAnnouncer | None:
        """Public skysocks / vpn-server apps listed in service discovery under this visor's
        key while they listen (none without a ``launcher.service_discovery`` URL)."""
        url = self.cfg.launcher.service_discovery
        if not url:
            return None
        sd = await self._stack.enter_async_context(SDClient(url, self.cfg.sk))

        def lookup(name: str) -> tuple[int, list[str]] | None:
            launcher = self._launcher
            if launcher is None:
                return None
            conf = next((a for a in launcher.apps() if a.name == name), None)
            return None if conf is None else (conf.port, conf.args)

        self.announcer = await self._stack.enter_async_context(
            AppAnnouncer(sd, self.pk, lookup, version=__version__)
        )
        return self.announcer

    async def _start_public(self) -> None:
        """``is_public``: listed in service discovery; ``transport.public_autoconnect``:
        transports kept to a few listed visors (:func:`~skywire.visor.public.start_public`)."""
        assert self.tm is not None
        self.public_visor, self.autoconnect = await start_public(
            self._stack, self.cfg, self.tm, self.autoconnect_config
        )

    @property
    def launcher(self) -> Launcher | None:
        return self._launcher

    def save_apps(self, apps: list[AppConfig]) -> None:
        self.cfg.launcher.apps = apps
        if self.config_path is not None:
            self.cfg.save(self.config_path)

    async def _serve_log_server(self) -> None:
        """dmsg port 80: health, node info and the log (hypervisors, the dmsgpty whitelist and
        the survey whitelist), ``/debug/*`` (the survey whitelist)."""
        assert self.dmsg is not None
        cfg = self.cfg
        app = logserver_app(
            info=self.info,
            log_file=self.log_file,
            readers=whitelist_gate(
                [*cfg.hypervisors, *cfg.dmsgpty.whitelist, *cfg.survey_whitelist]
            ),
            surveyors=whitelist_gate(cfg.survey_whitelist),
            started=self.started,
        )
        listener = await self.dmsg.listen(LOG_SERVER_PORT)
        await self._stack.enter_async_context(HTTPServer(app, listener))

    async def _start_dmsgpty(self) -> None:
        """The ``dmsgpty`` block: shells on its dmsg port for the whitelisted keys, and the
        local CLI socket (``skywire cli dmsgpty start <pk>`` reaches other visors through it).
        An empty ``cli_address`` serves no socket; a socket another process serves is left to
        it (logged)."""
        assert self.dmsg is not None
        block = self.cfg.dmsgpty
        # its hypervisors are let in too, as upstream's visor does: their dashboards' terminals
        whitelist = MemoryWhitelist([*block.whitelist, *self.cfg.hypervisors])
        host = PtyHost(self.dmsg, whitelist, port=block.dmsg_port)
        self.pty_host = await self._stack.enter_async_context(host)
        if block.cli_network != "unix" or not block.cli_address:
            return
        if await socket_in_use(block.cli_address):
            log.warning("dmsgpty: %s is served by another process: no CLI socket here",
                        block.cli_address)  # fmt: skip
            return
        await host.serve_cli(block.cli_address)

    async def _start_hypervisor(self) -> None:
        """The dashboard, when ``hypervisor.enabled`` (visors link to it on dmsg port 46)."""
        if self.cfg.hypervisor.enabled:
            assert self.dmsg is not None
            self.hypervisor = await self._stack.enter_async_context(hypervisor_of(self, self.dmsg))

    async def _connect_hypervisors(self) -> None:
        """Links to the hypervisors named in ``hypervisors``, kept open (redialed)."""
        assert self.dmsg is not None
        links = client_of(self, self.dmsg)
        if links is not None:
            self.hypervisor_links = await self._stack.enter_async_context(links)

    async def _start_uptime(self) -> None:
        """Signed heartbeats to ``uptime_tracker.addr`` while the visor runs (not awaited)."""
        reporter = uptime_reporter(self.cfg.uptime_tracker, self.sk, self.cfg.version)
        if reporter is not None:
            self.uptime = await self._stack.enter_async_context(reporter)

    async def close(self) -> None:
        """RPC, router, route finder client, this visor's entries in transport discovery,
        transports, resolver binds, dmsg: closed in the reverse order of their start."""
        await self._stack.aclose()

    async def _deregister_transports(self) -> None:
        if self._registry is None or self.tm is None:
            return
        for tp in list(self.tm.transports.values()):
            with contextlib.suppress(*REGISTRY_ERRORS):
                await self._registry.deregister(tp.id)

    async def ready(self, timeout: float = 10.0) -> None:
        """Wait until the dmsg sessions are up and the entry is published."""
        assert self.dmsg is not None
        await self.dmsg.ready(timeout)

    # ------------------------------------------------------------------ what the RPC serves
    def info(self) -> dict[str, Any]:
        assert self.dmsg is not None and self.tm is not None
        return {
            "pk": self.pk.hex(),
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "tasks": len(asyncio.all_tasks()),
            "dmsg_discovery": self.cfg.dmsg.discovery,
            "dmsg_servers": [pk.hex() for pk in self.dmsg.sessions],
            "transport_types": self.tm.transport_types(),
            "transports": len(self.tm.transports),
            "transport_discovery": self.cfg.transport.discovery,
            "address_resolver": self.cfg.transport.address_resolver,
            "route_finder": self.cfg.routing.route_finder,
            "route_setup_nodes": [pk.hex() for pk in self.cfg.routing.route_setup_nodes],
            "uptime_tracker": self.cfg.uptime_tracker.addr,
            "post_quantum": {
                "require": default_policy().require,
                "dmsg_sessions_hybrid": sum(s.noise.pq_active for s in self.dmsg.sessions.values()),
                "transports_hybrid": sum(t.post_quantum for t in self.tm.transports.values()),
                "handshakes_hybrid": pq_stats["hybrid"],
                "handshakes_classical": pq_stats["classical"],
                "handshakes_downgraded": pq_stats["downgraded"],
            },
        }

    def ports(self) -> list[dict[str, Any]]:
        """Every port this visor holds: TCP/UDP on this machine, dmsg and routing ports."""
        out: list[dict[str, Any]] = []

        def add(kind: str, port: object, what: str, addr: str = "") -> None:
            out.append({"kind": kind, "port": port, "what": what, "address": addr})

        if self.rpc is not None:
            add("tcp", self.rpc.port, "control API", self.cfg.cli_addr)
        if self.app_server is not None:
            add("tcp", self.app_server.address.rpartition(":")[2], "app server",
                self.app_server.address)  # fmt: skip
        if self.web is not None:
            for name, address in self.web_info().get("proxies", {}).items():
                add("tcp", str(address).rpartition(":")[2], f"{name} proxy", str(address))
        if self.tm is not None:
            for tp_type, net in sorted(self.tm.networks.items()):
                port = getattr(net, "port", None)
                if isinstance(port, int) and port:
                    add("udp" if tp_type == "sudph" else "tcp", port, f"{tp_type} transports")
        if self.dmsg is not None:
            for port in self.dmsg.listening_ports():
                add("dmsg", port, _DMSG_PORTS.get(port, "listener"))
        if self.router is not None:
            for port in self.router.listening_ports():
                add("skynet", port, _ROUTE_PORTS.get(port, "listener"))
        return out

    async def dmsg_ping(self, pk: PubKey, count: int) -> list[float]:
        assert self.dmsg is not None
        return await self.dmsg.ping(pk, count)

    def reload(self) -> bool:
        """Ask whoever runs this visor to close it and start it again from its file."""
        if self.config_path is None:
            return False
        log.info("visor %s: reload requested over the control API", self.pk)
        self.reload_requested = True
        self.halted.set()
        return True

    def save_rule(self, rule: Rule) -> None:
        assert self.router is not None
        self.router.table.save_rule(rule, time.monotonic())

    def remove_rule(self, key: int) -> bool:
        assert self.router is not None
        if not any(r.key_route_id == key for r in self.router.table.all_rules(time.monotonic())):
            return False
        self.router.table.del_rules([key])
        return True

    def halt(self) -> None:
        """Ask whoever runs this visor to stop it (``skywire visor`` waits on :attr:`halted`)."""
        log.info("visor %s: halt requested over the control API", self.pk)
        self.halted.set()

    def metrics(self) -> MetricsRegistry:
        assert self.tm is not None and self.router is not None and self.dmsg is not None
        return visor_metrics(self.tm, self.router, self.dmsg, started=self.started)

    def transports(self) -> list[ManagedTransport]:
        assert self.tm is not None
        return list(self.tm.transports.values())

    def web_info(self) -> dict[str, Any]:
        assert self.web is not None
        return self.web.info()

    async def publish(self, port: int, address: str) -> None:
        assert self.web is not None
        await self.web.publish(port, address)

    async def unpublish(self, port: int) -> bool:
        assert self.web is not None
        return await self.web.unpublish(port)

    async def route_address(self, pks: list[PubKey], tp_type: str | None) -> dict[str, Any]:
        assert self.web is not None and self.tm is not None
        hops, name = await route_address(
            pks, self.pk, self.tm, self.web.skynet_connector.lookup, tp_type=tp_type
        )
        return {
            "address": name,
            "starts_here": bool(pks) and pks[0] == self.pk,
            "hops": [
                {
                    "src": h.src.hex(),
                    "dst": h.dst.hex(),
                    "tp_id": str(h.tp_id),
                    "type": h.type,
                    "exists": h.exists,
                    "note": h.note,
                }
                for h in hops
            ],
        }

    def transport_types(self) -> list[str]:
        assert self.tm is not None
        return self.tm.transport_types()

    def rules(self) -> list[dict[str, Any]]:
        if self.router is None:
            return []
        rows = []
        for rule in self.router.table.all_rules(time.monotonic()):
            summary = rule.summary()
            summary["key"] = rule.key_route_id
            rows.append(summary)
        return rows

    def route_groups(self) -> list[dict[str, Any]]:
        if self.router is None:
            return []
        return [
            {
                "remote_pk": rg.remote_pk.hex(),
                "encrypted": rg.encrypted,
                "latency_ms": rg.latency_ms,
                "hops": len(rg.route.forward) if rg.route is not None else None,
            }
            for rg in self.router.route_groups
        ]

    async def ping(
        self,
        pk: PubKey,
        *,
        via: Sequence[PubKey] = (),
        min_hops: int | None = None,
        max_hops: int | None = None,
        count: int = 1,
        size: int = 32,
        interval: float = 0.0,
    ) -> PingResult:
        """``cli route ping``: a new route to ``pk``'s echo (through ``via``, when named)."""
        assert self.router is not None and self.tm is not None and self.web is not None
        forward: list[Hop] = []
        if via:
            forward = await source_route(
                self.pk, list(via), pk, self.tm, self.web.skynet_connector.lookup
            )
        return await route_ping(
            self.router,
            pk,
            forward=forward,
            reverse=reverse_of(forward),
            min_hops=min_hops,
            max_hops=max_hops,
            count=count,
            size=size,
            interval=interval,
        )

    async def add_transport(self, pk: PubKey, tp_type: str) -> ManagedTransport:
        assert self.tm is not None
        return await self.tm.save_transport(pk, tp_type)

    async def remove_transport(self, tp_id: uuid.UUID) -> None:
        assert self.tm is not None
        await self.tm.delete_transport(tp_id)


def _is_loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


async def socket_in_use(path: str) -> bool:
    """Whether a process accepts connections on the Unix socket ``path``."""
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
