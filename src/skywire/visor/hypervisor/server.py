"""The hypervisor as one component, and how a visor takes its part.

``async with Hypervisor(...)`` opens the accounts database, listens for visors on dmsg port 46
(:class:`~.link.LinkServer`), and serves the dashboard on ``hypervisor.http_addr`` (TLS when
``enable_tls``: the cookie is then ``Secure``), terminals included (:mod:`.terminal_aio`: the
dashboard's own visor's shell runs on ``own_pty()``, any other's is dialed over dmsg); leaving
it closes all of it in reverse.
:func:`hypervisor_of` builds one for a visor whose ``hypervisor.enabled`` is set, and
:func:`client_of` the links of a visor that names hypervisors in ``hypervisors``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from aiohttp import web

from skywire.cipher import PubKey
from skywire.dmsg.pty import LocalPty, PtyHost, PtyHostConfig
from skywire.visor.config import HypervisorConfig, VisorConfig, parse_duration
from skywire.visor.hypervisor.api import DashboardConfig, dashboard_app
from skywire.visor.hypervisor.api_visors import VisorProxy
from skywire.visor.hypervisor.auth import SessionStore
from skywire.visor.hypervisor.control import ManagedVisor, control_app
from skywire.visor.hypervisor.link import DmsgLike, HypervisorClient, LinkServer
from skywire.visor.hypervisor.terminal_aio import ClosablePty, PtyOpener, Terminals
from skywire.visor.hypervisor.users import DEFAULT_USER, UserDB

__all__ = ["Hypervisor", "client_of", "hypervisor_of", "parse_http_addr"]

log = logging.getLogger(__name__)


def parse_http_addr(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:8000"`` → ``("127.0.0.1", 8000)``; upstream's ``":8000"`` is every
    interface."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid hypervisor http_addr {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Hypervisor:
    """The dashboard and the visors' links; :attr:`url` once started."""

    def __init__(
        self,
        config: HypervisorConfig,
        *,
        pk: PubKey,
        dmsg: DmsgLike,
        own_app: web.Application,
        db_path: str | Path,
        own_pty: Callable[[], ClosablePty] = LocalPty,
    ) -> None:
        self.config = config
        self.pk = pk
        self._dmsg = dmsg
        self._own_app = own_app
        self.db_path = Path(db_path) if str(db_path) != ":memory:" else db_path
        self.host, self.port = parse_http_addr(config.http_addr)
        self.links: LinkServer | None = None
        self.users: UserDB | None = None
        self.terminals = Terminals(PtyOpener(pk, dmsg.dial, own_pty))
        self._stack = contextlib.AsyncExitStack()

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.config.enable_tls else "http"
        return f"{scheme}://{host}:{self.port}"

    async def __aenter__(self) -> Self:
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

    async def close(self) -> None:
        await self._stack.aclose()

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.config.enable_tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert_file, self.config.tls_key_file)
        return context

    async def _start(self) -> None:
        st = self._stack
        cfg = self.config
        tls = self._ssl()  # a bad certificate stops the start, before anything listens
        self.users = await st.enter_async_context(UserDB(self.db_path))
        if cfg.password:
            await self.users.set_password(DEFAULT_USER, cfg.password)
        self.links = await st.enter_async_context(
            LinkServer(self._dmsg, self.pk, self._own_app, port=cfg.dmsg_port)
        )
        proxy = VisorProxy(self.links)
        st.push_async_callback(proxy.aclose)
        app = dashboard_app(
            DashboardConfig(
                pk=self.pk,
                cookie_path=cfg.cookies.path,
                cookie_domain=cfg.cookies.domain,
                secure_cookie=cfg.enable_tls,
            ),
            users=self.users,
            proxy=proxy,
            sessions=SessionStore(parse_duration(cfg.cookies.expires_duration)),
            terminals=self.terminals,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        st.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, self.host, self.port, ssl_context=tls)
        await site.start()
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info("hypervisor dashboard on %s", self.url)


class HostVisor(ManagedVisor, Protocol):
    """A visor as :func:`hypervisor_of` and :func:`client_of` need it."""

    @property
    def cfg(self) -> VisorConfig: ...

    @property
    def pk(self) -> PubKey: ...

    @property
    def pty_host(self) -> PtyHost | None: ...


def hypervisor_of(visor: HostVisor, dmsg: DmsgLike) -> Hypervisor:
    cfg = visor.cfg
    db_path = cfg.hypervisor.db_path or str(Path(cfg.local_path) / "users.db")

    def own_pty() -> LocalPty:
        """A shell as the visor's dmsgpty host would start it."""
        host = visor.pty_host
        pty_cfg = host.config if host is not None else PtyHostConfig()
        return LocalPty(shell=pty_cfg.shell, env=pty_cfg.env, kill_grace=pty_cfg.kill_grace)

    return Hypervisor(
        cfg.hypervisor,
        pk=visor.pk,
        dmsg=dmsg,
        own_app=control_app(visor),
        db_path=db_path,
        own_pty=own_pty,
    )


def client_of(visor: HostVisor, dmsg: DmsgLike) -> HypervisorClient | None:
    """The links to the hypervisors ``visor`` names (itself left out), or None."""
    wanted = [pk for pk in visor.cfg.hypervisors if pk != visor.pk]
    if not wanted:
        return None
    return HypervisorClient(dmsg.dial, wanted, control_app(visor))
