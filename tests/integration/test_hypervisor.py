"""The hypervisor over real HTTP and real dmsg: visor 0 serves the dashboard, visors 1 and 2
name it in ``hypervisors`` and link to it on dmsg port 46.

Asserted as a client of the dashboard sees it: without a session every ``/api`` call is 401, a
wrong password is 401 and sets no cookie, a mutating call without a CSRF token (or from another
origin) is 403 and changes nothing; logged in, the three visors are listed live, a transport
added on one through the dashboard appears at both ends, a visor that stops leaves the list and
one that starts joins it. Waits are on the hypervisor's own change signal, never on a timer.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from skywire.cipher import SecKey
from skywire.dmsg.errors import DmsgError
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import VisorConfig
from skywire.visor.hypervisor import HYPERVISOR_PORT, LinkServer
from skywire.visor.visor import Visor
from tests.conftest import no_leaked_tasks

pytestmark = pytest.mark.timeout(120)

PASSWORD = "Hyper-visor1"


def hypervised(tmp_path: Path, hv_pk: Any) -> Any:
    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        if i == 0:
            cfg.hypervisor.enabled = True
            cfg.hypervisor.http_addr = "127.0.0.1:0"
        else:
            cfg.hypervisors = [hv_pk]

    return configure


@asynccontextmanager
async def hypervisor_net(
    tmp_path: Path, *, apps: bool = False, configure: Any = None
) -> AsyncIterator[LocalSkywire]:
    keys = {f"visor-{i}": SecKey.generate() for i in range(4)}
    keys["setup-node"] = SecKey.generate()
    base = hypervised(tmp_path, keys["visor-0"].pubkey())

    def both(i: int, cfg: VisorConfig) -> None:
        base(i, cfg)
        if configure is not None:
            configure(i, cfg)

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=3, configure=both, keys=keys.__getitem__, apps=apps) as sky,
    ):
        yield sky


def links_of(visor: Visor) -> LinkServer:
    assert visor.hypervisor is not None and visor.hypervisor.links is not None
    return visor.hypervisor.links


async def linked(visor: Visor, pks: set[str], timeout: float = 30.0) -> None:
    """Until the hypervisor's links are exactly ``pks`` (woken by each change)."""
    links = links_of(visor)

    def now() -> set[str]:
        return {v.pk.hex() for v in links.visors()}

    async with asyncio.timeout(timeout), links.changed:
        await links.changed.wait_for(lambda: now() == pks)


async def csrf(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with http.get(f"{url}/api/csrf") as resp:
        assert resp.status == 200
        return {"X-CSRF-Token": (await resp.json())["csrf_token"]}


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    token: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    base = url.split("/api/", 1)[0]
    sent = dict(headers or {})
    if token and method != "GET":
        sent.update(await csrf(http, base))
    async with http.request(method, url, json=body, headers=sent) as resp:
        return resp.status, await resp.json()


@asynccontextmanager
async def browserless() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield http


async def log_in(http: aiohttp.ClientSession, url: str, password: str = PASSWORD) -> int:
    status, _ = await call(
        http, "POST", f"{url}/api/login", {"username": "admin", "password": password}
    )
    return status


CLOSED = [
    ("GET", "/api/visors"),
    ("GET", "/api/visors-summary"),
    ("GET", "/api/user"),
    ("GET", "/api/about"),
    ("GET", "/api/visors/{pk}/summary"),
    ("GET", "/api/visors/{pk}/transports"),
    ("POST", "/api/visors/{pk}/transports"),
    ("DELETE", "/api/visors/{pk}/transports/00000000-0000-0000-0000-000000000000"),
    ("GET", "/api/visors/{pk}/routes"),
    ("GET", "/api/visors/{pk}/apps"),
    ("PUT", "/api/visors/{pk}/apps/skychat"),
    ("GET", "/api/visors/{pk}/apps/skychat/logs"),
    ("GET", "/api/visors/{pk}/runtime-logs"),
    ("GET", "/api/visors/{pk}/pty"),
    ("POST", "/api/visors/{pk}/shutdown"),
    ("POST", "/api/logout"),
    ("POST", "/api/change-password"),
    ("GET", "/api/no-such-route"),
]


async def test_login_gates_every_call_and_visors_are_listed_live(tmp_path: Path) -> None:
    async with no_leaked_tasks(), hypervisor_net(tmp_path) as sky, browserless() as http:
        hv, v1, v2 = sky.visors
        assert hv.hypervisor is not None
        url = hv.hypervisor.url
        assert HYPERVISOR_PORT in hv.dmsg.listening_ports()  # type: ignore[union-attr]
        everyone = {v.pk.hex() for v in sky.visors}

        # the page and its assets load without a session (and name no other origin)
        async with http.get(f"{url}/") as resp:
            page = await resp.text()
            assert resp.status == 200 and "Skywire hypervisor" in page
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert re.findall(r'(?:src|href)="([^"]*)"', page) == [
            "/static/app.css",
            "/static/term.js",
            "/static/app.js",
        ]
        for asset in ("app.js", "term.js", "app.css"):
            async with http.get(f"{url}/static/{asset}") as resp:
                assert resp.status == 200 and "https://" not in await resp.text()

        # no session: every call refused, whether or not a CSRF token is sent
        for method, path in CLOSED:
            for token in (False, True):
                status, doc = await call(
                    http, method, url + path.format(pk=v1.pk.hex()), {}, token=token
                )
                assert status == 401, (method, path, token, doc)
                assert "not logged in" in doc["error"]

        # the first visit creates the account; not without a CSRF token, and only once
        assert await call(http, "GET", f"{url}/api/account") == (200, {"exists": False})
        body = {"username": "admin", "password": PASSWORD}
        status, doc = await call(http, "POST", f"{url}/api/create-account", body, token=False)
        assert status == 403 and "X-CSRF-Token" in doc["error"]
        assert await call(http, "GET", f"{url}/api/account") == (200, {"exists": False})
        status, doc = await call(
            http, "POST", f"{url}/api/create-account", {"username": "admin", "password": "weak"}
        )
        assert status == 400 and "password length" in doc["error"]
        assert await call(http, "POST", f"{url}/api/create-account", body) == (200, True)
        status, doc = await call(http, "POST", f"{url}/api/create-account", body)
        assert status == 403 and "exists already" in doc["error"]

        # a wrong password: 401, no cookie, still no access
        assert await log_in(http, url, "Wrong-pass1") == 401
        assert not http.cookie_jar.filter_cookies(aiohttp.client.URL(url))
        assert (await call(http, "GET", f"{url}/api/visors"))[0] == 401
        # the login itself needs a CSRF token
        status, _ = await call(http, "POST", f"{url}/api/login", body, token=False)
        assert status == 403

        # logged in: the cookie is HttpOnly and SameSite=Strict
        async with http.post(f"{url}/api/login", json=body, headers=await csrf(http, url)) as resp:
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
        assert "swm-session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie

        # the three visors, live
        await linked(hv, everyone)
        status, visors = await call(http, "GET", f"{url}/api/visors")
        assert status == 200
        assert visors[0]["pk"] == hv.pk.hex()
        assert {v["pk"] for v in visors} == everyone
        assert [v["is_hypervisor"] for v in visors] == [True, False, False]
        assert all(v["version"] and v["uptime_s"] >= 0 and "error" not in v for v in visors)

        status, summary = await call(http, "GET", f"{url}/api/visors/{v2.pk.hex()}/summary")
        assert status == 200 and summary["overview"]["pk"] == v2.pk.hex()
        [session] = summary["dmsg"]
        assert session["server"] == sky.dmsg.servers[0].pk.hex()
        assert session["latency_ms"] is not None and session["latency_ms"] >= 0

        # a mutating call without the token, or from another origin: 403, nothing changes
        add = {"remote_pk": v2.pk.hex(), "transport_type": "dmsg"}
        tps = f"{url}/api/visors/{v1.pk.hex()}/transports"
        status, doc = await call(http, "POST", tps, add, token=False)
        assert status == 403 and "X-CSRF-Token" in doc["error"]
        status, doc = await call(http, "POST", tps, add, headers={"Origin": "http://evil.example"})
        assert status == 403 and "cross-origin" in doc["error"]
        assert await call(http, "GET", tps) == (200, [])

        # a transport from visor 1 to visor 2, added through the dashboard, at both ends
        status, tp = await call(http, "POST", tps, add)
        assert status == 200 and tp["remote_pk"] == v2.pk.hex() and tp["type"] == "dmsg"
        assert v2.tm is not None
        await v2.tm.wait_for(uuid.UUID(tp["id"]))
        for visor, other in ((v1, v2), (v2, v1)):
            status, listed = await call(
                http, "GET", f"{url}/api/visors/{visor.pk.hex()}/transports"
            )
            assert status == 200 and [(t["id"], t["remote_pk"]) for t in listed] == [
                (tp["id"], other.pk.hex())
            ]
            assert {"latency_ms", "sent", "received"} <= set(listed[0])
        status, one = await call(http, "GET", f"{tps}/{tp['id']}")
        assert status == 200 and one["id"] == tp["id"]
        status, doc = await call(http, "POST", tps, {"remote_pk": "nope", "transport_type": "dmsg"})
        assert status == 400 and "not a public key" in doc["error"]
        status, doc = await call(http, "DELETE", f"{tps}/{tp['id']}")
        assert status == 200 and doc == {"removed": tp["id"]}
        assert await call(http, "GET", tps) == (200, [])

        # the visor's log and its apps (none here: the visor's own 404 is passed on)
        status, log = await call(http, "GET", f"{url}/api/visors/{v1.pk.hex()}/runtime-logs?n=5")
        assert status == 200 and len(log["lines"]) <= 5 and log["source"]
        status, doc = await call(http, "GET", f"{url}/api/visors/{v1.pk.hex()}/apps")
        assert status == 404 and "no apps here" in doc["error"]
        nobody = SecKey.generate().pubkey().hex()
        status, doc = await call(http, "GET", f"{url}/api/visors/{nobody}/transports")
        assert status == 404 and "not connected" in doc["error"]
        status, doc = await call(http, "GET", f"{url}/api/visors/xyz/transports")
        assert status == 400

        # a managed visor serves its control API to no one but its hypervisor: nothing of it
        # listens on port 46, so another key's dial is refused
        stranger = await sky.dmsg.client()
        with pytest.raises((DmsgError, ConnectionError)):
            await stranger.dial(v1.pk, HYPERVISOR_PORT)

        # a visor that stops leaves the list; one that starts joins it
        await v2.close()
        await linked(hv, everyone - {v2.pk.hex()})
        status, visors = await call(http, "GET", f"{url}/api/visors")
        assert {v["pk"] for v in visors} == everyone - {v2.pk.hex()}
        v3 = await sky.add_visor()
        await linked(hv, everyone - {v2.pk.hex()} | {v3.pk.hex()})
        status, visors = await call(http, "GET", f"{url}/api/visors")
        assert visors[-1]["pk"] == v3.pk.hex()

        # logging out ends the session
        assert (await call(http, "POST", f"{url}/api/logout"))[0] == 200
        assert (await call(http, "GET", f"{url}/api/visors"))[0] == 401


async def test_failed_logins_are_throttled_and_a_password_change_ends_sessions(
    tmp_path: Path,
) -> None:
    def preset(i: int, cfg: VisorConfig) -> None:
        if i == 0:
            cfg.hypervisor.password = PASSWORD  # set at start: no first-visit form

    async with (
        no_leaked_tasks(),
        hypervisor_net(tmp_path, configure=preset) as sky,
        browserless() as http,
    ):
        assert sky.visors[0].hypervisor is not None
        url = sky.visors[0].hypervisor.url
        assert await call(http, "GET", f"{url}/api/account") == (200, {"exists": True})
        for _ in range(5):
            assert await log_in(http, url, "Wrong-pass1") == 401
        async with http.post(
            f"{url}/api/login",
            json={"username": "admin", "password": PASSWORD},
            headers=await csrf(http, url),
        ) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            assert "too many failed logins" in (await resp.json())["error"]
        assert (await call(http, "GET", f"{url}/api/visors"))[0] == 401

    async with hypervisor_net(tmp_path / "2", configure=preset) as sky, browserless() as http:
        assert sky.visors[0].hypervisor is not None
        url = sky.visors[0].hypervisor.url
        assert await log_in(http, url) == 200
        status, user = await call(http, "GET", f"{url}/api/user")
        assert status == 200 and user["username"] == "admin"
        # a CSRF token is good in the session it was issued to only
        async with browserless() as other:
            assert await log_in(other, url) == 200
            foreign = await csrf(other, url)
            status, user = await call(other, "GET", f"{url}/api/user")
            assert len(user["other_sessions"]) == 1
        status, doc = await call(http, "POST", f"{url}/api/logout", token=False, headers=foreign)
        assert status == 403 and "invalid CSRF token" in doc["error"]
        change = {"old_password": PASSWORD, "new_password": "Second-pass2"}
        assert await call(http, "POST", f"{url}/api/change-password", change) == (200, True)
        assert (await call(http, "GET", f"{url}/api/user"))[0] == 401
        assert await log_in(http, url) == 401
        assert await log_in(http, url, "Second-pass2") == 200
