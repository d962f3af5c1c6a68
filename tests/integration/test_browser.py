"""The proxies in a real browser: headless Chromium (Debian's package; ``make test`` installs it
when run as root) loads each kind of name through the SOCKS5 proxy; every page's text is
checked and a screenshot is saved under ``artifacts/screenshots/``."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from skywire.routing.rule import ForwardRule, IntermediaryForwardRule

from ._proxynet import dmsg_name, proxy_network

pytestmark = pytest.mark.timeout(180)

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=900,500",
]


async def chromium(proxy: str, url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--proxy-server=socks5://{proxy}",
            *extra,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode("utf-8", "replace")


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (make test installs it as root)"
)
async def test_each_kind_of_name_in_a_real_browser() -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with proxy_network() as net:
        site = net.site_client.pk
        server = next(iter(net.site_client.sessions))
        t01, t12 = net.transports[0].id, net.transports[1].id
        v2 = net.sky.visors[2].pk
        pages = [
            ("bare-dmsg", "dmsg_web", dmsg_name(site), "Default site of the dmsg client"),
            ("vhost-alpha", "dmsg_web", dmsg_name(site, "alpha.test"), "Alpha site"),
            ("vhost-beta", "dmsg_web", dmsg_name(site, "beta.test"), "Beta site"),
            (
                "pinned",
                "dmsg_web",
                dmsg_name(site, server=server),
                "Default site of the dmsg client",
            ),
            ("vhost-pinned", "dmsg_web", dmsg_name(site, "beta.test", server), "Beta site"),
            (
                "skynet-2-hops",
                "skynet_web",
                f"{t01}.{t12}.{v2.hex()}.skynet",
                "Default site of the far visor",
            ),
        ]
        for label, proxy_name, name, title in pages:
            host, port = net.proxy(proxy_name)
            proxy = f"{host}:{port}"
            dom = await chromium(proxy, f"http://{name}/page", "--dump-dom")
            assert f"<h1>{title}</h1>" in dom, (label, dom[:500])
            assert '<p id="path">/page</p>' in dom or "<p id='path'>/page</p>" in dom, label
            shot = SHOTS / f"proxy-{label}.png"
            shot.unlink(missing_ok=True)
            await chromium(proxy, f"http://{name}/page", f"--screenshot={shot}")
            assert shot.exists() and shot.stat().st_size > 1000, label
        # the 2-hop source route used exactly the transports it names
        v0, v1 = net.sky.visors[0].router, net.sky.visors[1].router
        assert v0 is not None and v1 is not None
        assert t01 in {r.next_tp_id for r in v0.table.all_rules(0) if isinstance(r, ForwardRule)}
        assert t12 in {
            r.next_tp_id for r in v1.table.all_rules(0) if isinstance(r, IntermediaryForwardRule)
        }
