"""vpn-server: each route to routing port 44 is one client, with its own TUN device.

``async with VpnServer(app, passcode="…") as server:`` — upstream ``internal/vpn/server.go``:

* on start, the host is made a NAT router: IPv4 forwarding on, the iptables FORWARD policy
  ACCEPT, ``iptables -t nat -A POSTROUTING -o <default interface> -j MASQUERADE`` (the old
  values are written to the state file first, see :mod:`~skywire.apps.vpn.state`); on close
  all three go back, also at the next start after a crash;
* per route: the client hello (within ``hello_timeout``), the answer of
  :func:`~skywire.apps.vpn.ipgen.answer_hello` (a refusal is sent and the route closed), then
  a TUN with the server's address of the client's /29, and packets both ways until the route
  or the TUN ends; the TUN (and its routes) goes with the route.

Left out of upstream: IPv6 forwarding, the ``secure`` option (blocking clients from the
server's local networks) and the choice of interface among several default routes (here
``network_interface`` or the first default route's device).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from skywire.apps.vpn import system
from skywire.apps.vpn.errors import HandshakeStatus, HelloError, SystemConfigError
from skywire.apps.vpn.ipgen import IPGenerator, answer_hello
from skywire.apps.vpn.protocol import TUN_MTU, TUN_NETMASK_BITS, ServerHello
from skywire.apps.vpn.pump import PumpStats, pump, read_hello
from skywire.apps.vpn.state import ServerState, StateFile
from skywire.apps.vpn.tun import TunDevice
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import ByteStream, Listener
from skywire.wire.tasks import TaskTree, serve_each

__all__ = ["SERVER_PORT", "RouteListening", "ServerStats", "VpnServer"]

log = logging.getLogger(__name__)

SERVER_PORT = 44
STREAM_ERRORS = (ConnectionError, OSError, TimeoutError)


class RouteListening(Protocol):
    async def listen(self, port: int) -> Listener: ...


@dataclass
class ServerStats:
    routes: int = 0
    refused: int = 0
    serving: int = 0
    pumped: PumpStats | None = None


async def undo_server(state: ServerState) -> None:
    """Put back what a :class:`ServerState` recorded (stop, or the start after a crash)."""
    if state.masquerade_device is not None:
        await system.masquerade(state.masquerade_device, on=False)
    if state.forward_policy is not None:
        with contextlib.suppress(SystemConfigError):
            await system.set_forward_policy(state.forward_policy)
    if state.ip_forward is not None:
        with contextlib.suppress(SystemConfigError):
            await system.set_ipv4_forwarding(state.ip_forward)


class VpnServer(Lifecycle):
    def __init__(
        self,
        router: RouteListening,
        *,
        passcode: str = "",
        port: int = SERVER_PORT,
        state_file: str | Path = "/run/skywire/vpn-server.json",
        network_interface: str = "",
        hello_timeout: float = 5.0,
    ) -> None:
        if hello_timeout <= 0:
            raise ValueError("hello_timeout must be positive")
        self.router = router
        self.passcode = passcode
        self.port = port
        self.state = StateFile(state_file)
        self.network_interface = network_interface
        self.hello_timeout = hello_timeout
        self.ipgen = IPGenerator()
        self.stats = ServerStats(pumped=PumpStats())
        self.device = ""
        self._saved: ServerState | None = None
        self._listener: Listener | None = None
        self._tasks = TaskTree(f"vpn-server-{port}", log)

    async def start(self) -> None:
        if self._listener is not None:
            return
        if self.state.exists():
            log.warning("vpn-server: undoing the changes of a run that did not stop cleanly")
            await undo_server(self.state.load_server())
            self.state.remove()
        try:
            await self._nat_on()
            await self._tasks.start()
            self._listener = await self.router.listen(self.port)
        except BaseException:
            await self.close()
            raise
        self._tasks.spawn(self._accept(self._listener), f"vpn-server-port-{self.port}")
        log.info("vpn-server on routing port %d, NAT out of %s", self.port, self.device)

    async def _nat_on(self) -> None:
        device = self.network_interface
        if not device:
            route = await system.default_route()
            if route is None:
                raise SystemConfigError(None, "no default route: name the network interface")
            device = route.device
        self.device = device
        saved = ServerState(
            ip_forward=await system.ipv4_forwarding(),
            forward_policy=await system.forward_policy(),
            masquerade_device=device,
        )
        self.state.save(saved)
        self._saved = saved
        await system.set_ipv4_forwarding("1")
        await system.set_forward_policy("ACCEPT")
        await system.masquerade(device, on=True)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*STREAM_ERRORS):
                await listener.close()
        await self._tasks.close()
        saved, self._saved = self._saved, None
        if saved is not None:
            await undo_server(saved)
            self.state.remove()

    async def _accept(self, listener: Listener) -> None:
        await serve_each(listener.accept, self._serve_route, what="vpn route", logger=log)

    async def _serve_route(self, conn: ByteStream) -> None:
        self.stats.routes += 1
        try:
            await self._serve(conn)
        finally:
            with contextlib.suppress(*STREAM_ERRORS):
                await conn.close()

    async def _serve(self, conn: ByteStream) -> None:
        try:
            hello, early = await read_hello(conn, self.hello_timeout)
        except HelloError as exc:
            log.info("vpn-server: bad client hello: %s", exc)
            await self._refuse(conn, ServerHello.refusal(HandshakeStatus.BAD_REQUEST))
            return
        except STREAM_ERRORS as exc:
            log.info("vpn-server: no client hello: %r", exc)
            return
        answer = answer_hello(hello, self.passcode, self.ipgen)
        if answer.hello.status is not HandshakeStatus.OK:
            await self._refuse(conn, answer.hello)
            return
        assert answer.server_ip is not None
        async with TunDevice() as tun:
            try:
                await system.set_up_tun(tun.name, answer.server_ip, TUN_NETMASK_BITS, TUN_MTU)
            except SystemConfigError as exc:
                log.error("vpn-server: TUN %s: %s", tun.name, exc)
                await self._refuse(conn, ServerHello.refusal(HandshakeStatus.INTERNAL_ERROR))
                return
            await conn.write(answer.hello.encode())
            log.info(
                "vpn-server: client %s on %s (server %s)",
                answer.hello.tun_ip,
                tun.name,
                answer.server_ip,
            )
            self.stats.serving += 1
            try:
                why = await pump(tun, conn, early, self.stats.pumped)
            finally:
                self.stats.serving -= 1
            log.info("vpn-server: client %s gone: %s", answer.hello.tun_ip, why)

    async def _refuse(self, conn: ByteStream, hello: ServerHello) -> None:
        self.stats.refused += 1
        log.info("vpn-server: refusing: status %d (%s)", hello.status, hello.status.describe())
        with contextlib.suppress(*STREAM_ERRORS):
            await conn.write(hello.encode())
