"""The service discovery over real HTTP on 127.0.0.1: raw signed requests, the typed client,
refusals that change nothing, expiry on an injected clock, and the ``skywire svc sd`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from skywire.cipher import KeyPair, SecKey
from skywire.services.httpauth import NONCE_MISMATCH, auth_headers
from skywire.services.sd import SDClient, SDServer
from skywire.services.sd.api import (
    ERR_PK_MISMATCH,
    ERR_VERSION_TOO_OLD,
    ERR_VISOR_UNREACHABLE,
    MAX_BODY,
)
from skywire.services.sd.client import (
    SDBadRequestError,
    SDForbiddenError,
    SDNotFoundError,
    SDUnreachableError,
)
from skywire.services.sd.entry import Geo, ServiceEntry, ServiceType, SWAddr
from skywire.services.sd.store import ServiceStore
from skywire.services.sd.store.memory import MemoryStore
from skywire.services.sd.store.postgres import PostgresStore
from skywire.services.sd.store.sqlite import SqliteStore
from tests.backends.test_httpauth_store import pg_schema
from tests.conftest import no_leaked_tasks

T0 = 1_700_000_000.0
TTL = 300.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class SD:
    url: str
    store: ServiceStore
    clock: FakeClock
    http: aiohttp.ClientSession

    def client(self, kp: KeyPair) -> SDClient:
        return SDClient(self.url, kp.sk, self.http)

    async def raw(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.request(
            method, self.url + path, data=body or None, headers=headers
        ) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def signed(
        self,
        sk: SecKey,
        method: str,
        path: str,
        body: bytes = b"",
        nonce: int | None = None,
        *,
        scoped: bool = False,
    ) -> tuple[int, Any]:
        """Signed as upstream clients sign (body and nonce), or ``scoped`` as this package's
        clients do (method and target too: a key that did once must always)."""
        if nonce is None:
            nonce = await self.nonce(sk)
        extra = {"method": method, "target": path} if scoped else {}
        return await self.raw(method, path, body, auth_headers(sk, body, nonce, **extra))

    async def nonce(self, sk: SecKey) -> int:
        status, obj = await self.raw("GET", f"/security/nonces/{sk.pubkey().hex()}")
        assert status == 200
        return int(obj["next_nonce"])

    async def listed(self, query: str) -> list[dict[str, Any]]:
        status, body = await self.raw("GET", "/api/services?" + query)
        assert status == 200, body
        assert isinstance(body, list)
        return body


@contextlib.asynccontextmanager
async def running(store: ServiceStore, clock: FakeClock) -> AsyncIterator[SD]:
    async with (
        SDServer(store, "127.0.0.1", 0, clock=clock, rng=random.Random(7)) as server,
        aiohttp.ClientSession() as http,
    ):
        yield SD(server.url, store, clock, http)


@pytest.fixture(params=["memory", "sqlite"])
async def sd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SD]:
    clock = FakeClock()
    if request.param == "memory":
        store: ServiceStore = MemoryStore(ttl=TTL, clock=clock)
    else:
        store = await SqliteStore.open(str(tmp_path / "sd.db"), ttl=TTL, clock=clock)
    async with store, running(store, clock) as s:
        yield s


def vpn(kp: KeyPair, country: str = "DE", version: str = "v1.3.29") -> ServiceEntry:
    return ServiceEntry(SWAddr(kp.pk, 44), ServiceType.VPN, version, Geo(50.1, 8.7, country))


def error(status: int, message: str) -> dict[str, Any]:
    return {"code": status, "error": message}


async def test_register_list_by_type_and_country_then_delete(sd: SD) -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    body = vpn(a).to_json()
    status, echoed = await sd.signed(a.sk, "POST", "/api/services", body)
    assert (status, echoed) == (200, json.loads(body))
    async with sd.client(b) as cb, sd.client(c) as cc:
        stored_b = await cb.register(vpn(b, "NZ"))
        assert stored_b == vpn(b, "NZ")
        await cc.register(ServiceEntry(SWAddr(c.pk, 3), ServiceType.SKYSOCKS, "v1.3.29"))
        assert {e["address"] for e in await sd.listed("type=vpn")} == {
            f"{a.pk.hex()}:44",
            f"{b.pk.hex()}:44",
        }
        assert [e["address"] for e in await sd.listed("type=vpn&country=DE")] == [
            f"{a.pk.hex()}:44"
        ]
        assert await sd.listed("type=vpn&country=nz") == [json.loads(vpn(b, "NZ").to_json())]
        assert await sd.listed("type=vpn&country=US") == []
        assert await sd.listed("type=vpn&version=v9") == []
        # "proxy" is upstream's other name for skysocks.
        assert await sd.listed("type=proxy") == await sd.listed("type=skysocks")
        assert [e.pk for e in await cc.services("proxy")] == [c.pk]
        assert [e.pk for e in await cc.services(ServiceType.VPN, country="NZ")] == [b.pk]
        assert await cc.service(ServiceType.VPN, SWAddr(b.pk, 44)) == stored_b
        # Only the owner deletes: another key is refused and nothing changes.
        with pytest.raises(SDForbiddenError) as refused:
            await cc.delete(ServiceType.VPN, SWAddr(b.pk, 44))
        assert refused.value.message == ERR_PK_MISMATCH
        assert len(await sd.listed("type=vpn")) == 2
        await cb.delete(ServiceType.VPN)
        with pytest.raises(SDNotFoundError) as nf:
            await cc.service(ServiceType.VPN, SWAddr(b.pk, 44))
        assert nf.value.message == "service not found"
        await cb.delete(ServiceType.VPN)  # gone already: still 200 true, as upstream
    status, answer = await sd.signed(a.sk, "DELETE", f"/api/services/{a.pk.hex()}:44?type=vpn")
    assert (status, answer) == (200, True)
    assert await sd.listed("type=vpn") == []
    assert [e["type"] for e in await sd.listed("type=skysocks")] == ["skysocks"]


async def test_quantity_picks_that_many_at_random(sd: SD) -> None:
    keys = [KeyPair.generate() for _ in range(5)]
    for kp in keys:
        async with sd.client(kp) as client:
            await client.register(vpn(kp))
    everyone = {e["address"] for e in await sd.listed("type=vpn")}
    assert len(everyone) == 5
    picked = await sd.listed("type=vpn&quantity=2")
    assert len(picked) == 2 and len({e["address"] for e in picked}) == 2
    assert {e["address"] for e in picked} <= everyone
    for query in ("quantity=5", "quantity=9", "quantity=0", "quantity=-1", "quantity=%2B7"):
        assert len(await sd.listed("type=vpn&" + query)) == 5
    async with sd.client(keys[0]) as client:
        assert len(await client.services("vpn", quantity=3)) == 3
    status, body = await sd.raw("GET", "/api/services?type=vpn&quantity=two")
    assert (status, body) == (400, error(400, "quantity must be integer"))


async def test_another_keys_address_is_forbidden_and_stores_nothing(sd: SD) -> None:
    a, mallory = KeyPair.generate(), KeyPair.generate()
    status, body = await sd.signed(mallory.sk, "POST", "/api/services", vpn(a).to_json())
    assert (status, body) == (403, error(403, ERR_PK_MISMATCH))
    assert await sd.listed("type=vpn") == []
    assert await sd.nonce(mallory.sk) == 0  # a refusal spends no nonce
    async with sd.client(mallory) as cm:
        with pytest.raises(SDForbiddenError):
            await cm.register(vpn(a))
    # The owner's own entry cannot be deleted by another key either.
    async with sd.client(a) as ca:
        await ca.register(vpn(a))
    status, body = await sd.signed(
        mallory.sk, "DELETE", f"/api/services/{a.pk.hex()}?type=vpn", scoped=True
    )
    assert (status, body) == (403, error(403, ERR_PK_MISMATCH))
    assert len(await sd.listed("type=vpn")) == 1


async def test_forged_and_replayed_httpauth_are_refused(sd: SD) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    body = vpn(a).to_json()

    def unauthorized(message: str) -> dict[str, Any]:
        return {"error": {"message": message, "code": 401}}

    status, obj = await sd.raw("POST", "/api/services", body)  # unsigned
    assert (status, obj) == (401, unauthorized("SW-Public missing"))
    # Signed over another body.
    status, obj = await sd.raw("POST", "/api/services", body, auth_headers(a.sk, b"{}", 0))
    assert status == 401 and obj["error"]["message"] != NONCE_MISMATCH
    # a's key announced, b's signature.
    status, obj = await sd.raw("POST", "/api/services", body, auth_headers(b.sk, body, 0, pk=a.pk))
    assert status == 401 and obj["error"]["code"] == 401
    # A nonce from the future.
    status, obj = await sd.signed(a.sk, "POST", "/api/services", body, nonce=3)
    assert (status, obj) == (401, unauthorized(NONCE_MISMATCH))
    assert await sd.listed("type=vpn") == [] and await sd.nonce(a.sk) == 0
    # The genuine request goes through once; replayed byte for byte, it is refused.
    good = auth_headers(a.sk, body, 0)
    status, _ = await sd.raw("POST", "/api/services", body, good)
    assert status == 200
    await sd.signed(a.sk, "DELETE", f"/api/services/{a.pk.hex()}?type=vpn")
    assert await sd.listed("type=vpn") == []
    status, obj = await sd.raw("POST", "/api/services", body, good)
    assert (status, obj) == (401, unauthorized(NONCE_MISMATCH))
    assert await sd.listed("type=vpn") == []  # the replay did not bring it back
    # A delete's headers do not serve a second delete.
    async with sd.client(a) as ca:
        await ca.register(vpn(a))
    path = f"/api/services/{a.pk.hex()}?type=vpn"
    headers = auth_headers(a.sk, b"", await sd.nonce(a.sk), method="DELETE", target=path)
    assert (await sd.raw("DELETE", path, b"", headers))[0] == 200
    async with sd.client(a) as ca:
        await ca.register(vpn(a))
    assert (await sd.raw("DELETE", path, b"", headers))[0] == 401
    assert len(await sd.listed("type=vpn")) == 1


async def test_entries_expire_unless_registered_again(sd: SD) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    async with sd.client(a) as ca, sd.client(b) as cb:
        await ca.register(vpn(a))
        await cb.register(vpn(b))
        sd.clock.now = T0 + 200
        await cb.register(vpn(b))  # b re-registers in time
        sd.clock.now = T0 + TTL
        assert [e.pk for e in await ca.services("vpn")] == [b.pk]
        with pytest.raises(SDNotFoundError):
            await ca.service("vpn", SWAddr(a.pk, 44))
        sd.clock.now = T0 + 200 + TTL
        assert await ca.services("vpn") == []
        await ca.register(vpn(a))  # registering again brings it back
        assert [e.pk for e in await ca.services("vpn")] == [a.pk]
    # The next scrape purges the expired rows and counts the live ones.
    status, text = await sd.raw("GET", "/metrics")
    assert status == 200
    assert 'skywire_sd_services{type="vpn"} 1' in text
    assert 'skywire_sd_services{type="skysocks"} 0' in text
    assert await sd.store.purge_expired() == 0


async def test_bad_input_is_a_json_4xx_and_stores_nothing(sd: SD) -> None:
    a = KeyPair.generate()
    good = json.loads(vpn(a).to_json())
    addr = f"{a.pk.hex()}:44"
    cases: list[tuple[bytes, int, str]] = [
        (b"{not json", 400, "invalid json"),
        (b"", 400, "invalid json"),
        (b"[]", 400, "invalid json"),
        (b"[" * 5000 + b"]" * 5000, 400, "invalid json"),
        (b'{"address":"' + addr.encode() + b'","type":"vpn","version":NaN}', 400, "invalid json"),
        (json.dumps({**good, "type": ""}).encode(), 400, "missing service type in request"),
        (json.dumps({**good, "type": "ftp"}).encode(), 400, "unknown service type"),
        (json.dumps({**good, "address": a.pk.hex()}).encode(), 400, "port cannot be 0"),
        (json.dumps({**good, "address": "nope:44"}).encode(), 400, "invalid skywire address"),
        (json.dumps({**good, "version": "v" * 65}).encode(), 400, "version"),
        (json.dumps({**good, "geo": {"lat": 100}}).encode(), 400, "geo.lat"),
        (json.dumps({**good, "geo": {"country": "DEU"}}).encode(), 400, "alpha-2"),
        (json.dumps({**good, "local_ips": ["x"] * 1000}).encode(), 400, "local_ips"),
        (json.dumps({**good, "version": ""}).encode(), 403, ERR_VERSION_TOO_OLD),
        (json.dumps({**good, "pad": "x" * MAX_BODY}).encode(), 413, "larger than"),
    ]
    for body, status, fragment in cases:
        got, obj = await sd.signed(a.sk, "POST", "/api/services", body)
        assert got == status, (body[:80], obj)
        assert set(obj) == {"code", "error"} and obj["code"] == status
        assert fragment in obj["error"], (fragment, obj)
    assert await sd.listed("type=vpn") == []
    assert await sd.nonce(a.sk) == 0
    # Queries and paths are checked too.
    for path, status, message in [
        ("/api/services", 400, "missing service type in request"),
        ("/api/services?type=ftp", 400, "unknown service type"),
        ("/api/services?type=vpn&country=Germany", 400, "alpha-2"),
        ("/api/services?type=vpn&version=" + "v" * 65, 400, "version"),
        (f"/api/services/{addr}", 400, "missing service type in request"),
        ("/api/services/nope:44?type=vpn", 400, "invalid skywire address"),
        (f"/api/services/{addr}?type=vpn", 404, "service not found"),
        ("/api/nothing", 404, "Not Found"),
    ]:
        got, obj = await sd.raw("GET", path)
        assert (got, obj["code"]) == (status, status), (path, obj)
        assert message in obj["error"], (path, obj)
    async with sd.http.put(sd.url + "/api/services") as resp:
        assert resp.status == 405 and "POST" in resp.headers["Allow"]
        assert (await resp.json())["code"] == 405
    async with sd.client(a) as ca:
        with pytest.raises(SDBadRequestError) as bad:
            await ca.services("vpn", country="Germany")
        assert bad.value.status == 400 and "alpha-2" in bad.value.message


async def test_visor_entries_must_come_from_one_of_their_addresses(sd: SD) -> None:
    a = KeyPair.generate()
    visor = ServiceEntry(SWAddr(a.pk, 1), ServiceType.VISOR, local_ips=("203.0.113.9",))
    async with sd.client(a) as ca:
        with pytest.raises(SDForbiddenError) as refused:
            await ca.register(visor)
        assert refused.value.message == ERR_VISOR_UNREACHABLE
        here = ServiceEntry(
            SWAddr(a.pk, 1), ServiceType.VISOR, local_ips=("203.0.113.9", "127.0.0.1")
        )
        assert await ca.register(here) == here  # a visor entry needs no version
        listed = await ca.services("visor")
        assert [e.local_ips for e in listed] == [()]  # hidden: display_node_ip is not set
        await ca.delete("visor")
        shown = ServiceEntry(
            SWAddr(a.pk, 1), ServiceType.VISOR, display_node_ip=True, local_ips=("127.0.0.1",)
        )
        await ca.register(shown)
        (got,) = await ca.services("visor")
        assert got.local_ips == ("127.0.0.1",) and not got.display_node_ip


async def test_health_and_metrics(sd: SD) -> None:
    status, body = await sd.raw("GET", "/health")
    assert status == 200 and body["service_name"] == "service-discovery"
    assert body["started_at"].endswith("Z") and "build_info" in body
    await sd.raw("GET", "/api/services?type=vpn")
    status, text = await sd.raw("GET", "/metrics")
    assert status == 200
    assert 'skywire_http_requests_total{route="/api/services",method="GET",status="200"}' in text
    async with sd.client(KeyPair.generate()) as client:
        assert (await client.health())["service_name"] == "service-discovery"


async def test_unreachable_service_is_a_typed_error() -> None:
    async with SDClient("http://127.0.0.1:9", KeyPair.generate().sk, timeout=5) as client:
        with pytest.raises(SDUnreachableError) as info:
            await client.services("vpn")
    assert isinstance(info.value, ConnectionError)


async def test_open_close_cycles_leave_no_task_behind() -> None:
    clock = FakeClock()
    async with no_leaked_tasks():
        for _ in range(3):
            store = MemoryStore(clock=clock)
            kp = KeyPair.generate()
            async with store, running(store, clock) as sd, sd.client(kp) as client:
                await client.register(vpn(kp))
                assert len(await client.services("vpn")) == 1


async def test_postgres_end_to_end() -> None:
    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        clock = FakeClock()
        store = PostgresStore(pool, schema=schema, ttl=TTL, clock=clock)
        a, b = KeyPair.generate(), KeyPair.generate()
        async with running(store, clock) as sd, sd.client(a) as ca, sd.client(b) as cb:
            await ca.register(vpn(a, "DE"))
            await cb.register(vpn(b, "NZ"))
            assert [e.pk for e in await ca.services("vpn", country="NZ")] == [b.pk]
            status, obj = await sd.signed(
                b.sk, "POST", "/api/services", vpn(a).to_json(), scoped=True
            )
            assert (status, obj) == (403, error(403, ERR_PK_MISMATCH))
            await cb.delete("vpn")
            clock.now = T0 + TTL
            assert await ca.services("vpn") == []


_CLI = """
import typer
from skywire.cli import svc_sd
app = typer.Typer()
svc_sd.register(app)
@app.callback()
def main() -> None:
    pass
app()
"""


async def test_cli_serves_health_and_stops_cleanly_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        "sd",
        "--addr",
        "127.0.0.1:0",
        "--store",
        "memory",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "service discovery listening on 127.0.0.1:" in line, line
        assert "store: memory; entries live 300 s" in line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        kp = KeyPair.generate()
        async with SDClient(f"http://127.0.0.1:{port}", kp.sk) as client:
            assert (await client.health())["service_name"] == "service-discovery"
            await client.register(vpn(kp))
            assert [e.pk for e in await client.services("vpn")] == [kp.pk]
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 30)
        rest = (await proc.stdout.read()).decode()
        assert rc == 0
        assert "shutting down" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
