"""IP packets between a TUN device and a route connection, both ways, until either ends.

Upstream: two ``io.Copy`` goroutines, and the first to end ends the connection. Here: two
tasks of one ``TaskGroup``; route → TUN cuts packets with :class:`PacketReader` (bytes that are
not IP end the connection), TUN → route writes each packet with one write.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from skywire.apps.vpn.errors import PacketError
from skywire.apps.vpn.protocol import HelloReader, PacketReader
from skywire.wire.stream import ByteStream

__all__ = ["PumpStats", "Tun", "pump", "read_hello"]

log = logging.getLogger(__name__)


class Tun(Protocol):
    async def read(self) -> bytes: ...

    def write(self, packet: bytes) -> None: ...


@dataclass
class PumpStats:
    packets_up: int = 0  # TUN → route
    packets_down: int = 0  # route → TUN
    bytes_up: int = 0
    bytes_down: int = 0


async def pump(
    tun: Tun, conn: ByteStream, early: bytes = b"", stats: PumpStats | None = None
) -> str:
    """Copy until one side ends; returns why (for the log)."""
    st = stats if stats is not None else PumpStats()

    async def down() -> str:
        reader = PacketReader()
        data = early
        try:
            while True:
                for packet in reader.receive_data(data):
                    tun.write(packet)
                    st.packets_down += 1
                    st.bytes_down += len(packet)
                data = await conn.read(65536)
                if not data:
                    return "the route ended"
        except PacketError as exc:
            return f"bad bytes on the route: {exc}"
        except (ConnectionError, OSError) as exc:
            return f"route → TUN: {exc!r}"

    async def up() -> str:
        try:
            while True:
                packet = await tun.read()
                await conn.write(packet)
                st.packets_up += 1
                st.bytes_up += len(packet)
        except (ConnectionError, OSError) as exc:
            return f"TUN → route: {exc!r}"

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(down()), tg.create_task(up())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
    return next(iter(done)).result()


async def read_hello(conn: ByteStream, timeout: float) -> tuple[bytes, bytes]:
    """One hello (see :class:`HelloReader`) and the bytes after it; ``HelloError`` on bad
    bytes, ``ConnectionError`` if the route ends first, ``TimeoutError`` after ``timeout``."""
    reader = HelloReader()
    async with asyncio.timeout(timeout):
        while True:
            data = await conn.read(65536)
            if not data:
                raise ConnectionError("the route ended before the hello")
            message = reader.receive_data(data)
            if message is not None:
                return message, reader.rest
