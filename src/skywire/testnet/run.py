"""The main job: a whole Skywire network on loopback, run like a deployment, and used.

Every service, relay server, visor and the demo site is its own process
(:mod:`skywire.testnet.deploy`); this process is the supervisor and the user: it fetches a file
over dmsg as a client would, links the visors with transports through their control APIs,
pulls a file across a 3-hop route through visor 0's ``.skynet`` proxy, fetches the demo site by
the five kinds of names, and uses the apps. Then the network stays up (unless ``once``) so
other tools can use it, until Ctrl-C stops every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.client import Client
from skywire.dmsg.http.client import fetch_stream
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.appdemo import AppPlan, VisorRef, apps_demo
from skywire.testnet.demo import check_names, demo_names
from skywire.testnet.deploy import PUBLIC, VISORS, Deployment, Ports
from skywire.testnet.keys import KeyBook
from skywire.testnet.routedemo import route_fetch
from skywire.visor.rpc import RPCClient
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
    autoconnect_ok: bool = True

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
    verbose: bool = False,
) -> RunReport:
    """``verbose``: print every output line of every part (otherwise warnings and errors)."""
    # Before anything is written: one network per state folder, and its ports free.
    fixed = disc_port != 0  # the well-known testnet ports, as `cli config gen --testnet`
    ports = Ports.fixed(disc_port) if fixed else Ports.free()
    apps = AppPlan(fixed=fixed)
    with StateLock(data_dir, "testnet.lock"):
        if fixed:
            check_ports_free(("testnet", "127.0.0.1", p) for p in [*ports.all(), *apps.ports()])
        return await _run(data_dir, size, ports, apps, once, stop, say, verbose)


def _printer(say: Say, verbose: bool) -> Callable[[str, str], None]:
    """Each part's output line with its name in front: all of them, or what is not routine."""

    def on_line(part: str, line: str) -> None:
        if verbose or any(level in line for level in (" WARNING ", " ERROR ", "Traceback")):
            say(f"[{part}] {line}")

    return on_line


async def _run(
    data_dir: Path,
    size: int,
    ports: Ports,
    apps: AppPlan,
    once: bool,
    stop: asyncio.Event | None,
    say: Say,
    verbose: bool,
) -> RunReport:
    www = data_dir / "www"
    payload = www / "payload.bin"
    say(f"preparing a {size / 1e6:.0f} MB file in {payload}")
    digest = await asyncio.to_thread(_make_payload, payload, size)
    keys = KeyBook(data_dir / "keys.json")
    say(f"starting every part as its own process (logs in {data_dir / 'logs'}):")
    t0 = time.monotonic()
    net = Deployment(data_dir, keys, ports, apps, www=www, say=say, on_line=_printer(say, verbose))
    try:
        await net.start_dmsg()
        say(f"dmsg parts up in {time.monotonic() - t0:.1f} s")
        say("")
        say(f"discovery    {net.disc_url}  (SQLite: {data_dir / 'dmsg-discovery.db'})")
        for k, port in enumerate(ports.relays):
            say(f"dmsg server  {net.relay_pk(k)}  at 127.0.0.1:{port}")
        say(f"file server  {net.site_pk}  (process 'site', dmsg port 80)")
        report = await _dmsg_demo(net, payload.name, size, digest, say)
        say("")
        t0 = time.monotonic()
        await net.start_skywire()
        say(f"all {len(net.parts)} parts up (the rest in {time.monotonic() - t0:.1f} s)")
        report = await _skywire(
            net, report, payload.name, digest, apps, ports, data_dir, once, stop, say
        )
    finally:
        await net.close()
    return report


async def _skywire(
    net: Deployment,
    report: RunReport,
    name: str,
    digest: str,
    apps: AppPlan,
    ports: Ports,
    data_dir: Path,
    once: bool,
    stop: asyncio.Event | None,
    say: Say,
) -> RunReport:
    payload_name = name
    visors = [VisorRef(net.visor_pk(i), net.rpc_addr(i)) for i in range(VISORS)]
    say(f"transport discovery {net.url(ports.tpd)}  (SQLite)")
    say(f"address resolver    {net.url(ports.ar)}")
    say(f"route finder        {net.url(ports.rf)}")
    say(f"service discovery   {net.sd_url}  (SQLite)")
    say(f"uptime tracker      {net.ut_url}  (SQLite)")
    say(f"route setup node    {net.setup_pk}  (dmsg port 36)")
    for i, v in enumerate(visors):
        say(f"visor {i}             {v.pk}  control {v.rpc}")
    hops = await _chain(visors, say)
    await RPCClient(visors[-1].rpc).call(
        "POST", "/skynet/services", {"port": 80, "address": f"127.0.0.1:{ports.site}"}
    )
    # the apps first: once they run, their start-up no longer shares the cores with the route
    report.apps_ok = await apps_demo(visors, net.sd_url, apps, ports.site, say)
    say("")
    proxy = ("127.0.0.1", ports.skynet_web)
    report.route_ok = await route_fetch(
        visors[0].rpc, proxy, visors[-1].pk, payload_name, digest, say
    )
    report.names_ok = await _proxy_demo(net, visors, hops, say)
    report.autoconnect_ok = await _newcomer_demo(net, say)
    joining = data_dir / "visor-config.json"
    await asyncio.to_thread(net.joining_config().save, joining)
    if not once:
        rpc = visors[0].rpc
        url = f"dmsg://{net.site_pk}:80/{payload_name}"
        say("")
        say("the network is up; try, in another shell:")
        say(f"  .venv/bin/skywire dmsg curl --disc {net.disc_url} -o /tmp/p.bin {url}")
        say(f"  .venv/bin/skywire cli visor info --rpc {rpc}")
        say(f"  .venv/bin/skywire cli visor tp ls --rpc {rpc}")
        say(f"  .venv/bin/skywire cli visor app ls --rpc {rpc}")
        say(f"  .venv/bin/skywire cli proxy list --sd {net.sd_url}")
        say(f"  .venv/bin/skywire cli route find {visors[-1].pk} --rpc {rpc}")
        say(f"  .venv/bin/skywire visor -c {joining}   # one more visor, joining in")
        say("press Ctrl-C to stop")
        if stop is None:
            stop = asyncio.Event()
        await stop.wait()
    say("stopping: visors (and their apps), then services, relay servers and discovery")
    return report


async def _dmsg_demo(net: Deployment, name: str, size: int, digest: str, say: Say) -> RunReport:
    """This process as a dmsg client: dials, a ping, and the file through a relay server."""
    async with DiscClient(net.disc_url) as disc, Client(SecKey.generate(), disc) as fetcher:
        await fetcher.ready(30)
        say(f"fetcher      {fetcher.pk}  via server {next(iter(fetcher.sessions))}  (this process)")
        dials = []
        for _ in range(20):
            start = time.monotonic()
            stream = await fetcher.dial(net.site_pk, 80)
            dials.append(time.monotonic() - start)
            await stream.close()
        dial_p50 = statistics.median(dials) * 1e3
        say(f"stream dial  p50 {dial_p50:.2f} ms over {len(dials)} dials")
        ping = min(await fetcher.ping(net.site_pk, count=5)) * 1e3
        say(f"dmsgctrl     ping {ping:.2f} ms")
        url = f"dmsg://{net.site_pk}:80/{name}"
        say(f"GET {url}")
        h = hashlib.sha256()
        got = 0
        start = time.monotonic()
        async with fetch_stream(fetcher.dial, url, timeout=120) as resp:
            async for chunk in resp.aiter_raw():
                h.update(chunk)
                got += len(chunk)
        elapsed = time.monotonic() - start
    ok = resp.status_code == 200 and h.hexdigest() == digest and got == size
    report = RunReport(got, elapsed, dial_p50, ping, ok)
    say(
        f"fetched      {got / 1e6:.1f} MB in {elapsed:.2f} s = {report.mb_per_s:.1f} MB/s,"
        f" sha256 {'matches' if ok else 'MISMATCH'} (client here → relay process → site process)"
    )
    return report


async def _chain(visors: list[VisorRef], say: Say) -> list[uuid.UUID]:
    """stcpr transports visor 0 → 1 → 2 → 3, added through the visors' control APIs; their
    IDs once both ends hold them."""
    t0 = time.monotonic()
    ids = []
    for left, right in itertools.pairwise(visors):
        tp = await RPCClient(left.rpc).call(
            "POST", "/transports", {"pk": right.pk.hex(), "type": "stcpr"}
        )
        ids.append(uuid.UUID(tp["id"]))
        await _until_listed(right, tp["id"])
    say(
        f"stcpr transports    {len(ids)} in a row, up in {(time.monotonic() - t0) * 1e3:.0f} ms"
        " (handshake, Noise KK, settlement, registered in transport discovery)"
    )
    return ids


async def _until_listed(visor: VisorRef, tp_id: str) -> None:
    rpc = RPCClient(visor.rpc, timeout=5.0)
    async with asyncio.timeout(30):
        while not any(t["id"] == tp_id for t in await rpc.call("GET", "/transports")):  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # another process: the far end settling the transport


async def _proxy_demo(
    net: Deployment, visors: list[VisorRef], hops: list[uuid.UUID], say: Say
) -> bool:
    """The demo site through visor 0's proxies, by the five kinds of names."""
    proxies = {
        "dmsg_web": f"127.0.0.1:{net.ports.dmsg_web}",
        "skynet_web": f"127.0.0.1:{net.ports.skynet_web}",
    }
    pinned = await _site_server(net)
    names = demo_names(
        net.site_pk, pinned, visors[-1].pk, hops, dmsg_owner=DMSG_SITE, skynet_owner=SKYNET_SITE
    )
    say("")
    say(
        f"resolving proxies   visor 0: socks5h://{proxies['dmsg_web']} (.dmsg, .skynet) and "
        f"socks5h://{proxies['skynet_web']}; the same ports are HTTP proxies too"
    )
    say(f"demo site           over dmsg on {net.site_pk} port 80; on skynet port 80 of visor 3")
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


async def _newcomer_demo(net: Deployment, say: Say) -> bool:
    """A fifth visor with no configured transports joins, finds the public visors in service
    discovery and makes stcpr transports to them by itself (autoconnect)."""
    say("")
    t0 = time.monotonic()
    rpc = await net.start_newcomer()
    public = {net.visor_pk(i).hex() for i in PUBLIC}
    client = RPCClient(rpc, timeout=5.0)
    rows: list[dict[str, object]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while len({r["remote_pk"] for r in rows if r["remote_pk"] in public}) < len(public):
                rows = await client.call("GET", "/transports")
                await asyncio.sleep(0.1)  # another process: its autoconnect dialling
    mine = [r for r in rows if r["remote_pk"] in public]
    ok = len(mine) == len(public) and all(r["type"] == "stcpr" for r in mine)
    say(
        f"autoconnect         visor 4 (no transports configured) joined and made "
        f"{len(mine)} stcpr transports to the {len(public)} public visors in "
        f"{time.monotonic() - t0:.1f} s: {'ok' if ok else 'FAILED'}"
    )
    say(f"  .venv/bin/skywire cli visor tp ls --rpc {rpc}")
    return ok


async def _site_server(net: Deployment) -> PubKey:
    """A relay server the site's dmsg client is on (what a pinned name names)."""
    async with DiscClient(net.disc_url) as disc:
        entry = await disc.get_entry(net.site_pk)
    assert entry.client is not None and entry.client.delegated_servers
    return entry.client.delegated_servers[0]
