"""The demo web site of the local network, and the five kinds of names that reach it.

One small site with name-based virtual hosts (``blog.skywire.test``, ``shop.skywire.test``, and
a default page) is served over dmsghttp by the file server's dmsg client and published on
skynet port 80 by the last visor. :func:`check_names` fetches each kind of name through the
first visor's proxies with a minimal SOCKS5 client, as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import struct
import uuid
from dataclasses import dataclass

from aiohttp import web

from skywire.cipher import PubKey
from skywire.services.appserver import AppServer

__all__ = ["VHOSTS", "DemoName", "DemoSite", "add_demo_pages", "check_names", "demo_names"]

VHOSTS = {
    "blog.skywire.test": "The Skywire blog",
    "shop.skywire.test": "The Skywire shop",
}


def add_demo_pages(router: web.UrlDispatcher, owner: str) -> None:
    """``GET /`` answers the page of the ``Host`` asked for (name-based virtual hosts)."""

    async def page(request: web.Request) -> web.Response:
        host = request.host.rsplit(":", 1)[0] if ":" in request.host else request.host
        title = VHOSTS.get(host, f"Welcome to {owner}")
        body = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head><body>"
            f"<h1 id='title'>{html.escape(title)}</h1>"
            f"<p>served by <code>{html.escape(owner)}</code> for Host "
            f"<code id='host'>{html.escape(host)}</code></p>"
            "<p>Skywire in Python: this page crossed the overlay.</p></body></html>"
        )
        return web.Response(text=body, content_type="text/html")

    router.add_get("/", page)


class DemoSite(AppServer):
    """The demo site on a local TCP port (for publishing on a routing port)."""

    def __init__(self, owner: str) -> None:
        super().__init__("127.0.0.1", 0)
        self.owner = owner

    def make_app(self) -> web.Application:
        app = web.Application()
        add_demo_pages(app.router, self.owner)
        return app


@dataclass(frozen=True)
class DemoName:
    kind: str
    name: str
    proxy: str  # "dmsg_web" or "skynet_web"
    title: str  # what the page must say


def demo_names(
    dmsg_site: PubKey,
    server: PubKey,
    far_visor: PubKey,
    hops: list[uuid.UUID],
    *,
    dmsg_owner: str,
    skynet_owner: str,
) -> list[DemoName]:
    """The five kinds: bare, vhost, pinned server, vhost + pin, source-routed ``.skynet``."""
    blog, shop = "blog.skywire.test", "shop.skywire.test"
    route = ".".join(h.hex for h in hops)
    return [
        DemoName("bare", f"{dmsg_site.hex()}.dmsg", "dmsg_web", f"Welcome to {dmsg_owner}"),
        DemoName("vhost", f"{blog}.{dmsg_site.hex()}.dmsg", "dmsg_web", VHOSTS[blog]),
        DemoName(
            "pinned server",
            f"{dmsg_site.hex()}.{server.hex()}.dmsg",
            "dmsg_web",
            f"Welcome to {dmsg_owner}",
        ),
        DemoName(
            "vhost + pinned server",
            f"{shop}.{dmsg_site.hex()}.{server.hex()}.dmsg",
            "dmsg_web",
            VHOSTS[shop],
        ),
        DemoName(
            "source-routed skynet",
            f"{route}.{far_visor.hex()}.skynet",
            "skynet_web",
            f"Welcome to {skynet_owner}",
        ),
    ]


async def socks5_get(proxy: tuple[str, int], name: str, path: str = "/") -> tuple[int, str]:
    """``GET http://<name><path>`` through a SOCKS5 proxy (the name resolved by the proxy):
    the status (0 when the proxy refused) and the body."""
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        host, _, port_text = name.partition(":")
        raw = host.encode()
        writer.write(bytes([5, 1, 0, 3, len(raw)]) + raw + struct.pack(">H", int(port_text or 80)))
        head = await reader.readexactly(4)
        await reader.readexactly(6 if head[3] == 1 else 18)
        if head[1] != 0:
            return 0, f"SOCKS5 reply {head[1]}"
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return _split_response(response)


async def check_names(
    names: list[DemoName], proxies: dict[str, str]
) -> list[tuple[DemoName, bool, str]]:
    """Fetch each name through its proxy: (name, the page had its title, what went wrong)."""
    out = []
    for demo in names:
        host, _, port = proxies[demo.proxy].rpartition(":")
        try:
            status, body = await asyncio.wait_for(socks5_get((host, int(port)), demo.name), 30)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            out.append((demo, False, f"{type(exc).__name__}: {exc}"))
            continue
        ok = status == 200 and f">{html.escape(demo.title)}<" in body
        why = ""
        if not ok:  # the HTTP-proxy side of the same port says why in words
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
                _, body = await asyncio.wait_for(http_proxy_get((host, int(port)), demo.name), 30)
            why = f"status {status}: {body.strip()[:400]}"
        out.append((demo, ok, why))
    return out


async def http_proxy_get(proxy: tuple[str, int], name: str, path: str = "/") -> tuple[int, str]:
    """``GET http://<name><path>`` through an HTTP proxy: the status and the body."""
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(f"GET http://{name}{path} HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return _split_response(response)


def _split_response(response: bytes) -> tuple[int, str]:
    status_line, _, rest = response.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    parts = status_line.split(b" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, body.decode("utf-8", "replace")
