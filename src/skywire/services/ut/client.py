"""Typed async client of the uptime tracker API.

:meth:`UTClient.update` is the visor's heartbeat, upstream's ``UpdateVisorUptime``: ``GET
/v4/update?version=<v>`` signed with httpauth (so it also works against the Go tracker).
:meth:`UTClient.uptimes` reads upstream's ``/uptimes?v=v2`` list, :meth:`UTClient.uptime` our
per-visor ``/uptimes/{pk}``; both are public. A non-2xx answer raises the
:class:`UTClientError` subclass of its status; a tracker that cannot be asked raises
:class:`UTUnreachableError`; an answer that does not parse raises
:class:`~skywire.services.ut.errors.QueryError`. All of them are
:class:`~skywire.services.ut.errors.UTError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import aiohttp

from skywire.cipher import PubKey, SecKey
from skywire.services.httpauth import HTTPAuthClient, HTTPAuthResponse, HTTPStatusError
from skywire.services.ut.errors import QueryError, UTError

__all__ = [
    "UTClient",
    "UTClientError",
    "UTNotFoundError",
    "UTUnauthorizedError",
    "UTUnreachableError",
]


class UTClientError(HTTPStatusError, UTError):
    """A refusal by the uptime tracker: ``status``, ``message``, raw ``body``."""


class UTUnreachableError(UTError, ConnectionError):
    """The uptime tracker could not be asked (refused, reset, timed out)."""


class UTUnauthorizedError(UTClientError):
    """401: httpauth refused the heartbeat."""


class UTNotFoundError(UTClientError):
    """404: the tracker never heard from that visor."""


_BY_STATUS: dict[int, type[UTClientError]] = {401: UTUnauthorizedError, 404: UTNotFoundError}


def _check(resp: HTTPAuthResponse, method: str, url: str) -> bytes:
    if not resp.ok:
        raise _BY_STATUS.get(resp.status, UTClientError)(resp.status, resp.body, method, url)
    return resp.body


def _parse(body: bytes, what: str, kind: type) -> Any:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise QueryError(f"{what}: invalid JSON: {exc}") from exc
    if not isinstance(obj, kind):
        raise QueryError(f"{what}: expected a JSON {kind.__name__}")
    return obj


class UTClient:
    """A client of one uptime tracker at ``base_url``, signing heartbeats as ``sk``'s key (a
    throw-away key when None: reading needs none).

    Pass ``session`` to share an ``aiohttp.ClientSession``; otherwise one is opened and closed
    with the client.
    """

    def __init__(
        self,
        base_url: str,
        sk: SecKey | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 20.0,
        public_ip: str = "",
    ) -> None:
        self._auth = HTTPAuthClient(
            base_url,
            sk if sk is not None else SecKey.generate(),
            session,
            timeout=timeout,
            public_ip=public_ip,
            unreachable=lambda detail: UTUnreachableError(f"uptime tracker: {detail}"),
        )
        self.base_url = self._auth.base_url

    @property
    def pk(self) -> PubKey:
        return self._auth.pk

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

    async def update(self, version: str = "") -> float:
        """Send one heartbeat; the seconds it credited (0 from a tracker that does not say)."""
        path = "/v4/update"
        resp = await self._auth.request("GET", path, params={"version": version})
        body = _check(resp, "GET", self.base_url + path)
        try:
            credited = json.loads(body).get("credited", 0.0)
        except (ValueError, RecursionError, AttributeError):
            return 0.0  # upstream's tracker answers 200 with a body of its own
        return float(credited) if isinstance(credited, int | float) else 0.0

    async def _get(self, path: str, params: dict[str, str]) -> bytes:
        resp = await self._auth.request_unsigned("GET", path, params=params)
        return _check(resp, "GET", self.base_url + path)

    async def uptimes(
        self, pks: Sequence[PubKey] = (), *, days: int | None = None
    ) -> list[dict[str, Any]]:
        """Upstream's v2 list (``pk``, ``up``, ``down``, ``pct``, ``on``, ``version``,
        ``daily``) for ``pks`` (every visor when empty)."""
        params = {"v": "v2"}
        if pks:
            params["visors"] = ",".join(pk.hex() for pk in pks)
        if days is not None:
            params["days"] = str(days)
        found = _parse(await self._get("/uptimes", params), "uptimes", list)
        return [e for e in found if isinstance(e, dict)]

    async def uptime(self, pk: PubKey, *, days: int | None = None) -> dict[str, Any]:
        """One visor's totals and ``days`` (``[{"date","up","pct"}]``); :class:`UTNotFoundError`
        when the tracker never heard from it."""
        params = {} if days is None else {"days": str(days)}
        return dict(_parse(await self._get(f"/uptimes/{pk.hex()}", params), "uptime", dict))

    async def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        return dict(_parse(await self._get("/health", {}), "health", dict))
