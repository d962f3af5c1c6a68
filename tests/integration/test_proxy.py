"""The resolving proxies on a local network, driven by curl and by raw SOCKS5: bare, vhost,
pinned-server and source-routed names; every failure with its reply code or status."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import pytest

from skywire.cipher import KeyPair
from skywire.proxy.errors import ReplyCode
from skywire.routing.rule import ForwardRule, IntermediaryForwardRule

from ._proxynet import ProxyNet, dmsg_name, proxy_network, socks5_connect

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("curl") is None, reason="curl is not installed (make test installs it as root)"
    ),
]


async def curl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        "30",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def modes(net: ProxyNet, proxy: str = "dmsg_web") -> list[list[str]]:
    host, port = net.proxy(proxy)
    return [
        ["--socks5-hostname", f"{host}:{port}"],
        ["--proxy", f"http://{host}:{port}"],
        ["--proxy", f"http://{host}:{port}", "--proxytunnel"],
    ]


async def test_dmsg_names_through_socks5h_http_proxy_and_connect() -> None:
    async with proxy_network() as net:
        site = net.site_client.pk
        server = next(iter(net.site_client.sessions))
        cases = [
            (dmsg_name(site), "Default site of the dmsg client"),
            (dmsg_name(site, "alpha.test"), "Alpha site"),
            (dmsg_name(site, "beta.test"), "Beta site"),
            (dmsg_name(site, server=server), "Default site of the dmsg client"),
            (dmsg_name(site, "beta.test", server=server), "Beta site"),
        ]
        for mode in modes(net):
            for name, title in cases:
                code, out, err = await curl(*mode, f"http://{name}/some/page")
                assert code == 0, (mode, name, err)
                assert f"<h1>{title}</h1>" in out, (mode, name, out)
                assert "<p id='path'>/some/page</p>" in out


async def test_skynet_names_bare_and_source_routed() -> None:
    async with proxy_network() as net:
        far = net.far.pk
        t01, t12, t23 = (tp.id for tp in net.transports)
        v1, v2 = net.sky.visors[1].pk, net.sky.visors[2].pk
        names = [
            f"{far.hex()}.skynet",
            f"alpha.test.{far.hex()}.skynet",
            f"{t01}.{t12}.{t23}.{far.hex()}.skynet",
            f"{v1.hex()}.{v2.hex()}.{far.hex()}.skynet",
            f"beta.test.{v1.hex()}.{t12.hex}.{far.hex()}.skynet",
        ]
        for mode in modes(net, "skynet_web"):
            for name in names:
                code, out, err = await curl(*mode, f"http://{name}/x")
                assert code == 0, (mode, name, err)
                want = "Alpha" if "alpha" in name else "Beta" if "beta" in name else "Default"
                assert f"<h1>{want} site" in out, (mode, name, out)
        # the source route through transport IDs used exactly those transports: the
        # intermediaries forward over t12 and t23
        rules_v1 = net.sky.visors[1].router.table.all_rules(0)  # type: ignore[union-attr]
        used = {r.next_tp_id for r in rules_v1 if isinstance(r, IntermediaryForwardRule)}
        assert t12 in used
        rules_v0 = net.sky.visors[0].router.table.all_rules(0)  # type: ignore[union-attr]
        assert t01 in {r.next_tp_id for r in rules_v0 if isinstance(r, ForwardRule)}
        # many connections to one destination share one pooled route
        web = net.proxy_visor.web
        assert web is not None
        before = web.skynet_connector.pool.routes_dialed
        host, port = net.proxy("skynet_web")
        for _ in range(10):
            code, out, _ = await curl(
                "--socks5-hostname", f"{host}:{port}", f"http://{far.hex()}.skynet/"
            )
            assert code == 0 and "Default site" in out
        assert web.skynet_connector.pool.routes_dialed == before


@pytest.mark.parametrize("proxy", ["dmsg_web", "skynet_web"])
async def test_failures_have_their_reply_codes_and_statuses(proxy: str) -> None:
    async with proxy_network() as net:
        stranger = KeyPair.generate().pk
        site = net.site_client.pk
        far = net.far.pk
        cases = [
            ("not-a-key.dmsg", ReplyCode.HOST_UNREACHABLE, 400, "not a public key"),
            ("example.com", ReplyCode.HOST_UNREACHABLE, 400, "not a .dmsg or .skynet name"),
            (dmsg_name(stranger), ReplyCode.HOST_UNREACHABLE, 502, "unknown to dmsg discovery"),
            (dmsg_name(site, server=stranger), ReplyCode.HOST_UNREACHABLE, 502, "pinned"),
            (f"{site.hex()}.dmsg:81", ReplyCode.CONNECTION_REFUSED, 502, "refused"),
            (
                f"{uuid.uuid4()}.{far.hex()}.skynet",
                ReplyCode.HOST_UNREACHABLE,
                502,
                "does not exist",
            ),
            (f"{far.hex()}.skynet:81", ReplyCode.HOST_UNREACHABLE, 502, ""),
            ("skywire.skynet:9", ReplyCode.CONNECTION_REFUSED, 502, "publishes nothing"),
        ]
        address = net.proxy(proxy)
        for name, reply, status, text in cases:
            got, _ = await socks5_connect(
                address,
                name.rpartition(":")[0] or name,
                int(name.rpartition(":")[2]) if ":" in name else 80,
            )
            assert got == reply, (name, got)
            _, out, err = await curl(
                "--proxy",
                f"http://{address[0]}:{address[1]}",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                f"http://{name}/",
            )
            body, _, http_code = out.rpartition("\n")
            assert int(http_code) == status, (name, out, err)
            assert text in body, (name, body)


def _fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


async def test_two_hundred_failing_requests_leave_nothing_behind() -> None:
    async with proxy_network() as net:
        stranger = KeyPair.generate().pk
        far = net.far.pk
        dmsg_proxy, skynet_proxy = net.proxy("dmsg_web"), net.proxy("skynet_web")
        router = net.proxy_visor.router
        assert router is not None

        async def one_round(i: int) -> None:
            names = [
                (dmsg_proxy, "bad..dmsg", 80),
                (dmsg_proxy, dmsg_name(stranger), 80),
                (dmsg_proxy, dmsg_name(net.site_client.pk), 81),
                (skynet_proxy, f"{uuid.uuid4()}.{far.hex()}.skynet", 80),
            ]
            address, name, port = names[i % len(names)]
            code, _ = await socks5_connect(address, name, port)
            assert code != 0

        for i in range(8):  # warm up: the HTTP clients' pooled connections to the services
            await one_round(i)
        tasks, fds, groups = asyncio.all_tasks(), _fds(), len(router.route_groups)
        for i in range(200):
            await one_round(i)
        left = asyncio.all_tasks() - tasks
        assert not left, sorted(f"{t.get_name()}: {t.get_coro()!r}" for t in left)
        assert _fds() <= fds
        assert len(router.route_groups) == groups
        web = net.proxy_visor.web
        assert web is not None and all(p.active == 0 for p in web.proxies.values())
        # and the proxy still serves
        code, out, err = await curl(
            "--socks5-hostname",
            f"{dmsg_proxy[0]}:{dmsg_proxy[1]}",
            f"http://{dmsg_name(net.site_client.pk)}/",
        )
        assert code == 0 and "Default site" in out, err


async def test_own_first_hop_is_created_and_idle_routes_are_found() -> None:
    async with proxy_network() as net:
        v0, v2 = net.sky.visors[0], net.sky.visors[2]
        assert v0.tm is not None and not v0.tm.by_remote(v2.pk)
        host, port = net.proxy("skynet_web")
        # visor 0 has no transport to visor 2: the source route makes one (stcpr), then goes
        # on over the existing 2 → 3 transport
        name = f"{v2.pk.hex()}.{net.far.pk.hex()}.skynet"
        code, out, err = await curl("--socks5-hostname", f"{host}:{port}", f"http://{name}/")
        assert code == 0 and "Default site of the far visor" in out, err
        assert [tp.type for tp in v0.tm.by_remote(v2.pk)] == ["stcpr"]
        # the pooled route is idle once its streams are gone, and only after idle_timeout
        web = v0.web
        assert web is not None
        pool = web.skynet_connector.pool
        async with asyncio.timeout(10):  # the proxied connection's stream closes soon after
            while pool.open_streams:  # noqa: ASYNC110 - a condition poll, bounded
                await asyncio.sleep(0.01)
        now = time.monotonic()
        assert pool.routes == 1 and pool.idle(now) == []
        (key,) = pool.idle(now + pool.idle_timeout + 1)
        assert key.dest == net.far.pk and key.chain == (v2.pk,)
