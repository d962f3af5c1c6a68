"""A skysocks network on loopback, and a raw SOCKS5 client to drive it.

:func:`skysocks_net` builds visors 0─1─2 (:class:`RouteNet`), a web site on 127.0.0.1, the
skysocks server on visor 2 and the skysocks client on visor 0 (its SOCKS5 port on
127.0.0.1:<ephemeral>), so that every request crosses a 2-hop route. :class:`Socks5` speaks
SOCKS5 byte by byte, as curl does, and reports what a user would see: the reply codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from skywire.apps.skysocks import (
    Credentials,
    RedialPolicy,
    SkysocksClient,
    SkysocksServer,
)
from tests.integration.test_router import RouteNet

BLOCK = bytes(i % 251 for i in range(1 << 20))


def item_body(n: int) -> bytes:
    """The distinct body of ``/item/<n>`` (its length varies with ``n`` too)."""
    return (f"item {n}|" * (1 + n % 37)).encode()


def site() -> web.Application:
    async def item(request: web.Request) -> web.Response:
        return web.Response(body=item_body(int(request.match_info["n"])))

    async def blob(request: web.Request) -> web.StreamResponse:
        size = int(request.query.get("size", "1000"))
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        left = size
        while left:
            n = min(left, len(BLOCK))
            await resp.write(BLOCK[:n])
            left -= n
        return resp

    app = web.Application()
    app.router.add_get("/item/{n}", item)
    app.router.add_get("/blob", blob)
    return app


@contextlib.asynccontextmanager
async def web_site(host: str = "127.0.0.1") -> AsyncIterator[int]:
    """The site on ``host``:<ephemeral>; yields the port."""
    runner = web.AppRunner(site())
    await runner.setup()
    try:
        tcp = web.TCPSite(runner, host, 0)
        await tcp.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


class SocksRefused(Exception):
    def __init__(self, stage: str, code: int) -> None:
        super().__init__(f"{stage}: {code:#04x}")
        self.stage = stage
        self.code = code


class Socks5:
    """One raw SOCKS5 client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sent = bytearray()
        self.received = bytearray()
        self.bound: tuple[str, int] | None = None

    @classmethod
    async def open(cls, proxy: tuple[str, int]) -> Socks5:
        return cls(*await asyncio.open_connection(*proxy))

    async def send(self, data: bytes) -> None:
        self.sent += data
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.received += data
        return data

    async def greet(self, auth: tuple[str, str] | None = None, methods: bytes = b"") -> None:
        """Greeting (and login); raises :class:`SocksRefused` on ``05 FF`` or ``01 01``."""
        offer = methods or (b"\x02" if auth else b"\x00")
        await self.send(bytes([5, len(offer)]) + offer)
        ver, chosen = await self.recv(2)
        assert ver == 5
        if chosen == 0xFF:
            raise SocksRefused("method", chosen)
        if chosen == 2:
            assert auth is not None, "the proxy wants a login"
            user, password = (s.encode() for s in auth)
            await self.send(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
            ver, status = await self.recv(2)
            assert ver == 1
            if status:
                raise SocksRefused("login", status)

    async def request(self, host: str, port: int, *, command: int = 1, atyp: int = 0) -> None:
        """A request; raises :class:`SocksRefused` with the reply code unless it succeeded."""
        if atyp:
            addr = bytes([atyp]) + b"\x00" * 4
        else:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                raw = host.encode()
                addr = bytes([3, len(raw)]) + raw
            else:
                addr = bytes([1 if ip.version == 4 else 4]) + ip.packed
        await self.send(bytes([5, command, 0]) + addr + struct.pack(">H", port))
        ver, code, _rsv, kind = await self.recv(4)
        assert ver == 5
        size = {1: 4, 4: 16}.get(kind)
        if size is None:
            size = (await self.recv(1))[0]
        bound = await self.recv(size + 2)
        if kind in (1, 4):
            (bound_port,) = struct.unpack(">H", bound[-2:])
            self.bound = (str(ipaddress.ip_address(bound[:size])), bound_port)
        if code:
            raise SocksRefused("request", code)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def http_get(
    proxy: tuple[str, int],
    port: int,
    path: str,
    *,
    host: str = "127.0.0.1",
    auth: tuple[str, str] | None = None,
) -> bytes:
    """GET ``path`` from ``host:port`` through the SOCKS5 proxy; returns the body."""
    conn = await Socks5.open(proxy)
    try:
        await conn.greet(auth)
        await conn.request(host, port)
        conn.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await conn.writer.drain()
        raw = await conn.reader.read()  # until the end of the stream
    finally:
        await conn.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    assert len(body) == length, (len(body), length)
    return body


@dataclass
class SkysocksNet:
    net: RouteNet
    server: SkysocksServer
    client: SkysocksClient
    web_port: int

    @property
    def proxy(self) -> tuple[str, int]:
        assert self.client.address is not None
        return self.client.address


FAST_REDIAL = RedialPolicy(initial=0.05, factor=2.0, maximum=0.4)


@contextlib.asynccontextmanager
async def skysocks_net(
    credentials: Credentials | None = None, **client_kw: Any
) -> AsyncIterator[SkysocksNet]:
    """Visors 0─1─2, the site, skysocks on 2 and skysocks-client on 0, the route up."""
    client_kw.setdefault("redial", FAST_REDIAL)
    async with contextlib.AsyncExitStack() as stack:
        web_port = await stack.enter_async_context(web_site())
        net = await stack.enter_async_context(RouteNet(3, [(0, 1), (1, 2)]))
        server = await stack.enter_async_context(
            SkysocksServer(net.nodes[2].router, credentials=credentials)
        )
        client = await stack.enter_async_context(
            SkysocksClient(
                net.nodes[0].router, net.nodes[2].pk, listen=("127.0.0.1", 0), **client_kw
            )
        )
        async with asyncio.timeout(20):
            await client.wait_connected()
        yield SkysocksNet(net, server, client, web_port)
