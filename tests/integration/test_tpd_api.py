"""Transport discovery over real HTTP on 127.0.0.1: typed client, raw signed requests, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from skywire.cipher import KeyPair, SecKey
from skywire.services.httpauth import (
    NONCE_MISMATCH,
    HTTPAuth,
    HTTPAuthClient,
    HTTPStatusError,
    MemoryNonceStore,
    auth_headers,
    authenticated_pk,
)
from skywire.services.tpd import TPDClient, TPDRegistry, TPDServer
from skywire.services.tpd.client import (
    TPDBadRequestError,
    TPDConflictError,
    TPDForbiddenError,
    TPDNotFoundError,
)
from skywire.services.tpd.store import TransportStore
from skywire.services.tpd.store.memory import MemoryStore
from skywire.services.tpd.store.postgres import PostgresStore
from skywire.services.tpd.store.sqlite import SqliteStore
from skywire.transport.entry import (
    SignedEntry,
    TransportType,
    make_entry,
    marshal_signed_entries,
    parse_entries,
    parse_entry,
)
from tests.backends.test_httpauth_store import pg_schema


@dataclass
class TPD:
    url: str
    store: TransportStore
    http: aiohttp.ClientSession

    def client(self, kp: KeyPair) -> TPDClient:
        return TPDClient(self.url, kp.sk, self.http)

    async def raw(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
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
        """A signed request as upstream clients sign it (body and nonce), or ``scoped`` as
        this package's clients do (with SW-Sig-Req over method and target as well)."""
        if nonce is None:
            nonce = await self.nonce(sk)
        extra = {"method": method, "target": path} if scoped else {}
        return await self.raw(method, path, body, auth_headers(sk, body, nonce, **extra))

    async def nonce(self, sk: SecKey) -> int:
        status, obj = await self.raw("GET", f"/security/nonces/{sk.pubkey().hex()}")
        assert status == 200
        assert obj["edge"] == sk.pubkey().hex()
        return int(obj["next_nonce"])


@contextlib.asynccontextmanager
async def running(store: TransportStore) -> AsyncIterator[TPD]:
    async with TPDServer(store, "127.0.0.1", 0) as server, aiohttp.ClientSession() as http:
        yield TPD(server.url, store, http)


@pytest.fixture(params=["memory", "sqlite"])
async def tpd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TPD]:
    if request.param == "memory":
        store: TransportStore = MemoryStore()
    else:
        store = await SqliteStore.open(str(tmp_path / "tpd.db"))
    async with store, running(store) as t:
        yield t


def doubly_signed(a: KeyPair, b: KeyPair, tp_type: str = TransportType.STCPR) -> SignedEntry:
    # Each side builds the entry from its own point of view; they must agree.
    entry_a = make_entry(a.pk, b.pk, tp_type)
    entry_b = make_entry(b.pk, a.pk, tp_type)
    assert entry_a == entry_b
    return SignedEntry.new(entry_a, a.pk, a.sk).sign(b.pk, b.sk)


def body_of(*entries: SignedEntry) -> bytes:
    return marshal_signed_entries(entries) + b"\n"


async def test_register_get_delete_flow(tpd: TPD) -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    se = doubly_signed(a, b)
    async with tpd.client(a) as ca, tpd.client(b) as cb, tpd.client(c) as cc:
        await ca.register_transports(se)
        # Both edges see the same transport under the ID each computes on its own.
        id_b = make_entry(b.pk, a.pk, TransportType.STCPR).id
        assert id_b == se.entry.id
        assert await cb.get_transport_by_id(id_b) == se.entry
        assert await ca.get_transport_by_id(se.entry.id) == se.entry
        assert await cb.get_transports_by_edge(b.pk) == [se.entry]
        assert await cc.get_transports_by_edge(a.pk) == [se.entry]
        assert await cc.get_transports_by_edge(c.pk) == []
        assert await cc.all_transports() == [se.entry]
        # Registering again: 409, which settlement ignores.
        with pytest.raises(TPDConflictError) as conflict:
            await cb.register_transports(se)
        assert conflict.value.message == "ID already registered"
        # A key that is no edge may not delete it.
        with pytest.raises(TPDForbiddenError):
            await cc.delete_transport(se.entry.id)
        assert await cc.get_transport_by_id(se.entry.id) == se.entry
        await cb.delete_transport(se.entry.id)
        with pytest.raises(TPDNotFoundError) as nf:
            await ca.get_transport_by_id(se.entry.id)
        assert nf.value.message == "transport not found"
        with pytest.raises(TPDNotFoundError):
            await ca.delete_transport(se.entry.id)
        assert await cc.all_transports() == []


async def test_wire_shapes(tpd: TPD) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    se = doubly_signed(a, b, TransportType.DMSG)
    status, echoed = await tpd.signed(a.sk, "POST", "/transports/", body_of(se))
    assert status == 201
    assert echoed == json.loads(body_of(se))
    async with tpd.http.get(f"{tpd.url}/transports/id:{se.entry.id}") as resp:
        assert resp.status == 401  # unsigned
    status, entry = await tpd.signed(b.sk, "GET", f"/transports/id:{se.entry.id}")
    assert status == 200
    assert entry == {
        "t_id": str(se.entry.id),
        "edges": [pk.hex() for pk in se.entry.edges],
        "type": "dmsg",
        "label": "user",
    }
    status, text = await tpd.signed(a.sk, "DELETE", f"/transports/id:{se.entry.id}")
    assert (status, text) == (200, "transport deleted")
    status, body = await tpd.raw("GET", "/health")
    assert status == 200 and "build_info" in body and body["started_at"].endswith("Z")
    status, _ = await tpd.raw("POST", "/statuses")
    assert status == 410


async def _snapshot(tpd: TPD, *keys: KeyPair) -> tuple[Any, ...]:
    entries = await tpd.store.all_transports()
    nonces = [await tpd.nonce(k.sk) for k in keys]
    return (entries, nonces)


async def test_httpauth_refusals_change_nothing(tpd: TPD) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    se = doubly_signed(a, b)
    body = body_of(se)
    # Spend a's nonce 0 on a read so that 0 is a reused nonce afterwards.
    status, _ = await tpd.signed(a.sk, "GET", f"/transports/edge:{a.pk.hex()}", nonce=0)
    assert status == 200
    before = await _snapshot(tpd, a, b)
    assert before[1] == [1, 0]

    def unauthorized(message: str) -> dict[str, Any]:
        return {"error": {"message": message, "code": 401}}

    # Reused nonce.
    status, obj = await tpd.signed(a.sk, "POST", "/transports/", body, nonce=0)
    assert (status, obj) == (401, unauthorized(NONCE_MISMATCH))
    # A nonce from the future.
    status, obj = await tpd.signed(a.sk, "POST", "/transports/", body, nonce=5)
    assert (status, obj) == (401, unauthorized(NONCE_MISMATCH))
    # Wrong signature: signed over another body.
    headers = auth_headers(a.sk, b"[]", 1)
    status, obj = await tpd.raw("POST", "/transports/", body, headers)
    assert status == 401 and obj["error"]["code"] == 401
    assert obj["error"]["message"] != NONCE_MISMATCH
    # Foreign PK: b's key announced, a's signature.
    headers = auth_headers(a.sk, body, 0, pk=b.pk)
    status, obj = await tpd.raw("POST", "/transports/", body, headers)
    assert status == 401 and "pubkey" in obj["error"]["message"].lower()
    # Missing or malformed headers.
    good = auth_headers(a.sk, body, 1)
    for drop, message in [
        ("SW-Public", "SW-Public missing"),
        ("SW-Sig", "SW-Sig missing"),
        ("SW-Nonce", "SW-Nonce missing"),
    ]:
        partial = {k: v for k, v in good.items() if k != drop}
        status, obj = await tpd.raw("POST", "/transports/", body, partial)
        assert (status, obj) == (401, unauthorized(message))
    for key, value in [
        ("SW-Nonce", "-1"),
        ("SW-Nonce", "+1"),
        ("SW-Nonce", "18446744073709551616"),
        ("SW-Public", "02zz"),
        ("SW-Sig", "00"),
    ]:
        status, obj = await tpd.raw("POST", "/transports/", body, {**good, key: value})
        assert status == 401 and obj["error"]["message"].startswith("error parsing " + key)
    assert await _snapshot(tpd, a, b) == before
    # The genuine request still goes through with the untouched nonce.
    status, _ = await tpd.raw("POST", "/transports/", body, good)
    assert status == 201
    # And replaying it byte for byte is refused: a 201 consumed the nonce.
    status, obj = await tpd.raw("POST", "/transports/", body, good)
    assert (status, obj) == (401, unauthorized(NONCE_MISMATCH))
    assert await tpd.nonce(a.sk) == 2


async def test_registration_validation_changes_nothing(tpd: TPD) -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    se = doubly_signed(a, b)
    half = SignedEntry.new(se.entry, a.pk, a.sk)
    unsorted = replace(se, entry=replace(se.entry, edges=(se.entry.edges[1], se.entry.edges[0])))
    wrong_id = replace(se, entry=replace(se.entry, type="sudph"))
    cases: list[tuple[KeyPair, bytes, int, str]] = [
        (a, body_of(half), 400, "edge"),
        (a, body_of(unsorted), 400, "not sorted"),
        (a, body_of(wrong_id), 400, "transport ID"),
        (c, body_of(se), 403, "not an edge"),
        (a, b"{not json", 400, "invalid JSON"),
        (a, b'{"entry":{}}', 400, "expected an array"),
        (a, body_of(doubly_signed(a, c), half), 400, "edge"),
    ]
    before = await _snapshot(tpd, a, c)
    for signer, body, status, fragment in cases:
        got, obj = await tpd.signed(signer.sk, "POST", "/transports/", body)
        assert got == status, (body, obj)
        assert set(obj) == {"error"} and fragment in obj["error"]
    assert await _snapshot(tpd, a, c) == before
    # A batch with one conflicting entry registers none of them.
    async with tpd.client(a) as ca:
        await ca.register_transports(se)
        fresh = doubly_signed(a, c)
        with pytest.raises(TPDConflictError):
            await ca.register_transports(fresh, se)
        with pytest.raises(TPDNotFoundError):
            await ca.get_transport_by_id(fresh.entry.id)
        with pytest.raises(HTTPStatusError) as bad:
            await ca.auth.get("/transports/id:not-a-uuid")
        assert (bad.value.status, bad.value.message) == (400, "transport ID is invalid")
        with pytest.raises(TPDBadRequestError):
            await ca.register_transports(
                replace(se, signatures=(se.signatures[0], se.signatures[0]))
            )
        with pytest.raises(HTTPStatusError) as bad_pk:
            await ca.auth.get("/transports/edge:02abc")
        assert bad_pk.value.status == 400 and bad_pk.value.message == "public key is invalid"


async def test_latency_overlay(tpd: TPD) -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    se = doubly_signed(a, b)
    async with tpd.client(a) as ca, tpd.client(b) as cb, tpd.client(c) as cc:
        await ca.register_transports(se)
        assert (await cb.get_transport_by_id(se.entry.id)).latency_ms is None
        served = await ca.report_latency(se.entry.id, 23.5)
        assert served.latency_ms == 23.5
        assert (await cb.get_transport_by_id(se.entry.id)).latency_ms == 23.5
        assert [e.latency_ms for e in await cc.get_transports_by_edge(b.pk)] == [23.5]
        # The public listing omits latency.
        assert [e.latency_ms for e in await cc.all_transports()] == [None]
        status, raw = await tpd.raw("GET", "/all-transports")
        assert status == 200 and "latency" not in raw[0]
        d = KeyPair.generate()  # an upstream-style client (no SW-Sig-Req): a key of its own
        status, raw = await tpd.signed(d.sk, "GET", f"/transports/id:{se.entry.id}")
        assert raw["latency"] == 23.5
        # Latest report wins, from either edge.
        await cb.report_latency(se.entry.id, 11)
        assert (await ca.get_transport_by_id(se.entry.id)).latency_ms == 11.0
        # Only edges report, and only sensible values.
        with pytest.raises(TPDForbiddenError):
            await cc.report_latency(se.entry.id, 1.0)
        for bad in (b'{"latency":-1}', b'{"latency":"5"}', b"{}", b"[]", b"nope"):
            status, obj = await tpd.signed(
                a.sk, "POST", f"/transports/id:{se.entry.id}/latency", bad, scoped=True
            )
            assert status == 400 and "error" in obj
        with pytest.raises(TPDNotFoundError):
            await ca.report_latency(make_entry(a.pk, c.pk, "stcp").id, 1.0)
        assert (await ca.get_transport_by_id(se.entry.id)).latency_ms == 11.0


async def test_client_recovers_from_a_stale_nonce(tpd: TPD) -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    async with tpd.client(a) as ca, HTTPAuthClient(tpd.url, a.sk, tpd.http) as other:
        assert await ca.get_transports_by_edge(a.pk) == []
        assert ca.auth.current_nonce == 1
        # Another client with the same key spends nonces behind ca's back.
        await other.get(f"/transports/edge:{a.pk.hex()}")
        await other.get(f"/transports/edge:{a.pk.hex()}")
        assert await tpd.nonce(a.sk) == 3
        se = doubly_signed(a, b)
        await ca.register_transports(se)  # 401 nonce mismatch, re-fetch, retry once
        # a 201: whether it spent the nonce depends on the server, so ask before the next one
        assert ca.auth.current_nonce is None
        assert await ca.get_transport_by_id(se.entry.id) == se.entry
        assert ca.auth.current_nonce == await tpd.nonce(a.sk) == 5


async def test_concurrent_requests_of_one_key_each_use_their_own_nonce(tpd: TPD) -> None:
    a = KeyPair.generate()
    peers = [KeyPair.generate() for _ in range(6)]
    async with tpd.client(a) as ca:
        await asyncio.gather(*(ca.register_transports(doubly_signed(a, p)) for p in peers))
        assert len(await ca.get_transports_by_edge(a.pk)) == 6
    assert await tpd.nonce(a.sk) == 7


async def test_nonce_endpoint_refusals(tpd: TPD) -> None:
    status, obj = await tpd.raw("GET", "/security/nonces/02abc")
    assert status == 400 and obj["error"]["code"] == 400
    status, obj = await tpd.raw("GET", "/security/nonces/" + "0" * 66)
    assert (status, obj) == (400, {"error": {"message": "Invalid public key", "code": 400}})


async def test_postgres_end_to_end() -> None:
    async with pg_schema() as (pool, schema):
        await PostgresStore.create_schema(pool, schema)
        store = PostgresStore(pool, schema=schema)
        a, b = KeyPair.generate(), KeyPair.generate()
        se = doubly_signed(a, b)
        async with running(store) as tpd, tpd.client(a) as ca, tpd.client(b) as cb:
            await ca.register_transports(se)
            await cb.report_latency(se.entry.id, 5.0)
            assert (await ca.get_transport_by_id(se.entry.id)).latency_ms == 5.0
            status, obj = await tpd.signed(a.sk, "POST", "/transports/", body_of(se), nonce=0)
            assert status == 401 and obj["error"]["message"] == NONCE_MISMATCH
            await cb.delete_transport(se.entry.id)
            assert await ca.get_transports_by_edge(a.pk) == []
        assert await tpd.store.all_transports() == []


_CLI = """
import typer
from skywire.cli import svc_tpd
app = typer.Typer()
svc_tpd.register(app)
@app.callback()
def main() -> None:
    pass
app()
"""


async def test_cli_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        "tpd",
        "--addr",
        "127.0.0.1:0",
        "--store",
        "sqlite",
        "--db",
        str(db),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "transport discovery listening on 127.0.0.1:" in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        url = f"http://127.0.0.1:{port}"
        kp, peer = KeyPair.generate(), KeyPair.generate()
        se = doubly_signed(kp, peer)
        async with TPDClient(url, kp.sk) as client:
            await client.register_transports(se)
            assert parse_entries(b"[" + se.entry.to_json() + b"]") == await client.all_transports()
        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 30)
        rest = (await proc.stdout.read()).decode()
        assert rc == 0
        assert "shutting down" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The registration is in the SQLite file.
    store = await SqliteStore.open(str(db))
    async with store:
        assert await store.get_by_id(se.entry.id) == parse_entry(se.entry.to_json())


# -- the httpauth middleware on an application of its own ----------------------------------------


@contextlib.asynccontextmanager
async def bare_app(protect_all: bool) -> AsyncIterator[tuple[str, MemoryNonceStore]]:
    store = MemoryNonceStore()
    auth = HTTPAuth(store, protect_all=protect_all)
    app = web.Application()

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response({"pk": authenticated_pk(request).hex()})

    async def created(request: web.Request) -> web.StreamResponse:
        raise web.HTTPCreated(text="made")

    async def refused(request: web.Request) -> web.StreamResponse:
        raise web.HTTPBadRequest(text="no")

    async def public(request: web.Request) -> web.StreamResponse:
        return web.Response(text="hello")

    app.router.add_get("/echo", auth.protect(echo))
    app.router.add_post("/created", auth.protect(created))
    app.router.add_post("/refused", auth.protect(refused))
    app.router.add_get("/public", public)
    auth.setup(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}", store
    finally:
        await runner.cleanup()


async def test_middleware_protects_marked_handlers_only() -> None:
    kp = KeyPair.generate()
    async with bare_app(False) as (url, store), aiohttp.ClientSession() as http:
        async with http.get(url + "/public") as resp:
            assert resp.status == 200
        async with http.get(url + "/echo") as resp:
            assert resp.status == 401
            assert await resp.json() == {"error": {"message": "SW-Public missing", "code": 401}}
        async with http.head(url + "/echo") as resp:  # the implicit HEAD route too
            assert resp.status == 401
        async with HTTPAuthClient(url, kp.sk, http) as client:
            assert await client.get("/echo") == {"pk": kp.pk.hex()}
            assert await client.post("/created") == "made"  # a raised 2xx consumes the nonce
            with pytest.raises(HTTPStatusError) as info:
                await client.post("/refused")
            assert (info.value.status, info.value.message) == (400, "no")
            assert await store.nonce(kp.pk) == 2
            assert client.current_nonce == 2


async def test_middleware_protect_all_leaves_nonce_endpoint_public() -> None:
    kp = KeyPair.generate()
    async with bare_app(True) as (url, _store), aiohttp.ClientSession() as http:
        async with http.get(url + "/public") as resp:
            assert resp.status == 401
        async with http.get(url + "/missing") as resp:
            assert resp.status == 404
        async with HTTPAuthClient(url, kp.sk, http) as client:
            assert await client.fetch_nonce() == 0
            assert await client.get("/public") == "hello"


async def test_registry_adapter_tolerates_what_settlement_tolerates(tpd: TPD) -> None:
    a, b, c = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    ab, ac = doubly_signed(a, b), doubly_signed(a, c)
    async with TPDRegistry(tpd.url, a.sk, tpd.http) as reg:
        await reg.register([ab])
        await reg.register([ab])  # 409 ignored
        await reg.register([ab, ac])  # refused whole, then the new one alone
        assert {e.id for e in await tpd.store.all_transports()} == {ab.entry.id, ac.entry.id}
        await reg.report_latency(ab.entry.id, 8.0)
        assert (await tpd.store.get_by_id(ab.entry.id)).latency_ms == 8.0
        await reg.deregister(ab.entry.id)
        await reg.deregister(ab.entry.id)  # 404 ignored
        assert [e.id for e in await tpd.store.all_transports()] == [ac.entry.id]
        with pytest.raises(TPDNotFoundError):
            await reg.report_latency(ab.entry.id, 1.0)


async def test_client_counts_nonces_as_an_upstream_server_does() -> None:
    """Upstream servers spend a nonce only on a 200: after a 201 the client must not assume
    it advanced (it used to, and every registration was followed by a 401 and a retry)."""
    auth = HTTPAuth(MemoryNonceStore(), protect_all=True, spend_on_any_2xx=False)
    mismatches = 0

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal mismatches
        response = await handler(request)
        mismatches += response.status == 401
        return response

    async def create(request: web.Request) -> web.Response:
        return web.json_response({"by": authenticated_pk(request).hex()}, status=201)

    async def read(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[count])
    app.router.add_post("/things", create)
    app.router.add_get("/things", read)
    auth.setup(app)
    kp = KeyPair.generate()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(runner.cleanup)
        client = await stack.enter_async_context(HTTPAuthClient(url, kp.sk))
        for _ in range(3):
            assert (await client.request("POST", "/things", body=b"{}")).status == 201
            assert (await client.request("GET", "/things")).status == 200
        assert mismatches == 0


async def test_headers_made_for_one_request_do_not_serve_another(tpd: TPD) -> None:
    """SW-Sig-Req (ours) signs method and target too: a GET's headers are refused on a DELETE
    with the same (empty) body, also stripped of SW-Sig-Req once the key has used it; an
    upstream-style client that never sends it keeps working on body and nonce alone."""
    from skywire.services.httpauth.sign import HEADER_SIG_REQUEST

    a, b = KeyPair.generate(), KeyPair.generate()
    se = doubly_signed(a, b)
    async with tpd.client(a) as ca:
        await ca.register_transports(se)  # our client: both signatures
        nonce = await tpd.nonce(a.sk)
        path = f"/transports/id:{se.entry.id}"
        made_for_get = auth_headers(a.sk, b"", nonce, method="GET", target=path)
        status, obj = await tpd.raw("DELETE", path, b"", made_for_get)
        assert status == 401 and HEADER_SIG_REQUEST in obj["error"]["message"]
        stripped = {k: v for k, v in made_for_get.items() if k != HEADER_SIG_REQUEST}
        status, obj = await tpd.raw("DELETE", path, b"", stripped)
        assert status == 401 and "missing" in obj["error"]["message"]
        assert (await ca.get_transport_by_id(se.entry.id)).id == se.entry.id  # still there
        fresh = auth_headers(a.sk, b"", await tpd.nonce(a.sk), method="GET", target=path)
        status, _ = await tpd.raw("GET", path, b"", fresh)  # on the request they were made for
        assert status == 200
    upstream_style = KeyPair.generate()
    status, raw = await tpd.signed(upstream_style.sk, "GET", f"/transports/id:{se.entry.id}")
    assert status == 200 and raw["t_id"] == str(se.entry.id)
