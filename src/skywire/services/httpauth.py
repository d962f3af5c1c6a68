"""httpauth: signed HTTP requests with per-key incrementing nonces (TPD, AR, UT and SD writes).

A client of key ``pk`` first asks ``GET /security/nonces/<pk>`` for its next nonce
(``{"edge":"<pk>","next_nonce":N}``), then sends every protected request with

* ``SW-Public: <pk hex>``
* ``SW-Nonce: <N in decimal>``
* ``SW-Sig: <hex of sign(SHA-256(body ‖ ascii(decimal N)))>``

The server accepts a request only when ``SW-Nonce`` is exactly the stored next nonce of
``SW-Public`` and the signature verifies; it increments the nonce after a successful (2xx)
answer. Any refusal is ``401 {"error":{"message":…,"code":401}}`` and changes nothing; a
stale nonce is refused with the message ``SW-Nonce does not match``, on which the client
re-fetches its nonce and retries once.

Difference from upstream, on purpose: the reference server increments only after a plain 200, so
a 201 answer (a TPD registration) leaves the nonce reusable; here every 2xx consumes the nonce, so
no signed request can be replayed. Reference clients cope (they get ``SW-Nonce does not match``
once, re-fetch and retry); this client increments after every 2xx and copes with a reference
server the same way.

Server side: :class:`HTTPAuth` (an aiohttp middleware plus the nonce endpoint) over a
:class:`NonceStore` (:class:`MemoryNonceStore`, :class:`SqliteNonceStore`,
:class:`PostgresNonceStore`). Client side: :class:`HTTPAuthClient`.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import aiohttp
from aiohttp import web

from skywire.cipher import CipherError, PubKey, SecKey, Sig, verify
from skywire.services.httpclient import HTTPClientBase

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg  # type: ignore[import-untyped]

__all__ = [
    "AUTH_PK_KEY",
    "HEADER_NONCE",
    "HEADER_PUBLIC",
    "HEADER_PUBLIC_IP",
    "HEADER_SIG",
    "MAX_NONCE",
    "NONCE_MISMATCH",
    "NONCE_PATH",
    "AuthError",
    "HTTPAuth",
    "HTTPAuthClient",
    "HTTPAuthResponse",
    "HTTPStatusError",
    "MemoryNonceStore",
    "NonceStore",
    "PostgresNonceStore",
    "SqliteNonceStore",
    "auth_headers",
    "authenticated_pk",
    "error_json",
    "parse_auth_headers",
    "payload_with_nonce",
    "pg_qualified",
    "sign_request",
    "verify_request",
]

log = logging.getLogger("skywire.httpauth")

HEADER_PUBLIC = "SW-Public"
HEADER_NONCE = "SW-Nonce"
HEADER_SIG = "SW-Sig"
HEADER_PUBLIC_IP = "SW-PublicIP"
NONCE_PATH = "/security/nonces/"
NONCE_MISMATCH = "SW-Nonce does not match"
"""The 401 message that tells a client its nonce is stale."""

MAX_NONCE = 2**64 - 1
AUTH_PK_KEY = web.RequestKey("skywire.httpauth.pk", PubKey)
"""Where :class:`HTTPAuth` leaves the authenticated key in the request."""

_H = TypeVar("_H")
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


# --------------------------------------------------------------------------------------------
# The signed payload
# --------------------------------------------------------------------------------------------


def payload_with_nonce(body: bytes, nonce: int) -> bytes:
    """``body ‖ ascii(decimal nonce)``: what is hashed and signed."""
    return bytes(body) + str(int(nonce)).encode()


def sign_request(body: bytes, nonce: int, sk: SecKey) -> Sig:
    """``sk``'s signature of ``SHA-256(body ‖ decimal nonce)``."""
    return sk.sign(payload_with_nonce(body, nonce))


def verify_request(body: bytes, nonce: int, pk: PubKey, sig: Sig) -> None:
    """Raise :class:`~skywire.cipher.CipherError` unless ``sig`` is ``pk``'s over body and nonce."""
    verify(pk, sig, payload_with_nonce(body, nonce))


def auth_headers(
    sk: SecKey, body: bytes, nonce: int, *, pk: PubKey | None = None, public_ip: str = ""
) -> dict[str, str]:
    """The three (or four) headers of a signed request."""
    headers = {
        HEADER_NONCE: str(int(nonce)),
        HEADER_SIG: sign_request(body, nonce, sk).hex(),
        HEADER_PUBLIC: (pk or sk.pubkey()).hex(),
    }
    if public_ip:
        headers[HEADER_PUBLIC_IP] = public_ip
    return headers


class AuthError(Exception):
    """A request refused by httpauth (answered 401 with this message)."""


def parse_auth_headers(headers: Any) -> tuple[PubKey, int, Sig]:
    """``(pk, nonce, sig)`` from a request's headers (anything with ``.get``); raises
    :class:`AuthError` with the reference's messages."""
    pk_text = headers.get(HEADER_PUBLIC, "")
    if not pk_text:
        raise AuthError("SW-Public missing")
    try:
        pk = PubKey.from_hex(pk_text)
    except CipherError as exc:
        raise AuthError(f"error parsing SW-Public: {exc}") from exc
    sig_text = headers.get(HEADER_SIG, "")
    if not sig_text:
        raise AuthError("SW-Sig missing")
    if len(sig_text) != 130 or not _HEX_RE.fullmatch(sig_text):
        raise AuthError(f"error parsing SW-Sig:'{sig_text}': Invalid signature length")
    sig = Sig(bytes.fromhex(sig_text))
    nonce_text = headers.get(HEADER_NONCE, "")
    if not nonce_text:
        raise AuthError("SW-Nonce missing")
    if not (nonce_text.isascii() and nonce_text.isdigit()):
        raise AuthError("error parsing SW-Nonce: invalid syntax")
    nonce = int(nonce_text)
    if nonce > MAX_NONCE:
        raise AuthError("error parsing SW-Nonce: value out of range")
    return pk, nonce, sig


def error_json(status: int, message: str) -> bytes:
    """``{"error":{"message":…,"code":…}}`` and a newline."""
    body = {"error": {"message": message, "code": status}}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


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


# --------------------------------------------------------------------------------------------
# Nonce stores
# --------------------------------------------------------------------------------------------


class NonceStore(abc.ABC):
    """Next expected nonce per public key (0 for a key never seen)."""

    @abc.abstractmethod
    async def nonce(self, pk: PubKey) -> int:
        """The next nonce ``pk`` must use."""

    @abc.abstractmethod
    async def increment(self, pk: PubKey) -> int:
        """Consume ``pk``'s current nonce; returns the new next nonce."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many keys have a stored nonce."""

    async def close(self) -> None:  # noqa: B027 - most backends own nothing
        """Release what this store owns (nothing when it shares a service's database)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class MemoryNonceStore(NonceStore):
    """Nonces in a dict (tests, ``--store memory``)."""

    def __init__(self) -> None:
        self._nonces: dict[PubKey, int] = {}

    async def nonce(self, pk: PubKey) -> int:
        return self._nonces.get(pk, 0)

    async def increment(self, pk: PubKey) -> int:
        value = (self._nonces.get(pk, 0) + 1) & MAX_NONCE
        self._nonces[pk] = value
        return value

    async def count(self) -> int:
        return len(self._nonces)


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS httpauth_nonces (
    namespace TEXT NOT NULL,
    pk        TEXT NOT NULL,
    nonce     INTEGER NOT NULL,
    PRIMARY KEY (namespace, pk)
);
"""


class SqliteNonceStore(NonceStore):
    """Nonces in an SQLite table ``httpauth_nonces``, possibly in a service's own database.

    Build it over an open connection (shared; not closed here) after :meth:`create_schema`, or
    :meth:`open` a file of its own. Every operation is one statement, so it is atomic.
    ``namespace`` keeps services sharing one database from sharing nonces.
    """

    def __init__(
        self, conn: aiosqlite.Connection, *, namespace: str = "", owns_connection: bool = False
    ) -> None:
        self._db = conn
        self._namespace = namespace
        self._owns = owns_connection

    @staticmethod
    async def create_schema(conn: aiosqlite.Connection) -> None:
        await conn.executescript(_SQLITE_SCHEMA)

    @classmethod
    async def open(cls, path: str, *, namespace: str = "") -> SqliteNonceStore:
        import aiosqlite

        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            if path != ":memory:":
                await conn.execute("PRAGMA journal_mode=WAL")
            await cls.create_schema(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, namespace=namespace, owns_connection=True)

    async def nonce(self, pk: PubKey) -> int:
        async with self._db.execute(
            "SELECT nonce FROM httpauth_nonces WHERE namespace = ? AND pk = ?",
            (self._namespace, pk.hex()),
        ) as cur:
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def increment(self, pk: PubKey) -> int:
        async with self._db.execute(
            "INSERT INTO httpauth_nonces (namespace, pk, nonce) VALUES (?, ?, 1) "
            "ON CONFLICT (namespace, pk) DO UPDATE SET nonce = nonce + 1 RETURNING nonce",
            (self._namespace, pk.hex()),
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def count(self) -> int:
        async with self._db.execute(
            "SELECT COUNT(*) FROM httpauth_nonces WHERE namespace = ?", (self._namespace,)
        ) as cur:
            row = await cur.fetchone()
        return 0 if row is None else int(row[0])

    async def close(self) -> None:
        if self._owns:
            await self._db.close()


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def pg_qualified(schema: str | None, table: str) -> str:
    """``"schema".table`` (or ``table``) after checking the schema is a plain identifier."""
    if schema is None or schema == "":
        return table
    if not _IDENT_RE.fullmatch(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return f'"{schema}".{table}'


class PostgresNonceStore(NonceStore):
    """Nonces in a PostgreSQL table ``httpauth_nonces`` (``schema`` optional).

    Build it over a pool (shared; not closed here) after :meth:`create_schema`, or :meth:`open`
    a pool of its own. ``namespace`` keeps services sharing one database from sharing nonces.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str | None = None,
        namespace: str = "",
        owns_pool: bool = False,
    ) -> None:
        self._pool = pool
        self._table = pg_qualified(schema, "httpauth_nonces")
        self._namespace = namespace
        self._owns = owns_pool

    @staticmethod
    async def create_schema(pool: asyncpg.Pool, schema: str | None = None) -> None:
        table = pg_qualified(schema, "httpauth_nonces")
        await pool.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "namespace TEXT NOT NULL, pk TEXT NOT NULL, nonce NUMERIC(20, 0) NOT NULL, "
            "PRIMARY KEY (namespace, pk))"
        )

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, namespace: str = ""
    ) -> PostgresNonceStore:
        import asyncpg

        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            await cls.create_schema(pool, schema)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema=schema, namespace=namespace, owns_pool=True)

    async def nonce(self, pk: PubKey) -> int:
        value = await self._pool.fetchval(
            f"SELECT nonce FROM {self._table} WHERE namespace = $1 AND pk = $2",
            self._namespace,
            pk.hex(),
        )
        return 0 if value is None else int(value)

    async def increment(self, pk: PubKey) -> int:
        value = await self._pool.fetchval(
            f"INSERT INTO {self._table} AS t (namespace, pk, nonce) VALUES ($1, $2, 1) "
            "ON CONFLICT (namespace, pk) DO UPDATE SET nonce = t.nonce + 1 RETURNING nonce",
            self._namespace,
            pk.hex(),
        )
        return int(value)

    async def count(self) -> int:
        value = await self._pool.fetchval(
            f"SELECT COUNT(*) FROM {self._table} WHERE namespace = $1", self._namespace
        )
        return int(value or 0)

    async def close(self) -> None:
        if self._owns:
            await self._pool.close()


# --------------------------------------------------------------------------------------------
# Server: middleware and nonce endpoint
# --------------------------------------------------------------------------------------------


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

    def __init__(self, store: NonceStore, *, protect_all: bool = False) -> None:
        self.store = store
        self._protect_all = protect_all
        self._protected: set[Any] = set()
        self._locks = _KeyLocks()

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
            request[AUTH_PK_KEY] = pk
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if 200 <= exc.status < 300:
                    await self.store.increment(pk)
                raise
            if 200 <= response.status < 300:
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


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


def _error_message(body: bytes) -> str:
    """The message of an error body: ``{"error":{"message":…}}``, ``{"error":"…"}``, or text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(obj.get("message"), str):
            return str(obj["message"])
    return text


class HTTPStatusError(Exception):
    """A non-2xx answer: ``status``, the server's ``message`` and the raw ``body``."""

    def __init__(self, status: int, body: bytes, method: str = "", url: str = "") -> None:
        self.status = status
        self.body = body
        self.message = _error_message(body)
        self.method = method
        self.url = url
        super().__init__(f"{status}: {self.message}" if self.message else f"HTTP {status}")


@dataclass(frozen=True, slots=True)
class HTTPAuthResponse:
    """An answer: status, raw body and content type."""

    status: int
    body: bytes
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (``None`` for an empty body); raises ``ValueError``."""
        if not self.body.strip():
            return None
        return json.loads(self.body)

    def parsed(self) -> Any:
        """The body as JSON when it is JSON, else its text (``None`` when empty)."""
        try:
            return self.json()
        except (ValueError, RecursionError):
            return self.text

    def raise_for_status(self, method: str = "", url: str = "") -> None:
        if not self.ok:
            raise HTTPStatusError(self.status, self.body, method, url)


def _encode_json_body(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class HTTPAuthClient(HTTPClientBase):
    """Signed requests to one service at ``base_url`` as the key of ``sk``.

    The nonce is fetched on first use, incremented after every 2xx answer, and re-fetched (with
    one retry of the request) when the server answers ``SW-Nonce does not match``. Requests are
    sent one at a time. Pass ``session`` to share an ``aiohttp.ClientSession``; otherwise the
    client opens one and closes it in :meth:`close` / ``async with``.
    """

    def __init__(
        self,
        base_url: str,
        sk: SecKey,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 20.0,
        public_ip: str = "",
    ) -> None:
        base = base_url.rstrip("/")
        if "://" not in base:
            base = "http://" + base
        self.base_url = base
        self._sk = sk
        self.pk = sk.pubkey()
        super().__init__(session, timeout)
        self._public_ip = public_ip
        self._nonce: int | None = None
        self._lock = asyncio.Lock()

    @property
    def current_nonce(self) -> int | None:
        """The nonce the next request will use (``None`` before the first fetch)."""
        return self._nonce

    async def fetch_nonce(self) -> int:
        """Ask the server for this key's next nonce (and use it from now on)."""
        url = f"{self.base_url}{NONCE_PATH}{self.pk.hex()}"
        async with self._http().get(url, timeout=self._timeout) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise HTTPStatusError(resp.status, body, "GET", url)
        try:
            obj = json.loads(body)
            nonce = obj["next_nonce"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise HTTPStatusError(502, body, "GET", url) from exc
        if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce <= MAX_NONCE:
            raise HTTPStatusError(502, body, "GET", url)
        self._nonce = nonce
        return nonce

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
    ) -> HTTPAuthResponse:
        assert self._nonce is not None
        all_headers = dict(headers or {})
        all_headers.update(
            auth_headers(self._sk, body, self._nonce, pk=self.pk, public_ip=self._public_ip)
        )
        if body:
            all_headers.setdefault("Content-Type", "application/json")
        async with self._http().request(
            method,
            url,
            data=body if body else None,
            params=params,
            headers=all_headers,
            timeout=self._timeout,
        ) as resp:
            payload = await resp.read()
            return HTTPAuthResponse(resp.status, payload, resp.content_type)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTTPAuthResponse:
        """Send one signed request and return the answer, whatever its status."""
        url = self.base_url + path
        async with self._lock:
            if self._nonce is None:
                await self.fetch_nonce()
            resp = await self._send(method, url, body, params, headers)
            if resp.status == 401 and _error_message(resp.body) == NONCE_MISMATCH:
                log.debug("%s %s: stale nonce %s, re-fetching", method, path, self._nonce)
                await self.fetch_nonce()
                resp = await self._send(method, url, body, params, headers)
            if resp.ok:
                assert self._nonce is not None
                self._nonce = (self._nonce + 1) & MAX_NONCE
            return resp

    async def request_unsigned(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> HTTPAuthResponse:
        """A plain request to a public endpoint of the same service (no headers, no nonce)."""
        async with self._http().request(
            method, self.base_url + path, params=params, timeout=self._timeout
        ) as resp:
            return HTTPAuthResponse(resp.status, await resp.read(), resp.content_type)

    async def _call(
        self, method: str, path: str, body: bytes, params: dict[str, str] | None
    ) -> Any:
        resp = await self.request(method, path, body=body, params=params)
        resp.raise_for_status(method, self.base_url + path)
        return resp.parsed()

    async def get(self, path: str, *, params: dict[str, str] | None = None) -> Any:
        """Signed GET; the parsed JSON answer (text if not JSON); :class:`HTTPStatusError`
        unless 2xx."""
        return await self._call("GET", path, b"", params)

    async def post(
        self, path: str, payload: Any = None, *, params: dict[str, str] | None = None
    ) -> Any:
        """Signed POST of ``payload`` (JSON-encoded, or sent as is when bytes)."""
        body = b"" if payload is None else _encode_json_body(payload)
        return await self._call("POST", path, body, params)

    async def delete(
        self, path: str, payload: Any = None, *, params: dict[str, str] | None = None
    ) -> Any:
        """Signed DELETE (with an optional JSON body)."""
        body = b"" if payload is None else _encode_json_body(payload)
        return await self._call("DELETE", path, body, params)
