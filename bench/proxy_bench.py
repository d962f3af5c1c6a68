"""Resolving-proxy figures on loopback, each beside a direct dmsghttp fetch in the same run.

The network is the tests' proxy network (tests/integration/_proxynet.py), all in this one
process: two dmsg servers, the services, four visors in a row (stcpr), visor 0 running both
proxies, visor 3 publishing a site on skynet port 80, and a dmsg client serving the same site
over dmsghttp. Clients: a minimal SOCKS5 HTTP/1.0 client (one connection per request, as a
browser's first request) for the proxies; ``dmsg.http.fetch_stream`` (what ``skywire dmsg
curl`` does) for the direct fetch; and, as whole processes, ``curl --socks5-hostname`` against
``skywire dmsg curl``.

* time to first byte, p50 over N requests: direct dmsg; proxy .dmsg bare and pinned; proxy
  .skynet bare and source-routed (first request, which sets the route up, and the reused ones);
* throughput of one large GET: direct dmsg, proxy .dmsg, proxy .skynet over the 3-hop route;
* route reuse: 30 requests to one .skynet destination, the first against the 2nd..30th;
* whole commands: ``curl`` through the proxy and ``skywire dmsg curl``, one small GET each.

Prints ``name: value unit`` lines. ``--requests N`` (default 30), ``--size-mb M`` (default 50).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration._proxynet import ProxyNet, dmsg_name, proxy_network

from skywire.dmsg.http import fetch_stream


async def socks5_ttfb(proxy: tuple[str, int], name: str, path: str) -> tuple[float, int]:
    """One GET through the SOCKS5 proxy: seconds to the first response byte, body size."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection(*proxy)
    try:
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        raw = name.encode()
        writer.write(bytes([5, 1, 0, 3, len(raw)]) + raw + struct.pack(">H", 80))
        head = await reader.readexactly(10)
        if head[1] != 0:
            raise RuntimeError(f"{name}: SOCKS5 reply {head[1]}")
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
        first = await reader.read(1 << 16)
        ttfb = time.perf_counter() - start
        size = len(first)
        while chunk := await reader.read(1 << 20):
            size += len(chunk)
    finally:
        writer.close()
        await writer.wait_closed()
    return ttfb, size


async def direct_ttfb(net: ProxyNet, path: str) -> tuple[float, int]:
    client = net.proxy_visor.dmsg
    assert client is not None
    start = time.perf_counter()
    url = f"dmsg://{net.site_client.pk.hex()}:80{path}"
    size = 0
    ttfb = 0.0
    async with fetch_stream(client.dial, url, timeout=120) as resp:
        async for chunk in resp.aiter_raw():
            if not size:
                ttfb = time.perf_counter() - start
            size += len(chunk)
    return ttfb, size


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.2f} ms"


async def whole_commands(net: ProxyNet) -> None:
    host, port = net.proxy("dmsg_web")
    name = dmsg_name(net.site_client.pk)
    curl = shutil.which("curl")
    runs: dict[str, list[float]] = {"curl_via_proxy": [], "skywire_dmsg_curl": []}
    for _ in range(5):
        if curl:
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                curl,
                "-s",
                "-o",
                "/dev/null",
                "--socks5-hostname",
                f"{host}:{port}",
                f"http://{name}/",
            )
            await proc.wait()
            runs["curl_via_proxy"].append(time.perf_counter() - start)
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "skywire.cli",
            "dmsg",
            "curl",
            "-q",
            "--disc",
            net.dmsg.disc_url,
            "-o",
            "/dev/null",
            f"dmsg://{net.site_client.pk.hex()}:80/",
        )
        await proc.wait()
        runs["skywire_dmsg_curl"].append(time.perf_counter() - start)
    for key, values in runs.items():
        if values:
            print(f"command_{key}_small_get_p50: {ms(values)} (whole process)")


async def main(requests: int, size_mb: int) -> None:
    async with proxy_network() as net:
        web = net.proxy_visor.web
        assert web is not None
        dmsg_proxy, skynet_proxy = net.proxy("dmsg_web"), net.proxy("skynet_web")
        site, far = net.site_client.pk, net.far.pk
        server = next(iter(net.site_client.sessions))
        route = ".".join(tp.id.hex for tp in net.transports)

        direct = [(await direct_ttfb(net, "/"))[0] for _ in range(requests)]
        print(f"ttfb_direct_dmsg_p50: {ms(direct)} (dmsghttp fetch, no proxy)")
        for label, name in [
            ("dmsg_bare", dmsg_name(site)),
            ("dmsg_pinned", dmsg_name(site, server=server)),
        ]:
            values = [(await socks5_ttfb(dmsg_proxy, name, "/"))[0] for _ in range(requests)]
            print(f"ttfb_proxy_{label}_p50: {ms(values)} (SOCKS5, new connection each)")

        for label, name in [
            ("skynet_bare", f"{far.hex()}.skynet"),
            ("skynet_source_routed", f"{route}.{far.hex()}.skynet"),
        ]:
            before = web.skynet_connector.pool.routes_dialed
            first, _ = await socks5_ttfb(skynet_proxy, name, "/")
            rest = [(await socks5_ttfb(skynet_proxy, name, "/"))[0] for _ in range(requests - 1)]
            dialed = web.skynet_connector.pool.routes_dialed - before
            print(f"ttfb_proxy_{label}_first: {first * 1e3:.2f} ms (sets up the 3-hop route)")
            print(f"ttfb_proxy_{label}_reused_p50: {ms(rest)} (requests 2..{requests})")
            print(f"route_reuse_{label}_routes_dialed: {dialed} routes for {requests} requests")
            total = first + sum(rest)
            print(
                f"route_reuse_{label}_total: {total * 1e3:.1f} ms for {requests} requests "
                f"(one route setup, then {statistics.mean(rest) * 1e3:.2f} ms each)"
            )

        path = f"/blob?size={size_mb << 20}"
        for label, run in [
            ("direct_dmsg", lambda: direct_ttfb(net, path)),
            ("proxy_dmsg", lambda: socks5_ttfb(dmsg_proxy, dmsg_name(site), path)),
            ("proxy_skynet_3hop", lambda: socks5_ttfb(skynet_proxy, f"{far.hex()}.skynet", path)),
        ]:
            start = time.perf_counter()
            _, size = await run()
            elapsed = time.perf_counter() - start
            assert size >= size_mb << 20, (label, size)
            print(f"throughput_{label}: {size / elapsed / 1e6:.1f} MB/s ({size_mb} MB GET)")

        await whole_commands(net)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--size-mb", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.size_mb))
