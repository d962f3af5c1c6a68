"""The proxy's commands on a live local network: ``cli tp route-addr``, ``cli skynet
publish|ls|unpublish`` and ``dmsg web`` on its own, each run as a real process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys

import pytest

from skywire.cipher import KeyPair
from skywire.transport.entry import make_transport_id

from ._proxynet import ProxyNet, SiteServer, dmsg_name, proxy_network
from .test_proxy import curl

pytestmark = pytest.mark.timeout(120)
SKYWIRE = [sys.executable, "-m", "skywire.cli"]


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *SKYWIRE,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def rpc_of(net: ProxyNet, i: int = 0) -> str:
    rpc = net.sky.visors[i].rpc
    assert rpc is not None
    return f"127.0.0.1:{rpc.port}"


async def test_route_addr_names_existing_and_missing_transports() -> None:
    async with proxy_network() as net:
        v = [x.pk for x in net.sky.visors]
        code, out, err = await run(
            "cli", "tp", "route-addr", *(k.hex() for k in v), "--rpc", rpc_of(net), "--json"
        )
        assert code == 0, err
        answer = json.loads(out)
        ids = [str(tp.id) for tp in net.transports]
        assert [h["tp_id"] for h in answer["hops"]] == ids
        assert all(h["exists"] and h["type"] == "stcpr" for h in answer["hops"])
        address = answer["address"]
        assert address == ".".join([*(tp.id.hex for tp in net.transports), v[3].hex(), "skynet"])
        # the address works through the proxy as printed
        host, port = net.proxy("skynet_web")
        code, page, err = await curl("--socks5-hostname", f"{host}:{port}", f"http://{address}/")
        assert code == 0 and "Default site" in page, err
        # a pair with no transport: the deterministic stcpr ID, said to be missing
        code, out, err = await run(
            "cli", "tp", "route-addr", v[0].hex(), v[2].hex(), "--rpc", rpc_of(net), "--json"
        )
        (hop,) = json.loads(out)["hops"]
        assert not hop["exists"] and hop["tp_id"] == str(make_transport_id(v[0], v[2], "stcpr"))
        assert "missing: stcpr" in hop["note"] and "creates it on first use" in hop["note"]
        # the table form says the same
        code, out, err = await run(
            "cli", "tp", "route-addr", *(k.hex() for k in v), "--rpc", rpc_of(net)
        )
        assert code == 0 and out.count("exists") == 3 and address in out.replace("\n", "")
        code, out, err = await run("cli", "tp", "route-addr", v[0].hex(), "--rpc", rpc_of(net))
        assert code == 2 and "at least two keys" in err


async def test_publish_ls_unpublish_a_local_service() -> None:
    async with proxy_network() as net, SiteServer("visor one") as site:
        v1 = net.sky.visors[1]
        code, out, err = await run(
            "cli", "skynet", "publish", "8081", f"127.0.0.1:{site.port}", "--rpc", rpc_of(net, 1)
        )
        assert code == 0 and "skynet port 8081" in out, err
        code, out, _ = await run("cli", "skynet", "ls", "--json", "--rpc", rpc_of(net, 1))
        assert json.loads(out)["published"] == {"8081": f"127.0.0.1:{site.port}"}
        host, port = net.proxy("skynet_web")
        code, page, err = await curl(
            "--socks5-hostname", f"{host}:{port}", f"http://{v1.pk.hex()}.skynet:8081/"
        )
        assert code == 0 and "Default site of visor one" in page, err
        code, out, _ = await run("cli", "skynet", "unpublish", "8081", "--rpc", rpc_of(net, 1))
        assert code == 0
        code, out, err = await run("cli", "skynet", "unpublish", "8081", "--rpc", rpc_of(net, 1))
        assert code == 1 and "nothing is published on skynet port 8081" in err
        code, out, _ = await run("cli", "skynet", "ls", "--rpc", rpc_of(net, 0))
        assert "dmsg_web: socks5h://127.0.0.1:" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_dmsg_web_on_its_own() -> None:
    async with proxy_network() as net:
        port = _free_port()
        proc = await asyncio.create_subprocess_exec(
            *SKYWIRE,
            "dmsg",
            "web",
            "--disc",
            net.dmsg.disc_url,
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            assert b"proxy on 127.0.0.1:" in line, line
            name = dmsg_name(net.site_client.pk, "alpha.test")
            code, page, err = await curl(
                "--socks5-hostname", f"127.0.0.1:{port}", f"http://{name}/"
            )
            assert code == 0 and "<h1>Alpha site</h1>" in page, err
            code, page, err = await curl(
                "-x", f"http://127.0.0.1:{port}", f"http://{dmsg_name(net.site_client.pk)}/"
            )
            assert code == 0 and "Default site" in page, err
        finally:
            proc.send_signal(signal.SIGINT)
            rc = await asyncio.wait_for(proc.wait(), 30)
        assert rc == 0


async def test_dmsg_web_binds_at_once_and_a_request_before_readiness_fails_clearly() -> None:
    dead = _free_port()  # no discovery there: dmsg never becomes ready
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        *SKYWIRE,
        "dmsg",
        "web",
        "--disc",
        f"http://127.0.0.1:{dead}",
        "--listen",
        f"127.0.0.1:{port}",
        "--ready-timeout",
        "1",
        "--log-level",
        "error",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"proxy on 127.0.0.1:" in line, line
        name = KeyPair.generate().pk.hex() + ".dmsg"
        _, out, _ = await curl(
            "-x", f"http://127.0.0.1:{port}", "-o", "-", "-w", "\n%{http_code}", f"http://{name}/"
        )
        body, _, status = out.rpartition("\n")
        assert status == "504", out
        assert "dmsg is not ready" in body and "1 s" in body
    finally:
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc == 0
