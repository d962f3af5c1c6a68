"""The dmsg discovery over real HTTP on 127.0.0.1, driven by the typed client and raw requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from skywire.cipher import KeyPair, PubKey
from skywire.dmsg.disc_entry import (
    ClientInfo,
    DiscError,
    DiscVersion,
    Entry,
    KeyNotFoundError,
    NoAvailableServersError,
    OutdatedTimeError,
    ServerAddressError,
    UnauthorizedError,
    WrongSequenceError,
    WrongTimeError,
    parse_entry,
    sign,
    verify,
)
from skywire.dmsg.disc_errors import DeleteNotProvenError
from skywire.services.dmsgdisc import DiscClient, DiscoveryServer
from skywire.services.dmsgdisc.store import DiscStore
from skywire.services.dmsgdisc.store.memory import MemoryStore
from skywire.services.dmsgdisc.store.sqlite import SqliteStore
from tests.conftest import load_vectors

SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND
BAD_INPUT = {"message": "error bad input", "code": 400}


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * SECOND)


@dataclass
class Disc:
    url: str
    client: DiscClient
    store: DiscStore
    clock: FakeClock
    http: aiohttp.ClientSession

    async def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str, Any]:
        async with self.http.request(method, self.url + path, data=body) as resp:
            text = await resp.text()
            parsed = json.loads(text) if resp.content_type == "application/json" else text
            return resp.status, resp.content_type, parsed


@contextlib.asynccontextmanager
async def running(
    store: DiscStore | None = None, *, pooled: bool = True, **options: Any
) -> AsyncIterator[Disc]:
    """A discovery and a client of it: on a shared aiohttp session (``pooled``) or making each
    request on a connection of its own (``pooled=False``: :mod:`skywire.wire.http1`)."""
    clock = FakeClock()
    store = store if store is not None else MemoryStore(clock=clock)
    options.setdefault("clock", clock)
    async with (
        DiscoveryServer(store, "127.0.0.1", 0, **options) as server,
        aiohttp.ClientSession() as http,
        DiscClient(server.url, http if pooled else None, clock=clock, pooled=pooled) as client,
    ):
        yield Disc(server.url, client, store, clock, http)
    await store.close()


@pytest.fixture(params=[True, False], ids=["aiohttp", "one-shot"])
async def disc(request: pytest.FixtureRequest) -> AsyncIterator[Disc]:
    async with running(pooled=request.param) as d:
        yield d


def client_entry(kp: KeyPair, seq: int = 0, ts: int = T0, **kw: Any) -> Entry:
    return sign(replace(Entry.new_client(kp.pk, seq, (), timestamp=ts), **kw), kp.sk)


def server_entry(
    kp: KeyPair, sessions: int, seq: int = 0, ts: int = T0, addr: str = "1.2.3.4:8081"
) -> Entry:
    return sign(Entry.new_server(kp.pk, seq, addr, sessions, timestamp=ts), kp.sk)


async def _stored(d: Disc, pk: PubKey) -> Entry | None:
    try:
        return await d.store.get(pk)
    except KeyNotFoundError:
        return None


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_create_update_get_delete(kind: str, tmp_path: Path) -> None:
    store: DiscStore | None = None
    if kind == "sqlite":
        store = await SqliteStore.open(str(tmp_path / "disc.db"))
    async with running(store) as d:
        kp, srv = KeyPair.generate(), KeyPair.generate()
        first = client_entry(kp, 0)
        assert await d.client.post_entry(first) == "wrote a new entry"
        assert await d.client.get_entry(kp.pk) == first

        second = sign(
            replace(first, sequence=1, timestamp=T0 + 1, client=ClientInfo((srv.pk,))), kp.sk
        )
        assert await d.client.post_entry(second) == "wrote new entry iteration"
        got = await d.client.get_entry(kp.pk)
        assert got == second
        assert got.client is not None and got.client.delegated_servers == (srv.pk,)
        assert await d.client.entries() == [kp.pk]

        # the stored entry sent back (what anyone can fetch) does not delete it
        with pytest.raises(DeleteNotProvenError):
            await d.client.delete_entry(second)
        assert await d.client.get_entry(kp.pk) == second
        # a new iteration, signed now, does
        d.clock.advance(1)
        third = sign(replace(second, sequence=2, timestamp=d.clock()), kp.sk)
        await d.client.delete_entry(third)
        with pytest.raises(KeyNotFoundError):
            await d.client.get_entry(kp.pk)
        assert await d.client.entries() == []
        # and the copies captured before the delete cannot be posted again
        for old in (first, second):
            with pytest.raises(WrongTimeError):
                await d.client.post_entry(old)
        assert await d.client.entries() == []
        # a fresh entry from the holder is welcome
        d.clock.advance(1)
        await d.client.post_entry(client_entry(kp, 0, d.clock()))
        assert await d.client.entries() == [kp.pk]


async def test_response_bodies_are_upstream_byte_for_byte(disc: Disc) -> None:
    kp = KeyPair.generate()
    entry = client_entry(kp)
    async with disc.http.post(disc.url + "/dmsg-discovery/entry/", data=entry.to_json()) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        assert await r.read() == b'{"message":"wrote a new entry","code":200}'
    async with disc.http.get(disc.url + f"/dmsg-discovery/entry/{kp.pk}") as r:
        assert await r.read() == entry.to_json()
    missing = KeyPair.generate().pk
    async with disc.http.get(disc.url + f"/dmsg-discovery/entry/{missing}") as r:
        assert r.status == 404
        assert await r.read() == b'{"message":"entry of public key is not found","code":404}'
    async with disc.http.delete(disc.url + "/dmsg-discovery/entry", data=entry.to_json()) as r:
        assert r.status == 401
        assert await r.read() == (
            b'{"message":"delete must carry a new iteration of the entry, signed now","code":401}'
        )
    fresh = sign(replace(entry, sequence=1, timestamp=T0 + 1), kp.sk)
    async with disc.http.delete(disc.url + "/dmsg-discovery/entry", data=fresh.to_json()) as r:
        assert await r.read() == b'{"message":"deleted entry","code":200}'


async def test_post_with_pk_in_path_is_accepted(disc: Disc) -> None:
    kp = KeyPair.generate()
    entry = client_entry(kp)
    status, _, body = await disc.raw("POST", f"/dmsg-discovery/entry/{kp.pk}", entry.to_json())
    assert (status, body) == (200, {"message": "wrote a new entry", "code": 200})


async def test_forged_signature_is_401_and_stores_nothing(disc: Disc) -> None:
    kp, other = KeyPair.generate(), KeyPair.generate()
    forged = replace(client_entry(other), static=kp.pk)
    with pytest.raises(UnauthorizedError) as info:
        await disc.client.post_entry(forged)
    assert (info.value.code, info.value.message) == (401, "invalid signature")
    assert await _stored(disc, kp.pk) is None

    # an update with a tampered field leaves the stored entry alone
    good = client_entry(kp)
    await disc.client.post_entry(good)
    tampered = replace(good, sequence=1, timestamp=T0 + 1)
    with pytest.raises(UnauthorizedError):
        await disc.client.post_entry(tampered)
    assert await _stored(disc, kp.pk) == good
    # garbage signature text is also 401
    with pytest.raises(UnauthorizedError):
        await disc.client.post_entry(replace(good, sequence=2, signature="zz"))
    # and a forged DELETE deletes nothing
    with pytest.raises(UnauthorizedError):
        await disc.client.delete_entry(replace(good, signature=forged.signature))
    assert await _stored(disc, kp.pk) == good


async def test_replayed_entry_is_422_and_store_unchanged(disc: Disc) -> None:
    kp = KeyPair.generate()
    await disc.client.post_entry(client_entry(kp, 0))
    current = client_entry(kp, 5, ts=T0 + 5)
    await disc.client.post_entry(current)
    for replay in (current, client_entry(kp, 0), client_entry(kp, 4, ts=T0 + 99)):
        with pytest.raises(WrongSequenceError) as info:
            await disc.client.post_entry(replay)
        assert info.value.code == 422
        assert info.value.message == (
            "entry validation error: sequence field of new entry is not sequence of old entry + 1"
        )
        assert await _stored(disc, kp.pk) == current
    # a greater sequence whose timestamp goes back is refused too
    with pytest.raises(WrongTimeError):
        await disc.client.post_entry(client_entry(kp, 6, ts=T0 + 4))
    assert await _stored(disc, kp.pk) == current
    # a new key may start at any sequence
    late = KeyPair.generate()
    await disc.client.post_entry(client_entry(late, 42))


async def test_server_timestamp_window(disc: Disc) -> None:
    kp = KeyPair.generate()
    for ts in (T0 - 60 * SECOND - 1, T0 + 5 * SECOND + 1):
        with pytest.raises(OutdatedTimeError) as info:
            await disc.client.post_entry(server_entry(kp, 10, ts=ts))
        assert info.value.message == (
            "entry validation error: advertised entry has outdated timestamp"
        )
        assert await _stored(disc, kp.pk) is None
    await disc.client.post_entry(server_entry(kp, 10, ts=T0 - 60 * SECOND))
    # client entries are exempt from the window
    old_client = KeyPair.generate()
    await disc.client.post_entry(client_entry(old_client, ts=T0 - 3600 * SECOND))


async def test_loopback_server_address_needs_test_mode() -> None:
    kp = KeyPair.generate()
    async with running() as d:
        for addr in ("127.0.0.1:8081", "[::1]:8081", ":8081"):
            with pytest.raises(ServerAddressError) as info:
                await d.client.post_entry(server_entry(kp, 10, addr=addr))
            assert info.value.code == 422
            assert await _stored(d, kp.pk) is None
        # a loopback check comes before the signature check
        unsigned = replace(server_entry(kp, 10, addr="127.0.0.1:1"), signature="00")
        with pytest.raises(ServerAddressError):
            await d.client.post_entry(unsigned)
    async with running(test_mode=True) as d:
        await d.client.post_entry(server_entry(kp, 10, addr="127.0.0.1:8081"))
        (srv,) = await d.client.available_servers()
        assert srv.server is not None and srv.server.address == "127.0.0.1:8081"


async def test_available_and_all_servers(disc: Disc) -> None:
    for path in ("available_servers", "all_servers"):
        status, ctype, body = await disc.raw("GET", f"/dmsg-discovery/{path}")
        assert (status, ctype) == (404, "application/json")
        assert body == {"message": "no delegated dmsg servers available for remote", "code": 404}
    with pytest.raises(NoAvailableServersError):
        await disc.client.available_servers()

    full = KeyPair.generate()
    await disc.client.post_entry(server_entry(full, 0))
    with pytest.raises(NoAvailableServersError):
        await disc.client.available_servers()
    assert [e.static for e in await disc.client.all_servers()] == [full.pk]

    kps = [KeyPair.generate() for _ in range(4)]
    for kp, n in zip(kps, (3, 300, 30, 1), strict=True):
        await disc.client.post_entry(server_entry(kp, n))
    got = await disc.client.available_servers()
    assert [e.server.available_sessions for e in got if e.server] == [300, 30, 3, 1]
    assert [e.static for e in got] == [kps[1].pk, kps[2].pk, kps[0].pk, kps[3].pk]
    assert len(await disc.client.all_servers()) == 5
    # clients are not servers
    await disc.client.post_entry(client_entry(KeyPair.generate()))
    assert len(await disc.client.all_servers()) == 5


async def test_server_type_is_classified_like_2024() -> None:
    a, b = KeyPair.generate(), KeyPair.generate()
    async with running() as d:
        # no passphrase configured: a server sending no serverType counts as official (upstream)
        await d.client.post_entry(server_entry(a, 1))
        (got,) = await d.client.all_servers()
        assert got.server is not None and got.server.server_type == "official"
    async with running(auth_passphrase="s3cret", official_servers=[b.pk]) as d:
        await d.client.post_entry(server_entry(a, 1))
        await d.client.post_entry(server_entry(b, 1))
        types = {e.static: e.server.server_type for e in await d.client.all_servers() if e.server}
        assert types == {a.pk: "community", b.pk: "official"}


async def test_passphrase_in_signed_server_type_marks_official() -> None:
    kp = KeyPair.generate()
    async with running(auth_passphrase="s3cret") as d:
        entry = Entry.new_server(kp.pk, 0, "1.2.3.4:1", 5, timestamp=T0)
        assert entry.server is not None
        entry = sign(replace(entry, server=replace(entry.server, server_type="s3cret")), kp.sk)
        await d.client.post_entry(entry)
        got = await d.client.get_entry(kp.pk)
        assert got.server is not None and got.server.server_type == "official"
        # the stored entry no longer verifies (upstream rewrites after verification) …
        with pytest.raises(UnauthorizedError):
            verify(got)
        # … and the next iteration is still accepted
        nxt = sign(replace(entry, sequence=1, timestamp=T0 + 1), kp.sk)
        assert await d.client.post_entry(nxt) == "wrote new entry iteration"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b"[]",
        b'{"sequence":"1"}',
        b'{"static":"nothex"}',
        b'{"client":{"delegated_servers":[1]}}',
        b"\xff\xfe\x00",
    ],
)
async def test_malformed_body_is_a_json_4xx_and_changes_nothing(disc: Disc, body: bytes) -> None:
    for method, path in (("POST", "/dmsg-discovery/entry/"), ("DELETE", "/dmsg-discovery/entry")):
        status, ctype, parsed = await disc.raw(method, path, body)
        assert (status, ctype, parsed) == (400, "application/json", BAD_INPUT)
    assert await disc.store.client_pks() == []
    assert await disc.store.all_servers() == []


async def test_invalid_entries_are_422_with_upstream_messages(disc: Disc) -> None:
    kp = KeyPair.generate()
    cases = {
        b"null": "entry validation error: entry has no version",
        b"{}": "entry validation error: entry has no version",
        b'{"version":"0.0.1"}': "entry validation error: entry has no signature",
        b'{"version":"0.0.1","signature":"x"}': "entry validation error: entry Keys is nil",
        (
            b'{"version":"0.0.1","signature":"x","static":"' + kp.pk.hex().encode() + b'"}'
        ): "entry validation error: entry has neither client or server field",
        (
            b'{"version":"0.0.1","signature":"x","static":"'
            + kp.pk.hex().encode()
            + b'","server":{"address":""}}'
        ): "entry validation error: server address cannot be empty",
    }
    for body, message in cases.items():
        status, _, parsed = await disc.raw("POST", "/dmsg-discovery/entry/", body)
        assert (status, parsed) == (422, {"message": message, "code": 422})
    assert await _stored(disc, kp.pk) is None


async def test_get_entry_with_a_bad_key_is_400(disc: Disc) -> None:
    status, _, body = await disc.raw("GET", "/dmsg-discovery/entry/nothex")
    assert (status, body) == (400, BAD_INPUT)
    status, _, body = await disc.raw("GET", "/dmsg-discovery/entry/" + "0" * 66)
    assert status == 404


async def test_put_entry_resequences_after_a_wrong_sequence(disc: Disc) -> None:
    kp = KeyPair.generate()
    # someone (an earlier run of this node) already published up to sequence 7
    await disc.client.post_entry(client_entry(kp, 7, ts=T0))
    disc.clock.advance(1)
    stale_local = client_entry(kp, 0, ts=T0)
    published = await disc.client.put_entry(kp.sk, stale_local)
    assert published.sequence == 8
    assert published.timestamp == disc.clock.now
    assert await disc.client.get_entry(kp.pk) == published
    # the normal path: sequence + 1
    disc.clock.advance(1)
    again = await disc.client.put_entry(kp.sk, published)
    assert again.sequence == 9
    assert await _stored(disc, kp.pk) == again


async def test_put_entry_gives_up_when_the_remote_is_newer(disc: Disc) -> None:
    kp = KeyPair.generate()
    remote = client_entry(kp, 7, ts=T0 + 3600 * SECOND)
    await disc.client.post_entry(remote)
    result = await disc.client.put_entry(kp.sk, client_entry(kp, 0))
    assert result.sequence == 7
    assert await _stored(disc, kp.pk) == remote


async def test_entries_and_visor_entries(disc: Disc) -> None:
    visor, app = KeyPair.generate(), KeyPair.generate()
    await disc.client.post_entry(client_entry(visor, client_type="visor"))
    await disc.client.post_entry(client_entry(app))
    await disc.client.post_entry(server_entry(KeyPair.generate(), 5))
    assert await disc.client.entries() == sorted([visor.pk, app.pk])
    assert await disc.client.visor_entries() == [visor.pk]


async def test_timeout_query_gives_client_entries_a_lifetime(disc: Disc) -> None:
    timed, forever = KeyPair.generate(), KeyPair.generate()
    await disc.client.post_entry(client_entry(timed), timeout=True)
    await disc.client.post_entry(client_entry(forever))
    assert isinstance(disc.store, MemoryStore)
    disc.clock.advance(180)
    with pytest.raises(KeyNotFoundError):
        await disc.client.get_entry(timed.pk)
    assert (await disc.client.get_entry(forever.pk)).static == forever.pk


async def test_server_entries_expire_from_the_api(disc: Disc) -> None:
    kp = KeyPair.generate()
    await disc.client.post_entry(server_entry(kp, 5))
    disc.clock.advance(119)
    assert len(await disc.client.available_servers()) == 1
    disc.clock.advance(1)
    with pytest.raises(NoAvailableServersError):
        await disc.client.available_servers()


async def test_go_vector_bodies_against_both_versions() -> None:
    cases = load_vectors("disc")["cases"]
    modern = {it["name"]: it for it in cases[1]["items"]}
    body = modern["client_entry_client_type_visor"]["post_body"].encode()
    async with running() as d:
        status, _, _ = await d.raw("POST", "/dmsg-discovery/entry/", body)
        assert status == 200
        assert await d.client.visor_entries() == [parse_entry(body).static]
    async with running(version=DiscVersion.V2023) as d:
        status, _, parsed = await d.raw("POST", "/dmsg-discovery/entry/", body)
        assert (status, parsed) == (401, {"message": "invalid signature", "code": 401})
        status, _, _ = await d.raw("GET", "/dmsg-discovery/visorEntries")
        assert status == 404  # not an endpoint of the [2023] discovery
        old = {it["name"]: it for it in cases[0]["items"]}
        body23 = old["client_entry_two_servers"]["post_body"].encode()
        status, _, _ = await d.raw("POST", "/dmsg-discovery/entry/", body23)
        assert status == 200


async def test_health(disc: Disc) -> None:
    health = await disc.client.health()
    assert health["started_at"] == "2023-11-14T22:13:20Z"
    assert set(health["build_info"]) == {"version", "commit", "date"}


async def test_deregister_by_network_monitor() -> None:
    nm, intruder = KeyPair.generate(), KeyPair.generate()
    victims = [KeyPair.generate() for _ in range(2)]
    async with running(nm_whitelist=[nm.pk]) as d:
        for kp in victims:
            await d.client.post_entry(client_entry(kp))
        body = json.dumps([kp.pk.hex() for kp in victims]).encode()

        def headers(kp: KeyPair) -> dict[str, str]:
            return {"NM-PK": kp.pk.hex(), "NM-Sign": kp.sk.sign(kp.pk.hex().encode()).hex()}

        url = d.url + "/dmsg-discovery/deregister"
        async with d.http.delete(url, data=body, headers=headers(intruder)) as r:
            assert r.status == 403
        bad_sig = {"NM-PK": nm.pk.hex(), "NM-Sign": intruder.sk.sign(b"x").hex()}
        async with d.http.delete(url, data=body, headers=bad_sig) as r:
            assert r.status == 403
        assert len(await d.client.entries()) == 2
        async with d.http.delete(url, data=b"{}", headers=headers(nm)) as r:
            assert r.status == 400
        async with d.http.delete(url, data=b'["zz"]', headers=headers(nm)) as r:
            assert (r.status, await r.json()) == (400, BAD_INPUT)
        async with d.http.delete(url, data=body, headers=headers(nm)) as r:
            assert (r.status, await r.read()) == (200, b"null")
        assert await d.client.entries() == []


class _BrokenStore(MemoryStore):
    async def get(self, pk: PubKey) -> Entry:
        raise RuntimeError("disk on fire")


async def test_store_failure_is_a_json_500() -> None:
    async with running(_BrokenStore()) as d:
        status, ctype, body = await d.raw("GET", f"/dmsg-discovery/entry/{KeyPair.generate().pk}")
        assert (status, ctype) == (500, "application/json")
        assert body == {"message": "something unexpected happened", "code": 500}
        with pytest.raises(DiscError) as info:
            await d.client.post_entry(client_entry(KeyPair.generate()))
        assert info.value.code == 500


async def test_open_close_cycles_leave_nothing_running() -> None:
    before = len(asyncio.all_tasks())
    for _ in range(5):
        async with running() as d:
            await d.client.post_entry(client_entry(KeyPair.generate()))
    assert len(asyncio.all_tasks()) == before


class _PurgeWatchingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.purged_twice = asyncio.Event()

    async def purge(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("transient store failure")
        await super().purge()
        self.purged_twice.set()


async def test_housekeeping_purges_periodically_and_survives_failures() -> None:
    store = _PurgeWatchingStore()
    async with running(store, purge_interval=0.001):
        await asyncio.wait_for(store.purged_twice.wait(), timeout=10)
    assert store.calls >= 2
