"""One KCP conversation over a shared UDP socket: :class:`KCPConnection`, and what it is made of.

The segment-header constants, the :data:`Address` type and the per-conversation
:class:`KCPOptions`; :class:`KCPConnection` itself, an ordered, reliable, message-keeping
:class:`~skywire.wire.stream.ByteStream` that drives one ``ikcp`` control block through the
``kcp`` binding with one self-arming timer; and :class:`KCPHost`, what a conversation needs from
the endpoint that owns the socket (:class:`~skywire.transport.kcp.KCPEndpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from kcp.exceptions import KCPException
from kcp.extension import KCP

log = logging.getLogger("skywire.transport.kcp")

IKCP_OVERHEAD = 24
"""Bytes of one segment header."""

IKCP_CMD_PUSH = 81
IKCP_CMD_ACK = 82
IKCP_CMD_WASK = 83
IKCP_CMD_WINS = 84

Address = tuple[str, int]
"""A UDP address as ``(host, port)``."""

_ACTIVE_LINGER = 0.1
"""Seconds a conversation keeps ticking after its last activity when nothing is in flight
(an idle conversation has no timer, so ten thousand idle binds cost nothing)."""


_NO_MESSAGE = bytearray()
"""What ``KCP.get_received`` returns when no whole message is waiting."""


def as_c_int(conv: int) -> int:
    """``conv`` as the signed C ``int`` the binding takes (same 32 bits for ``ikcp_create``)."""
    if not 0 <= conv <= 0xFFFFFFFF:
        raise ValueError(f"conversation id {conv} out of range")
    return conv - (1 << 32) if conv >= 1 << 31 else conv


@dataclass(frozen=True, slots=True)
class KCPOptions:
    """Tuning of every conversation of an endpoint. None of it is visible on the wire except
    through timing and the advertised window, so any setting interoperates with kcp-go.

    The defaults are KCP's "turbo" mode (no delay, 10 ms interval, fast resend after 2 skips, no
    congestion window) with 1400-byte datagrams as kcp-go sends. ``idle_timeout`` closes a
    conversation that has received nothing for that many seconds (``None``: never).
    """

    mtu: int = 1400
    interval_ms: int = 10
    no_delay: bool = True
    resend: int = 2
    no_congestion_control: bool = True
    send_window: int = 512
    receive_window: int = 512
    idle_timeout: float | None = None

    @property
    def mss(self) -> int:
        """The largest payload of one segment (and of one message)."""
        return self.mtu - IKCP_OVERHEAD


class KCPHost(Protocol):
    """What a :class:`KCPConnection` needs from the endpoint whose socket it shares."""

    @property
    def local_addr(self) -> Address: ...

    def send_batch(self, datagrams: list[bytes], addr: Address) -> None: ...

    def touch(self, conn: KCPConnection) -> None: ...

    def forget(self, conn: KCPConnection) -> None: ...


class KCPConnection:
    """One KCP conversation: an ordered, reliable :class:`~skywire.wire.stream.ByteStream`.

    Created by :meth:`KCPEndpoint.dial` and :meth:`KCPEndpoint.accept`, never directly.
    ``read`` returns ``b""`` once the connection is closed (locally, by its endpoint, or for
    idleness); ``write`` then raises ``ConnectionResetError``. The datagrams of each KCP call
    (a flush or a tick) go to the endpoint as one batch.
    """

    def __init__(
        self,
        endpoint: KCPHost,
        remote_addr: Address,
        conv: int,
        options: KCPOptions,
    ) -> None:
        self._endpoint = endpoint
        self.remote_addr = remote_addr
        self.conv = conv
        self.incoming = False  # opened by the peer (the endpoint counts these per address)
        self._options = options
        self._loop = asyncio.get_running_loop()
        kcp = KCP(
            as_c_int(conv),
            max_transmission=options.mtu,
            no_delay=options.no_delay,
            update_interval=options.interval_ms,
            resend_count=options.resend,
            no_congestion_control=options.no_congestion_control,
            send_window_size=options.send_window,
            receive_window_size=options.receive_window,
        )
        self._out: list[bytes] = []  # datagrams of the KCP call in progress
        kcp.include_outbound_handler(self._output)
        self._kcp = kcp
        self.coalesce_reads = False
        """Let :meth:`read` join consecutive messages (for byte-stream users such as Noise);
        off by default, since the address resolver's protocol relies on message boundaries."""
        self._pending = b""  # the message (or messages) being read…
        self._offset = 0  # …from this offset on
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._close_reason = ""
        self._last_input = time.monotonic()
        self._active_until = self._last_input + _ACTIVE_LINGER
        self._ticking = False
        self._timer: asyncio.TimerHandle | None = None
        self._update()  # ikcp_flush does nothing before the first update
        self._arm_timer()

    def __repr__(self) -> str:
        host, port = self.remote_addr
        state = " closed" if self._closed else ""
        return f"<KCPConnection {host}:{port} conv={self.conv:#010x}{state}>"

    # -- the ByteStream surface ---------------------------------------------------------------

    @property
    def local_addr(self) -> Address:
        """The endpoint's own UDP address."""
        return self._endpoint.local_addr

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_reason(self) -> str:
        """Why the connection closed (empty while open)."""
        return self._close_reason

    async def read(self, max_bytes: int = 65536) -> bytes:
        """At least one byte of the next message (at most ``max_bytes``, never bytes of two
        messages unless :attr:`coalesce_reads`), or ``b""`` once closed."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        while True:
            pending = self._pending
            if pending:
                start, end = self._offset, self._offset + max_bytes
                if end < len(pending):
                    self._offset = end
                    return pending[start:end]
                self._pending, self._offset = b"", 0
                return pending[start:] if start else pending
            if self._closed:
                return b""
            message = self._kcp.get_received()
            if message:
                if self.coalesce_reads:
                    self._pending = self._more_messages(message)
                else:
                    self._pending = bytes(message)
                # Reading may reopen a full receive window: tell the peer now (ikcp queues a
                # window update then), not at the next tick.
                self._activity()
                self._flush()
                continue
            self._readable.clear()
            await self._readable.wait()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes (across messages); ``IncompleteReadError`` if closed first."""
        parts: list[bytes] = []
        got = 0
        while got < n:
            chunk = await self.read(n - got)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    async def write(self, data: bytes) -> None:
        """Queue ``data`` (cut into MSS-sized messages) and send what the window allows.

        Waits while more than a send window of segments is unacknowledged.
        """
        if self._closed:
            raise ConnectionResetError(f"write on a closed KCP connection ({self._close_reason})")
        if not data:
            return
        if not isinstance(data, bytes):
            data = bytes(data)
        mss = self._options.mss
        limit = self._options.send_window * 2
        kcp = self._kcp
        async with self._write_lock:
            self._activity()
            offset, end = 0, len(data)
            while offset < end:
                room = limit - kcp.get_outbound_packets()
                if room <= 0:
                    self._flush()
                    self._writable.clear()
                    await self._writable.wait()
                    if self._closed:
                        raise ConnectionResetError(
                            f"KCP connection closed while writing ({self._close_reason})"
                        )
                    continue
                stop = min(end, offset + room * mss)
                try:
                    for start in range(offset, stop, mss):
                        kcp.enqueue(data[start : start + mss])
                except KCPException as exc:  # pragma: no cover - only for an oversized segment
                    raise ConnectionError(f"kcp send: {exc}") from exc
                offset = stop
            self._flush()

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every written byte is acknowledged; ``False`` on timeout or close."""
        try:
            async with asyncio.timeout(timeout):
                while self._kcp.get_outbound_packets() > 0:
                    if self._closed:
                        return False
                    self._writable.clear()
                    await self._writable.wait()
        except TimeoutError:
            return False
        return not self._closed

    @property
    def unacknowledged(self) -> int:
        """Segments written but not yet acknowledged by the peer."""
        return int(self._kcp.get_outbound_packets())

    async def close(self) -> None:
        """Send what is queued once more and forget the conversation; harmless twice."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self._flush()
            self._shutdown("closed")

    # -- driven by the endpoint ---------------------------------------------------------------

    def _output(self, _kcp: KCP, data: bytes) -> None:
        self._out.append(data)

    def _send_out(self) -> None:
        """Hand the datagrams the last KCP call produced to the socket, in one batch."""
        if self._out:
            out, self._out = self._out, []
            self._endpoint.send_batch(out, self.remote_addr)

    def _flush(self) -> None:
        try:
            self._kcp.flush()
        finally:
            self._send_out()

    def _update(self) -> None:
        try:
            self._kcp.update()
        finally:
            self._send_out()

    def _more_messages(self, first: bytearray) -> bytes:
        """``first`` followed by every message already received after it (at most a receive
        window of them; :meth:`read` hands them out ``max_bytes`` at a time)."""
        parts = [first]
        parts.extend(iter(self._kcp.get_received, _NO_MESSAGE))
        return b"".join(parts)

    def kcp_input(self, data: bytes) -> None:
        if self._closed:
            return
        self._activity()
        try:
            self._kcp.receive(data)
        except KCPException as exc:
            log.debug("%r: dropping malformed datagram: %s", self, exc)
            return
        self._last_input = time.monotonic()
        self._endpoint.touch(self)

    def after_input(self) -> None:
        if self._closed:
            return
        # Acks go out at once (rather than on the next tick), and so does new data the acks
        # made room for.
        self._flush()
        self._wake()

    def _wake(self) -> None:
        if self._kcp.next_packet_available:
            self._readable.set()
        if self._kcp.get_outbound_packets() < self._options.send_window * 2:
            self._writable.set()

    def _activity(self) -> None:
        """Something happened: make the timer tick at KCP's pace for a while."""
        self._active_until = time.monotonic() + _ACTIVE_LINGER
        if not self._ticking and not self._closed:
            self._update()  # bring KCP's clock up to date (and flush what is due)
            self._arm_timer()

    def _arm_timer(self) -> None:
        """Tick every few ms while data is unacknowledged or the conversation was just active;
        otherwise sleep until the idle deadline (or until the next activity)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = time.monotonic()
        self._ticking = self._kcp.get_outbound_packets() > 0 or now < self._active_until
        if self._ticking:
            delay = max(1, min(int(self._kcp.update_check()), self._options.interval_ms)) / 1000
        elif self._options.idle_timeout is not None:
            delay = max(0.001, self._last_input + self._options.idle_timeout - now + 0.001)
        else:
            return
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        idle = self._options.idle_timeout
        if idle is not None and time.monotonic() - self._last_input > idle:
            log.debug("%r: nothing received for %.1f s", self, idle)
            self._shutdown(f"idle for {idle:g} s")
            return
        if self._ticking:
            self._update()
            self._wake()
        self._arm_timer()

    def _shutdown(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        self._ticking = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._readable.set()
        self._writable.set()
        self._endpoint.forget(self)
