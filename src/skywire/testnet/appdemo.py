"""The apps of the main job: skysocks across a 2-hop route, and skychat between two visors.

Visor 2 runs the skysocks server (announced in the local service discovery by its visor),
visor 0 the skysocks client pointed at it (SOCKS5 on :1080), so a connection to the client
crosses visor 0 → 1 → 2 and leaves from visor 2. Visors 0 and 3 run skychat (pages on :8001
and :8002). Every app is its own process under its visor's launcher. :func:`apps_demo` checks
each of them as a user would: a GET through the SOCKS5 port, and a message sent from one page's
API arriving on the other page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from skywire.cipher import PubKey, SecKey
from skywire.services.sd import SDClient
from skywire.services.sd.entry import ServiceType
from skywire.testnet.demo import socks5_get
from skywire.testnet.parts import free_port
from skywire.visor.config import AppConfig, VisorConfig
from skywire.visor.rpc import RPCClient

__all__ = ["AppPlan", "VisorRef", "apps_demo"]

Say = Callable[[str], None]

SERVER, CLIENT, CHAT_A, CHAT_B = 2, 0, 0, 3
"""Which visor runs what: the route client → server has exactly 2 hops in the row."""

READY_TIMEOUT = 60.0


@dataclass
class AppPlan:
    """The apps' local ports: upstream's well-known ones, or free ones (``fixed=False``)."""

    fixed: bool = True
    socks: int = 0
    pages: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fixed:
            self.socks = self.socks or 1080
            self.pages = self.pages or {CHAT_A: 8001, CHAT_B: 8002}
        else:
            self.socks = self.socks or free_port()
            self.pages = self.pages or {CHAT_A: free_port(), CHAT_B: free_port()}

    def ports(self) -> list[int]:
        return [self.socks, *self.pages.values()]

    def configure(self, index: int, cfg: VisorConfig, server_pk: PubKey) -> None:
        """The launcher block of visor ``index``."""
        apps = []
        if index == SERVER:
            apps.append(_app("skysocks", 3, ["app", "skysocks"]))
        if index == CLIENT:
            addr = f"127.0.0.1:{self.socks}"
            args = ["app", "skysocks-client", "--srv", server_pk.hex(), "--addr", addr]
            apps.append(_app("skysocks-client", 13, args))
        if index in self.pages:
            addr = f"127.0.0.1:{self.pages[index]}"
            apps.append(_app("skychat", 1, ["app", "skychat", "--addr", addr]))
        cfg.launcher.apps = apps


def _app(name: str, port: int, args: list[str]) -> AppConfig:
    return AppConfig(name=name, binary="skywire", auto_start=True, port=port, args=args)


@dataclass
class VisorRef:
    """A visor of the network as a user reaches it: its key and its control API."""

    pk: PubKey
    rpc: str


async def apps_demo(
    visors: list[VisorRef], sd_url: str, plan: AppPlan, site_port: int, say: Say
) -> bool:
    """Wait for every app, then use each; prints what to try by hand. True when all worked."""
    say("")
    t0 = time.monotonic()
    try:
        for i in sorted({SERVER, CLIENT, *plan.pages}):
            for row in await _apps_running(visors[i]):
                say(f"app {row['name']:<15} running on visor {i} (pid {row['pid']})")
    except TimeoutError:
        say("apps                FAILED: not all apps are running (skywire cli visor app ls)")
        return False
    ok = await _skysocks(visors, sd_url, plan, site_port, say)
    ok = await _skychat(visors, plan, say) and ok
    if ok:
        say(f"apps                all checked in {time.monotonic() - t0:.1f} s")
    say(f"  curl --socks5-hostname 127.0.0.1:{plan.socks} http://127.0.0.1:{site_port}/")
    for i, port in plan.pages.items():
        say(f"  skychat of visor {i}: http://127.0.0.1:{port}/  (its key {visors[i].pk})")
    return ok


async def _apps_running(v: VisorRef) -> list[dict[str, Any]]:
    """The visor's app rows once every app runs (its control API, polled)."""
    rpc = RPCClient(v.rpc, timeout=5.0)
    async with asyncio.timeout(READY_TIMEOUT):
        while True:
            rows: list[dict[str, Any]] = await rpc.call("GET", "/apps")
            if all(r["state"] == "running" for r in rows):
                return rows
            await asyncio.sleep(0.1)  # another process: the apps are starting


async def _listed(sd_url: str, server: PubKey) -> list[str]:
    """The skysocks entries of service discovery, once the server's visor announced it."""
    async with SDClient(sd_url, SecKey.generate()) as sd:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_TIMEOUT):
                while True:
                    listed = [str(e.addr) for e in await sd.services(ServiceType.SKYSOCKS)]
                    if any(a.startswith(server.hex()) for a in listed):
                        return listed
                    await asyncio.sleep(0.1)  # another process: the visor registers it
    return []


async def _skysocks(
    visors: list[VisorRef], sd_url: str, plan: AppPlan, site_port: int, say: Say
) -> bool:
    listed = await _listed(sd_url, visors[SERVER].pk)
    say(f"service discovery   {sd_url} lists skysocks {', '.join(listed) or 'NOTHING'}")
    t0 = time.monotonic()
    status, body, why = 0, "", ""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(READY_TIMEOUT):
            while status != 200:
                try:
                    status, body = await socks5_get(
                        ("127.0.0.1", plan.socks), f"127.0.0.1:{site_port}"
                    )
                    why = f"status {status}"
                except (OSError, asyncio.IncompleteReadError) as exc:
                    why = f"{type(exc).__name__}: {exc}"
                if status != 200:
                    await asyncio.sleep(0.2)  # the client app is dialling its route
    hops = await _hops(visors[CLIENT], visors[SERVER].pk)
    good = status == 200 and "Welcome to" in body
    say(
        f"skysocks            GET through 127.0.0.1:{plan.socks} → visor 0 → 1 → 2 → site: "
        f"{'ok' if good else 'FAILED ' + why} in {(time.monotonic() - t0) * 1e3:.0f} ms"
        f" (route of {hops} hops)"
    )
    return good


async def _hops(client: VisorRef, server: PubKey) -> str:
    rows = await RPCClient(client.rpc, timeout=5.0).call("GET", "/routes")
    counts = {r["hops"] for r in rows if r["remote_pk"] == server.hex() and r.get("hops")}
    return "/".join(str(n) for n in sorted(counts)) or "?"


async def _skychat(visors: list[VisorRef], plan: AppPlan, say: Say) -> bool:
    a, b = visors[CHAT_A], visors[CHAT_B]
    text = f"hello from visor {CHAT_A} at {time.strftime('%H:%M:%S')}"
    page_a = f"http://127.0.0.1:{plan.pages[CHAT_A]}"
    page_b = f"http://127.0.0.1:{plan.pages[CHAT_B]}"
    t0 = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(READY_TIMEOUT):
            status = 0
            while status != 200:
                try:
                    body = {"recipient": b.pk.hex(), "message": text}
                    async with http.post(f"{page_a}/message", json=body) as resp:
                        status = resp.status
                except aiohttp.ClientError:
                    status = 0
                if status != 200:
                    await asyncio.sleep(0.2)  # the page is starting, or the route being found
            query = urllib.parse.urlencode({"peer": a.pk.hex()})
            while True:
                async with http.get(f"{page_b}/conversations?{query}") as resp:
                    doc = await resp.json()
                if text in json.dumps(doc, ensure_ascii=False):
                    break
                await asyncio.sleep(0.1)  # polls another process: the message crossing
    except TimeoutError:
        say(f"skychat             FAILED: the message did not reach visor {CHAT_B}")
        return False
    say(
        f"skychat             visor {CHAT_A}'s page → visor {CHAT_B}'s page: ok in "
        f"{(time.monotonic() - t0) * 1e3:.0f} ms"
    )
    return True
