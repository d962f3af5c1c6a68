"""A hostile discovery user, and a discovery that lost or holds bad entries, on real sockets.

- Forged entries (a changed entry under its old signature, an entry for another's key signed
  by the attacker, signature text that is no signature) are 401, replayed older iterations
  422, forged deletes 401: the stored entries do not change.
- A fetched entry sent back as a DELETE deletes nothing (anyone can fetch it).
- A client whose entry went missing, or older than its own, publishes again within one
  refresh period.
- Entries with unusable server addresses are refused, and a client facing a discovery that
  lists them anyway skips them and connects to the good servers.

Every case ends with honest users served, and tasks, fds and heap back to their baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.disc_entry import ClientInfo, Entry, KeyNotFoundError, sign
from skywire.dmsg.disc_errors import (
    DeleteNotProvenError,
    DiscError,
    UnauthorizedError,
    WrongSequenceError,
    error_from_response,
)
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.hostile._baseline import baseline
from tests.hostile._honest import honest_client, only_on

pytestmark = pytest.mark.timeout(60)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` (bounded): for a state another component reaches on its own timer."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - a bounded condition poll
            await asyncio.sleep(0.02)


async def reach(dialer: Client, target: Client) -> None:
    """An honest dial to ``target``'s dmsgctrl port."""
    stream = await dialer.dial(target.pk, 7)
    await stream.close()


@pytest.fixture
async def net() -> AsyncIterator[LocalDmsgNetwork]:
    async with LocalDmsgNetwork(servers=2) as n:
        yield n


async def test_forged_entries_are_refused_and_change_nothing(net: LocalDmsgNetwork) -> None:
    victim, dialer = await net.client(), await net.client()
    attacker = KeyPair.generate()
    url = f"{net.disc_url}/dmsg-discovery/entry"
    async with aiohttp.ClientSession() as http, DiscClient(net.disc_url) as disc:
        await reach(dialer, victim)  # warm-up, and the HTTP connection
        async with http.get(f"{url}/{victim.pk.hex()}") as r:
            assert r.status == 200
        # a key whose iterations were published (and captured on the way) as 0, 1, 2
        owner = KeyPair.generate()
        first = sign(Entry.new_client(owner.pk, 0, ()), owner.sk)
        await disc.post_entry(first)
        second = await disc.put_entry(owner.sk, first)
        third = await disc.put_entry(owner.sk, second)
        assert net.store is not None
        stored = await net.store.get(victim.pk)
        async with baseline():
            now = time.time_ns()
            redirect = replace(  # the next iteration, its relays the attacker's
                stored,
                sequence=stored.sequence + 1,
                timestamp=now,
                client=ClientInfo((attacker.pk,)),
            )
            zeros = replace(redirect, signature="0" * 130)
            as_server = Entry.new_server(victim.pk, stored.sequence + 1, "127.0.0.1:1", 9)
            posts: list[tuple[str, bytes, type[DiscError], int]] = [
                ("old signature", redirect.to_json(), UnauthorizedError, 401),
                ("another's key", sign(redirect, attacker.sk).to_json(), UnauthorizedError, 401),
                ("not hex", replace(redirect, signature="zz").to_json(), UnauthorizedError, 401),
                ("all zeros", zeros.to_json(), UnauthorizedError, 401),
                ("as a server", sign(as_server, attacker.sk).to_json(), UnauthorizedError, 401),
                ("the stored one", stored.to_json(), WrongSequenceError, 422),
                ("sequence 0", first.to_json(), WrongSequenceError, 422),
                ("sequence 1", second.to_json(), WrongSequenceError, 422),
                ("sequence 2", third.to_json(), WrongSequenceError, 422),
            ]
            for name, body, error, status in posts:
                for path in ("/", f"/{victim.pk.hex()}"):
                    async with http.post(url + path, data=body) as r:
                        got = error_from_response(r.status, await r.read())
                    assert r.status == status, name
                    assert isinstance(got, error) and got.code == status, (name, got)
            deletes: list[tuple[str, bytes, type[DiscError], int]] = [
                ("another's key", sign(redirect, attacker.sk).to_json(), UnauthorizedError, 401),
                ("old signature", redirect.to_json(), UnauthorizedError, 401),
                ("replayed", second.to_json(), DeleteNotProvenError, 401),
            ]
            for name, body, error, status in deletes:
                async with http.delete(url, data=body) as r:
                    got = error_from_response(r.status, await r.read())
                assert r.status == status, name
                assert isinstance(got, error) and got.code == status, (name, got)
            assert await net.store.get(victim.pk) == stored
            assert await net.store.get(owner.pk) == third
            assert await disc.get_entry(victim.pk) == stored
            await reach(dialer, victim)


async def test_replayed_delete_deletes_nothing(net: LocalDmsgNetwork) -> None:
    client, other = await net.client(), await net.client()
    async with aiohttp.ClientSession() as http, DiscClient(net.disc_url) as disc:
        url = f"{net.disc_url}/dmsg-discovery/entry"
        async with http.get(f"{url}/{client.pk.hex()}") as r:
            captured = await r.read()
        await reach(other, client)  # warm-up
        assert (await disc.get_entry(client.pk)).static == client.pk
        async with baseline():
            async with http.delete(url, data=captured) as r:
                assert r.status == 401
                assert "new iteration" in (await r.json())["message"]
            assert (await disc.get_entry(client.pk)).static == client.pk
            await reach(other, client)  # dials to the client still work


async def _entry(net: LocalDmsgNetwork, client: Client) -> Entry | None:
    assert net.store is not None
    try:
        return await net.store.get(client.pk)
    except KeyNotFoundError:
        return None


async def test_client_publishes_again_when_its_entry_is_gone_or_older(
    net: LocalDmsgNetwork,
) -> None:
    kp = KeyPair.generate()
    disc = net.disc_client()
    backoff = Backoff(initial=0.05, factor=1.5, maximum=1.0)
    other = await net.client()
    assert net.store is not None
    async with Client(kp.sk, disc, backoff=backoff, refresh_interval=0.3) as client:
        await client.ready()
        await reach(other, client)  # warm-up
        published = await _entry(net, client)
        assert published is not None
        async with baseline():
            # the discovery loses it (a restart on the memory store)
            await net.store.delete(kp.pk)

            async def back() -> bool:
                e = await _entry(net, client)
                return e is not None and e.client is not None and bool(e.client.delegated_servers)

            await eventually(back)
            # the discovery holds an older copy than the client's (a store restored from backup)
            current = await _entry(net, client)
            assert current is not None
            older = sign(replace(current, sequence=0, timestamp=current.timestamp - 10**9), kp.sk)
            await net.store.delete(kp.pk)
            await net.store.set(older)

            async def newer() -> bool:
                e = await _entry(net, client)
                return e is not None and e.timestamp > current.timestamp

            await eventually(newer)
            await reach(other, client)


async def test_bad_server_addresses_are_refused_and_skipped(net: LocalDmsgNetwork) -> None:
    assert net.store is not None
    url = f"{net.disc_url}/dmsg-discovery/entry/"
    async with aiohttp.ClientSession() as http, DiscClient(net.disc_url) as disc:
        async with honest_client(net):  # warm-up
            pass
        async with http.post(url, data=b"{}") as r:  # and the HTTP connection
            assert r.status == 422
        assert len(await disc.available_servers()) == 2
        async with baseline():
            bad = KeyPair.generate()
            for address in ("a:b:c", "host\x00:80", "h:0", "h:70000", "x" * 300 + ":1", ":80"):
                entry = sign(Entry.new_server(bad.pk, 0, address, 10), bad.sk)
                async with http.post(url, data=entry.to_json()) as r:
                    assert r.status == 422, address
            # a discovery that lists them anyway (here: written straight into its store)
            junk = [KeyPair.generate() for _ in range(20)]
            for kp in junk:
                await net.store.set(sign(Entry.new_server(kp.pk, 0, "a:b:c", 4096), kp.sk))
            assert len(await disc.available_servers()) == 22
            real = {s.pk for s in net.servers}
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(honest_client(net)) for _ in range(3)
                ]  # all three, in spite of the 20
                for c in clients:
                    assert c.sessions and set(c.sessions) <= real
            for kp in junk:
                await net.store.delete(kp.pk)


async def test_dials_survive_a_discovery_outage_with_entries_seen_before(
    net: LocalDmsgNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skywire.dmsg import entry_cache
    from skywire.dmsg.errors import DmsgError

    x, y = net.servers
    a, b, c, d = [await net.client() for _ in range(4)]
    await only_on(b, x)
    await only_on(c, x)  # shares b's relay, never looks b up
    await only_on(d, y)  # shares nothing with b
    await reach(a, b)  # a has seen b's entry (and its server's)
    await only_on(a, y)  # and now shares nothing with b either
    async with baseline():
        await net.stop_discovery()
        try:
            for _ in range(3):
                await reach(a, b)  # through x again, from the entry seen before
            await reach(c, b)  # no lookup at all: the shared relay has b
            with pytest.raises(DmsgError, match="discovery unreachable"):
                await d.dial(b.pk, 7)  # never saw it, shares nothing: nothing to fall back on
            with monkeypatch.context() as patch:
                patch.setattr(entry_cache, "STALE_ENTRY_AGE", 0.0)
                await only_on(a, y)
                with pytest.raises(DmsgError, match="discovery unreachable"):
                    await a.dial(b.pk, 7)  # too old to trust
        finally:
            await net.start_discovery()
        await reach(d, b)  # discovery is back: d looks b up
        await only_on(a, y)
        await only_on(d, y)


async def test_warm_keys_are_fetched_again_each_refresh(net: LocalDmsgNetwork) -> None:
    a, b = await net.client(), await net.client()
    assert a.entries.cached(b.pk) is None
    a.entries.warm.add(b.pk)
    await a.entries.warm_up()
    first = a.entries.cached(b.pk)
    assert first is not None and first.static == b.pk
    await reach(a, b)  # warm-up
    async with baseline():
        await net.stop_discovery()
        try:
            await a.entries.warm_up()  # a failure keeps the copy
            assert a.entries.cached(b.pk) == first
        finally:
            await net.start_discovery()
        await a.entries.warm_up()
        assert a.entries.cached(b.pk) == first
        await reach(a, b)
