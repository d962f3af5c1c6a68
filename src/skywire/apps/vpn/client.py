"""vpn-client: all IPv4 traffic of the host through a TUN, over one route to a vpn-server.

``async with VpnClient(app, server_pk, passcode="…", exclude=[…]) as client:`` — upstream
``internal/vpn/client.go``:

1. Before anything changes, the main routing table and ``/etc/resolv.conf`` are written to the
   state file (:mod:`~skywire.apps.vpn.state`); a file left by a run that was killed is undone
   first. Each change is recorded before it is made; stop undoes them from the same record.
2. Direct routes: ``<ip>/32 via <default gateway>`` for each excluded address (the visor's own
   transports and dmsg servers, the app server, anything given), so they never enter the TUN.
   Upstream gets them from environment variables the visor sets; :func:`direct_ips_from_env`
   reads the same variables, and the caller adds what it knows (``--exclude``).
3. Route to the server's routing port 44, client hello (this host's IPv4 addresses and default
   gateway as ``unavailable_private_ips``, the passcode), server hello. A refusal (status 1–4)
   ends the client with :class:`HandshakeRefusedError` before any TUN exists.
4. One TUN for the client's life: the given address /29, MTU 1500, up; ``0.0.0.0/1`` and
   ``128.0.0.0/1`` via the given gateway (more specific than any default route, which stays as
   it was); with ``dns``, ``resolv.conf`` becomes ``nameserver <dns>`` (upstream asks nmcli).
5. Packets both ways. When the route breaks the client redials; without the kill switch the two
   TUN routes are removed meanwhile (traffic goes direct), with it they stay, so nothing leaves
   outside the VPN until the client is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from skywire.apps.vpn import system
from skywire.apps.vpn.errors import HandshakeRefusedError, HelloError, SystemConfigError
from skywire.apps.vpn.protocol import TUN_MTU, TUN_NETMASK_BITS, ClientHello, ServerHello
from skywire.apps.vpn.pump import PumpStats, pump, read_hello
from skywire.apps.vpn.server import SERVER_PORT
from skywire.apps.vpn.state import ClientState, StateFile, missing_routes
from skywire.apps.vpn.tun import TunDevice
from skywire.cipher import PubKey
from skywire.wire.lifecycle import Lifecycle
from skywire.wire.stream import ByteStream
from skywire.wire.tasks import TaskTree

__all__ = ["ClientStatus", "RouteDialer", "VpnClient", "direct_ips_from_env", "undo_client"]

log = logging.getLogger(__name__)

STREAM_ERRORS = (ConnectionError, OSError, TimeoutError)
TUN_ROUTES = ("0.0.0.0/1", "128.0.0.0/1")
IPv4 = ipaddress.IPv4Address


class RouteDialer(Protocol):
    async def dial(self, pk: PubKey, port: int) -> ByteStream: ...


class ClientStatus(Enum):
    STARTING = "starting"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Redial:
    first: float = 0.5
    most: float = 10.0


def _host_ip(value: str) -> IPv4 | None:
    """An IPv4 address out of ``1.2.3.4``, ``1.2.3.4:80`` or ``http://1.2.3.4:80/x``."""
    text = value.strip()
    if not text:
        return None
    host = urlsplit(text).hostname if "://" in text else text.rpartition(":")[0] or text
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    return ip if isinstance(ip, IPv4) else None


def direct_ips_from_env(environ: Mapping[str, str]) -> list[IPv4]:
    """The addresses upstream's visor hands its vpn-client (``internal/vpn/env.go``):
    ``ADDR_DMSG_DISC``, ``ADDR_TP_DISC``, ``ADDR_RF``, ``ADDR_ADDRESS_RESOLVER``,
    ``ADDR_UPTIME_TRACKER``, ``DMSG_SRV_COUNT`` + ``ADDR_DMSG_SRV_<i>``, ``TP_REMOTE_IPS_LEN`` +
    ``ADDR_TP_REMOTE_<i>``. Host names are skipped (only literal IPv4 addresses count)."""
    keys = ["ADDR_DMSG_DISC", "ADDR_TP_DISC", "ADDR_RF", "ADDR_ADDRESS_RESOLVER"]
    keys.append("ADDR_UPTIME_TRACKER")
    for count, prefix in (
        ("DMSG_SRV_COUNT", "ADDR_DMSG_SRV_"),
        ("TP_REMOTE_IPS_LEN", "ADDR_TP_REMOTE_"),
    ):
        n = environ.get(count, "")
        keys += [f"{prefix}{i}" for i in range(int(n))] if n.isdigit() else []
    found = [_host_ip(environ.get(k, "")) for k in keys]
    return _unique(ip for ip in found if ip is not None)


def _unique(ips: Iterable[IPv4]) -> list[IPv4]:
    return list(dict.fromkeys(ips))


async def undo_client(state: ClientState, path_resolv: str = system.RESOLV_CONF) -> None:
    """Put the host back as a :class:`ClientState` recorded it (stop, or after a crash)."""
    for args in reversed(state.added_routes):
        await system.delete_route(list(args))
    if state.resolv_changed:
        system.write_resolv_conf(state.resolv_conf, path_resolv)
    for line in missing_routes(state.routes_before, await system.routes()):
        try:
            await system.run("ip", "route", "add", *system.route_args(line))
        except SystemConfigError as exc:
            log.warning("vpn-client: could not put back route %r: %s", line, exc)


class VpnClient(Lifecycle):
    def __init__(
        self,
        dialer: RouteDialer,
        server: PubKey,
        *,
        passcode: str = "",
        killswitch: bool = False,
        exclude: Sequence[str | IPv4] = (),
        dns: str = "",
        port: int = SERVER_PORT,
        state_file: str | Path = "/run/skywire/vpn-client.json",
        hello_timeout: float = 5.0,
        redial: Redial = Redial(),
    ) -> None:
        if hello_timeout <= 0:
            raise ValueError("hello_timeout must be positive")
        self.dialer = dialer
        self.server = server
        self.passcode = passcode
        self.killswitch = killswitch
        self.exclude = _unique(IPv4(str(ip)) for ip in exclude)
        self.dns = str(IPv4(dns)) if dns else ""
        self.port = port
        self.file = StateFile(state_file)
        self.hello_timeout = hello_timeout
        self.redial = redial
        self.status = ClientStatus.STARTING
        self.error: BaseException | None = None
        self.ended = asyncio.Event()  # set when the client gave up (see ``error``)
        self.connected = asyncio.Event()
        self.stats = PumpStats()
        self.tun: TunDevice | None = None
        self.tun_ip: IPv4 | None = None
        self.default: system.DefaultRoute | None = None
        self._state: ClientState | None = None
        self._tasks = TaskTree("vpn-client", log)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._state is not None:
            return
        if self.file.exists():
            log.warning("vpn-client: undoing the changes of a run that did not stop cleanly")
            await undo_client(self.file.load_client())
            self.file.remove()
        self._record(ClientState(tuple(await system.routes()), system.read_resolv_conf()))
        try:
            self.default = await system.default_route()
            for ip in self.exclude:
                if not ip.is_loopback:
                    await self._add_route(f"{ip}/32", *self._direct_via())
            await self._tasks.start()
        except BaseException:
            await self.close()
            raise
        self._tasks.spawn(self._run(), "vpn-client")

    async def close(self) -> None:
        await self._tasks.close()
        state, self._state = self._state, None
        if state is not None:
            await undo_client(state)
        if self.tun is not None:
            await self.tun.close()
            self.tun = None
        if state is not None:
            for line in missing_routes(state.routes_before, await system.routes()):
                with contextlib.suppress(SystemConfigError):
                    await system.run("ip", "route", "add", *system.route_args(line))
            self.file.remove()
        if self.status is not ClientStatus.FAILED:
            self.status = ClientStatus.STOPPED

    def _direct_via(self) -> list[str]:
        if self.default is None:
            raise SystemConfigError(None, "no default route for the excluded addresses")
        if self.default.gateway is None:
            return ["dev", self.default.device]
        return ["via", str(self.default.gateway), "dev", self.default.device]

    def _record(self, state: ClientState) -> None:
        self.file.save(state)
        self._state = state

    async def _add_route(self, dst: str, *via: str) -> None:
        assert self._state is not None
        args = [dst, *via]
        self._record(self._state.adding(args))
        await system.add_route(dst, *via)

    async def _drop_route(self, dst: str, *via: str) -> None:
        assert self._state is not None
        args = [dst, *via]
        await system.delete_route(args)
        self._record(self._state.dropping(args))

    # ------------------------------------------------------------------ the connection
    async def _run(self) -> None:
        delay = self.redial.first
        while True:
            self.status = ClientStatus.CONNECTING if self.tun is None else ClientStatus.RECONNECTING
            try:
                conn = await self.dialer.dial(self.server, self.port)
            except STREAM_ERRORS as exc:
                log.info("vpn-client: no route to %s yet: %s", self.server, exc)
            else:
                try:
                    if await self._serve(conn):
                        delay = self.redial.first
                except (HandshakeRefusedError, SystemConfigError) as exc:
                    log.error("vpn-client: %s", exc)
                    self.error = exc
                    self.status = ClientStatus.FAILED
                    self.ended.set()
                    return
                finally:
                    with contextlib.suppress(*STREAM_ERRORS):
                        await conn.close()
            await asyncio.sleep(delay)  # redial backoff (not synchronisation)
            delay = min(delay * 2, self.redial.most)

    async def _serve(self, conn: ByteStream) -> bool:
        """One route: handshake, TUN, packets. True if it got as far as packets."""
        try:
            answer, early = await self._handshake(conn)
        except HandshakeRefusedError:
            raise  # a ConnectionError, but final: not one to redial after
        except (HelloError, *STREAM_ERRORS) as exc:
            log.info("vpn-client: handshake failed: %r", exc)
            return False
        if not isinstance(answer.tun_ip, IPv4) or answer.tun_gateway is None:
            log.info("vpn-client: the server gave no IPv4 TUN address")
            return False
        tun = await self._tun(answer.tun_ip)
        gateway = str(answer.tun_gateway)
        for dst in TUN_ROUTES:
            await self._add_route(dst, "via", gateway, "dev", tun.name)
        if self.dns:
            assert self._state is not None
            self._record(self._state.changing_dns())
            system.write_resolv_conf(f"nameserver {self.dns}\n")
        self.status = ClientStatus.CONNECTED
        self.connected.set()
        log.info("vpn-client: %s on %s, all traffic via %s", answer.tun_ip, tun.name, gateway)
        try:
            why = await pump(tun, conn, early, self.stats)
        finally:
            self.connected.clear()
        log.info("vpn-client: route to the server ended: %s", why)
        if not self.killswitch:
            for dst in TUN_ROUTES:
                await self._drop_route(dst, "via", gateway, "dev", tun.name)
        return True

    async def _handshake(self, conn: ByteStream) -> tuple[ServerHello, bytes]:
        mine = [ip for ip in await system.interface_ipv4s() if not ip.is_loopback]
        if self.default is not None and self.default.gateway is not None:
            mine.append(self.default.gateway)
        await conn.write(ClientHello(tuple(_unique(mine)), self.passcode).encode())
        data, early = await read_hello(conn, self.hello_timeout)
        hello = ServerHello.decode(data)
        if hello.status != 0:
            raise HandshakeRefusedError(hello.status)
        return hello, early

    async def _tun(self, address: IPv4) -> TunDevice:
        """The client's one TUN, (re)addressed to ``address``."""
        if self.tun is None:
            self.tun = TunDevice()
            await self.tun.start()
        if self.tun_ip != address:
            await system.run("ip", "addr", "flush", "dev", self.tun.name)
            await system.set_up_tun(self.tun.name, address, TUN_NETMASK_BITS, TUN_MTU)
            self.tun_ip = address
        return self.tun
