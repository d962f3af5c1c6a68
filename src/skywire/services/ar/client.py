"""Typed async client of the address resolver (works against the Go resolver too).

HTTP calls are httpauth-signed with the visor's key. :meth:`ARClient.bind_sudph` opens the KCP
bind from the visor's own sudph socket and returns an :class:`SUDPHBind` that keeps it alive
with heartbeats and yields the resolver's hole-punch requests (answering each with a
``holepunch`` datagram unless told not to).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp

from skywire.cipher import CipherError, PubKey, SecKey
from skywire.dmsg.addr import Addr
from skywire.services.ar.store import BIND_TYPES
from skywire.services.ar.udp import (
    DEFAULT_UDP_PORT,
    DEL_BIND_MESSAGE,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_MESSAGE,
    HOLE_PUNCH_MESSAGE,
    MAX_MESSAGE,
    HolePunchRequest,
    run_initiator_handshake,
)
from skywire.services.httpauth import HTTPAuthClient, HTTPStatusError
from skywire.transport.handshake import InitiatorHandshake
from skywire.transport.kcp import Address, KCPConnection, KCPEndpoint
from skywire.transport.resolver import (
    NoEntryError,
    ResolverError,
    ResolverUnreachableError,
    VisorData,
    VisorDataError,
)

__all__ = ["ARClient", "ARError", "SUDPHBind"]

log = logging.getLogger("skywire.ar.client")

DEL_BIND_LINGER = 1.0
PUNCH_DELAYS = (0.25, 1.0, 2.5)
"""Seconds after a hole-punch request at which ``holepunch`` is sent to the requester."""
"""Seconds :meth:`SUDPHBind.close` waits for ``delBind`` to be acknowledged."""


class ARError(ResolverError):
    """The resolver refused a request: ``status`` and its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"address resolver: {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.message = message


def _bind_body(port: int | str, addresses: Sequence[str]) -> bytes:
    return json.dumps(
        {"port": str(port), "addresses": list(addresses)}, separators=(",", ":")
    ).encode()


def _default_udp_addr(base_url: str) -> Address:
    """Where the resolver's UDP side is, as the reference visor derives it: the URL's host and,
    when the URL names a port, that same port (UDP), else :data:`DEFAULT_UDP_PORT`."""
    parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
    return (parts.hostname or "127.0.0.1", parts.port or DEFAULT_UDP_PORT)


class SUDPHBind:
    """A live sudph bind: the KCP conversation with the resolver, its heartbeats, and the
    hole-punch requests the resolver pushes (``async for request in bind``).

    With ``punch=True`` every request is answered at once by sending ``holepunch`` from the
    endpoint to the requester's address. Iteration ends when the bind closes. :meth:`close`
    sends ``delBind`` (waiting up to :data:`DEL_BIND_LINGER` s for its acknowledgement).
    """

    def __init__(
        self,
        endpoint: KCPEndpoint,
        conn: KCPConnection,
        *,
        heartbeat_interval: float,
        punch: bool,
    ) -> None:
        self.endpoint = endpoint
        self.conn = conn
        self._punch = punch
        self._punch_handles: set[asyncio.TimerHandle] = set()
        self._queue: asyncio.Queue[HolePunchRequest | None] = asyncio.Queue()
        self._closed = False
        self._heartbeat = asyncio.create_task(
            self._heartbeat_loop(heartbeat_interval), name="ar-sudph-heartbeat"
        )
        self._reader = asyncio.create_task(self._read_loop(), name="ar-sudph-reader")

    @property
    def closed(self) -> bool:
        return self._closed

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.conn.write(HEARTBEAT_MESSAGE)
            except ConnectionError as exc:
                log.warning("sudph heartbeat failed: %s", exc)
                return

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self.conn.read(MAX_MESSAGE)
                if not message:
                    return
                try:
                    request = HolePunchRequest.from_json(message)
                except VisorDataError as exc:
                    log.warning("unexpected message from the address resolver: %s", exc)
                    continue
                log.info("%s at %s wants to reach us (sudph)", request.pk, request.addr)
                if self._punch:
                    self._send_punch(request)
                self._queue.put_nowait(request)
        finally:
            self._queue.put_nowait(None)

    def _send_punch(self, request: HolePunchRequest) -> None:
        """Punch towards the requester a few times, starting a moment later.

        Not at once: the requester learns our address in the same instant we learn its, and a
        punch of ours that reaches its NAT before its own first datagram to us leaves a
        conntrack entry there that makes a Linux NAT map that first datagram to another port
        (so it no longer matches the address the resolver gave us). Punching after its first
        datagram has gone out meets an open mapping instead.
        """
        loop = asyncio.get_running_loop()
        for delay in PUNCH_DELAYS:
            handle = loop.call_later(delay, self._punch_now, request)
            self._punch_handles.add(handle)

    def _punch_now(self, request: HolePunchRequest) -> None:
        if self._closed:
            return
        try:
            self.endpoint.send_datagram(HOLE_PUNCH_MESSAGE, request.udp_address())
        except (ValueError, ConnectionError, OSError) as exc:
            log.warning("cannot hole-punch towards %s: %s", request.addr, exc)

    async def next_request(self) -> HolePunchRequest | None:
        """The next hole-punch request, or ``None`` once the bind is closed."""
        if self._queue.empty() and self._reader.done():
            return None
        request = await self._queue.get()
        if request is None:
            self._queue.put_nowait(None)  # keep later callers from waiting
        return request

    def __aiter__(self) -> AsyncIterator[HolePunchRequest]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[HolePunchRequest]:
        while True:
            request = await self.next_request()
            if request is None:
                return
            yield request

    async def close(self) -> None:
        """Send ``delBind``, stop the heartbeats and close the conversation; harmless twice."""
        if self._closed:
            return
        self._closed = True
        for handle in self._punch_handles:
            handle.cancel()
        self._punch_handles.clear()
        self._heartbeat.cancel()
        if not self.conn.closed:
            with contextlib.suppress(ConnectionError):
                await self.conn.write(DEL_BIND_MESSAGE)
                await self.conn.drain(DEL_BIND_LINGER)
        await self.conn.close()
        for task in (self._heartbeat, self._reader):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class ARClient:
    """A client of the address resolver at ``base_url`` (HTTP) and ``udp_addr`` (sudph; by
    default the URL's host and port, or port 30178 when the URL has none), acting as the key
    of ``sk``."""

    def __init__(
        self,
        base_url: str,
        sk: SecKey,
        udp_addr: Address | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sk = sk
        self.pk = sk.pubkey()
        self.udp_addr = udp_addr if udp_addr is not None else _default_udp_addr(self.base_url)
        self._http = HTTPAuthClient(
            self.base_url,
            sk,
            session,
            timeout=timeout,
            unreachable=lambda detail: ResolverUnreachableError(f"address resolver: {detail}"),
        )
        self._binds: list[SUDPHBind] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every sudph bind (sending ``delBind``) and the HTTP session if owned.

        The stcpr bind is left alone: call :meth:`unbind_stcpr` first to remove it."""
        binds, self._binds = self._binds, []
        for bind in binds:
            await bind.close()
        await self._http.close()

    async def _signed(self, method: str, path: str, body: bytes = b"") -> bytes:
        resp = await self._http.request(method, path, body=body)
        if resp.status == 404:
            raise NoEntryError()
        if not resp.ok:
            raise ARError(resp.status, HTTPStatusError(resp.status, resp.body).message)
        return resp.body

    # -- stcpr ---------------------------------------------------------------------------------

    async def bind_stcpr(self, port: int | str, addresses: Sequence[str] = ()) -> None:
        """Bind our key to the public IP the resolver sees, with our stcpr ``port`` and local
        ``addresses``."""
        await self._signed("POST", "/bind/stcpr", _bind_body(port, addresses) + b"\n")

    async def unbind_stcpr(self) -> None:
        """Remove our stcpr bind."""
        await self._signed("DELETE", "/bind/stcpr", b"{}\n")

    # -- lookups -------------------------------------------------------------------------------

    async def resolve(self, tp_type: str, pk: PubKey) -> VisorData:
        """Where ``pk`` can be reached over ``tp_type`` (``stcpr`` or ``sudph``); raises
        :class:`~skywire.services.ar.store.NoEntryError` when it is not bound. For sudph the
        resolver also asks ``pk`` to hole-punch towards our own sudph bind."""
        body = await self._signed("GET", f"/resolve/{tp_type}/{pk.hex()}")
        try:
            return VisorData.from_json(body)
        except VisorDataError as exc:
            raise ARError(502, f"bad resolve answer: {exc}") from exc

    async def transports(self) -> dict[PubKey, list[str]]:
        """Every bound key with the types it is bound for."""
        resp = await self._http.request_unsigned("GET", "/transports")
        if not resp.ok:
            raise ARError(resp.status, HTTPStatusError(resp.status, resp.body).message)
        try:
            listing: Any = resp.json()
        except (ValueError, RecursionError) as exc:
            raise ARError(502, f"bad transports answer: {exc}") from exc
        if listing is None:
            return {}
        if not isinstance(listing, dict):
            raise ARError(502, "bad transports answer: expected an object")
        out: dict[PubKey, list[str]] = {}
        for tp_type in (*BIND_TYPES, *sorted(set(listing) - set(BIND_TYPES))):
            pks = listing.get(tp_type) or []
            if not isinstance(pks, list):
                raise ARError(502, f"bad transports answer: {tp_type} is not a list")
            for text in pks:
                try:
                    pk = PubKey.from_hex(str(text))
                except CipherError:
                    log.warning("ignoring malformed key %r in /transports", text)
                    continue
                types = out.setdefault(pk, [])
                if tp_type not in types:
                    types.append(tp_type)
        return out

    async def health(self) -> dict[str, Any]:
        resp = await self._http.request_unsigned("GET", "/health")
        if not resp.ok:
            raise ARError(resp.status, HTTPStatusError(resp.status, resp.body).message)
        obj = resp.json()
        if not isinstance(obj, dict):
            raise ARError(502, "bad health answer")
        return obj

    # -- sudph ---------------------------------------------------------------------------------

    async def bind_sudph(
        self,
        endpoint: KCPEndpoint,
        addresses: Sequence[str] = (),
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        punch: bool = True,
    ) -> SUDPHBind:
        """Bind our key to ``endpoint``'s UDP address as the resolver sees it.

        Opens a KCP conversation from ``endpoint`` to the resolver, runs the handshake (as
        initiator, to ``{null PK, 0}``), declares the endpoint's port and our local
        ``addresses``, and returns the live bind (closed by :meth:`close` at the latest)."""
        conn = await endpoint.dial(self.udp_addr)
        try:
            machine = InitiatorHandshake(self.sk, Addr(self.pk, 0), Addr(PubKey.NULL, 0))
            await run_initiator_handshake(conn, machine)
            await conn.write(_bind_body(endpoint.local_addr[1], addresses))
        except BaseException:
            await conn.close()
            raise
        bind = SUDPHBind(endpoint, conn, heartbeat_interval=heartbeat_interval, punch=punch)
        self._binds = [b for b in self._binds if not b.closed]
        self._binds.append(bind)
        return bind
