"""The main job's network as a deployment: every service, relay server, visor and the demo site
its own process, started in dependency order by one supervisor that prints each part's output
lines with its name in front and stops them all (SIGTERM, then SIGKILL) on the way out.

Parts: ``disc`` (dmsg discovery, SQLite), ``relay-0`` / ``relay-1``, ``tpd`` (SQLite), ``ar``,
``rf``, ``sd`` (service discovery, SQLite), ``ut`` (uptime tracker, SQLite; every visor sends it
heartbeats), ``sn`` (route setup node), ``site`` (the demo site and the file, over dmsg and on
local TCP) and ``visor-0`` … ``visor-3``. Their keys come from the network's key book, so a
second run is the same network; logs go to ``<dir>/logs/``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skywire.cipher import PubKey
from skywire.dmsg.server import ServerConfig
from skywire.testnet.appdemo import AppPlan
from skywire.testnet.keys import KeyBook
from skywire.testnet.parts import Part, free_port, wait_disc_entry, wait_visor
from skywire.visor.config import VisorConfig

__all__ = ["Deployment", "Ports"]

VISORS = 4
PUBLIC = (1, 2, 3)
"""The visors listed as public (visor 0, the one with the proxies, stays private)."""


@dataclass
class Ports:
    """Where each part listens: the well-known testnet ports, or free ones."""

    disc: int
    tpd: int
    rf: int
    ar: int
    sd: int
    ut: int
    relays: list[int]
    relay_health: list[int]
    visors: list[int]
    dmsg_web: int
    skynet_web: int
    site: int = field(default_factory=free_port)
    newcomer: int = field(default_factory=free_port)

    @classmethod
    def fixed(cls, disc: int = 9090) -> Ports:
        return cls(
            disc=disc,
            tpd=9091,
            rf=9092,
            ar=9093,
            sd=9094,
            ut=9095,
            relays=[9081, 9082],
            relay_health=[9181, 9182],
            visors=[3436, 3437, 3438, 3439],
            dmsg_web=4445,
            skynet_web=4446,
        )

    @classmethod
    def free(cls) -> Ports:
        return cls(
            disc=free_port(),
            tpd=free_port(),
            rf=free_port(),
            ar=free_port(),
            sd=free_port(),
            ut=free_port(),
            relays=[free_port(), free_port()],
            relay_health=[free_port(), free_port()],
            visors=[free_port() for _ in range(VISORS)],
            dmsg_web=free_port(),
            skynet_web=free_port(),
        )

    def all(self) -> list[int]:
        return [
            self.disc, self.tpd, self.rf, self.ar, self.sd, self.ut, *self.relays,
            *self.relay_health, *self.visors, self.dmsg_web, self.skynet_web,
        ]  # fmt: skip


class Deployment:
    """``async with Deployment(dir, keys, ports, apps, www=…) as net:`` starts every part (see
    the module docstring); ``say`` gets a line per part as it comes up, ``on_line`` every
    output line of every part."""

    def __init__(
        self,
        data_dir: Path,
        keys: KeyBook,
        ports: Ports,
        apps: AppPlan,
        *,
        www: Path,
        say: Callable[[str], None] = print,
        on_line: Callable[[str, str], None] | None = None,
        log_level: str = "info",
    ) -> None:
        self.dir = data_dir
        self.keys = keys
        self.ports = ports
        self.apps = apps
        self.www = www
        self.say = say
        self.on_line = on_line
        self.log_level = log_level
        self.parts: dict[str, Part] = {}

    # ---------------------------------------------------------------- addresses
    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    @property
    def disc_url(self) -> str:
        return self.url(self.ports.disc)

    @property
    def sd_url(self) -> str:
        return self.url(self.ports.sd)

    @property
    def ut_url(self) -> str:
        return self.url(self.ports.ut)

    def rpc_addr(self, i: int) -> str:
        return f"127.0.0.1:{self.ports.visors[i]}"

    def visor_pk(self, i: int) -> PubKey:
        return self.keys.get(f"visor-{i}").pubkey()

    @property
    def site_pk(self) -> PubKey:
        return self.keys.get("file-server").pubkey()

    @property
    def setup_pk(self) -> PubKey:
        return self.keys.get("setup-node").pubkey()

    def relay_pk(self, k: int) -> PubKey:
        return self.keys.get(f"dmsg-server-{k}").pubkey()

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Deployment:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _part(
        self,
        name: str,
        port: int | None,
        *args: str,
        env: dict[str, str] | None = None,
        module: str = "skywire.cli",
    ) -> Part:
        argv = [sys.executable, "-m", module, *args]
        log = self.dir / "logs" / f"{name}.log"
        part = Part(name, argv, port, log, env or {}, on_line=self.on_line)
        self.parts[name] = part
        return part

    def _plan(self) -> None:
        p, d, lvl = self.ports, self.dir, self.log_level
        self._part(
            "disc", p.disc, "dmsg", "disc", "--addr", f"127.0.0.1:{p.disc}",
            "--db", str(d / "dmsg-discovery.db"), "--test-mode", "--log-level", lvl,
        )  # fmt: skip
        for k, (port, health) in enumerate(zip(p.relays, p.relay_health, strict=True)):
            sk = self.keys.get(f"dmsg-server-{k}")
            relay = ServerConfig(
                public_key=sk.pubkey(),
                secret_key=sk,
                discovery=self.disc_url,
                public_address=f"127.0.0.1:{port}",
                local_address=f"127.0.0.1:{port}",
                health_endpoint_address=f"127.0.0.1:{health}",
                log_level=lvl,
            )
            path = d / f"relay-{k}.json"
            path.write_text(relay.to_json())
            path.chmod(0o600)
            self._part(f"relay-{k}", port, "dmsg", "server", "start", str(path), "--limit-ip", "0")
        self._part(
            "tpd", p.tpd, "svc", "tpd", "--addr", f"127.0.0.1:{p.tpd}",
            "--db", str(d / "transport-discovery.db"), "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "ar", p.ar, "svc", "ar", "--addr", f"127.0.0.1:{p.ar}", "--test-mode",
            "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "sd", p.sd, "svc", "sd", "--addr", f"127.0.0.1:{p.sd}",
            "--db", str(d / "service-discovery.db"), "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "ut", p.ut, "svc", "ut", "--addr", f"127.0.0.1:{p.ut}",
            "--db", str(d / "uptime-tracker.db"), "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "rf", p.rf, "svc", "rf", "--tpd", self.url(p.tpd), "--addr", f"127.0.0.1:{p.rf}",
            "--refresh", "1", "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "sn", None, "svc", "sn", "--dmsg-disc", self.disc_url, "--sessions", "2",
            "--log-level", lvl, env={"SKYWIRE_SK": self.keys.get("setup-node").hex()},
        )  # fmt: skip
        self._part(
            "site", p.site, "--www", str(self.www), "--disc", self.disc_url,
            "--tcp-port", str(p.site), "--log-level", "warning",
            env={"SKYWIRE_SK": self.keys.get("file-server").hex()}, module="skywire.testnet.site",
        )  # fmt: skip
        for i in range(VISORS):
            path = d / f"visor-{i}.json"
            path.write_text(self.visor_config(i).to_json())
            path.chmod(0o600)
            self._part(f"visor-{i}", p.visors[i], "visor", "-c", str(path), "--log-level", lvl)

    def joining_config(self, cli_port: int = 3435) -> VisorConfig:
        """The configuration of one more visor, run by hand, that joins this network: no
        configured transports; it makes its own to the public visors (autoconnect)."""
        cfg = self._base_config("visor-joining", self.dir / "visor", f"127.0.0.1:{cli_port}")
        cfg.launcher.apps = []
        cfg.transport.public_autoconnect = True
        return cfg

    async def start_newcomer(self) -> str:
        """Visor 4: no transports configured, autoconnect on; its control address."""
        port = self.ports.newcomer
        cfg = self._base_config("visor-4", self.dir / "visor-4", f"127.0.0.1:{port}")
        cfg.launcher.apps = []
        cfg.transport.public_autoconnect = True
        path = self.dir / "visor-4.json"
        path.write_text(cfg.to_json())
        path.chmod(0o600)
        self._part("visor-4", port, "visor", "-c", str(path), "--log-level", self.log_level)
        await self._up("visor-4")
        await wait_visor(f"127.0.0.1:{port}", self.parts["visor-4"])
        return f"127.0.0.1:{port}"

    def visor_config(self, i: int) -> VisorConfig:
        """Visor ``i``'s configuration: this network's services, its apps, visor 0 with the
        resolving proxies."""
        p = self.ports
        cfg = self._base_config(f"visor-{i}", self.dir / f"visor-{i}", self.rpc_addr(i))
        self.apps.configure(i, cfg, self.visor_pk(2))
        cfg.is_public = i in PUBLIC  # listed in service discovery, for visors that autoconnect
        if i == 0:  # the first visor runs both resolving proxies
            cfg.dmsg_web.enabled = cfg.skynet_web.enabled = True
            cfg.dmsg_web.listen = f"127.0.0.1:{p.dmsg_web}"
            cfg.skynet_web.listen = f"127.0.0.1:{p.skynet_web}"
        return cfg

    def _base_config(self, key: str, local: Path, cli_addr: str) -> VisorConfig:
        p = self.ports
        cfg = VisorConfig.generate(
            sk=self.keys.get(key),
            dmsg_discovery=self.disc_url,
            tpd=self.url(p.tpd),
            ar=self.url(p.ar),
            rf=self.url(p.rf),
            setup_nodes=[self.setup_pk],
            local_path=str(local),
            cli_addr=cli_addr,
        )
        cfg.dmsg.sessions_count = 2
        cfg.skywire_tcp.listening_address = ""
        cfg.transport.public_autoconnect = False
        cfg.launcher.service_discovery = self.sd_url
        cfg.uptime_tracker.addr = self.ut_url
        cfg.launcher.server_addr = "127.0.0.1:0"
        # shells for visor 0's key; each visor its own local socket
        cfg.dmsgpty.whitelist = [self.visor_pk(0)]
        cfg.dmsgpty.cli_address = str(local / "dmsgpty.sock")
        return cfg

    async def start(self) -> None:
        """The dmsg layer, then the rest (:meth:`start_dmsg`, :meth:`start_skywire`)."""
        await self.start_dmsg()
        await self.start_skywire()

    async def start_dmsg(self) -> None:
        """Discovery, then the relay servers, then the site (once its dmsg entry is up)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._plan()
        await self._up("disc")
        await asyncio.gather(self._up("relay-0"), self._up("relay-1"))
        await self._up("site", dmsg=self.site_pk)

    async def start_skywire(self) -> None:
        """Each part once the ones it needs answer: the services; the route finder; the setup
        node (once its dmsg entry is up); the visors, until each has its dmsg sessions."""
        await asyncio.gather(*(self._up(n) for n in ("tpd", "ar", "sd", "ut")))
        await self._up("rf")
        await self._up("sn", dmsg=self.setup_pk)
        await asyncio.gather(*(self._up(f"visor-{i}") for i in range(VISORS)))
        await asyncio.gather(
            *(wait_visor(self.rpc_addr(i), self.parts[f"visor-{i}"]) for i in range(VISORS))
        )

    async def _up(self, name: str, dmsg: PubKey | None = None) -> None:
        part = self.parts[name]
        since = time.time_ns()
        await part.start()
        if dmsg is not None:
            await wait_disc_entry(self.disc_url, dmsg.hex(), part, since)
        assert part.proc is not None
        self.say(f"  {name:<8} up, pid {part.proc.pid}")

    async def close(self) -> None:
        """Visors first (they stop their apps), then everything else."""
        visors = [p for n, p in self.parts.items() if n.startswith("visor-")]
        await asyncio.gather(*(p.stop() for p in visors), return_exceptions=True)
        rest = [p for n, p in self.parts.items() if not n.startswith("visor-")]
        await asyncio.gather(*(p.stop() for p in rest), return_exceptions=True)
