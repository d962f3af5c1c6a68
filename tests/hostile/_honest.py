"""Honest users for the hostile suite: a dmsg client that owns its discovery client (so that
closing it leaves no HTTP connection behind in the network's lists), and one stream that must
carry bytes both ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from skywire.cipher import SecKey
from skywire.dmsg.client import Client, DmsgListener
from skywire.dmsg.server import Server
from skywire.services.dmsgdisc.client import DiscClient
from skywire.testnet.dmsgnet import LocalDmsgNetwork


@contextlib.asynccontextmanager
async def honest_client(net: LocalDmsgNetwork, **options: Any) -> AsyncIterator[Client]:
    """A started, ready client of ``net``; it and its discovery client close on exit."""
    async with DiscClient(net.disc_url) as disc:
        client = Client(SecKey.generate(), disc, backoff=net.client_backoff, **options)
        async with client:
            await client.ready()
            yield client


async def assert_served(dialer: Client, listener: DmsgListener, payload: bytes = b"served") -> None:
    """``dialer`` opens a stream to ``listener`` and bytes cross it both ways."""
    stream = await dialer.dial(listener.addr.pk, listener.port)
    accepted = await listener.accept()
    try:
        await stream.write(payload)
        assert await accepted.readexactly(len(payload)) == payload
        await accepted.write(payload[::-1])
        assert await stream.readexactly(len(payload)) == payload[::-1]
    finally:
        await stream.close()
        await accepted.close()


async def only_on(client: Client, server: Server) -> None:
    """Leave ``client`` with a session to ``server`` alone."""
    if server.pk not in client.sessions:
        await client.ensure_session(await client.entries.lookup(server.pk))
    for pk in [pk for pk in client.sessions if pk != server.pk]:
        await client.sessions[pk].close()
        async with asyncio.timeout(5):
            await client.wait_session_ended(pk)
