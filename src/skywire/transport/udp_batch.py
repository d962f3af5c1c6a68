"""Batched UDP I/O for the KCP endpoint: Linux UDP segmentation offload (GSO) and receive
coalescing (GRO).

Each datagram still travels on its own on the wire (the kernel, or the network card, cuts a GSO
send into ordinary datagrams of ``gso_size`` bytes; peers without GRO receive them one by one),
so nothing here is visible to a peer. What changes is the cost on this host: one ``sendmsg``
carries a run of up to :data:`MAX_SEGMENTS` equal-sized datagrams, and one ``recvmsg`` may return
several consecutive datagrams of one flow glued together, with their size in a control message.
On loopback a GSO send reaches a GRO socket whole, so a burst of KCP segments costs one system
call on each side instead of one per segment.

Both offloads are optional: :func:`enable_gro` reports whether the kernel took the option, and
:class:`BatchSender` falls back to one ``sendto`` per datagram for good after the first GSO
send the kernel refuses.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
from collections.abc import Iterator, Sequence

log = logging.getLogger("skywire.transport.kcp")

SOL_UDP = 17
UDP_SEGMENT = 103
"""``setsockopt``/``cmsg`` level ``SOL_UDP``: the size of each datagram of a GSO send."""
UDP_GRO = 104
"""``setsockopt``: deliver coalesced datagrams; ``cmsg``: their size."""

MAX_SEGMENTS = 64
"""Datagrams in one GSO send at most (the kernel's ``UDP_MAX_SEGMENTS``)."""
MAX_GSO_BYTES = 65000
"""Bytes in one GSO send at most (an IP packet holds 65535 with its headers)."""

RECV_ANCILLARY = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
"""Room for the ``UDP_GRO`` control message of a coalesced receive."""

_INT = struct.Struct("=i")
_U16 = struct.Struct("=H")

Address = tuple[str, int]


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to coalesce datagrams received on ``sock``; whether it agreed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def split_received(
    data: bytes, ancillary: list[tuple[int, int, bytes]]
) -> tuple[int, Iterator[bytes] | None]:
    """``(segment size, the datagrams)`` of a coalesced receive, or ``(0, None)`` when ``data``
    is a single datagram."""
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= _INT.size:
            (size,) = _INT.unpack_from(value)
            if 0 < size < len(data):
                return size, (data[i : i + size] for i in range(0, len(data), size))
    return 0, None


def runs(datagrams: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the runs of ``datagrams`` one GSO send may carry: equal sizes, the
    last one possibly shorter, at most :data:`MAX_SEGMENTS` and :data:`MAX_GSO_BYTES`."""
    n = len(datagrams)
    size = len(datagrams[0]) if n else 0
    if 1 < n <= min(MAX_SEGMENTS, MAX_GSO_BYTES // max(size, 1)):
        # The usual flush: full segments and a shorter tail, checked at C speed.
        sizes = list(map(len, datagrams))
        if sizes[-1] <= size and sizes.count(size) == n - (sizes[-1] != size):
            yield 0, n
            return
    start = 0
    while start < n:
        size = len(datagrams[start])
        limit = min(n, start + MAX_SEGMENTS, start + max(1, MAX_GSO_BYTES // max(size, 1)))
        end = start + 1
        while end < limit:
            got = len(datagrams[end])
            end += 1
            if got != size:  # a shorter one closes the run, a longer one starts the next
                if got > size:
                    end -= 1
                break
        yield start, end
        start = end


class BatchSender:
    """Sends lists of datagrams to one address from a socket, with GSO while the kernel takes
    it. Every failure is a loss, as on the wire: KCP resends."""

    def __init__(self) -> None:
        self.gso = sys.platform.startswith("linux")
        self.sends = 0  # system calls made
        self.datagrams = 0  # datagrams they carried

    def send(self, sock: socket.socket, datagrams: Sequence[bytes], addr: Address) -> None:
        self.datagrams += len(datagrams)
        if not self.gso or len(datagrams) == 1:
            for data in datagrams:
                self._sendto(sock, data, addr)
            return
        for start, end in runs(datagrams):
            if end - start == 1:
                self._sendto(sock, datagrams[start], addr)
                continue
            self.sends += 1
            size = _U16.pack(len(datagrams[start]))
            try:
                sock.sendmsg(datagrams[start:end], [(SOL_UDP, UDP_SEGMENT, size)], 0, addr)
            except (BlockingIOError, InterruptedError) as exc:
                log.debug("udp send to %s failed: %s", addr, exc)
            except OSError as exc:
                # EINVAL/EIO/ENOPROTOOPT: no GSO on this path; send this run one by one.
                log.debug("udp segmentation offload refused (%s): sending one by one", exc)
                self.gso = False
                for data in datagrams[start:end]:
                    self._sendto(sock, data, addr)

    def _sendto(self, sock: socket.socket, data: bytes, addr: Address) -> None:
        self.sends += 1
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            # A full socket buffer (EAGAIN) or an unreachable peer: the datagram is lost, as
            # on the wire, and KCP resends.
            log.debug("udp send to %s failed: %s", addr, exc)
