"""The uptime tracker over real HTTP on 127.0.0.1: heartbeats through the typed client and as
raw signed requests, replayed and forged heartbeats refused with httpauth's 401 and changing
nothing, the query refusals, upstream's v2 list; then ``skywire svc ut`` as a process (SQLite
and PostgreSQL) read by ``skywire cli ut``."""

from __future__ import annotations

import asyncio
import json
import os
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
from skywire.services.ut import UTClient, UTServer
from skywire.services.ut.client import UTNotFoundError, UTUnreachableError
from skywire.services.ut.store import UptimeStore
from skywire.services.ut.store.memory import MemoryStore
from skywire.services.ut.uptime import day_start
from tests.backends.test_httpauth_store import PG_URL, pg_schema
from tests.conftest import no_leaked_tasks

pytestmark = pytest.mark.timeout(120)

MIDNIGHT = day_start("2023-11-15")


class FakeClock:
    def __init__(self) -> None:
        self.now = MIDNIGHT - 600

    def __call__(self) -> float:
        return self.now


@dataclass
class UT:
    url: str
    store: UptimeStore
    clock: FakeClock
    http: aiohttp.ClientSession

    async def raw(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.get(self.url + path, headers=headers) as resp:
            return resp.status, json.loads(await resp.text())

    async def nonce(self, sk: SecKey) -> int:
        status, body = await self.raw(f"/security/nonces/{sk.pubkey().hex()}")
        assert status == 200
        return int(body["next_nonce"])


@pytest.fixture
async def ut() -> AsyncIterator[UT]:
    clock = FakeClock()
    store = MemoryStore()
    async with (
        UTServer(store, clock=clock, tolerance=600.0) as server,
        aiohttp.ClientSession() as http,
    ):
        yield UT(server.url, store, clock, http)


async def test_heartbeats_are_counted_per_day(ut: UT) -> None:
    kp = KeyPair.generate()
    async with UTClient(ut.url, kp.sk, ut.http) as client:
        assert await client.update("v1.3.29") == 0.0  # the first heartbeat credits nothing
        for _ in range(4):  # every 5 minutes across midnight
            ut.clock.now += 300
            assert await client.update("v1.3.29") == 300.0
        ut.clock.now += 3600  # away for an hour: not credited
        assert await client.update("v1.3.30") == 0.0
        mine = await client.uptime(kp.pk, days=2)
        listed = await client.uptimes([kp.pk])
    assert [(d["date"], d["up"]) for d in mine["days"]] == [
        ("2023-11-14", 600.0),
        ("2023-11-15", 600.0),
    ]
    assert mine["on"] is True and mine["version"] == "v1.3.30" and mine["up"] == 1200.0
    assert mine["first_seen"] == "2023-11-14T23:50:00Z"
    [v2] = listed
    assert set(v2) == {"pk", "up", "down", "pct", "on", "version", "daily"}
    assert v2["pk"] == kp.pk.hex() and v2["up"] == 1200 and v2["on"] is True
    assert v2["daily"]["2023-11-14"] == f"{100 * 600 / 86400:.2f}"
    assert v2["daily"]["2023-11-15"] == f"{100 * 600 / 4200:.2f}"  # today: of the 70 min gone
    ut.clock.now += 601
    status, body = await ut.raw(f"/uptimes?v=v2&visors={kp.pk.hex()}")
    assert status == 200 and body[0]["on"] is False


async def test_the_list_takes_upstreams_separators_and_lists_everyone(ut: UT) -> None:
    keys = [KeyPair.generate() for _ in range(3)]
    for kp in keys:
        async with UTClient(ut.url, kp.sk, ut.http) as client:
            await client.update("v1")
    everyone = sorted(kp.pk.hex() for kp in keys)
    status, body = await ut.raw("/uptimes?v=v2")
    assert status == 200 and [e["pk"] for e in body] == everyone
    status, body = await ut.raw("/uptimes")  # no v: the same list
    assert [e["pk"] for e in body] == everyone
    a, b = keys[0].pk.hex(), keys[1].pk.hex()
    status, body = await ut.raw(f"/uptimes?v=v2&visors={a};{b}")
    assert sorted(e["pk"] for e in body) == sorted([a, b])
    unknown = KeyPair.generate().pk.hex()
    assert await ut.raw(f"/uptimes?visors={unknown}") == (200, [])


async def test_query_refusals(ut: UT) -> None:
    def error(status: int, message: str) -> tuple[int, dict[str, Any]]:
        return status, {"code": status, "error": message}

    unknown = KeyPair.generate().pk
    assert await ut.raw(f"/uptimes/{unknown.hex()}") == error(404, "visor not found")
    status, body = await ut.raw("/uptimes?v=v1")
    assert status == 400 and "only v=v2" in body["error"]
    status, body = await ut.raw("/uptimes?visors=02zz")
    assert status == 400 and "invalid public key" in body["error"]
    status, body = await ut.raw(f"/uptimes/{unknown.hex()}?days=0")
    assert status == 400 and "days" in body["error"]
    status, body = await ut.raw("/uptimes/nope")
    assert status == 400
    async with UTClient(ut.url, None, ut.http) as client:
        with pytest.raises(UTNotFoundError):
            await client.uptime(unknown)
        health = await client.health()
    assert health["service_name"] == "uptime-tracker" and health["tolerance_s"] == 600.0


async def test_replayed_and_forged_heartbeats_are_refused_and_change_nothing(ut: UT) -> None:
    kp, other = KeyPair.generate(), KeyPair.generate()
    headers = auth_headers(kp.sk, b"", await ut.nonce(kp.sk))
    assert (await ut.raw("/v4/update?version=v1", headers))[0] == 200
    ut.clock.now += 300
    # the same request again: its nonce is spent
    replay = await ut.raw("/v4/update?version=v1", headers)
    assert replay == (401, {"error": {"message": NONCE_MISMATCH, "code": 401}})
    # signed by another key in kp's name
    forged = auth_headers(other.sk, b"", await ut.nonce(kp.sk), pk=kp.pk)
    status, body = await ut.raw("/v4/update?version=v1", forged)
    assert status == 401 and body["error"]["code"] == 401
    status, body = await ut.raw("/v4/update?version=v1")  # not signed at all
    assert (status, body["error"]["message"]) == (401, "SW-Public missing")
    # a bad version is refused before anything is recorded, and spends no nonce
    nonce = await ut.nonce(kp.sk)
    status, body = await ut.raw("/v4/update?version=v%201", auth_headers(kp.sk, b"", nonce))
    assert status == 400 and "version" in body["error"]
    assert await ut.nonce(kp.sk) == nonce == 1
    [rec] = await ut.store.visors([kp.pk])
    assert rec.last_seen == rec.first_seen == MIDNIGHT - 600  # only the first heartbeat counted
    assert await ut.store.daily(None, "2000-01-01") == {}


async def test_unreachable_tracker_is_a_typed_error() -> None:
    async with no_leaked_tasks():
        async with UTServer(MemoryStore()) as server:
            url = server.url
        async with UTClient(url, SecKey.generate()) as client:
            with pytest.raises(UTUnreachableError):
                await client.update("v1")


# ------------------------------------------------------------------------------ processes
async def skywire(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "skywire.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def serve_and_ask(*store_args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "skywire.cli", "svc", "ut", "--addr", "127.0.0.1:0", *store_args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "uptime tracker listening on 127.0.0.1:" in line, line
        assert "gaps up to 600 s credited" in line
        url = "http://127.0.0.1:" + line.split("127.0.0.1:")[1].split()[0]
        kp = KeyPair.generate()
        async with UTClient(url, kp.sk) as client:
            assert await client.update("v1.3.29") == 0.0
            assert await client.update("v1.3.29") >= 0.0  # the gap since the first (tiny)
        code, out, err = await skywire("cli", "ut", "--pk", kp.pk.hex(), "--ut", url, "--json")
        assert code == 0, err
        found = json.loads(out)
        assert found["pk"] == kp.pk.hex() and found["on"] is True
        assert found["version"] == "v1.3.29" and len(found["days"]) == 1
        code, out, err = await skywire("cli", "ut", "--pk", kp.pk.hex(), "--ut", url)
        assert code == 0, err
        assert f"visor {kp.pk.hex()}" in out and "online, version v1.3.29" in out
        assert "total" in out and found["days"][0]["date"] in out
        assert max(len(x) for x in out.splitlines()) <= 80
        unknown = KeyPair.generate().pk.hex()
        code, _, err = await skywire("cli", "ut", "--pk", unknown, "--ut", url)
        assert code == 1 and "has no heartbeat from" in err
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert "shutting down" in (await proc.stdout.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_svc_ut_on_sqlite_read_by_cli_ut(tmp_path: Path) -> None:
    await serve_and_ask("--db", str(tmp_path / "ut.db"))
    assert (tmp_path / "ut.db").exists()


async def test_svc_ut_on_postgres(tmp_path: Path) -> None:
    async with pg_schema() as (pool, schema):
        await serve_and_ask("--store", "postgres", "--pg-url", PG_URL, "--pg-schema", schema)
        assert await pool.fetchval(f'SELECT COUNT(*) FROM "{schema}".ut_visors') == 1
