"""A Linux TUN device: ``/dev/net/tun``, ``TUNSETIFF`` with ``IFF_TUN | IFF_NO_PI``.

``async with TunDevice() as tun:`` opens a device (the kernel names it ``tunN`` unless a
name is given), reads packets with ``loop.add_reader`` into a bounded queue (``await
tun.read()``; a full queue drops, as a NIC would) and writes each packet with one
``os.write`` (``tun.write(packet)``; a full device queue drops it). Closing the descriptor
removes the device and every route through it: the kernel does that for us also when the
process is killed. Addresses and routes are :mod:`skywire.apps.vpn.system`'s business.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
from dataclasses import dataclass

from skywire.apps.vpn.errors import SystemConfigError
from skywire.wire.lifecycle import Lifecycle

__all__ = ["TunCounters", "TunDevice"]

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFNAMSIZ = 16
READ_SIZE = 65535
QUEUE = 512


@dataclass
class TunCounters:
    packets_in: int = 0  # read from the TUN (sent by the local kernel)
    packets_out: int = 0  # written to the TUN
    dropped: int = 0


class TunDevice(Lifecycle):
    def __init__(self, name: str = "", path: str = "/dev/net/tun") -> None:
        if len(name.encode()) >= IFNAMSIZ:
            raise ValueError(f"interface name {name!r} is too long")
        self.requested = name
        self.path = path
        self.name = ""
        self.counters = TunCounters()
        self._fd: int | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise SystemConfigError(errno.EBADF, "the TUN device is not open")
        return self._fd

    async def start(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SystemConfigError(exc.errno, f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            ifr = struct.pack(f"{IFNAMSIZ}sH22x", self.requested.encode(), IFF_TUN | IFF_NO_PI)
            got = fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError as exc:
            os.close(fd)
            raise SystemConfigError(exc.errno, f"TUNSETIFF: {exc.strerror}") from exc
        self.name = got[:IFNAMSIZ].rstrip(b"\0").decode()
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(b"")  # wakes a reader; see read()

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        for _ in range(64):  # a bounded batch, then back to the loop
            try:
                packet = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                return
            if not packet:
                return
            self.counters.packets_in += 1
            try:
                self._queue.put_nowait(packet)
            except asyncio.QueueFull:
                self.counters.dropped += 1

    async def read(self) -> bytes:
        """The next packet the kernel sent into the TUN; ``ConnectionError`` once closed."""
        packet = await self._queue.get()
        if not packet:  # the close marker: leave it for the next reader
            self._queue.put_nowait(packet)
            raise ConnectionError("the TUN device is closed")
        return packet

    def write(self, packet: bytes) -> None:
        """Hand one IP packet to the kernel; dropped (and counted) if the device is full."""
        try:
            os.write(self.fd, packet)
        except (BlockingIOError, InterruptedError):
            self.counters.dropped += 1
            return
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EIO, errno.EMSGSIZE):
                self.counters.dropped += 1  # a packet the kernel would not take
                return
            raise
        self.counters.packets_out += 1
