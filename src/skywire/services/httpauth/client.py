"""httpauth's client side: :class:`HTTPAuthClient` signs every request to one service with its
key and keeps the nonce (fetched on first use, incremented after every 2xx, re-fetched and retried
once on ``SW-Nonce does not match``); answers are :class:`HTTPAuthResponse`, and a non-2xx one
raised as :class:`HTTPStatusError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from skywire.cipher import SecKey
from skywire.services.httpauth.sign import MAX_NONCE, NONCE_MISMATCH, NONCE_PATH, auth_headers
from skywire.services.httpclient import HTTPClientBase

__all__ = ["HTTPAuthClient", "HTTPAuthResponse", "HTTPStatusError"]

log = logging.getLogger("skywire.httpauth")


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

    The nonce is fetched on first use and incremented after every 200 answer; after another
    2xx it is fetched again (upstream servers do not count those, this package's do), and
    re-fetched (with one retry of the request) when the server answers ``SW-Nonce does not
    match``. Requests are
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
        unreachable: Callable[[str], Exception] | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if "://" not in base:
            base = "http://" + base
        self.base_url = base
        self._sk = sk
        self.pk = sk.pubkey()
        super().__init__(session, timeout, unreachable=unreachable)
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
        got = await self.fetch("GET", url)
        body = got.body
        if got.status != 200:
            raise HTTPStatusError(got.status, body, "GET", url)
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
            auth_headers(
                self._sk,
                body,
                self._nonce,
                pk=self.pk,
                public_ip=self._public_ip,
                method=method,
                target=yarl.URL(url).update_query(params or {}).raw_path_qs,
            )
        )
        if body:
            all_headers.setdefault("Content-Type", "application/json")
        got = await self.fetch(
            method, url, data=body if body else None, params=params, headers=all_headers
        )
        return HTTPAuthResponse(got.status, got.body, got.content_type)

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
            if resp.status == 200:
                assert self._nonce is not None
                self._nonce = (self._nonce + 1) & MAX_NONCE
            elif resp.ok:
                # Upstream servers spend the nonce only on a 200, ours on any 2xx: ask again
                # before the next request rather than guess (and be refused).
                self._nonce = None
            return resp

    async def request_unsigned(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> HTTPAuthResponse:
        """A plain request to a public endpoint of the same service (no headers, no nonce)."""
        got = await self.fetch(method, self.base_url + path, params=params)
        return HTTPAuthResponse(got.status, got.body, got.content_type)

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
