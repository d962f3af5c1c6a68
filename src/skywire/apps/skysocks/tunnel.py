"""What both skysocks ends do with bytes: open the target, map a failure to a SOCKS5 reply
code, and copy two streams into each other until either ends.

The reply codes follow go-socks5 (``vendor/github.com/armon/go-socks5/request.go``
``handleConnect``): a dial error mentioning "refused" is 0x05, "network is unreachable" 0x03,
anything else (a failed name lookup included, ``handleRequest``) 0x04 host unreachable. Ours
reads the errno first and the message only when there is none.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass

from skywire.proxy.errors import ReplyCode
from skywire.wire.errors import WireError
from skywire.wire.stream import ByteStream, TcpStream
from skywire.wire.tasks import Leave, leaving

__all__ = ["CHUNK", "STREAM_ERRORS", "Transfer", "open_target", "pipe", "reply_for"]

CHUNK = 64 * 1024
STREAM_ERRORS = (OSError, WireError, EOFError)
"""What a broken stream raises (ConnectionError and the yamux/route errors included)."""


def reply_for(exc: BaseException) -> ReplyCode:
    """The SOCKS5 reply for a failed CONNECT to the target."""
    if isinstance(exc, socket.gaierror | TimeoutError):
        return ReplyCode.HOST_UNREACHABLE
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return ReplyCode.CONNECTION_REFUSED
    if getattr(exc, "errno", None) == errno.ENETUNREACH:
        return ReplyCode.NETWORK_UNREACHABLE
    if getattr(exc, "errno", None) is None:
        message = str(exc).lower()
        if "refused" in message:
            return ReplyCode.CONNECTION_REFUSED
        if "network is unreachable" in message:
            return ReplyCode.NETWORK_UNREACHABLE
    return ReplyCode.HOST_UNREACHABLE


async def open_target(host: str, port: int, timeout: float) -> TcpStream:
    """A TCP connection to ``host:port`` within ``timeout`` seconds, name lookup included.

    The addresses a name resolves to are tried in order and the first one that answers is
    taken; if none does, the *first* failure is raised with its errno (go-socks5 dials the
    first address only; an asyncio dial to a name would fold the failures into one ``OSError``
    without an errno). Raises ``OSError`` (``socket.gaierror`` for the lookup) or
    ``TimeoutError``; see :func:`reply_for`."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        first: OSError | None = None
        for _family, _type, _proto, _name, address in infos:
            try:
                return await TcpStream.connect(str(address[0]), port)
            except OSError as exc:
                first = first or exc
        raise first or OSError(f"{host} resolves to no address")


@dataclass
class Transfer:
    """Bytes copied by one :func:`pipe`, each way."""

    a_to_b: int = 0
    b_to_a: int = 0


async def pipe(
    a: ByteStream,
    b: ByteStream,
    first: bytes = b"",
    frame: Callable[[bytes], list[bytes]] | None = None,
) -> Transfer:
    """Write ``first`` to ``b``, then copy both ways; when either direction ends (end of
    stream or an error), stop the other and close both. Never raises a stream error.

    ``frame`` (optional) cuts what ``a`` sends into messages, each written to ``b`` with its
    own write (a route group sends one route packet per write: a peer that takes one packet
    as one message needs that); a ``ValueError`` from it ends the copy."""
    done = Transfer()

    async def a_to_b() -> None:
        with contextlib.suppress(*STREAM_ERRORS, ValueError):
            if first:
                await b.write(first)
                done.a_to_b += len(first)
            while data := await a.read(CHUNK):
                for message in frame(data) if frame is not None else (data,):
                    await b.write(message)
                done.a_to_b += len(data)

    async def b_to_a() -> None:
        with contextlib.suppress(*STREAM_ERRORS):
            while data := await b.read(CHUNK):
                await a.write(data)
                done.b_to_a += len(data)

    try:
        async with leaving() as tg:
            ends = [tg.create_task(a_to_b()), tg.create_task(b_to_a())]
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            raise Leave
    finally:
        for stream in (a, b):
            with contextlib.suppress(*STREAM_ERRORS):
                await stream.close()
    return done
