"""Two skychats over a real 2-hop route on loopback, and an event-stream reader for the tests.

:func:`chat_net` builds visors 0─1─2 (:class:`RouteNet`) with skychat on visor 0 (A) and
visor 2 (B), each page on 127.0.0.1:<ephemeral>, so every message crosses two hops.
:class:`EventStream` reads ``/sse`` as a browser's ``EventSource`` would: field lines up to a
blank line make one event.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from skywire.apps.skychat import DialPolicy, Skychat
from skywire.cipher import PubKey
from tests.integration.test_router import RouteNet

A, HOP, B = 0, 1, 2
QUICK_DIAL = DialPolicy(attempts=2, initial=0.05, wait=20.0)


@dataclass
class ChatNet:
    net: RouteNet
    a: Skychat
    b: Skychat
    http: aiohttp.ClientSession

    @property
    def a_pk(self) -> PubKey:
        return self.net.nodes[A].pk

    @property
    def b_pk(self) -> PubKey:
        return self.net.nodes[B].pk

    async def post(self, chat: Skychat, body: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
        """POST ``body`` (JSON unless bytes) to ``chat``'s ``/message``: status, JSON body."""
        assert chat.url is not None
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.http.post(chat.url + "message", data=data, **kw) as resp:
            answer: dict[str, Any] = json.loads(await resp.read())
            return resp.status, answer

    async def send(self, chat: Skychat, to: PubKey, text: str) -> dict[str, Any]:
        status, answer = await self.post(chat, {"recipient": to.hex(), "message": text})
        assert status == 200, answer
        return answer

    async def get_json(self, chat: Skychat, path: str) -> dict[str, Any]:
        assert chat.url is not None
        async with self.http.get(chat.url + path) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body


def chat(net: RouteNet, i: int, **kw: Any) -> Skychat:
    kw.setdefault("web", ("127.0.0.1", 0))
    kw.setdefault("dial", QUICK_DIAL)
    return Skychat(net.nodes[i].router, **kw)


@contextlib.asynccontextmanager
async def chat_net(**router_kw: Any) -> AsyncIterator[ChatNet]:
    async with contextlib.AsyncExitStack() as stack:
        net = await stack.enter_async_context(RouteNet(3, [(A, HOP), (HOP, B)], **router_kw))
        a = await stack.enter_async_context(chat(net, A))
        b = await stack.enter_async_context(chat(net, B))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield ChatNet(net, a, b, http)


@dataclass(frozen=True)
class Event:
    name: str  # "message" unless an ``event:`` line says otherwise
    data: dict[str, Any]


class EventStream:
    """``async with EventStream.open(http, url) as events: event = await events.next()``."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.comments: list[str] = []
        self.retry: int | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, http: aiohttp.ClientSession, url: str) -> AsyncIterator[EventStream]:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            yield cls(resp)

    async def next(self) -> Event | None:
        """The next event, or ``None`` when the stream ended."""
        name, data = "message", list[str]()
        while True:
            raw = await self.resp.content.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    return Event(name, json.loads("\n".join(data)))
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                self.comments.append(value)
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "retry":
                self.retry = int(value)
