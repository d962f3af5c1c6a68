"""Typed async client of the transport discovery API (works against the Go service too).

Every call but :meth:`TPDClient.all_transports` and :meth:`TPDClient.health` is httpauth-signed
through :class:`~skywire.services.httpauth.HTTPAuthClient`. A non-2xx answer raises the
:class:`TPDError` subclass of its status (``TPDNotFoundError`` for 404, ``TPDConflictError``
for 409 — which settlement ignores —, …); a 2xx answer that does not parse raises
:class:`~skywire.transport.entry.EntryDecodeError`. A discovery that cannot be asked raises
:class:`TPDUnreachableError`; both it and :class:`TPDError` are the transport layer's
``RegistryError``.
"""

from __future__ import annotations

import json
import uuid
from types import TracebackType
from typing import Any, Self

import aiohttp

from skywire.cipher import PubKey, SecKey
from skywire.services.httpauth import HTTPAuthClient, HTTPAuthResponse, HTTPStatusError
from skywire.transport.entry import (
    Entry,
    EntryDecodeError,
    SignedEntry,
    marshal_signed_entries,
    parse_entries,
    parse_entry,
)
from skywire.transport.manager import RegistryError

__all__ = [
    "TPDBadRequestError",
    "TPDClient",
    "TPDConflictError",
    "TPDError",
    "TPDForbiddenError",
    "TPDNotFoundError",
    "TPDRegistry",
    "TPDUnauthorizedError",
    "TPDUnreachableError",
]


class TPDError(HTTPStatusError, RegistryError):
    """A refusal by transport discovery: ``status``, ``message``, raw ``body``."""


class TPDUnreachableError(RegistryError, ConnectionError):
    """Transport discovery could not be asked (refused, reset, timed out)."""


class TPDBadRequestError(TPDError):
    """400: a malformed ID, key, body or entry."""


class TPDUnauthorizedError(TPDError):
    """401: httpauth refused the request."""


class TPDForbiddenError(TPDError):
    """403: the signing key is not an edge of the transport."""


class TPDNotFoundError(TPDError):
    """404: transport not found."""


class TPDConflictError(TPDError):
    """409: ID already registered."""


_BY_STATUS: dict[int, type[TPDError]] = {
    400: TPDBadRequestError,
    401: TPDUnauthorizedError,
    403: TPDForbiddenError,
    404: TPDNotFoundError,
    409: TPDConflictError,
}


def _check(resp: HTTPAuthResponse, method: str, url: str) -> bytes:
    if not resp.ok:
        raise _BY_STATUS.get(resp.status, TPDError)(resp.status, resp.body, method, url)
    return resp.body


class TPDClient:
    """A client of one transport discovery at ``base_url``, signing as ``sk``'s key.

    Pass ``session`` to share an ``aiohttp.ClientSession``; otherwise one is opened and closed
    with the client. ``public_ip`` is sent as ``SW-PublicIP`` (used over dmsghttp).
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
        self._auth = HTTPAuthClient(
            base_url,
            sk,
            session,
            timeout=timeout,
            public_ip=public_ip,
            unreachable=lambda detail: TPDUnreachableError(f"transport discovery: {detail}"),
        )
        self.base_url = self._auth.base_url

    @property
    def pk(self) -> PubKey:
        return self._auth.pk

    @property
    def auth(self) -> HTTPAuthClient:
        """The underlying signed-request client."""
        return self._auth

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._auth.close()

    async def _signed(self, method: str, path: str, body: bytes = b"") -> bytes:
        resp = await self._auth.request(method, path, body=body)
        return _check(resp, method, self.base_url + path)

    async def _public_get(self, path: str) -> bytes:
        resp = await self._auth.request_unsigned("GET", path)
        return _check(resp, "GET", self.base_url + path)

    # -- transports ----------------------------------------------------------------------------

    async def register_transports(self, *entries: SignedEntry) -> None:
        """Register signed entries (all or none); :class:`TPDConflictError` if one exists."""
        if not entries:
            return
        await self._signed("POST", "/transports/", marshal_signed_entries(entries) + b"\n")

    async def get_transport_by_id(self, tp_id: uuid.UUID) -> Entry:
        """The entry (latest latency overlaid); :class:`TPDNotFoundError` when unknown."""
        return parse_entry(await self._signed("GET", f"/transports/id:{tp_id}"))

    async def get_transports_by_edge(self, pk: PubKey) -> list[Entry]:
        """Every transport touching ``pk`` (empty when none, also from a service answering 404
        as the upstream memory store does)."""
        try:
            return parse_entries(await self._signed("GET", f"/transports/edge:{pk.hex()}"))
        except TPDNotFoundError:
            return []

    async def find_transport(self, tp_id: uuid.UUID) -> Entry | None:
        """The entry of ``tp_id``, or None when transport discovery does not know it."""
        try:
            return await self.get_transport_by_id(tp_id)
        except TPDNotFoundError:
            return None

    async def delete_transport(self, tp_id: uuid.UUID) -> None:
        """Deregister a transport this key is an edge of."""
        await self._signed("DELETE", f"/transports/id:{tp_id}")

    async def report_latency(self, tp_id: uuid.UUID, latency_ms: float) -> Entry:
        """Report the measured latency of a transport this key is an edge of; returns the
        entry as now served."""
        body = json.dumps({"latency": float(latency_ms)}).encode()
        return parse_entry(await self._signed("POST", f"/transports/id:{tp_id}/latency", body))

    async def all_transports(self) -> list[Entry]:
        """The public bulk listing (no latency)."""
        return parse_entries(await self._public_get("/all-transports"))

    async def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        payload = await self._public_get("/health")
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise EntryDecodeError(f"health: invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise EntryDecodeError("health: expected an object")
        return obj


class TPDRegistry:
    """The transport manager's registry (``skywire.transport.manager.Registry``) over
    :class:`TPDClient`, with settlement's tolerance: an already registered transport is not an
    error, nor is deleting one that is gone."""

    def __init__(
        self,
        base_url: str,
        sk: SecKey,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 20.0,
        public_ip: str = "",
    ) -> None:
        self.client = TPDClient(base_url, sk, session, timeout=timeout, public_ip=public_ip)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    async def register(self, entries: list[SignedEntry]) -> None:
        """Register ``entries``; those already registered are skipped."""
        try:
            await self.client.register_transports(*entries)
        except TPDConflictError:
            if len(entries) <= 1:
                return
            for se in entries:  # the batch was refused whole: register the new ones alone
                try:
                    await self.client.register_transports(se)
                except TPDConflictError:
                    continue

    async def deregister(self, tp_id: uuid.UUID) -> None:
        """Delete a transport; no error when it is already gone."""
        try:
            await self.client.delete_transport(tp_id)
        except TPDNotFoundError:
            return

    async def find_transport(self, tp_id: uuid.UUID) -> Entry | None:
        """See :meth:`TPDClient.find_transport` (what a source route asks of a hop)."""
        return await self.client.find_transport(tp_id)

    async def get_transports_by_edge(self, pk: PubKey) -> list[Entry]:
        return await self.client.get_transports_by_edge(pk)

    async def report_latency(self, tp_id: uuid.UUID, latency_ms: float) -> None:
        await self.client.report_latency(tp_id, latency_ms)
