"""A whole network on loopback where every part is its own process: dmsg discovery, relay
servers, transport discovery, address resolver, route finder, service discovery, setup node
and visors, each started with its ``skywire`` command. A part can be killed (``SIGKILL``, as a
crash) and started again from the same configuration and key; that is what the churn tests and
the soak use.

Ports are fixed from ``base_port`` (discovery at ``base_port``, services at ``base_port + 1`` to
``+ 4``: tpd, rf, ar, sd; relay servers from ``base_port + 10``, visor control APIs from
``base_port + 40``) so that a restarted part comes back where its peers expect it. Every part
logs to ``<data_dir>/<name>.log``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.server import ServerConfig
from skywire.testnet.parts import Part, PartError, wait_disc_entry, wait_visor
from skywire.visor.config import PersistentTransport, VisorConfig

__all__ = ["Part", "PartError", "ProcessNetwork"]


class ProcessNetwork:
    """``async with ProcessNetwork(dir, relays=3, visors=8, links=[(0, 1, "stcpr"), …])``.

    ``links`` are persistent transports ``(i, j, type)`` between visors ``i`` and ``j`` (kept
    up by both, so they come back when either restarts). Parts are named ``disc``, ``tpd``,
    ``ar``, ``rf``, ``sd``, ``sn``, ``relay-<k>`` and ``visor-<i>``. Every visor's
    ``launcher.service_discovery`` is ``sd`` (it is listed there with ``is_public``, and
    ``transport.public_autoconnect`` finds public visors there: both off unless ``configure``
    turns them on).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        relays: int = 2,
        visors: int = 3,
        links: Sequence[tuple[int, int, str]] = (),
        base_port: int = 19090,
        sessions: int = 2,
        rf_refresh: float = 1.0,
        log_level: str = "info",
        configure: Callable[[int, VisorConfig], None] | None = None,
    ) -> None:
        self.dir = data_dir
        self.base = base_port
        self.n_relays = relays
        self.n_visors = visors
        self.links = list(links)
        self.sessions = min(sessions, relays)
        self.rf_refresh = rf_refresh
        self.log_level = log_level
        self.configure = configure
        self.parts: dict[str, Part] = {}
        self.visor_keys: list[SecKey] = []
        self.setup_key = SecKey.generate()

    # ---------------------------------------------------------------- addresses
    @property
    def disc_url(self) -> str:
        return f"http://127.0.0.1:{self.base}"

    @property
    def tpd_url(self) -> str:
        return f"http://127.0.0.1:{self.base + 1}"

    @property
    def rf_url(self) -> str:
        return f"http://127.0.0.1:{self.base + 2}"

    @property
    def ar_url(self) -> str:
        return f"http://127.0.0.1:{self.base + 3}"

    @property
    def sd_url(self) -> str:
        return f"http://127.0.0.1:{self.base + 4}"

    def relay_port(self, k: int) -> int:
        return self.base + 10 + 2 * k  # the health endpoint listens one above

    def rpc_addr(self, i: int) -> str:
        return f"127.0.0.1:{self.base + 40 + i}"

    def visor_pk(self, i: int) -> PubKey:
        return self.visor_keys[i].pubkey()

    @property
    def setup_pk(self) -> PubKey:
        return self.setup_key.pubkey()

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> ProcessNetwork:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "skywire.cli", *args]

    def _part(
        self, name: str, port: int | None, *args: str, env: dict[str, str] | None = None
    ) -> Part:
        part = Part(name, self._cmd(*args), port, self.dir / f"{name}.log", env or {})
        self.parts[name] = part
        return part

    def _plan(self) -> None:
        d, lvl = self.dir, self.log_level
        self._part(
            "disc", self.base, "dmsg", "disc", "--addr", f"127.0.0.1:{self.base}",
            "--db", str(d / "dmsg-discovery.db"), "--test-mode", "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "tpd", self.base + 1, "svc", "tpd", "--addr", f"127.0.0.1:{self.base + 1}",
            "--db", str(d / "transport-discovery.db"), "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "ar", self.base + 3, "svc", "ar", "--addr", f"127.0.0.1:{self.base + 3}",
            "--test-mode", "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "sd", self.base + 4, "svc", "sd", "--addr", f"127.0.0.1:{self.base + 4}",
            "--db", str(d / "service-discovery.db"), "--log-level", lvl,
        )  # fmt: skip
        self._part(
            "rf", self.base + 2, "svc", "rf", "--tpd", self.tpd_url,
            "--addr", f"127.0.0.1:{self.base + 2}", "--refresh", str(self.rf_refresh),
            "--log-level", lvl,
        )  # fmt: skip
        for k in range(self.n_relays):
            port = self.relay_port(k)
            relay = ServerConfig.generate(
                discovery=self.disc_url,
                public_address=f"127.0.0.1:{port}",
                local_address=f"127.0.0.1:{port}",
                health_endpoint_address=f"127.0.0.1:{port + 1}",
                log_level=lvl,
            )
            path = d / f"relay-{k}.json"
            path.write_text(relay.to_json())
            self._part(f"relay-{k}", port, "dmsg", "server", "start", str(path), "--limit-ip", "0")
        self.visor_keys = [SecKey.generate() for _ in range(self.n_visors)]
        # the setup node has no port of its own: its dmsg sessions are awaited instead
        self._part(
            "sn", None, "svc", "sn", "--dmsg-disc", self.disc_url,
            "--sessions", str(self.sessions), "--log-level", lvl,
            env={"SKYWIRE_SK": self.setup_key.hex()},
        )  # fmt: skip
        for i, sk in enumerate(self.visor_keys):
            cfg = VisorConfig.generate(
                sk=sk,
                dmsg_discovery=self.disc_url,
                tpd=self.tpd_url,
                ar=self.ar_url,
                rf=self.rf_url,
                setup_nodes=[self.setup_pk],
                local_path=str(d / f"visor-{i}"),
                cli_addr=self.rpc_addr(i),
            )
            cfg.dmsg.sessions_count = self.sessions
            cfg.launcher.service_discovery = self.sd_url
            cfg.launcher.apps = []  # no default apps (eight skychat pages would share :8001)
            cfg.dmsgpty.cli_address = str(d / f"visor-{i}" / "dmsgpty.sock")
            cfg.skywire_tcp.listening_address = ""
            cfg.transport.public_autoconnect = False
            peers = [(j if i == a else a, t) for a, j, t in self.links if i in (a, j)]
            cfg.persistent_transports = [
                PersistentTransport(pk=self.visor_keys[p].pubkey(), type=t) for p, t in peers
            ] or None
            if self.configure is not None:
                self.configure(i, cfg)
            path = d / f"visor-{i}.json"
            path.write_text(cfg.to_json())
            port = int(self.rpc_addr(i).rpartition(":")[2])
            self._part(f"visor-{i}", port, "visor", "-c", str(path), "--log-level", lvl)

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._plan()
        await self.parts["disc"].start()
        await asyncio.gather(
            self.parts["tpd"].start(),
            self.parts["ar"].start(),
            self.parts["sd"].start(),
            *(self.parts[f"relay-{k}"].start() for k in range(self.n_relays)),
        )
        await self.parts["rf"].start()
        await self._start_setup_node()
        await asyncio.gather(*(self.parts[f"visor-{i}"].start() for i in range(self.n_visors)))
        await asyncio.gather(*(self.visor_ready(i) for i in range(self.n_visors)))

    async def _start_setup_node(self) -> None:
        part = self.parts["sn"]
        since = time.time_ns()
        await part.start()
        # no TCP port: the setup node is up once its entry lists a relay server
        await wait_disc_entry(self.disc_url, self.setup_pk.hex(), part, since)

    async def visor_ready(self, i: int, *, transports: int = 0) -> dict[str, object]:
        """Wait until visor ``i`` has its dmsg sessions and at least ``transports``
        transports up; its ``visor info``."""
        return await wait_visor(self.rpc_addr(i), self.parts[f"visor-{i}"], transports=transports)

    async def kill(self, name: str) -> None:
        await self.parts[name].kill()

    async def restart(self, name: str) -> None:
        """Start a part again (after :meth:`kill`), from the same configuration and key."""
        if name == "sn":
            await self._start_setup_node()
        else:
            await self.parts[name].start()

    async def close(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.parts.values()), return_exceptions=True)

    def write_manifest(self) -> Path:
        """``network.json``: every part's address and key, for tools pointed at the network."""
        doc = {
            "dmsg_discovery": self.disc_url,
            "tpd": self.tpd_url,
            "ar": self.ar_url,
            "rf": self.rf_url,
            "sd": self.sd_url,
            "setup_node": self.setup_pk.hex(),
            "visors": [
                {"pk": self.visor_pk(i).hex(), "rpc": self.rpc_addr(i)}
                for i in range(self.n_visors)
            ],
        }
        path = self.dir / "network.json"
        path.write_text(json.dumps(doc, indent=2))
        return path
