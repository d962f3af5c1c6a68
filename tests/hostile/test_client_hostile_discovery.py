"""A dmsg client facing a hostile discovery on 127.0.0.1: bodies that are not JSON, wrong types,
an array or ``null`` for an entry, nesting past the parser's depth, another key's entry, errors
with made-up statuses, answers declared or streamed past any sane size, a body cut short, and an
answer that never comes in time.

Each discovery call fails with its typed error (``DiscError``, ``DiscUnreachableError``: what
``DISCOVERY_ERRORS`` names, nothing wider), a dial fails with ``DmsgError``, a client started
meanwhile keeps trying without crashing, and once the discovery answers honestly again both
work. Tasks, fds and heap come back to their baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from skywire.cipher import KeyPair
from skywire.dmsg.client import Backoff, Client, DmsgListener
from skywire.dmsg.disc_errors import (
    DiscError,
    DiscUnreachableError,
    EntryDecodeError,
    KeyNotFoundError,
)
from skywire.dmsg.discovery import DISCOVERY_ERRORS
from skywire.dmsg.errors import DmsgError
from skywire.services.appserver import AppServer
from skywire.services.dmsgdisc.api import make_app
from skywire.services.dmsgdisc.client import DiscClient
from skywire.services.dmsgdisc.store import DiscStore
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from tests.hostile._baseline import baseline
from tests.hostile._honest import assert_served, only_on

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT = 1.0
LIMIT = 1 << 20  # the clients' body limit here (the default, 64 MiB, would make slow floods)
"""Seconds the hostile discovery's clients give one request (the slow answer takes longer)."""
BACKOFF = Backoff(initial=0.02, factor=1.5, maximum=0.1)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Answer = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


class HostileDiscovery(AppServer):
    """The real discovery over ``store``, except that while :attr:`answer` is set every request
    gets that answer instead (:attr:`hits` counts them)."""

    def __init__(self, store: DiscStore) -> None:
        super().__init__("127.0.0.1", 0)
        self.store = store
        self.answer: Answer | None = None
        self.hits = 0
        self.release = asyncio.Event()  # ends the slow answers

    def make_app(self) -> web.Application:
        app = make_app(self.store, test_mode=True, purge_interval=None)
        app.middlewares.insert(0, self._middleware)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        answer = self.answer
        if answer is None:
            return await handler(request)
        self.hits += 1
        return await answer(request, handler)

    async def slow(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The honest answer, once :attr:`release` is set (bounded), long after the client
        gave up."""
        async with asyncio.timeout(10):
            await self.release.wait()
        return await handler(request)


def fixed(status: int, body: bytes, content_type: str = "application/json") -> Answer:
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type)

    return answer


def flood(declared: int | None) -> Answer:
    """Blank JSON on and on (four times the clients' limit at most, lowered to :data:`LIMIT`
    here): a declared length, or chunked with none."""

    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declared is None:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = declared
        await resp.prepare(request)
        chunk = b" " * (1 << 20)
        with contextlib.suppress(ConnectionError):
            for _ in range(4 * LIMIT // len(chunk)):
                await resp.write(chunk)
        return resp

    return answer


async def truncated(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A declared length, a few bytes of it, and the connection closed."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 1000
    await resp.prepare(request)
    await resp.write(b'{"version":"0.0.1",')
    assert request.transport is not None
    request.transport.close()
    return resp


def cases(hostile: HostileDiscovery, other: bytes) -> list[tuple[str, Answer, type[DiscError]]]:
    """(name, answer, the error ``get_entry`` raises for it)."""
    return [
        ("not JSON", fixed(200, b"\x00\xff{{ not json"), EntryDecodeError),
        ("not UTF-8 text", fixed(200, b"\xff\xfe", "text/plain"), EntryDecodeError),
        ("wrong types", fixed(200, b'{"version":1,"sequence":"1","static":7}'), EntryDecodeError),
        ("bad key", fixed(200, b'{"version":"0.0.1","static":"zz"}'), EntryDecodeError),
        ("an array", fixed(200, b"[1, 2, 3]"), EntryDecodeError),
        ("null", fixed(200, b"null"), EntryDecodeError),
        ("deep nesting", fixed(200, b"[" * 200_000), EntryDecodeError),
        ("another key's entry", fixed(200, other), EntryDecodeError),
        ("an HTML 500", fixed(500, b"<html>oops</html>", "text/html"), DiscError),
        ("a made-up status", fixed(299, b'{"message": 5, "code": "x"}'), DiscError),
        ("a forged not-found", fixed(404, KeyNotFoundError().to_json()), KeyNotFoundError),
        ("huge, declared", flood(1 << 40), DiscUnreachableError),
        ("huge, chunked", flood(None), DiscUnreachableError),
        ("cut short", truncated, DiscUnreachableError),
        ("slow", hostile.slow, DiscUnreachableError),
    ]


async def typed(call: Awaitable[Any]) -> BaseException | None:
    """Run a discovery call: None if it returned, its error if it raised one of the
    ``DISCOVERY_ERRORS``; anything else propagates (and fails the test)."""
    try:
        await call
    except DISCOVERY_ERRORS as exc:
        return exc
    return None


@pytest.mark.parametrize("pooled", [True, False], ids=["aiohttp", "one-shot"])
async def test_a_client_survives_a_hostile_discovery_and_recovers(pooled: bool) -> None:
    """Also with a discovery client that makes each request on a connection of its own
    (``pooled=False``, as ``skywire dmsg curl``: :mod:`skywire.wire.http1`)."""
    async with LocalDmsgNetwork(servers=2) as net:
        x, y = net.servers
        assert net.store is not None
        # b and c live on y alone; a, on x alone, reaches them only through a lookup
        b, c = await net.client(), await net.client()
        await only_on(b, y)
        await only_on(c, y)
        seen, fresh = await b.listen(5), await c.listen(5)
        other = (await net.store.get(x.pk)).to_json()
        async with HostileDiscovery(net.store) as hostile:
            disc = DiscClient(hostile.url, timeout=CALL_TIMEOUT, pooled=pooled)
            disc.max_body = LIMIT
            a = Client(KeyPair.generate().sk, disc, backoff=BACKOFF)
            async with disc, a:
                await a.ready()
                await only_on(a, x)
                await assert_served(a, seen)  # warm-up: a lookup, a session to y, a stream
                await only_on(a, x)
                async with DiscClient(hostile.url) as d, Client(KeyPair.generate().sk, d) as w:
                    await w.ready()  # warm-up of a client starting (below, under attack)
                async with baseline():
                    for name, answer, error in cases(hostile, other):
                        hostile.release.clear()
                        hostile.answer = answer
                        got = await typed(disc.get_entry(c.pk))
                        assert isinstance(got, error), (name, got)
                        if name != "slow":  # a listing is asked (and answered) alike
                            listed = await typed(disc.available_servers())
                            assert listed is None or isinstance(listed, DiscError), (name, listed)
                        with pytest.raises(DmsgError):  # a never saw c's entry: no copy to use
                            await a.dial(c.pk, fresh.port)
                        hostile.release.set()
                        hostile.answer = None
                    assert not a.entries.cached(c.pk)
                    await assert_served(a, fresh, b"honest again")
                    await only_on(a, x)
                    await a_new_client_meanwhile(hostile, fresh, other, pooled)


async def a_new_client_meanwhile(
    hostile: HostileDiscovery, listener: DmsgListener, other: bytes, pooled: bool
) -> None:
    """A client starting while the discovery is hostile keeps asking (and surviving) every
    answer, and is ready once the discovery is honest again."""
    answers = [answer for name, answer, _ in cases(hostile, other) if name != "slow"]
    hostile.answer = answers[0]
    async with (
        DiscClient(hostile.url, timeout=CALL_TIMEOUT, pooled=pooled) as disc,
        Client(KeyPair.generate().sk, disc, backoff=BACKOFF) as e,
    ):
        disc.max_body = LIMIT
        for answer in answers:
            hostile.answer = answer
            hits = hostile.hits
            async with asyncio.timeout(10):  # until e has asked again, and lived
                while hostile.hits < hits + 2:  # noqa: ASYNC110 - e's own retry timer
                    await asyncio.sleep(0.01)
            assert not e.sessions
        hostile.answer = None
        await e.ready()
        await assert_served(e, listener, b"ready at last")
