"""The app layer end to end: two visors launch skysocks (server) and skysocks-client as their
own processes from their launcher configs; the apps reach routes through the visors' app
servers; SOCKS5 requests to the client (100 concurrent curl processes) cross a 2-hop route and
reach a site on the far side. The control API lists the apps, stops and starts them, and shows
their logs."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from skywire.cipher import SecKey
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import AppConfig, VisorConfig, default_apps
from skywire.visor.launcher import AppState
from skywire.visor.rpc import RPCClient
from tests.integration._skysocks import http_get, item_body, web_site

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl is not installed (make test installs it as root)"
)
async def test_skysocks_apps_carry_socks5_over_a_two_hop_route(tmp_path: Path) -> None:
    keys = {f"visor-{i}": SecKey.generate() for i in range(3)}
    keys["setup-node"] = SecKey.generate()
    socks_port = free_port()
    server_pk = keys["visor-2"].pubkey()

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        cfg.launcher.server_addr = f"127.0.0.1:{free_port()}"
        cfg.launcher.apps = []
        if i == 2:
            cfg.launcher.apps = [
                AppConfig(
                    name="skysocks",
                    binary="skywire",
                    auto_start=True,
                    port=3,
                    args=["app", "skysocks"],
                ),
            ]
        if i == 0:
            cfg.launcher.apps = [
                AppConfig(
                    name="skysocks-client",
                    binary="skywire",
                    auto_start=True,
                    port=13,
                    args=[
                        "app",
                        "skysocks-client",
                        "--srv",
                        server_pk.hex(),
                        "--addr",
                        f"127.0.0.1:{socks_port}",
                    ],
                ),
            ]

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=3, configure=configure, keys=keys.__getitem__, apps=True) as sky,
        web_site() as site_port,
    ):
        a, b, c = sky.visors
        assert a.tm is not None and b.tm is not None
        await a.tm.save_transport(b.pk, "dmsg")
        await b.tm.save_transport(c.pk, "dmsg")
        assert a.launcher is not None and c.launcher is not None
        await c.launcher.wait_for("skysocks", lambda s: s.state is AppState.RUNNING, 30)
        await a.launcher.wait_for("skysocks-client", lambda s: s.state is AppState.RUNNING, 30)

        # the client app connects once the route finder knows the 2-hop path: ask until then
        body = b""
        async with asyncio.timeout(60):
            while not body:
                try:
                    body = await http_get(("127.0.0.1", socks_port), site_port, "/item/7")
                except (OSError, AssertionError, asyncio.IncompleteReadError):
                    await asyncio.sleep(0.2)  # the app process is still starting or dialling
        assert body == item_body(7)

        # 100 concurrent curl processes through the client app, every body checked
        async def curl(n: int) -> bytes:
            proc = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--fail", "--max-time", "60",
                "--socks5-hostname", f"127.0.0.1:{socks_port}",
                f"http://127.0.0.1:{site_port}/item/{n}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, (n, err)
            return out

        bodies = await asyncio.gather(*(curl(n) for n in range(100)))
        assert bodies == [item_body(n) for n in range(100)]
        assert a.app_server is not None
        assert a.app_server.report("skysocks-client").connected

        # the control API: list, logs, stop, start
        assert a.rpc is not None
        rpc = RPCClient(f"127.0.0.1:{a.rpc.port}")
        rows = await rpc.call("GET", "/apps")
        assert [(r["name"], r["state"]) for r in rows] == [("skysocks-client", "running")]
        stopped = await rpc.call("POST", "/apps/skysocks-client/stop")
        assert stopped["state"] == "stopped"
        started = await rpc.call("POST", "/apps/skysocks-client/start")
        assert started["state"] in ("starting", "running")
        logs = await rpc.call("GET", "/apps/skysocks-client/logs?n=50")
        assert isinstance(logs["lines"], list)


async def test_skychat_apps_exchange_messages_over_a_route(tmp_path: Path) -> None:
    keys = {f"visor-{i}": SecKey.generate() for i in range(3)}
    keys["setup-node"] = SecKey.generate()
    pages = {0: free_port(), 2: free_port()}

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        cfg.launcher.server_addr = f"127.0.0.1:{free_port()}"
        cfg.launcher.apps = []
        if i in pages:
            cfg.launcher.apps = [
                AppConfig(
                    name="skychat",
                    binary="skywire",
                    auto_start=True,
                    port=1,
                    args=["app", "skychat", "--addr", f"127.0.0.1:{pages[i]}"],
                ),
            ]

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=3, configure=configure, keys=keys.__getitem__, apps=True) as sky,
        aiohttp.ClientSession() as http,
    ):
        a, b, c = sky.visors
        assert a.tm is not None and b.tm is not None
        await a.tm.save_transport(b.pk, "dmsg")
        await b.tm.save_transport(c.pk, "dmsg")
        assert a.launcher is not None and c.launcher is not None
        for v in (a, c):
            assert v.launcher is not None
            await v.launcher.wait_for("skychat", lambda s: s.state is AppState.RUNNING, 30)

        async def post(i: int, pk: str, text: str) -> int:
            url = f"http://127.0.0.1:{pages[i]}/message"
            async with http.post(url, json={"recipient": pk, "message": text}) as resp:
                return resp.status

        # the page answers once the app process is up, and the send once a route can be made
        status = 0
        async with asyncio.timeout(60):
            while status != 200:
                try:
                    status = await post(0, c.pk.hex(), "hello from A")
                except aiohttp.ClientError:
                    status = 0
                if status != 200:
                    await asyncio.sleep(0.2)  # the app is starting, or the route finder learning

        async def conversation(i: int, peer: str) -> str:
            url = f"http://127.0.0.1:{pages[i]}/conversations?peer={peer}"
            async with http.get(url) as resp:
                return await resp.text()

        async with asyncio.timeout(30):
            while "hello from A" not in await conversation(2, a.pk.hex()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # polls another process: the message crossing
        assert await post(2, a.pk.hex(), "hello back from C") == 200
        async with asyncio.timeout(30):
            while "hello back from C" not in await conversation(0, c.pk.hex()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "skywire.cli",
        "cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_proxy_lists_servers_and_points_the_client_app_at_one(tmp_path: Path) -> None:
    keys = {f"visor-{i}": SecKey.generate() for i in range(3)}
    keys["setup-node"] = SecKey.generate()
    socks_port = free_port()

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        cfg.launcher.server_addr = f"127.0.0.1:{free_port()}"
        cfg.launcher.apps = [
            a for a in default_apps() if a.name == ("skysocks-client", "", "skysocks")[i]
        ]
        for a in cfg.launcher.apps:
            a.auto_start = a.name == "skysocks"

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=3, configure=configure, keys=keys.__getitem__, apps=True) as sky,
        web_site() as site_port,
    ):
        a, b, c = sky.visors
        assert a.tm is not None and b.tm is not None and a.rpc is not None
        assert sky.sd is not None and c.launcher is not None
        await a.tm.save_transport(b.pk, "dmsg")
        await b.tm.save_transport(c.pk, "dmsg")
        # visor 2 announces its skysocks app itself, as soon as the app listens on port 3
        announcer = c.announcer
        assert announcer is not None
        await announcer.wait_until(lambda: len(announcer.registered()) == 1, 30)
        code, out, _ = await _cli("proxy", "list", "--sd", sky.sd.url, "--json")
        assert code == 0 and [e["address"] for e in json.loads(out)] == [f"{c.pk.hex()}:3"]

        rpc = ["--rpc", f"127.0.0.1:{a.rpc.port}"]
        code, out, _ = await _cli("proxy", "status", *rpc)
        assert code == 0 and "skysocks-client: stopped" in out
        code, out, err = await _cli(
            "proxy", "start", "--pk", c.pk.hex(), "--addr", f"127.0.0.1:{socks_port}", *rpc
        )
        assert code == 0, err
        body = b""
        async with asyncio.timeout(60):
            while not body:
                try:
                    body = await http_get(("127.0.0.1", socks_port), site_port, "/item/3")
                except (OSError, AssertionError, asyncio.IncompleteReadError):
                    await asyncio.sleep(0.2)  # the app process is starting or dialling
        assert body == item_body(3)
        code, out, _ = await _cli("proxy", "status", *rpc)
        assert code == 0 and "skysocks-client: running" in out
        code, out, _ = await _cli("proxy", "stop", *rpc)
        assert code == 0 and "stopped" in out
        # the server stopped: its entry leaves service discovery with it
        await c.launcher.stop("skysocks")
        await announcer.wait_until(lambda: not announcer.registered(), 30)
        code, out, _ = await _cli("proxy", "list", "--sd", sky.sd.url, "--json")
        assert code == 0 and json.loads(out) == []
