"""Several worker processes serving one relay server: the links between them.

A relay server with ``workers > 1`` runs one :class:`~skywire.dmsg.server.Server` per process,
all with the same key, all listening on the same port (``SO_REUSEPORT``: the kernel spreads
incoming sessions over them). A stream whose destination's session lives in another worker is
carried there over a *link*: one yamux session per pair of workers, on a Unix socket pair made
by the parent before the workers start.

Over a link, a worker asks its peer for a destination (no directory of who holds which key is
kept: a peer is simply asked, which cannot be stale):

* request: ``dst pk (33 bytes) ‖ u16 length ‖ the dialer's signed request, as plain bytes``;
* answer: ``status (1 byte: 0 ok, 1 no session here) ‖ u16 length ‖ the signed response``,
  then the link stream carries the stream's bytes both ways, as a relayed stream does.

Objects cross the link in the clear: both ends are processes of one server, on one machine,
and each session's Noise keys stay in the worker that made it.

:meth:`Mesh.exchange` is the cross-worker half of the relay's request/response exchange; the
stream it returns is then relayed like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable

from skywire.cipher import PubKey
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.dmsg.session import Session
from skywire.dmsg.types import SignedObject
from skywire.wire.tasks import TaskTree
from skywire.wire.yamux_aio import YamuxSession, YamuxStream

__all__ = ["Mesh", "socket_pairs"]

log = logging.getLogger(__name__)

_U16 = struct.Struct(">H")
OK, NO_SESSION = 0, 1
MAX_OBJECT = 0xFFFF


def socket_pairs(workers: int) -> dict[tuple[int, int], tuple[socket.socket, socket.socket]]:
    """One connected Unix socket pair for every pair of workers ``(i, j)``, ``i < j``."""
    return {
        (i, j): socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for i in range(workers)
        for j in range(i + 1, workers)
    }


class Mesh:
    """The links of worker ``index`` to every other worker (``links``: peer index → socket)."""

    def __init__(self, index: int, links: dict[int, socket.socket]) -> None:
        self.index = index
        self._socks = links
        self.links: dict[int, YamuxSession] = {}
        self._tasks = TaskTree(f"dmsg-mesh-{index}", log)

    async def start(
        self,
        *,
        local: Callable[[PubKey], Session | None],
        relay: Callable[[YamuxStream, YamuxStream], Awaitable[None]],
    ) -> None:
        """Bring the links up; ``local(pk)`` is this worker's session of ``pk``, ``relay``
        the server's copy loop."""
        self._local = local
        self._relay = relay
        await self._tasks.start()
        for peer, sock in sorted(self._socks.items()):
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
            link = YamuxSession(reader, writer, client=self.index < peer)
            link.start()
            self.links[peer] = link
            self._tasks.spawn(self._serve(peer, link), f"dmsg-mesh-{self.index}-{peer}")

    async def close(self) -> None:
        await self._tasks.close()
        for link in self.links.values():
            with contextlib.suppress(ConnectionError, OSError):
                await link.close()

    async def exchange(self, dst: PubKey, req: SignedObject) -> tuple[YamuxStream, SignedObject]:
        """Ask the peers, in turn, to pass ``req`` to ``dst``'s session: the link stream to
        relay and the signed response. ``DmsgError(REQ_NO_NEXT_SESSION)`` when no worker holds
        a session of ``dst``."""
        raw = req.raw
        if len(raw) > MAX_OBJECT:
            raise DmsgError(ErrorCode.SIGNED_OBJECT_INVALID, "object too large")
        for _, link in sorted(self.links.items()):
            if link.closed:
                continue
            try:
                stream = await link.open_stream()
            except ConnectionError:
                continue
            try:
                await stream.write(bytes(dst) + _U16.pack(len(raw)) + raw)
                status = (await stream.readexactly(1))[0]
                if status != OK:
                    await stream.close()
                    continue
                (n,) = _U16.unpack(await stream.readexactly(2))
                return stream, SignedObject.parse(await stream.readexactly(n))
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                with contextlib.suppress(ConnectionError, OSError):
                    await stream.reset()
                continue
        raise DmsgError(ErrorCode.REQ_NO_NEXT_SESSION)

    async def _serve(self, peer: int, link: YamuxSession) -> None:
        """Streams a peer opens towards sessions of this worker."""
        async with asyncio.TaskGroup() as tg:
            while True:
                try:
                    stream = await link.accept()
                except ConnectionError:
                    log.warning("dmsg worker %d: link to worker %d lost", self.index, peer)
                    return
                tg.create_task(self._forward(stream))

    async def _forward(self, stream: YamuxStream) -> None:
        """A peer's request for one of our sessions: pass it on, answer, then relay."""
        dst_stream = None
        try:
            head = await stream.readexactly(33 + 2)
            dst = PubKey.from_bytes(head[:33])
            (n,) = _U16.unpack(head[33:])
            req = SignedObject.parse(await stream.readexactly(n))
            session = self._local(dst)
            if session is None or session.closed:
                await stream.write(bytes([NO_SESSION]))
                await stream.close()
                return
            dst_stream = await session.open_stream()
            await session.write_object(dst_stream, req)
            resp = await session.read_object(dst_stream)
            await stream.write(bytes([OK]) + _U16.pack(len(resp.raw)) + resp.raw)
        except Exception as exc:
            log.debug("dmsg worker %d: forwarded stream failed: %s", self.index, exc)
            with contextlib.suppress(ConnectionError, OSError):
                await stream.reset()
            if dst_stream is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    await dst_stream.reset()
            return
        await self._relay(stream, dst_stream)
