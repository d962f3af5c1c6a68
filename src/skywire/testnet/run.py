"""The main job: a whole dmsg network on loopback, a file served over it, and a fetch through it.

Discovery on SQLite, two relay servers, a file server behind dmsghttp on one client, and a second
client that fetches the file, checks it and reports how fast each step was. Then the network
stays up (unless ``once``) so other tools can use it, until Ctrl-C closes everything.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from skywire.cipher import PubKey
from skywire.dmsg.http import HTTPServer, add_static, fetch_stream
from skywire.testnet.appdemo import AppPlan, apps_demo
from skywire.testnet.demo import DemoSite, add_demo_pages, check_names, demo_names
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.keys import KeyBook
from skywire.testnet.skynet import LocalSkywire
from skywire.transport.manager import ManagedTransport
from skywire.visor.config import VisorConfig
from skywire.visor.statelock import StateLock, check_ports_free

Say = Callable[[str], None]
DMSG_SITE = "the dmsg site"
SKYNET_SITE = "visor 3"


@dataclass
class RunReport:
    file_bytes: int
    fetch_seconds: float
    dial_p50_ms: float
    ping_ms: float
    sha256_ok: bool
    route_ok: bool = True
    names_ok: bool = True
    apps_ok: bool = True

    @property
    def mb_per_s(self) -> float:
        return self.file_bytes / self.fetch_seconds / 1e6


def _make_payload(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        left = size
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


async def run_local_network(
    data_dir: Path,
    *,
    size: int = 64 << 20,
    disc_port: int = 9090,
    once: bool = False,
    stop: asyncio.Event | None = None,
    say: Say = print,
) -> RunReport:
    # Before anything is written: one network per state folder, and its ports free.
    fixed = disc_port != 0  # the well-known testnet ports, as `cli config gen --testnet`
    with StateLock(data_dir, "testnet.lock"):
        if fixed:
            check_ports_free(("testnet", "127.0.0.1", p) for p in _fixed_ports(disc_port))
        return await _run(data_dir, size, disc_port, fixed, once, stop, say)


def _fixed_ports(disc_port: int) -> list[int]:
    apps = AppPlan(fixed=True).ports()
    return [disc_port, *FIXED.values(), *DMSG_SERVER_PORTS, *VISOR_CLI_PORTS, *apps]


FIXED = {"tpd": 9091, "rf": 9092, "ar": 9093, "sd": 9094, "dmsg_web": 4445, "skynet_web": 4446}
DMSG_SERVER_PORTS = (9081, 9082)
VISOR_CLI_PORTS = (3436, 3437, 3438, 3439)
"""Control ports of visors 0-3 (3435 is left for one more visor that joins in)."""


async def _run(
    data_dir: Path,
    size: int,
    disc_port: int,
    fixed: bool,
    once: bool,
    stop: asyncio.Event | None,
    say: Say,
) -> RunReport:
    www = data_dir / "www"
    payload = www / "payload.bin"
    say(f"preparing a {size / 1e6:.0f} MB file in {payload}")
    digest = await asyncio.to_thread(_make_payload, payload, size)
    keys = KeyBook(data_dir / "keys.json")

    db = data_dir / "dmsg-discovery.db"
    async with LocalDmsgNetwork(
        servers=2,
        db=db,
        disc_port=disc_port,
        server_keys=[keys.get("dmsg-server-0"), keys.get("dmsg-server-1")],
        server_ports=DMSG_SERVER_PORTS if fixed else (),
    ) as net:
        say(f"discovery    {net.disc_url}  (SQLite: {db})")
        for srv in net.servers:
            say(f"dmsg server  {srv.pk}  at {srv.address}")

        t0 = time.monotonic()
        host = await net.client(keys.get("file-server"))
        say(f"file server  {host.pk}  sessions ready in {(time.monotonic() - t0) * 1e3:.1f} ms")
        app = web.Application()
        add_demo_pages(app.router, DMSG_SITE)
        add_static(app.router, "/", www, show_index=True)
        listener = await host.listen(80)
        async with HTTPServer(app, listener):
            fetcher = await net.client()
            say(f"fetcher      {fetcher.pk}  via server {next(iter(fetcher.sessions))}")

            dials = []
            for _ in range(20):
                start = time.monotonic()
                stream = await fetcher.dial(host.pk, 80)
                dials.append(time.monotonic() - start)
                await stream.close()
            dial_p50 = statistics.median(dials) * 1e3
            say(f"stream dial  p50 {dial_p50:.2f} ms over {len(dials)} dials")
            ping = min(await fetcher.ping(host.pk, count=5)) * 1e3
            say(f"dmsgctrl     ping {ping:.2f} ms")

            url = f"dmsg://{host.pk}:80/payload.bin"
            say(f"GET {url}")
            h = hashlib.sha256()
            got = 0
            start = time.monotonic()
            async with fetch_stream(fetcher.dial, url, timeout=120) as resp:
                async for chunk in resp.aiter_bytes(1 << 20):
                    h.update(chunk)
                    got += len(chunk)
            elapsed = time.monotonic() - start
            ok = resp.status_code == 200 and h.hexdigest() == digest and got == size
            report = RunReport(got, elapsed, dial_p50, ping, ok)
            say(
                f"fetched      {got / 1e6:.1f} MB in {elapsed:.2f} s = {report.mb_per_s:.1f} MB/s,"
                f" sha256 {'matches' if ok else 'MISMATCH'}"
            )
            say("")

            plan = AppPlan(fixed=fixed)
            server_pk = keys.get("visor-2").pubkey()

            def with_proxies(index: int, cfg: VisorConfig) -> None:
                cfg.local_path = str(data_dir / f"visor-{index}")
                plan.configure(index, cfg, server_pk)
                if index == 0:  # the first visor runs both resolving proxies
                    cfg.dmsg_web.enabled = cfg.skynet_web.enabled = True
                    cfg.dmsg_web.listen = f"127.0.0.1:{FIXED['dmsg_web'] if fixed else 0}"
                    cfg.skynet_web.listen = f"127.0.0.1:{FIXED['skynet_web'] if fixed else 0}"

            async with (
                LocalSkywire(
                    net,
                    visors=4,
                    data_dir=data_dir,
                    tpd_port=FIXED["tpd"] if fixed else 0,
                    rf_port=FIXED["rf"] if fixed else 0,
                    ar_port=FIXED["ar"] if fixed else 0,
                    sd_port=FIXED["sd"] if fixed else 0,
                    configure=with_proxies,
                    apps=True,
                    keys=keys.get,
                    cli_ports=VISOR_CLI_PORTS if fixed else (),
                ) as sky,
                DemoSite(SKYNET_SITE) as site,
            ):
                report.route_ok = await _route_demo(sky, size, say)
                # a pinned name must name the dmsg server the site's client is on
                on = next(iter(host.sessions))
                report.names_ok = await _proxy_demo(sky, host.pk, on, site, say)
                report.apps_ok = await apps_demo(sky, plan, site.port, say)
                visor_cfg = data_dir / "visor-config.json"
                cfg = sky.config(keys.get("visor-joining"))
                cfg.cli_addr = "127.0.0.1:3435"
                cfg.local_path = str(data_dir / "visor")
                await asyncio.to_thread(cfg.save, visor_cfg)
                if not once:
                    first = sky.visors[0]
                    assert first.rpc is not None
                    rpc = f"127.0.0.1:{first.rpc.port}"
                    say("")
                    say("the network is up; try, in another shell:")
                    say(f"  .venv/bin/skywire dmsg curl --disc {net.disc_url} -o /tmp/p.bin {url}")
                    say(f"  .venv/bin/skywire cli visor info --rpc {rpc}")
                    say(f"  .venv/bin/skywire cli visor tp ls --rpc {rpc}")
                    say(f"  .venv/bin/skywire cli visor app ls --rpc {rpc}")
                    assert sky.sd is not None
                    say(f"  .venv/bin/skywire cli proxy list --sd {sky.sd.url}")
                    say(f"  .venv/bin/skywire cli route find {sky.visors[-1].pk} --rpc {rpc}")
                    say(f"  .venv/bin/skywire visor -c {visor_cfg}   # one more visor, joining in")
                    say("press Ctrl-C to stop")
                    if stop is None:
                        stop = asyncio.Event()
                    await stop.wait()
                say("stopping: visors, services, clients, servers and discovery")
    return report


async def _proxy_demo(
    sky: LocalSkywire, dmsg_site: PubKey, server: PubKey, site: DemoSite, say: Say
) -> bool:
    """The demo site through the first visor's proxies, by the five kinds of names."""
    first, last = sky.visors[0], sky.visors[-1]
    assert first.web is not None and last.dmsg is not None and first.tm is not None
    await last.publish(80, f"127.0.0.1:{site.port}")
    proxies = {name: p.address for name, p in first.web.proxies.items()}
    hops = [tp.id for tp in _row(sky)]
    names = demo_names(
        dmsg_site, server, last.pk, hops, dmsg_owner=DMSG_SITE, skynet_owner=SKYNET_SITE
    )
    say("")
    say(
        f"resolving proxies   visor 0: socks5h://{proxies['dmsg_web']} (.dmsg, .skynet) and "
        f"socks5h://{proxies['skynet_web']}; the same ports are HTTP proxies too"
    )
    say(f"demo site           over dmsg on {dmsg_site} port 80; on skynet port 80 of visor 3")
    ok = True
    for demo, good, why in await check_names(names, proxies):
        ok = ok and good
        say(f"  {demo.kind:<21} {'ok' if good else 'FAILED ' + why}")
        say(f"    curl --socks5-hostname {proxies[demo.proxy]} http://{demo.name}/")
    say(
        f"  in a browser: chromium --proxy-server=socks5://{proxies['dmsg_web']} "
        "and open any of the names above"
    )
    return ok


def _row(sky: LocalSkywire) -> list[ManagedTransport]:
    """The transports of the row, visor 0 → 1 → 2 → 3 (made by _route_demo's chain)."""
    out = []
    for left, right in zip(sky.visors, sky.visors[1:], strict=False):
        assert left.tm is not None
        out.append(left.tm.by_remote(right.pk, "stcpr")[0])
    return out


async def _route_demo(sky: LocalSkywire, size: int, say: Say) -> bool:
    """Services and four visors in a row; a 3-hop route from the first to the last."""
    assert sky.tpd and sky.ar and sky.rf and sky.rsn
    say(f"transport discovery {sky.tpd.url}  (SQLite)")
    say(f"address resolver    {sky.ar.url}  udp {sky.ar.udp_addr[0]}:{sky.ar.udp_addr[1]}")
    say(f"route finder        {sky.rf.url}")
    say(f"route setup node    {sky.rsn.pk}  (dmsg port 36)")
    for i, v in enumerate(sky.visors):
        rpc = f"127.0.0.1:{v.rpc.port}" if v.rpc is not None else "-"
        say(f"visor {i}             {v.pk}  control {rpc}")
    t0 = time.monotonic()
    tps = await sky.chain("stcpr")
    say(
        f"stcpr transports    {len(tps)} in a row, up in {(time.monotonic() - t0) * 1e3:.0f} ms"
        " (handshake, Noise KK, settlement, registered in transport discovery)"
    )
    first, last = sky.visors[0], sky.visors[-1]
    assert first.router is not None and last.router is not None
    listener = await last.router.listen(80)
    payload = os.urandom(min(size, 16 << 20))
    digest = hashlib.sha256(payload).hexdigest()

    async def serve() -> None:
        rg = await listener.accept()
        await rg.write(payload)
        await rg.close()

    server = asyncio.create_task(serve())
    try:
        t0 = time.monotonic()
        rg = await first.router.dial_routes(last.pk, 0, 80, min_hops=3, max_hops=3)
        setup_ms = (time.monotonic() - t0) * 1e3
        say(
            f"route               visor 0 → 1 → 2 → 3 set up in {setup_ms:.1f} ms"
            f" (route finder, setup node, handshake{', Noise KK' if rg.encrypted else ''})"
        )
        h = hashlib.sha256()
        got = 0
        t0 = time.monotonic()
        while got < len(payload):
            chunk = await rg.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        elapsed = time.monotonic() - t0
        ok = got == len(payload) and h.hexdigest() == digest
        say(
            f"through the route   {got / 1e6:.1f} MB in {elapsed:.2f} s ="
            f" {got / elapsed / 1e6:.1f} MB/s, sha256 {'matches' if ok else 'MISMATCH'}"
        )
        await rg.close()
        await server
    finally:
        if not server.done():
            server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        await listener.close()
    return ok
