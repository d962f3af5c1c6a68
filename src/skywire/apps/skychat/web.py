"""The web side of skychat: the page, the JSON endpoints it uses, and its event stream.

Endpoints (upstream: ``cmd/apps/skychat/commands/skychat.go`` ``RootCmd.Run`` registers ``/``
(the embedded ``static/`` files), ``/message`` and ``/sse``; the page calls them in
``static/index.html`` ``sendMessage`` and ``new EventSource('/sse')``):

* ``POST /message`` ``{"recipient": "<pk hex>", "message": "<text>"}`` — as upstream (its
  page posts without a ``Content-Type``; any is taken here). Upstream answers 200 with an empty
  body, or 400 with the error as text for everything that fails. Here: 200 ``{"message": …}``
  (the message as kept); 400 bad JSON, a missing field, a bad key, an empty or multi-line
  message; 413 a message over :data:`~skywire.apps.skychat.codec.MAX_MESSAGE_BYTES` (or a body
  over 64 KiB); 502 the peer cannot be reached; 503 the chat is closing; 403 a page of another
  origin posting here (browsers send ``Origin``; tools that send none are taken). Every error
  body is JSON ``{"error": "<why>"}``. On loopback, every endpoint also answers 403 to a
  ``Host`` that is not a loopback name (a rebinding DNS name must not read the conversations).
* ``GET /sse`` — ``text/event-stream``. A message that arrives is a default (``message``)
  event whose data is one JSON line with upstream's two fields, ``{"sender": "<pk hex>",
  "message": "<text>"}`` (``handleConn``), and ours added (``seq``, ``peer``, ``direction``,
  ``at``); a message this visor sent is an event named ``sent`` (an upstream page ignores it:
  ``onmessage`` sees only ``message`` events). A comment line every ``keepalive`` seconds.
* ``GET /conversations[?peer=<pk hex>]`` — ``{"me": …, "conversations": [{"peer", "connected",
  "dropped", "messages": [...]}]}``, the most recently active first.
* ``GET /status`` — counters and open routes.
* ``GET /[?peer=<pk hex>]`` — the page (:mod:`~skywire.apps.skychat.page`), that
  conversation shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Final, Protocol

from aiohttp import web

from skywire.apps.skychat.config import ChatStatus
from skywire.apps.skychat.errors import (
    RecipientError,
    RequestError,
    SkychatError,
    SubscriptionEndedError,
)
from skywire.apps.skychat.history import ChatMessage, Conversation, Direction
from skywire.apps.skychat.page import CONTENT_SECURITY_POLICY, render_page
from skywire.apps.skychat.updates import Subscription
from skywire.cipher import CipherError, PubKey

__all__ = [
    "LOOPBACK_NAMES",
    "MAX_BODY",
    "ChatService",
    "host_name",
    "make_app",
    "message_json",
    "parse_peer",
    "sse_event",
]

log = logging.getLogger(__name__)

MAX_BODY: Final = 64 * 1024
"""The largest request body taken (aiohttp's own limit, answered with 413)."""
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})
"""The ``Host`` names a page served on loopback answers to (against DNS rebinding)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ChatService(Protocol):
    """What the web side asks of the chat (:class:`~skywire.apps.skychat.chat.Skychat`)."""

    @property
    def pk(self) -> PubKey | None: ...

    def conversations(self) -> list[Conversation]: ...

    async def send(self, peer: PubKey, text: str) -> ChatMessage: ...

    def subscribe(self) -> Subscription: ...

    def status(self) -> ChatStatus: ...


# ------------------------------------------------------------------ JSON shapes
def parse_peer(text: str) -> PubKey:
    """A peer's key from its hex form; :class:`RecipientError` if it is none (or null)."""
    try:
        pk = PubKey.from_hex(text.strip().lower())
    except CipherError as exc:
        raise RecipientError(f"recipient {text[:80]!r} is not a public key: {exc}") from None
    if pk.is_null():
        raise RecipientError("recipient is the null key")
    return pk


def host_name(host: str) -> str:
    """The name a ``Host`` header gives, without its port; an IPv6 literal without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, _port = host.rpartition(":")
    return name if colon and ":" not in name else host


def message_json(m: ChatMessage, me: PubKey | None) -> dict[str, Any]:
    sender = m.peer if m.direction is Direction.IN else me
    return {
        "seq": m.seq,
        "peer": m.peer.hex(),
        "sender": sender.hex() if sender is not None else "",
        "direction": m.direction.value,
        "message": m.text,
        "at": m.at,
    }


def conversation_json(c: Conversation, me: PubKey | None) -> dict[str, Any]:
    return {
        "peer": c.peer.hex(),
        "connected": c.connected,
        "dropped": c.dropped,
        "messages": [message_json(m, me) for m in c.messages],
    }


def sse_event(m: ChatMessage, me: PubKey | None) -> bytes:
    """One server-sent event: data on one line (JSON escapes newlines), ``sent`` named."""
    data = json.dumps(message_json(m, me), ensure_ascii=False, separators=(",", ":"))
    name = "event: sent\n" if m.direction is Direction.OUT else ""
    return f"{name}data: {data}\n\n".encode()


def _json(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


def _status_json(s: ChatStatus) -> dict[str, Any]:
    return {
        "pk": s.pk.hex() if s.pk is not None else "",
        "port": s.port,
        "web": f"{s.web[0]}:{s.web[1]}" if s.web is not None else None,
        "routes": s.routes,
        "peers_connected": [pk.hex() for pk in s.peers_connected],
        "conversations": s.conversations,
        "messages_kept": s.messages_kept,
        "subscribers": s.subscribers,
        "stats": asdict(s.stats),
    }


# ------------------------------------------------------------------ handlers
class _WebAPI:
    def __init__(
        self, chat: ChatService, keepalive: float, allowed_hosts: frozenset[str] | None
    ) -> None:
        self.chat = chat
        self.keepalive = keepalive
        self.allowed_hosts = allowed_hosts

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if self.allowed_hosts is not None and host_name(request.host) not in self.allowed_hosts:
                raise RequestError(f"host {request.host[:100]!r} is not this chat's", 403)
            return await handler(request)
        except SkychatError as exc:
            if exc.status >= 500:
                log.info("skychat: %s %s: %s", request.method, request.path, exc)
            return _error(str(exc), exc.status)
        except web.HTTPRequestEntityTooLarge:
            return _error(f"request body over {MAX_BODY} bytes", 413)

    async def page(self, request: web.Request) -> web.Response:
        selected, error, status = None, None, 200
        if "peer" in request.query:
            try:
                selected = parse_peer(request.query["peer"])
            except RecipientError as exc:
                error, status = str(exc), 400
        me = self.chat.pk
        body = render_page(me, self.chat.conversations(), selected, error=error)
        return web.Response(
            text=body,
            status=status,
            content_type="text/html",
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def message(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise RequestError(f"a page of {origin[:100]} may not send messages here", 403)
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise RequestError(f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError('the body must be a JSON object {"recipient", "message"}')
        recipient, text = body.get("recipient"), body.get("message")
        if not isinstance(recipient, str) or not recipient:
            raise RequestError('"recipient" (a public key in hex) is required')
        if not isinstance(text, str):
            raise RequestError('"message" (a string) is required')
        sent = await self.chat.send(parse_peer(recipient), text)
        return _json({"message": message_json(sent, self.chat.pk)})

    async def conversations(self, request: web.Request) -> web.Response:
        me = self.chat.pk
        found = self.chat.conversations()
        if "peer" in request.query:
            peer = parse_peer(request.query["peer"])
            found = [c for c in found if c.peer == peer]
        return _json(
            {
                "me": me.hex() if me is not None else "",
                "conversations": [conversation_json(c, me) for c in found],
            }
        )

    async def status(self, request: web.Request) -> web.Response:
        return _json(_status_json(self.chat.status()))

    async def sse(self, request: web.Request) -> web.StreamResponse:
        sub = self.chat.subscribe()  # before the headers: once a client has them, it is live
        async with sub:
            resp = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            try:
                await resp.prepare(request)
                await resp.write(b"retry: 2000\n\n")
                while True:
                    try:
                        async with asyncio.timeout(self.keepalive):
                            message = await sub.get()
                    except TimeoutError:
                        await resp.write(b": keep-alive\n\n")
                        continue
                    await resp.write(sse_event(message, self.chat.pk))
            except SubscriptionEndedError:
                pass
            except (ConnectionError, OSError):
                log.debug("skychat: event stream reader left")
        return resp


def make_app(
    chat: ChatService,
    *,
    keepalive: float = 15.0,
    allowed_hosts: frozenset[str] | None = LOOPBACK_NAMES,
) -> web.Application:
    """The aiohttp application serving ``chat`` (see the module docstring). A request whose
    ``Host`` names none of ``allowed_hosts`` gets 403 (``None``: any host; for a page served
    beyond loopback)."""
    if keepalive <= 0:
        raise ValueError("keepalive must be positive")
    api = _WebAPI(chat, keepalive, allowed_hosts)
    app = web.Application(middlewares=[api.errors], client_max_size=MAX_BODY)
    app.router.add_get("/", api.page)
    app.router.add_post("/message", api.message)
    app.router.add_get("/conversations", api.conversations)
    app.router.add_get("/status", api.status)
    app.router.add_get("/sse", api.sse)
    return app
