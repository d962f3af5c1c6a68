"""A local network for the resolving proxies: two dmsg servers, the services, four visors in a
row (stcpr), the first running both proxies, the last publishing a name-based web site on skynet
port 80; and a plain dmsg client serving the same site over dmsghttp on port 80."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from skywire.cipher import PubKey
from skywire.dmsg.client import Client
from skywire.dmsg.http import HTTPServer
from skywire.services.appserver import AppServer
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.transport.manager import ManagedTransport
from skywire.visor.config import SkynetService, VisorConfig
from skywire.visor.visor import Visor

BLOCK = bytes(i % 251 for i in range(1 << 20))
SITES = {"alpha.test": "Alpha site", "beta.test": "Beta site"}


def site_app(owner: str) -> web.Application:
    """Name-based virtual hosts: the Host header picks the page."""

    async def page(request: web.Request) -> web.Response:
        host = request.host.split(":")[0]
        title = SITES.get(host, f"Default site of {owner}")
        body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
        body += f"<p id='path'>{request.path}</p><p id='host'>{host}</p></body></html>"
        return web.Response(text=body, content_type="text/html")

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
    app.router.add_get("/blob", blob)
    app.router.add_get("/{tail:.*}", page)
    return app


class SiteServer(AppServer):
    def __init__(self, owner: str) -> None:
        super().__init__("127.0.0.1", 0)
        self.owner = owner

    def make_app(self) -> web.Application:
        return site_app(self.owner)


@dataclass
class ProxyNet:
    dmsg: LocalDmsgNetwork
    sky: LocalSkywire
    site_client: Client  # serves the site over dmsg port 80
    transports: list[ManagedTransport]

    @property
    def proxy_visor(self) -> Visor:
        return self.sky.visors[0]

    @property
    def far(self) -> Visor:
        return self.sky.visors[-1]

    def proxy(self, name: str = "dmsg_web") -> tuple[str, int]:
        web = self.proxy_visor.web
        assert web is not None
        host, _, port = web.proxies[name].address.rpartition(":")
        return host, int(port)


@contextlib.asynccontextmanager
async def proxy_network() -> AsyncIterator[ProxyNet]:
    async with contextlib.AsyncExitStack() as stack:
        site = await stack.enter_async_context(SiteServer("the far visor"))

        def configure(index: int, cfg: VisorConfig) -> None:
            if index == 0:
                cfg.dmsg_web.enabled = True
                cfg.dmsg_web.listen = "127.0.0.1:0"
                cfg.skynet_web.enabled = True
                cfg.skynet_web.listen = "127.0.0.1:0"
            if index in (2, 3):  # visor 2 too: a 2-hop source route reaches it
                cfg.skynet_web.services = [SkynetService(port=80, address=f"127.0.0.1:{site.port}")]

        dmsg = await stack.enter_async_context(LocalDmsgNetwork(servers=2))
        sky = await stack.enter_async_context(
            LocalSkywire(dmsg, visors=4, latency_interval=0, configure=configure)
        )
        transports = await sky.chain("stcpr")
        client = await dmsg.client()
        listener = await client.listen(80)
        await stack.enter_async_context(HTTPServer(site_app("the dmsg client"), listener))
        yield ProxyNet(dmsg, sky, client, transports)


async def socks5_connect(proxy: tuple[str, int], name: str, port: int = 80) -> tuple[int, Any]:
    """A raw SOCKS5 CONNECT by domain name: the reply code, and the open streams on success."""
    reader, writer = await asyncio.open_connection(*proxy)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    raw = name.encode()
    writer.write(bytes([5, 1, 0, 3, len(raw)]) + raw + struct.pack(">H", port))
    head = await reader.readexactly(4)
    assert head[0] == 5
    await reader.readexactly(4 + 2 if head[3] == 1 else 16 + 2)
    if head[1] != 0:
        writer.close()
        await writer.wait_closed()
        return head[1], None
    return 0, (reader, writer)


def dmsg_name(pk: PubKey, vhost: str = "", server: PubKey | None = None) -> str:
    """``[vhost.]<pk>[.<server>].dmsg``: the client, then the server to meet it through."""
    parts = [vhost] if vhost else []
    parts.append(pk.hex())
    if server is not None:
        parts.append(server.hex())
    parts.append("dmsg")
    return ".".join(parts)
