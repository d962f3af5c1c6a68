"""KCP over UDP for asyncio: the carrier of ``sudph`` transports and of the address-resolver bind.

The reference uses ``xtaci/kcp-go`` with neither FEC nor a block cipher, so every UDP payload is a
bare run of KCP segments (the C ``ikcp`` wire format, driven here through the ``kcp`` package):

=======  ====  ================================================================
offset   size  field (little-endian)
=======  ====  ================================================================
0        4     ``conv`` — conversation id, chosen at random by the dialer
4        1     ``cmd`` — 81 push, 82 ack, 83 window probe, 84 window size
5        1     ``frg`` — fragment countdown (always 0 here: writes are cut at the MSS)
6        2     ``wnd`` — free receive window, in segments
8        4     ``ts``
12       4     ``sn``
16       4     ``una``
20       4     ``len`` — payload bytes that follow
=======  ====  ================================================================

One :class:`KCPEndpoint` is one UDP socket. It dials (``await endpoint.dial(addr)``) and accepts
(``await endpoint.accept()``), keeping one :class:`KCPConnection` per ``(remote address, conv)``;
a datagram that is not KCP (such as the 9-byte ``holepunch``) goes to ``on_datagram`` instead, as
the reference shares its socket between KCP and such control datagrams through a packet filter.

KCP keeps message boundaries like kcp-go: a write of at most one MSS (1376 bytes with the
default MTU) arrives as one message, and :meth:`KCPConnection.read` never returns bytes of two
messages at once — the address resolver's UDP protocol relies on this. KCP has no connection
set-up and no FIN: a dial returns at once, the listener learns of a conversation from its first
segment, and a peer that goes away is noticed only through ``idle_timeout`` (or a protocol
above).

Concurrency: an endpoint runs no task. Its socket is read through ``loop.add_reader`` in
batches (acks for a whole batch leave in one flush); where Linux offers it, the datagrams of one
flush leave in one segmentation-offload send and arrive coalesced (see
:mod:`~skywire.transport.udp_batch`; each is still an ordinary datagram on the wire, so this
costs the peer nothing and saves one system call per segment here). Each connection has one
timer that ticks at KCP's pace (``ikcp_check``) while data is in flight or the conversation was
just active, and otherwise sleeps (until ``idle_timeout``, if any), so idle conversations cost
nothing; writes, reads and arriving acks flush at once instead of waiting for a tick.
:meth:`KCPEndpoint.close` cancels every timer and closes the socket, so nothing outlives the
endpoint.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from skywire.transport.kcp_connection import (
    IKCP_CMD_ACK,
    IKCP_CMD_PUSH,
    IKCP_CMD_WASK,
    IKCP_CMD_WINS,
    IKCP_OVERHEAD,
    Address,
    KCPConnection,
    KCPOptions,
)
from skywire.transport.udp_batch import RECV_ANCILLARY, BatchSender, enable_gro, split_received

__all__ = [
    "IKCP_CMD_ACK",
    "IKCP_CMD_PUSH",
    "IKCP_CMD_WASK",
    "IKCP_CMD_WINS",
    "IKCP_OVERHEAD",
    "Address",
    "KCPConnection",
    "KCPEndpoint",
    "KCPOptions",
    "is_kcp_datagram",
    "kcp_conv",
]

log = logging.getLogger(__name__)

DatagramHandler = Callable[[bytes, Address], None]
DatagramFilter = Callable[[bytes, Address], bool]

_TOMBSTONE_TTL = 30.0
"""Seconds datagrams of a closed conversation are ignored (instead of being accepted anew)."""

_READ_BATCH = 256
"""Most datagrams read per wake-up of the socket before the touched conversations flush."""

_SOCKET_BUFFER = 4 << 20
"""Requested UDP socket buffers (the kernel caps them at ``net.core.[rw]mem_max``)."""


def is_kcp_datagram(data: bytes) -> bool:
    """Whether ``data`` starts with a KCP segment header (the reference's packet-filter rule,
    tightened to a whole header)."""
    return len(data) >= IKCP_OVERHEAD and IKCP_CMD_PUSH <= data[4] <= IKCP_CMD_WINS


def kcp_conv(data: bytes) -> int:
    """The conversation id of a KCP datagram."""
    conv: int = struct.unpack_from("<I", data)[0]
    return conv


def _one_conversation(data: bytes, size: int) -> bool:
    """Whether every ``size``-byte datagram glued in ``data`` starts with a KCP header of the
    first one's conversation (checked with strided slices, not a loop per datagram)."""
    count = -(-len(data) // size)
    tail = len(data) % size
    if len(data) < IKCP_OVERHEAD or 0 < tail < IKCP_OVERHEAD:
        return False
    commands = data[4::size]
    if min(commands) < IKCP_CMD_PUSH or max(commands) > IKCP_CMD_WINS:
        return False
    return all(data[i::size] == data[i : i + 1] * count for i in range(4))


MAX_INCOMING = 4096
"""Conversations opened by peers that one endpoint keeps at once."""
MAX_PER_ADDRESS = 8
"""…and from one remote address (a visor binds once; a few re-binds may overlap)."""


class KCPEndpoint:
    """One UDP socket carrying KCP conversations and, beside them, raw control datagrams.

    Open with :meth:`open` (or ``async with await KCPEndpoint.open(...)``). ``accepting=False``
    ignores conversations opened by peers (a dial-only socket). ``on_datagram`` receives every
    datagram that is not KCP. ``datagram_filter`` sees every incoming datagram first and drops
    it by returning ``False`` (for tests simulating loss). At most ``backlog`` accepted
    conversations wait for :meth:`accept`; further new ones are ignored until there is room, as
    kcp-go does. At most ``max_incoming`` conversations opened by peers live at once, and at
    most ``max_per_address`` from one address: a datagram beyond them creates no state (a
    flood of garbage from one host cannot grow the endpoint).
    """

    def __init__(
        self,
        *,
        options: KCPOptions | None = None,
        accepting: bool = True,
        backlog: int = 128,
        on_datagram: DatagramHandler | None = None,
        datagram_filter: DatagramFilter | None = None,
        max_incoming: int = MAX_INCOMING,
        max_per_address: int = MAX_PER_ADDRESS,
    ) -> None:
        self.options = options or KCPOptions()
        self.accepting = accepting
        self.backlog = backlog
        self.max_incoming = max_incoming
        self.max_per_address = max_per_address
        self._incoming: dict[Address, int] = {}  # live peer-opened conversations per address
        self.ignored = 0  # new conversations refused by the limits
        self.on_datagram = on_datagram
        self.datagram_filter = datagram_filter
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._touched: set[KCPConnection] = set()
        self._conns: dict[tuple[Address, int], KCPConnection] = {}
        self._tombstones: dict[tuple[Address, int], float] = {}
        self._accept_queue: collections.deque[KCPConnection] = collections.deque()
        self._accept_ready = asyncio.Event()
        self._closed = False
        self._local_addr: Address = ("", 0)
        self._sender = BatchSender()
        self._gro = False

    @classmethod
    async def open(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: KCPOptions | None = None,
        accepting: bool = True,
        backlog: int = 128,
        on_datagram: DatagramHandler | None = None,
        datagram_filter: DatagramFilter | None = None,
        max_incoming: int = MAX_INCOMING,
        max_per_address: int = MAX_PER_ADDRESS,
    ) -> KCPEndpoint:
        """Bind a UDP socket on ``host:port`` (port 0: any free port)."""
        self = cls(
            options=options,
            accepting=accepting,
            backlog=backlog,
            on_datagram=on_datagram,
            datagram_filter=datagram_filter,
            max_incoming=max_incoming,
            max_per_address=max_per_address,
        )
        await self._bind(host, port)
        return self

    async def _bind(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        if not infos:  # pragma: no cover - getaddrinfo raises instead
            raise OSError(f"cannot resolve {host!r}")
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
            sock.bind(sockaddr)
            self._gro = enable_gro(sock)
            loop.add_reader(sock.fileno(), self._read_ready)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        name = sock.getsockname()
        self._local_addr = (str(name[0]), int(name[1]))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def local_addr(self) -> Address:
        """``(host, port)`` the socket is bound to."""
        return self._local_addr

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def send_calls(self) -> int:
        """System calls that sent KCP datagrams (fewer than :attr:`sent_datagrams` while the
        kernel takes segmentation offload)."""
        return self._sender.sends

    @property
    def sent_datagrams(self) -> int:
        """KCP datagrams sent (as the peer receives them)."""
        return self._sender.datagrams

    @property
    def connections(self) -> list[KCPConnection]:
        """The live conversations (dialed and accepted)."""
        return list(self._conns.values())

    # -- dialing and accepting ----------------------------------------------------------------

    async def dial(self, addr: Address, conv: int | None = None) -> KCPConnection:
        """Open a conversation with ``addr``. Returns at once: KCP has no handshake, the peer
        learns of the conversation from the first segment it receives."""
        if self._closed:
            raise ConnectionError("KCP endpoint is closed")
        remote = (addr[0], int(addr[1]))
        if conv is None:
            while True:
                conv = secrets.randbits(32)
                if conv and (remote, conv) not in self._conns:
                    break
        elif (remote, conv) in self._conns:
            raise ValueError(f"conversation {conv:#x} with {remote} already exists")
        conn = KCPConnection(self, remote, conv, self.options)
        self._conns[(remote, conv)] = conn
        return conn

    async def accept(self) -> KCPConnection:
        """The next conversation a peer opened; ``ConnectionError`` once the endpoint closes."""
        while True:
            if self._accept_queue:
                return self._accept_queue.popleft()
            if self._closed:
                raise ConnectionError("KCP endpoint is closed")
            self._accept_ready.clear()
            await self._accept_ready.wait()

    def send_datagram(self, data: bytes, addr: Address) -> None:
        """Send one raw datagram (e.g. ``holepunch``) from this socket."""
        if self._closed:
            raise ConnectionError("KCP endpoint is closed")
        self.sendto(data, addr)

    async def close(self) -> None:
        """Close every conversation, fail pending accepts and release the socket."""
        if self._closed:
            return
        self._closed = True
        for conn in list(self._conns.values()):
            await conn.close()
        for conn in self._accept_queue:
            await conn.close()
        self._accept_queue.clear()
        self._accept_ready.set()
        self._touched.clear()
        if self._sock is not None:
            sock, self._sock = self._sock, None
            assert self._loop is not None
            self._loop.remove_reader(sock.fileno())
            sock.close()

    # -- internals ----------------------------------------------------------------------------

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram from this socket, best effort (KCP resends what is lost)."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            # A full socket buffer (EAGAIN) or an unreachable peer: the datagram is lost, as
            # on the wire, and KCP resends.
            log.debug("udp send to %s failed: %s", addr, exc)

    def send_batch(self, datagrams: list[bytes], addr: Address) -> None:
        """Send the datagrams of one flush, in order, with as few system calls as the kernel
        allows (see :mod:`~skywire.transport.udp_batch`); best effort, like :meth:`sendto`."""
        sock = self._sock
        if sock is not None:
            self._sender.send(sock, datagrams, addr)

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        gro = self._gro
        for _ in range(_READ_BATCH):
            try:
                if gro:
                    data, ancillary, _flags, addr = sock.recvmsg(65536, RECV_ANCILLARY)
                else:
                    data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                log.debug("udp receive failed: %s", exc)
                break
            source = (str(addr[0]), int(addr[1]))
            if gro and ancillary:
                self._coalesced_received(data, ancillary, source)
            else:
                self._datagram_received(data, source)
            if self._sock is None:
                return
        # One flush per batch: the acks of a whole burst leave in a few datagrams.
        touched, self._touched = self._touched, set()
        for conn in touched:
            conn.after_input()

    def touch(self, conn: KCPConnection) -> None:
        """Flush ``conn`` once the datagrams of the current read batch are all in."""
        self._touched.add(conn)

    def forget(self, conn: KCPConnection) -> None:
        """Stop routing datagrams to a closed conversation (and ignore them for a while)."""
        key = (conn.remote_addr, conn.conv)
        if self._conns.get(key) is conn:
            del self._conns[key]
            self._tombstones[key] = time.monotonic() + _TOMBSTONE_TTL
            if conn.incoming:
                left = self._incoming.get(key[0], 0) - 1
                if left > 0:
                    self._incoming[key[0]] = left
                else:
                    self._incoming.pop(key[0], None)
        if len(self._tombstones) > 1024:
            now = time.monotonic()
            self._tombstones = {k: t for k, t in self._tombstones.items() if t > now}

    def _coalesced_received(
        self, data: bytes, ancillary: list[tuple[int, int, bytes]], addr: Address
    ) -> None:
        """Several datagrams of one flow in one buffer: KCP segments of one conversation go to
        ``ikcp_input`` together (a run of whole segments, as one datagram may carry), anything
        else one datagram at a time."""
        size, parts = split_received(data, ancillary)
        if parts is None:
            self._datagram_received(data, addr)
            return
        if self.datagram_filter is None and _one_conversation(data, size):
            self._datagram_received(data, addr)
            return
        for part in parts:
            self._datagram_received(part, addr)
            if self._sock is None:
                return

    def _datagram_received(self, data: bytes, addr: Address) -> None:
        if self._closed:
            return
        if self.datagram_filter is not None and not self.datagram_filter(data, addr):
            return
        if not is_kcp_datagram(data):
            if self.on_datagram is not None:
                try:
                    self.on_datagram(data, addr)
                except Exception:
                    log.exception("datagram handler failed")
            return
        key = (addr, kcp_conv(data))
        conn = self._conns.get(key)
        if conn is None:
            conn = self._new_incoming(key)
            if conn is None:
                return
        conn.kcp_input(data)

    def _new_incoming(self, key: tuple[Address, int]) -> KCPConnection | None:
        if not self.accepting or len(self._accept_queue) >= self.backlog:
            return None
        here = self._incoming.get(key[0], 0)
        if here >= self.max_per_address or sum(self._incoming.values()) >= self.max_incoming:
            self.ignored += 1
            return None
        expiry = self._tombstones.get(key)
        if expiry is not None:
            if expiry > time.monotonic():
                return None
            del self._tombstones[key]
        conn = KCPConnection(self, key[0], key[1], self.options)
        conn.incoming = True
        self._incoming[key[0]] = here + 1
        self._conns[key] = conn
        self._accept_queue.append(conn)
        self._accept_ready.set()
        return conn
