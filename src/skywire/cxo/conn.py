"""One CXO connection: framing, the Syn/Ack handshake, seq/rseq request correlation.

A :class:`Conn` wraps one :class:`~skywire.wire.stream.ByteStream` (a dmsg stream or a TCP
connection). :meth:`Conn.run` is the connection's whole life and runs as one task owned by the
node; inside it one ``TaskGroup`` holds the reader, the writer and one task per ``RqObject``
being served. Anything that ends the connection (EOF, a bad frame, a protocol error, an idle
peer, :meth:`Conn.close`) sets :attr:`Conn.error` and leaves that group, which cancels every
child; nothing waits on anything that could outlive it.

Sending never blocks: frames go into an unbounded queue that the writer drains (the node's
feeds code calls :meth:`Conn.send` from synchronous bookkeeping). Requests wait for their reply
with a timeout; a reply whose requester is gone is dropped silently, as the reference does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable

from skywire.cipher import PubKey
from skywire.cxo.msg import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    Ack,
    Err,
    List,
    Message,
    MsgError,
    Object,
    Ok,
    Packet,
    Peers,
    RootMsg,
    Syn,
    encode_frame,
)
from skywire.wire.stream import ByteStream

log = logging.getLogger(__name__)
__all__ = [
    "CXOError",
    "Conn",
    "ConnClosedError",
    "FrameTooLargeError",
    "HandshakeError",
    "IdleTimeoutError",
    "ProtocolError",
    "RemoteError",
    "RequestTimeoutError",
    "TruncatedFrameError",
]

_LEN = struct.Struct(">I")
_REPLY_TYPES = (Ok, Err, Object, List, Peers, Ack, RootMsg)


class CXOError(Exception):
    """Base of the node's errors."""


class ConnClosedError(CXOError):
    """The connection is closed (or was closed while waiting)."""


class HandshakeError(CXOError):
    """The Syn/Ack handshake failed (wrong protocol, wrong first message, Err reply)."""


class ProtocolError(CXOError):
    """A message that is malformed or not allowed here (e.g. Ping/Pong: invalid message type)."""


class FrameTooLargeError(ProtocolError):
    """A frame length of 0 or over the limit."""


class TruncatedFrameError(ProtocolError):
    """The stream ended inside a frame."""


class IdleTimeoutError(CXOError):
    """No inbound traffic for the idle timeout."""


class RequestTimeoutError(CXOError):
    """No reply within the response timeout."""


class RemoteError(CXOError):
    """The peer replied with ``Err``."""


Dispatcher = Callable[["Conn", Packet], Awaitable[None]]


class Conn:
    """A CXO connection. Built and run by the node; use :meth:`request`, :meth:`send`,
    :meth:`close`, :meth:`wait_closed`."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        node_id: PubKey,
        incoming: bool,
        dispatch: Dispatcher,
        remote_pk: PubKey | None = None,
        max_frame: int = MAX_FRAME,
        response_timeout: float = 59.0,
        idle_timeout: float | None = 90.0,
        verify_node_id: bool = False,
    ) -> None:
        self.stream = stream
        self.node_id = node_id
        self.incoming = incoming
        #: the transport's authenticated remote key (a dmsg stream's), if any
        self.remote_pk = remote_pk
        #: the NodeID the peer gave in the handshake
        self.peer_id: PubKey | None = None
        self.max_frame = max_frame
        self.response_timeout = response_timeout
        self.idle_timeout = idle_timeout
        self.verify_node_id = verify_node_id
        #: why the connection ended (``ConnClosedError`` for a plain close or EOF)
        self.error: CXOError | None = None
        self._dispatch = dispatch
        self._seq = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._wq: deque[bytes] = deque()
        self._wq_ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._finished = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._serving: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        side = "in" if self.incoming else "out"
        peer = self.remote_pk or self.peer_id
        return f"Conn({side}, peer={peer})"

    # -- state ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._done.is_set()

    @property
    def established(self) -> bool:
        return self._ready.is_set() and not self._done.is_set()

    async def wait_ready(self) -> None:
        """Return once the handshake succeeded; raise the reason if the connection ended."""
        if not self._ready.is_set():
            done = asyncio.ensure_future(self._done.wait())
            ready = asyncio.ensure_future(self._ready.wait())
            try:
                await asyncio.wait({done, ready}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (done, ready):
                    t.cancel()
                await asyncio.gather(done, ready, return_exceptions=True)
        if self._done.is_set():
            raise self.error or ConnClosedError("connection closed")

    async def wait_closed(self) -> CXOError | None:
        """Wait until :meth:`run` has finished; the reason it ended."""
        await self._finished.wait()
        return self.error

    def close(self, error: CXOError | None = None) -> None:
        """End the connection (non-blocking): the run task cancels its children and exits."""
        if self._done.is_set():
            return
        self.error = error if error is not None else ConnClosedError("connection closed")
        self._done.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnClosedError(str(self.error)))
        self._pending.clear()

    # -- sending --------------------------------------------------------------------------

    def next_seq(self) -> int:
        seq = next(self._seq)
        if seq > 0xFFFFFFFF:
            self._seq = itertools.count(2)
            seq = 1
        return seq

    def send(self, msg: Message, rseq: int = 0) -> int:
        """Queue a message; returns its seq. Raises :class:`ConnClosedError` once closed."""
        if self._done.is_set():
            raise ConnClosedError(str(self.error))
        seq = self.next_seq()
        self._send_packet(Packet(seq, rseq, msg))
        return seq

    def _send_packet(self, packet: Packet) -> None:
        payload = packet.encode()
        if len(payload) > self.max_frame:
            raise ProtocolError(f"message of {len(payload)} bytes over the frame limit")
        self._wq.append(encode_frame(payload))
        self._idle.clear()
        self._wq_ready.set()

    def reply(self, rseq: int, msg: Message) -> None:
        """Answer the message numbered ``rseq``; silently nothing once closed."""
        with contextlib.suppress(ConnClosedError):
            self.send(msg, rseq)

    async def request(self, msg: Message, timeout: float | None = None) -> Message:
        """Send ``msg`` and wait for the message answering it (an ``Err`` raises)."""
        if self._done.is_set():
            raise ConnClosedError(str(self.error))
        seq = self.next_seq()
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        try:
            self._send_packet(Packet(seq, 0, msg))
            async with asyncio.timeout(self.response_timeout if timeout is None else timeout):
                reply = await fut
        except TimeoutError:
            raise RequestTimeoutError(f"no reply to {type(msg).__name__}") from None
        finally:
            self._pending.pop(seq, None)
        if isinstance(reply, Err):
            raise RemoteError(reply.err)
        return reply

    # -- the connection's life ------------------------------------------------------------

    async def run(self) -> None:
        """Handshake, then read and write until closed; never raises (but cancellation)."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._guard(self._write_loop()))
                tg.create_task(self._guard(self._main()))
                await self._done.wait()
                raise _Leave
        except* _Leave:
            pass
        finally:
            self._tg = None
            self.close()
            with contextlib.suppress(Exception):
                await self.stream.close()
            self._finished.set()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` in this connection's scope (cancelled with the connection)."""
        if self._tg is None or self._done.is_set():
            if asyncio.iscoroutine(coro):
                coro.close()
            return
        task = self._tg.create_task(self._guard(coro))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _guard(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except CXOError as exc:
            self.close(exc)
        except (ConnectionError, OSError, EOFError) as exc:
            self.close(ConnClosedError(f"stream: {exc!r}"))
        except MsgError as exc:
            self.close(ProtocolError(str(exc)))
        except Exception as exc:  # a bug must end this connection, never the node
            log.exception("cxo connection %r failed", self)
            self.close(CXOError(f"internal error: {exc!r}"))

    async def _main(self) -> None:
        if self.incoming:
            await self._accept_handshake()
        else:
            await self._perform_handshake()
        self._ready.set()
        while True:
            packet = await self._read_packet()
            fut = self._pending.get(packet.rseq) if packet.rseq else None
            if fut is not None and isinstance(packet.msg, _REPLY_TYPES):
                if not fut.done():
                    fut.set_result(packet.msg)
                continue
            if packet.rseq and isinstance(packet.msg, _REPLY_TYPES):
                continue  # a late reply: its requester timed out
            await self._dispatch(self, packet)

    async def _perform_handshake(self) -> None:
        seq = self.next_seq()
        self._send_packet(Packet(seq, 0, Syn(PROTOCOL_VERSION, self.node_id)))
        try:
            async with asyncio.timeout(self.response_timeout):
                packet = await self._read_packet()
        except TimeoutError:
            raise HandshakeError("handshake timeout") from None
        if packet.rseq != seq:
            raise HandshakeError("invalid response: wrong seq")
        msg = packet.msg
        if isinstance(msg, Err):
            raise HandshakeError(msg.err)
        if not isinstance(msg, Ack):
            raise HandshakeError(f"invalid response type: {type(msg).__name__}")
        self._check_node_id(msg.node_id)
        self.peer_id = msg.node_id

    async def _accept_handshake(self) -> None:
        try:
            async with asyncio.timeout(self.response_timeout):
                packet = await self._read_packet()
        except TimeoutError:
            raise HandshakeError("handshake timeout") from None
        msg = packet.msg
        if not isinstance(msg, Syn):
            raise HandshakeError("invalid message type")
        if msg.protocol != PROTOCOL_VERSION:
            reason = f"incompatible protocol version: {msg.protocol}, want {PROTOCOL_VERSION}"
            self._send_packet(Packet(self.next_seq(), packet.seq, Err(reason)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.response_timeout):
                    await self._idle.wait()
            raise HandshakeError(reason)
        self._check_node_id(msg.node_id)
        self.peer_id = msg.node_id
        self._send_packet(Packet(self.next_seq(), packet.seq, Ack(self.node_id)))

    def _check_node_id(self, node_id: PubKey) -> None:
        if self.verify_node_id and self.remote_pk is not None and node_id != self.remote_pk:
            raise HandshakeError(f"node id {node_id} is not the stream's key {self.remote_pk}")

    async def _read_packet(self) -> Packet:
        try:
            if self.idle_timeout is not None:
                async with asyncio.timeout(self.idle_timeout):
                    head = await self.stream.readexactly(4)
            else:
                head = await self.stream.readexactly(4)
        except TimeoutError:
            raise IdleTimeoutError(f"no traffic for {self.idle_timeout} s") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise TruncatedFrameError("stream ended inside a frame header") from None
            raise ConnClosedError("closed by peer") from None
        (n,) = _LEN.unpack(head)
        if not 0 < n <= self.max_frame:
            raise FrameTooLargeError(f"frame length {n} outside 1..{self.max_frame}")
        try:
            payload = await self.stream.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise TruncatedFrameError(
                f"stream ended after {len(exc.partial)} of {n} frame bytes"
            ) from None
        try:
            return Packet.decode(payload)
        except MsgError as exc:
            raise ProtocolError(str(exc)) from None

    async def _write_loop(self) -> None:
        while True:
            await self._wq_ready.wait()
            await self._flush()

    async def _flush(self) -> None:
        while self._wq:
            batch = bytearray()
            while self._wq and len(batch) < 1 << 20:
                batch += self._wq.popleft()
            await self.stream.write(bytes(batch))
        self._wq_ready.clear()
        self._idle.set()


class _Leave(Exception):
    """Leaves a connection's task group (cancelling its children)."""
