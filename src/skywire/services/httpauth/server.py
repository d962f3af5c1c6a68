"""httpauth's server side: :class:`HTTPAuth`, an aiohttp middleware that admits a signed request
only with the stored next nonce of its key and a valid signature (one request per key at a time),
plus the ``GET /security/nonces/{pk}`` endpoint; :func:`authenticated_pk` gives a protected
handler the key that signed its request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from skywire.cipher import CipherError, PubKey, Sig
from skywire.services.httpauth.sign import (
    HEADER_SIG_REQUEST,
    NONCE_MISMATCH,
    NONCE_PATH,
    AuthError,
    error_json,
    parse_auth_headers,
    verify_request,
    verify_scope,
)
from skywire.services.httpauth.store import NonceStore

__all__ = ["AUTH_PK_KEY", "HTTPAuth", "authenticated_pk"]

log = logging.getLogger("skywire.httpauth")

AUTH_PK_KEY = web.RequestKey("skywire.httpauth.pk", PubKey)
"""Where :class:`HTTPAuth` leaves the authenticated key in the request."""

_H = TypeVar("_H")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(status: int, message: str) -> web.Response:
    return web.Response(
        body=error_json(status, message), status=status, content_type="application/json"
    )


def authenticated_pk(request: web.Request) -> PubKey:
    """The key :class:`HTTPAuth` authenticated for ``request`` (protected handlers only)."""
    try:
        return request[AUTH_PK_KEY]
    except KeyError:
        raise RuntimeError("request was not authenticated by httpauth") from None


MAX_SCOPED_KEYS = 100_000
"""Keys remembered as signing method and path (see ``HTTPAuth._check_scope``)."""


class _KeyLocks:
    """One lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[PubKey, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, pk: PubKey) -> asyncio.Lock:
        lock, users = self._locks.get(pk, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[pk] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._release_user(pk)
            raise
        return lock

    def release(self, pk: PubKey, lock: asyncio.Lock) -> None:
        lock.release()
        self._release_user(pk)

    def _release_user(self, pk: PubKey) -> None:
        lock, users = self._locks[pk]
        if users <= 1:
            del self._locks[pk]
        else:
            self._locks[pk] = (lock, users - 1)


class HTTPAuth:
    """httpauth for an aiohttp application.

    >>> auth = HTTPAuth(store)                                   # doctest: +SKIP
    >>> app.router.add_post("/things", auth.protect(handler))    # doctest: +SKIP
    >>> auth.setup(app)   # middleware + GET /security/nonces/{pk}  # doctest: +SKIP

    Only handlers passed through :meth:`protect` (or, with ``protect_all=True``, every handler
    but the nonce endpoint) are checked. Requests of one key are handled one at a time, so two
    requests can never both spend the same nonce.
    """

    def __init__(
        self, store: NonceStore, *, protect_all: bool = False, spend_on_any_2xx: bool = True
    ) -> None:
        self.store = store
        self._protect_all = protect_all
        # Upstream servers spend a nonce only on a 200, which lets a request answered 201 be
        # replayed; this one spends it on any 2xx unless told to count as upstream does.
        self._any_2xx = spend_on_any_2xx
        # keys that have signed method and path at least once (bounded, oldest forgotten)
        self._scoped: OrderedDict[PubKey, None] = OrderedDict()
        self._protected: set[Any] = set()
        self._locks = _KeyLocks()

    def _check_scope(self, request: web.Request, body: bytes, nonce: int, pk: PubKey) -> str:
        """``SW-Sig-Req`` (ours): when sent, it must sign this method and target; a key that
        has sent it once must send it always (so that its headers cannot be stripped of it
        and replayed on another request). Upstream clients never send it and are not asked
        to. Returns the refusal message, or "" to go on."""
        text = request.headers.get(HEADER_SIG_REQUEST, "")
        if not text:
            if pk in self._scoped:
                return f"this key signs method and path ({HEADER_SIG_REQUEST}): it is missing"
            return ""
        if len(text) != 130 or not all(c in "0123456789abcdefABCDEF" for c in text):
            return f"error parsing {HEADER_SIG_REQUEST}: Invalid signature length"
        try:
            verify_scope(
                request.method, request.raw_path, body, nonce, pk, Sig(bytes.fromhex(text))
            )
        except CipherError as exc:
            return f"{HEADER_SIG_REQUEST}: {exc}"
        self._scoped[pk] = None
        self._scoped.move_to_end(pk)
        while len(self._scoped) > MAX_SCOPED_KEYS:
            self._scoped.popitem(last=False)
        return ""

    def _spends(self, status: int) -> bool:
        return 200 <= status < 300 if self._any_2xx else status == 200

    def protect(self, handler: _H) -> _H:
        """Mark ``handler`` as requiring a signed request; returns it unchanged."""
        self._protected.add(handler)
        return handler

    def setup(self, app: web.Application) -> None:
        """Install :attr:`middleware` and the nonce endpoint on ``app`` (before it starts)."""
        app.middlewares.append(self.middleware)
        app.router.add_get(NONCE_PATH + "{pk}", self.nonce_handler)

    def _is_protected(self, request: web.Request) -> bool:
        handler = request.match_info.handler
        if handler == self.nonce_handler:
            return False
        if self._protect_all:
            return not isinstance(request.match_info.http_exception, web.HTTPException)
        return handler in self._protected

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if not self._is_protected(request):
            return await handler(request)
        try:
            pk, nonce, sig = parse_auth_headers(request.headers)
        except AuthError as exc:
            return _error_response(401, str(exc))
        lock = await self._locks.acquire(pk)
        try:
            expected = await self.store.nonce(pk)
            if nonce != expected:
                log.info("%s: SW-Nonce mismatch, want %d, got %d", pk, expected, nonce)
                return _error_response(401, NONCE_MISMATCH)
            body = await request.read()
            try:
                verify_request(body, nonce, pk, sig)
            except CipherError as exc:
                return _error_response(401, str(exc))
            refusal = self._check_scope(request, body, nonce, pk)
            if refusal:
                return _error_response(401, refusal)
            request[AUTH_PK_KEY] = pk
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if self._spends(exc.status):
                    await self.store.increment(pk)
                raise
            if self._spends(response.status):
                await self.store.increment(pk)
            return response
        finally:
            self._locks.release(pk, lock)

    async def nonce_handler(self, request: web.Request) -> web.StreamResponse:
        """``GET /security/nonces/{pk}`` → ``{"edge":"<pk>","next_nonce":N}``."""
        try:
            pk = PubKey.from_hex(request.match_info["pk"])
        except CipherError as exc:
            return _error_response(400, str(exc))
        if pk.is_null():
            return _error_response(400, "Invalid public key")
        nonce = await self.store.nonce(pk)
        body = f'{{"edge":"{pk.hex()}","next_nonce":{nonce}}}\n'.encode()
        return web.Response(body=body, status=200, content_type="application/json")
