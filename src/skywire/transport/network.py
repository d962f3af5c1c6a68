"""The carriers a transport rides on, each reduced to "dial a visor" and "accept a visor".

* ``stcp``: TCP to an address from the static PK table;
* ``stcpr``: TCP to the address the address resolver gives (the listener binds there);
* ``sudph``: KCP over UDP, hole-punched through the address resolver (see ``sudph.py``);
* ``dmsg``: a dmsg stream to ``<pk>:45`` (already end-to-end encrypted: nothing added).

For the TCP and UDP carriers a dial runs the connection handshake (``get_nonce`` …) and then
Noise KK, so what comes out is an authenticated, encrypted :class:`ByteStream` and the peer's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.addr import Addr
from skywire.dmsg.client import Client, DmsgListener
from skywire.transport.entry import TransportType
from skywire.transport.handshake import (
    HANDSHAKE_TIMEOUT,
    TRANSPORT_PORT,
    HandshakeError,
    InitiatorHandshake,
    ResponderHandshake,
    port_checker,
)
from skywire.wire.errors import WireError
from skywire.wire.noise import Pattern
from skywire.wire.noise_aio import NoiseStream
from skywire.wire.pq import PQPolicy
from skywire.wire.stream import AcceptQueue, ByteStream, TcpStream
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

log = logging.getLogger(__name__)

NOISE_TIMEOUT = 5.0
DIAL_TIMEOUT = 20.0


class TransportNetworkError(ConnectionError):
    """A carrier could not reach (or accept) a visor."""


@dataclass
class Conn:
    """An authenticated connection to ``remote_pk`` over one carrier."""

    remote_pk: PubKey
    stream: ByteStream
    tp_type: str
    initiator: bool


class Network(Protocol):
    """One carrier: dial and accept visors."""

    tp_type: str

    async def start(self) -> None: ...

    async def dial(self, remote: PubKey) -> Conn: ...

    async def accept(self) -> Conn: ...

    async def close(self) -> None: ...


async def _run_handshake(
    stream: ByteStream,
    machine: InitiatorHandshake | ResponderHandshake,
) -> None:
    """Drive a sans-I/O connection handshake over ``stream`` to completion."""
    out = machine.data_to_send()
    if out:
        await stream.write(out)
    while not machine.complete:
        data = await stream.read(4096)
        if not data:
            raise TransportNetworkError("connection closed during the transport handshake")
        try:
            machine.receive_data(data)
        finally:
            out = machine.data_to_send()
            if out:
                with contextlib.suppress(ConnectionError, OSError):
                    await stream.write(out)
    if machine.leftover:
        raise TransportNetworkError("unexpected bytes after the transport handshake")


async def secure_initiator(
    stream: ByteStream,
    sk: SecKey,
    remote: PubKey,
    local_port: int,
    tp_type: str,
    *,
    pq: PQPolicy | None = None,
) -> Conn:
    """Handshake as the dialer, then Noise KK as initiator."""
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        hs = InitiatorHandshake(sk, Addr(sk.pubkey(), local_port), Addr(remote, TRANSPORT_PORT))
        await _run_handshake(stream, hs)
    noise = await NoiseStream.initiate(stream, Pattern.KK, sk, remote, timeout=NOISE_TIMEOUT, pq=pq)
    return Conn(remote, noise, tp_type, True)


async def secure_responder(stream: ByteStream, sk: SecKey, tp_type: str) -> Conn:
    """Handshake as the listener (transport port only), then Noise KK as responder."""
    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
        hs = ResponderHandshake(port_checker({TRANSPORT_PORT}))
        await _run_handshake(stream, hs)
    if hs.remote_addr is None:
        raise TransportNetworkError("transport handshake ended without a remote address")
    remote = hs.remote_addr.pk
    noise = await NoiseStream.respond(stream, Pattern.KK, sk, remote, timeout=NOISE_TIMEOUT)
    return Conn(remote, noise, tp_type, False)


class TCPNetwork:
    """``stcp`` (addresses from a table) or ``stcpr`` (addresses from a resolver)."""

    def __init__(
        self,
        sk: SecKey,
        tp_type: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        resolve: Callable[[PubKey], Awaitable[list[tuple[str, int]]]],
        on_bound: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.sk = sk
        self.tp_type = tp_type
        self.host = host
        self.port = port
        self._resolve = resolve
        self._on_bound = on_bound
        self._server: asyncio.Server | None = None
        self._accepted: AcceptQueue[Conn] = AcceptQueue(
            64, lambda: TransportNetworkError(f"{self.tp_type} network closed")
        )
        # one task per incoming connection while its handshake runs
        self._handshakes = TaskTree(f"{tp_type}-handshakes", log)

    async def start(self) -> None:
        await self._handshakes.start()
        self._server = await asyncio.start_server(self._on_conn, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        if self._on_bound is not None:
            await self._on_bound(self.port)
        log.info("%s listening on %s:%d", self.tp_type, self.host, self.port)

    def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self._handshakes.spawn(self._respond(TcpStream(reader, writer)), "handshake")
        except TaskTreeClosedError:
            writer.close()

    async def _respond(self, tcp: TcpStream) -> None:
        try:
            conn = await secure_responder(tcp, self.sk, self.tp_type)
            self._accepted.put_nowait(conn)
        except (HandshakeError, WireError, OSError, TimeoutError, asyncio.QueueFull) as exc:
            log.info("%s: refused a connection from %s: %s", self.tp_type, tcp.peername, exc)
            await tcp.close()
        except asyncio.CancelledError:
            await tcp.close()
            raise

    async def dial(self, remote: PubKey) -> Conn:
        addresses = await self._resolve(remote)
        errors = []
        for host, port in addresses:
            try:
                async with asyncio.timeout(DIAL_TIMEOUT):
                    tcp = await TcpStream.connect(host, port)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{host}:{port}: {exc}")
                continue
            try:
                local_port = tcp.sockname[1] if tcp.sockname else 0
                return await secure_initiator(tcp, self.sk, remote, local_port, self.tp_type)
            except BaseException as exc:
                await tcp.close()
                if isinstance(exc, HandshakeError | WireError | OSError | TimeoutError):
                    errors.append(f"{host}:{port}: {exc}")
                    continue
                raise
        raise TransportNetworkError(
            f"{self.tp_type}: cannot reach {remote}: {'; '.join(errors) or 'no address'}"
        )

    async def accept(self) -> Conn:
        return await self._accepted.get()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._handshakes.close()
        for conn in self._accepted.close():
            await conn.stream.close()
        # No ``wait_closed()``: since Python 3.12.1 it also waits for every connection the
        # server accepted, and the ones handed out through accept() belong to their taker,
        # which may close them after this listener. ``close()`` has already shut the socket.


def static_table(table: Mapping[str, str]) -> Callable[[PubKey], Awaitable[list[tuple[str, int]]]]:
    """A resolver over the ``skywire-tcp.pk_table`` config (PK hex → ``host:port``)."""

    async def resolve(pk: PubKey) -> list[tuple[str, int]]:
        addr = table.get(pk.hex())
        if addr is None:
            raise TransportNetworkError(f"stcp: {pk} is not in the PK table")
        host, _, port = addr.rpartition(":")
        return [(host or "127.0.0.1", int(port))]

    return resolve


class DmsgNetwork:
    """``dmsg`` transports: a dmsg stream to the peer's transport port (45)."""

    tp_type = TransportType.DMSG.value

    def __init__(self, client: Client) -> None:
        self.client = client
        self._listener: DmsgListener | None = None

    async def start(self) -> None:
        self._listener = await self.client.listen(TRANSPORT_PORT)

    async def dial(self, remote: PubKey) -> Conn:
        try:
            stream = await self.client.dial(remote, TRANSPORT_PORT)
        except Exception as exc:
            raise TransportNetworkError(f"dmsg: cannot reach {remote}: {exc}") from exc
        return Conn(remote, stream, self.tp_type, True)

    async def accept(self) -> Conn:
        if self._listener is None:
            raise TransportNetworkError("dmsg network not started")
        stream = await self._listener.accept()
        return Conn(stream.remote_addr.pk, stream, self.tp_type, False)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
