"""Typed async client of the service discovery API (works against the Go service too).

Registering and deleting are httpauth-signed through
:class:`~skywire.services.httpauth.HTTPAuthClient`; listing, reading one entry and ``/health``
are public. A non-2xx answer raises the :class:`SDClientError` subclass of its status
(:class:`SDForbiddenError` for 403, :class:`SDNotFoundError` for 404, …); a 2xx answer that does
not parse raises :class:`~skywire.services.sd.errors.EntryError`. A service discovery that cannot
be asked raises :class:`SDUnreachableError`. All of them are
:class:`~skywire.services.sd.errors.SDError`.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Self

import aiohttp

from skywire.cipher import PubKey, SecKey
from skywire.services.httpauth import HTTPAuthClient, HTTPAuthResponse, HTTPStatusError
from skywire.services.sd.entry import (
    ServiceEntry,
    ServiceType,
    SWAddr,
    parse_entries,
    parse_entry,
    parse_type,
)
from skywire.services.sd.errors import EntryError, SDError

__all__ = [
    "SDBadRequestError",
    "SDClient",
    "SDClientError",
    "SDForbiddenError",
    "SDNotFoundError",
    "SDUnauthorizedError",
    "SDUnreachableError",
]


class SDClientError(HTTPStatusError, SDError):
    """A refusal by the service discovery: ``status``, ``message``, raw ``body``."""


class SDUnreachableError(SDError, ConnectionError):
    """The service discovery could not be asked (refused, reset, timed out)."""


class SDBadRequestError(SDClientError):
    """400: a malformed entry, address, type or query."""


class SDUnauthorizedError(SDClientError):
    """401: httpauth refused the request."""


class SDForbiddenError(SDClientError):
    """403: another key's address, a service without a version, an unreachable visor."""


class SDNotFoundError(SDClientError):
    """404: service not found."""


_BY_STATUS: dict[int, type[SDClientError]] = {
    400: SDBadRequestError,
    401: SDUnauthorizedError,
    403: SDForbiddenError,
    404: SDNotFoundError,
}


def _check(resp: HTTPAuthResponse, method: str, url: str) -> bytes:
    if not resp.ok:
        raise _BY_STATUS.get(resp.status, SDClientError)(resp.status, resp.body, method, url)
    return resp.body


class SDClient:
    """A client of one service discovery at ``base_url``, signing as ``sk``'s key.

    Pass ``session`` to share an ``aiohttp.ClientSession``; otherwise one is opened and closed
    with the client. ``public_ip`` is sent as ``SW-PublicIP`` (over dmsghttp, where the service
    cannot see the address a visor registers from).
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
            unreachable=lambda detail: SDUnreachableError(f"service discovery: {detail}"),
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

    async def _signed(
        self, method: str, path: str, body: bytes = b"", params: dict[str, str] | None = None
    ) -> bytes:
        resp = await self._auth.request(method, path, body=body, params=params)
        return _check(resp, method, self.base_url + path)

    async def _public_get(self, path: str, params: dict[str, str] | None = None) -> bytes:
        resp = await self._auth.request_unsigned("GET", path, params=params)
        return _check(resp, "GET", self.base_url + path)

    async def register(self, entry: ServiceEntry) -> ServiceEntry:
        """Register (or refresh) ``entry``, whose address must be this key's; returns the
        entry as the service stored it. Call again before the entry's time to live is up."""
        return parse_entry(await self._signed("POST", "/api/services", entry.to_json()))

    async def delete(self, service_type: ServiceType | str, addr: SWAddr | None = None) -> None:
        """Deregister this key's ``service_type`` entry (``addr``: this key, port 0, unless
        given); no error when there is none."""
        addr = addr if addr is not None else SWAddr(self.pk, 0)
        params = {"type": parse_type(str(service_type)).value}
        await self._signed("DELETE", f"/api/services/{addr}", params=params)

    async def services(
        self,
        service_type: ServiceType | str,
        *,
        version: str = "",
        country: str = "",
        quantity: int = 0,
    ) -> list[ServiceEntry]:
        """Live entries of ``service_type`` (``proxy`` is ``skysocks``), of ``version`` and in
        ``country`` when given; at most ``quantity`` of them, picked at random, when above 0."""
        params = {"type": parse_type(str(service_type)).value}
        if version:
            params["version"] = version
        if country:
            params["country"] = country
        if quantity > 0:
            params["quantity"] = str(quantity)
        return parse_entries(await self._public_get("/api/services", params))

    async def service(self, service_type: ServiceType | str, addr: SWAddr) -> ServiceEntry:
        """The live ``service_type`` entry of ``addr``'s key; :class:`SDNotFoundError`."""
        params = {"type": parse_type(str(service_type)).value}
        return parse_entry(await self._public_get(f"/api/services/{addr}", params))

    async def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        payload = await self._public_get("/health")
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise EntryError(f"health: invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise EntryError("health: expected an object")
        return obj
