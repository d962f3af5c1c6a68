"""The entry keeper against a real discovery: a close that cancels a post in flight."""

from __future__ import annotations

import asyncio

import pytest

from skywire.cipher import SecKey
from skywire.dmsg.disc_entry import Entry, KeyNotFoundError
from skywire.dmsg.entry_keeper import EntryKeeper
from skywire.services.dmsgdisc import DiscClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork


class _AnswerLost(DiscClient):
    """A discovery client whose puts reach the discovery, but whose answers the caller never
    sees while ``lose`` is set (as when a close cancels the publisher mid-request)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.lose = False
        self.landed = asyncio.Event()
        self.deletes: list[str] = []

    async def post_entry(self, entry: Entry, *, timeout: bool = False) -> str:
        message = await super().post_entry(entry, timeout=timeout)
        if self.lose:
            self.landed.set()
            await asyncio.Event().wait()  # cancelled here, after the discovery stored it
        return message

    async def delete_entry(self, entry: Entry) -> None:
        try:
            await super().delete_entry(entry)
        except Exception as exc:
            self.deletes.append(type(exc).__name__)
            raise
        self.deletes.append("deleted")


async def test_a_put_cancelled_after_it_landed_does_not_make_the_delete_refused() -> None:
    async with LocalDmsgNetwork(servers=1) as net, _AnswerLost(net.disc_url) as disc:
        sk = SecKey.generate()
        keeper = EntryKeeper(disc, sk)
        servers = [entry.static for entry in await disc.available_servers()]
        build = lambda _current: Entry.new_client(sk.pubkey(), 0, tuple(servers))  # noqa: E731
        first = await keeper.publish(build)
        disc.lose = True
        put = asyncio.create_task(keeper.publish(build))
        async with asyncio.timeout(10):
            await disc.landed.wait()
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        held = await disc.get_entry(sk.pubkey())
        assert held.sequence == first.sequence + 1  # discovery holds the iteration...
        assert keeper.entry is not None and keeper.entry.sequence == first.sequence  # ...unseen
        await keeper.delete()
        assert disc.deletes == ["deleted"]  # the first delete carried the right iteration
        with pytest.raises(KeyNotFoundError):
            await disc.get_entry(sk.pubkey())
