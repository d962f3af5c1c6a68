"""Carriers found through the address resolver: ``stcpr`` (TCP) and ``sudph`` (KCP over UDP).

``stcpr``: the listener binds its port at the resolver (and re-binds periodically, unbinding on
close); a dialer resolves the peer and tries its local addresses first when the resolver says
both sit behind the same public IP, then the address the resolver saw.

``sudph``: one UDP socket carries KCP and the one-word control datagrams. The visor keeps a KCP
bind with the resolver (heartbeats); when somebody resolves it, the resolver tells it who, and it
sends ``holepunch`` towards them so that their first datagram passes its NAT. The dialer sends
``holepunch`` to the address the resolver saw and then opens KCP, retrying while the NATs open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from skywire.cipher import PubKey, SecKey
from skywire.transport.entry import TransportType
from skywire.transport.handshake import HandshakeError
from skywire.transport.kcp import KCPConnection, KCPEndpoint
from skywire.transport.network import (
    DIAL_TIMEOUT,
    Conn,
    TCPNetwork,
    TransportNetworkError,
    secure_initiator,
    secure_responder,
)
from skywire.transport.resolver import (
    RESOLVER_ERRORS,
    STCPR_REBIND_INTERVAL,
    AddressResolver,
    NoEntryError,
    ResolverError,
    SudphBinding,
    VisorData,
)
from skywire.wire.errors import WireError
from skywire.wire.stream import AcceptQueue
from skywire.wire.tasks import TaskTree

log = logging.getLogger(__name__)

HOLEPUNCH = b"holepunch"
BIND_RETRY_INITIAL = 2.0
"""Seconds before a failed bind at the resolver is tried again (doubling, up to a minute)."""
SUDPH_DIAL_ATTEMPTS = 6
SUDPH_ATTEMPT_TIMEOUT = 5.0


def _candidates(data: VisorData, default_port: str = "") -> list[tuple[str, int]]:
    """Addresses to try for a resolved peer: local ones first when on the same LAN."""
    out: list[tuple[str, int]] = []
    port = data.port or default_port
    if data.is_local and port.isdigit():
        out += [(addr, int(port)) for addr in data.addresses]
    host, sep, rport = data.remote_addr.rpartition(":")
    if sep and rport.isdigit() and host:
        out.append((host.strip("[]"), int(rport) if not port.isdigit() else int(port)))
    elif data.remote_addr and port.isdigit():
        out.append((data.remote_addr, int(port)))
    return out


class StcprNetwork(TCPNetwork):
    """``stcpr``: TCP with addresses from the address resolver."""

    def __init__(
        self,
        sk: SecKey,
        ar: AddressResolver,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        addresses: tuple[str, ...] = (),
        rebind_interval: float = STCPR_REBIND_INTERVAL,
    ) -> None:
        self.ar = ar
        self.addresses = addresses
        self.rebind_interval = rebind_interval
        self.bound = False
        self._rebinder: asyncio.Task[None] | None = None
        super().__init__(
            sk, TransportType.STCPR.value, host=host, port=port, resolve=self._resolve_pk
        )

    async def _resolve_pk(self, pk: PubKey) -> list[tuple[str, int]]:
        try:
            data = await self.ar.resolve(TransportType.STCPR.value, pk)
        except NoEntryError as exc:
            raise TransportNetworkError(f"stcpr: {pk} is not bound at the resolver") from exc
        return _candidates(data)

    async def start(self) -> None:
        await super().start()
        self.bound = await self._bind()
        self._rebinder = asyncio.create_task(self._rebind(), name="stcpr-rebind")  # close() awaits

    async def _bind(self) -> bool:
        try:
            await self.ar.bind_stcpr(self.port, self.addresses)
        except RESOLVER_ERRORS as exc:
            log.warning("stcpr: bind at the address resolver failed (will retry): %s", exc)
            return False
        return True

    async def _rebind(self) -> None:
        """Re-bind every ``rebind_interval``; after a failure, sooner (back-off from 2 s), so
        that a resolver that was away or refused once does not leave stcpr unreachable."""
        retry = BIND_RETRY_INITIAL
        while True:
            await asyncio.sleep(self.rebind_interval if self.bound else retry)
            self.bound = await self._bind()
            retry = BIND_RETRY_INITIAL if self.bound else min(retry * 2, self.rebind_interval)

    async def close(self) -> None:
        if self._rebinder is not None:
            self._rebinder.cancel()
            await asyncio.wait({self._rebinder})
            self._rebinder = None
        try:
            await self.ar.unbind_stcpr()
        except RESOLVER_ERRORS as exc:
            log.info("stcpr: unbind failed: %s", exc)
        await super().close()


class SudphNetwork:
    """``sudph``: KCP over one UDP socket, hole-punched through the address resolver."""

    tp_type = TransportType.SUDPH.value

    def __init__(
        self,
        sk: SecKey,
        ar: AddressResolver,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        addresses: tuple[str, ...] = (),
    ) -> None:
        self.sk = sk
        self.ar = ar
        self.host = host
        self.port = port
        self.addresses = addresses
        self.endpoint: KCPEndpoint | None = None
        self.bind: SudphBinding | None = None
        self._accepted: AcceptQueue[Conn] = AcceptQueue(
            64, lambda: TransportNetworkError("sudph network closed")
        )
        # the accept loop and one task per incoming handshake
        self._tasks = TaskTree("sudph", log)

    async def start(self) -> None:
        await self._tasks.start()
        self.endpoint = await KCPEndpoint.open(self.host, self.port)
        self.port = self.endpoint.local_addr[1]
        self._spawn(self._accept_loop(), "sudph-accept")
        if not await self._bind():
            self._spawn(self._bind_until_bound(), "sudph-bind")
        log.info("sudph on UDP %s:%d", self.host, self.port)

    async def _bind(self) -> bool:
        assert self.endpoint is not None
        try:
            self.bind = await self.ar.bind_sudph(self.endpoint, self.addresses)
        except (ResolverError, OSError, TimeoutError, HandshakeError, WireError) as exc:
            log.warning("sudph: bind at the address resolver failed (will retry): %s", exc)
            return False
        log.info("sudph: bound at the address resolver")
        return True

    async def _bind_until_bound(self) -> None:
        retry = BIND_RETRY_INITIAL
        while not await self._bind():
            await asyncio.sleep(retry)
            retry = min(retry * 2, 60.0)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.spawn(coro, name)

    async def _accept_loop(self) -> None:
        assert self.endpoint is not None
        while True:
            try:
                conn = await self.endpoint.accept()
            except ConnectionError:
                return
            self._spawn(self._secure(conn), "sudph-handshake")

    async def _secure(self, kcp: KCPConnection) -> None:
        try:
            conn = await secure_responder(kcp, self.sk, self.tp_type)
            kcp.coalesce_reads = True  # Noise reads a byte stream (the handshake is done)
            self._accepted.put_nowait(conn)
        except (HandshakeError, WireError, OSError, TimeoutError, asyncio.QueueFull) as exc:
            log.info("sudph: refused %s: %s", kcp.remote_addr, exc)
            await kcp.close()

    async def dial(self, remote: PubKey) -> Conn:
        if self.endpoint is None:
            raise TransportNetworkError("sudph network not started")
        try:
            data = await self.ar.resolve(self.tp_type, remote)
        except NoEntryError as exc:
            raise TransportNetworkError(f"sudph: {remote} is not bound at the resolver") from exc
        candidates = _candidates(data)
        if not candidates:
            raise TransportNetworkError(f"sudph: no address for {remote}")
        errors: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DIAL_TIMEOUT):
                return await self._punch_and_dial(remote, candidates, errors)
        raise TransportNetworkError(f"sudph: cannot reach {remote}: {'; '.join(errors)}")

    async def _punch_and_dial(
        self, remote: PubKey, candidates: list[tuple[str, int]], errors: list[str]
    ) -> Conn:
        assert self.endpoint is not None
        for attempt in range(SUDPH_DIAL_ATTEMPTS):
            for addr in candidates:
                self.endpoint.send_datagram(HOLEPUNCH, addr)
                kcp: KCPConnection | None = None
                try:
                    async with asyncio.timeout(SUDPH_ATTEMPT_TIMEOUT):
                        kcp = await self.endpoint.dial(addr)
                        conn = await secure_initiator(kcp, self.sk, remote, self.port, self.tp_type)
                    kcp.coalesce_reads = True  # Noise reads a byte stream (the handshake is done)
                    return conn
                except (HandshakeError, WireError, OSError, TimeoutError) as exc:
                    errors.append(f"{addr[0]}:{addr[1]} (attempt {attempt + 1}): {exc}")
                    if kcp is not None:
                        await kcp.close()
        raise TransportNetworkError(f"sudph: cannot reach {remote}: {'; '.join(errors)}")

    async def accept(self) -> Conn:
        return await self._accepted.get()

    async def close(self) -> None:
        if self.bind is not None:
            with contextlib.suppress(*RESOLVER_ERRORS):
                await self.bind.close()
        await self._tasks.close()
        for conn in self._accepted.close():
            await conn.stream.close()
        if self.endpoint is not None:
            await self.endpoint.close()
