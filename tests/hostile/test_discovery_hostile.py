"""A hostile discovery user, and a discovery that lost or holds bad entries, on real sockets.

- A fetched entry sent back as a DELETE deletes nothing (anyone can fetch it).
- A client whose entry went missing, or older than its own, publishes again within one
  refresh period.
- Entries with unusable server addresses are refused, and a client facing a discovery that
  lists them anyway skips them and connects to the good servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest

from skywire.cipher import KeyPair
from skywire.dmsg.client import Backoff, Client
from skywire.dmsg.disc_entry import Entry, KeyNotFoundError, sign
from skywire.dmsg.server import Server
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork

pytestmark = pytest.mark.timeout(60)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` (bounded): for a state another component reaches on its own timer."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - a bounded condition poll
            await asyncio.sleep(0.02)


@pytest.fixture
async def net() -> AsyncIterator[LocalDmsgNetwork]:
    async with LocalDmsgNetwork(servers=2) as n:
        yield n


async def test_replayed_delete_deletes_nothing(net: LocalDmsgNetwork) -> None:
    client = await net.client()
    async with aiohttp.ClientSession() as http:
        url = f"{net.disc_url}/dmsg-discovery/entry"
        async with http.get(f"{url}/{client.pk.hex()}") as r:
            captured = await r.read()
        async with http.delete(url, data=captured) as r:
            assert r.status == 401
            assert "new iteration" in (await r.json())["message"]
    async with DiscClient(net.disc_url) as disc:
        assert (await disc.get_entry(client.pk)).static == client.pk
        # dials to the client still work
        other = await net.client()
        stream = await other.dial(client.pk, 7)  # dmsgctrl
        await stream.close()


async def _entry(net: LocalDmsgNetwork, client: Client) -> Entry | None:
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
    async with Client(kp.sk, disc, backoff=backoff, refresh_interval=0.3) as client:
        await client.ready()
        published = await _entry(net, client)
        assert published is not None
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


async def test_bad_server_addresses_are_refused_and_skipped(net: LocalDmsgNetwork) -> None:
    async with DiscClient(net.disc_url) as disc:
        bad = KeyPair.generate()
        for address in ("a:b:c", "host\x00:80", "h:0", "h:70000", "x" * 300 + ":1", ":80"):
            entry = sign(Entry.new_server(bad.pk, 0, address, 10), bad.sk)
            async with aiohttp.ClientSession() as http:
                url = f"{net.disc_url}/dmsg-discovery/entry/"
                async with http.post(url, data=entry.to_json()) as r:
                    assert r.status == 422, address
        # a discovery that lists them anyway (here: written straight into its store)
        for _ in range(20):
            kp = KeyPair.generate()
            await net.store.set(sign(Entry.new_server(kp.pk, 0, "a:b:c", 4096), kp.sk))
        assert len(await disc.available_servers()) == 22
    clients = [await net.client(ready=False) for _ in range(3)]
    await asyncio.gather(*(c.ready(10) for c in clients))  # all three, in spite of the 20
    real = {s.pk for s in net.servers}
    for c in clients:
        assert c.sessions and set(c.sessions) <= real


async def _only_on(client: Client, server: Server) -> None:
    """Leave ``client`` with a session to ``server`` alone."""
    if server.pk not in client.sessions:
        await client.ensure_session(await client.entries.lookup(server.pk))
    for pk in [pk for pk in client.sessions if pk != server.pk]:
        await client.sessions[pk].close()
        async with asyncio.timeout(5):
            while pk in client.sessions:  # noqa: ASYNC110 - the session's task removes it
                await asyncio.sleep(0.01)


async def test_dials_survive_a_discovery_outage_with_entries_seen_before(
    net: LocalDmsgNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skywire.dmsg import entry_cache
    from skywire.dmsg.errors import DmsgError

    x, y = net.servers
    a, b, c, d = [await net.client() for _ in range(4)]
    await _only_on(b, x)
    await _only_on(c, x)  # shares b's relay, never looks b up
    await _only_on(d, y)  # shares nothing with b
    stream = await a.dial(b.pk, 7)  # a has seen b's entry (and its server's)
    await stream.close()
    await _only_on(a, y)  # and now shares nothing with b either
    await net.stop_discovery()
    try:
        for _ in range(3):
            stream = await a.dial(b.pk, 7)  # through x again, from the entry seen before
            await stream.close()
        stream = await c.dial(b.pk, 7)  # no lookup at all: the shared relay has b
        await stream.close()
        with pytest.raises(DmsgError, match="discovery unreachable"):
            await d.dial(b.pk, 7)  # never saw it, shares nothing: nothing to fall back on
        monkeypatch.setattr(entry_cache, "STALE_ENTRY_AGE", 0.0)
        await _only_on(a, y)
        with pytest.raises(DmsgError, match="discovery unreachable"):
            await a.dial(b.pk, 7)  # too old to trust
    finally:
        await net.start_discovery()


async def test_warm_keys_are_fetched_again_each_refresh(net: LocalDmsgNetwork) -> None:
    a, b = await net.client(), await net.client()
    assert a.entries.cached(b.pk) is None
    a.entries.warm.add(b.pk)
    await a.entries.warm_up()
    first = a.entries.cached(b.pk)
    assert first is not None and first.static == b.pk
    await net.stop_discovery()
    try:
        await a.entries.warm_up()  # a failure keeps the copy
        assert a.entries.cached(b.pk) == first
    finally:
        await net.start_discovery()
