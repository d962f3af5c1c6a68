"""Typed async client of the dmsg discovery HTTP API (works against the Go discovery too).

Every refusal by the discovery raises the typed :class:`~skywire.dmsg.disc_entry.DiscError`
subclass its message names (``WrongSequenceError``, ``KeyNotFoundError``, …), as the Go client
maps messages back to errors. A discovery that cannot be asked (refused, reset, timed out)
raises :class:`~skywire.dmsg.disc_errors.DiscUnreachableError`, also a ``ConnectionError``; a
200 answer that does not parse raises :class:`~skywire.dmsg.disc_entry.EntryDecodeError`.

Fetched entries are not signature-checked: the [2024] discovery rewrites ``serverType`` after
verification, so stored server entries no longer verify (as upstream, which never checks them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from skywire.cipher import PubKey, SecKey
from skywire.dmsg.disc_entry import (
    Clock,
    DiscVersion,
    Entry,
    EntryDecodeError,
    WrongSequenceError,
    parse_entries,
    parse_entry,
    parse_pubkeys,
    sign,
)
from skywire.dmsg.disc_errors import DiscUnreachableError, error_from_response
from skywire.services.httpclient import HTTPClientBase

if TYPE_CHECKING:
    import aiohttp

__all__ = ["DEFAULT_TIMEOUT", "MAX_PUT_ATTEMPTS", "DiscClient"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 20.0
"""Seconds allowed for one request when the client owns its HTTP session."""

MAX_PUT_ATTEMPTS = 8
"""How many times :meth:`DiscClient.put_entry` re-sequences before giving up."""

_PREFIX = "/dmsg-discovery"


class DiscClient(HTTPClientBase):
    """A client of one discovery at ``base_url`` (``http://host:port``, no trailing path).

    Pass an ``aiohttp.ClientSession`` to share one; otherwise the client opens its own and closes
    it in :meth:`close` / ``async with``; ``pooled=False`` makes each request on a connection of
    its own, without aiohttp (for a short-lived process: see :mod:`skywire.services.httpclient`).
    ``version`` is the field set entries are signed with in :meth:`put_entry` (leave the
    [2024]-only fields empty to be accepted by both revisions).
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Clock = time.time_ns,
        timeout: float = DEFAULT_TIMEOUT,
        version: DiscVersion = DiscVersion.V2024,
        pooled: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        super().__init__(session, timeout, pooled=pooled)
        self._clock = clock
        self._version = version
        self._put_lock = asyncio.Lock()

    def unreachable(self, detail: str) -> Exception:
        return DiscUnreachableError(detail)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> bytes:
        headers = {"Content-Type": "application/json"} if body is not None else None
        got = await self.fetch(
            method, self.base_url + path, data=body, params=params, headers=headers
        )
        if got.status != 200:
            raise error_from_response(got.status, got.body)
        return got.body

    # -- entries -----------------------------------------------------------------------------

    async def get_entry(self, pk: PubKey) -> Entry:
        """The entry of ``pk``; raises ``KeyNotFoundError`` when there is none, and
        ``EntryDecodeError`` for an answer that is not an entry or is another key's."""
        entry = parse_entry(await self._request("GET", f"{_PREFIX}/entry/{pk.hex()}"))
        if entry.static != pk:
            raise EntryDecodeError(f"asked for the entry of {pk}, got one of {entry.static}")
        return entry

    async def post_entry(self, entry: Entry, *, timeout: bool = False) -> str:
        """POST an already signed entry; returns the discovery's message.

        ``timeout=True`` asks for a 3-minute lifetime on a client entry (servers always get 2).
        """
        params = {"timeout": "true"} if timeout else None
        payload = await self._request(
            "POST", f"{_PREFIX}/entry/", body=entry.to_json(), params=params
        )
        return _message_of(payload)

    async def put_entry(self, sk: SecKey, entry: Entry) -> Entry:
        """Publish the next iteration of ``entry`` and return the entry as published.

        The sequence becomes ``entry.sequence + 1`` and the timestamp now; on a wrong-sequence
        refusal the remote entry is fetched and the post retried with ``remote.sequence + 1`` —
        unless the remote entry is newer than ours, in which case nothing is posted and the
        returned entry just carries the remote sequence.
        """
        async with self._put_lock:
            current = replace(entry, sequence=entry.sequence + 1, timestamp=self._clock())
            for _attempt in range(MAX_PUT_ATTEMPTS):
                signed = sign(current, sk, self._version)
                try:
                    await self.post_entry(signed)
                    return signed
                except WrongSequenceError:
                    remote = await self.get_entry(current.static)
                    if remote.timestamp > current.timestamp:
                        log.debug("remote entry of %s is newer; dropping update", current.static)
                        return replace(current, sequence=remote.sequence)
                    current = replace(current, sequence=remote.sequence + 1)
            raise WrongSequenceError(f"gave up after {MAX_PUT_ATTEMPTS} attempts")

    async def delete_entry(self, entry: Entry) -> None:
        """Delete the entry of ``entry.static``; the body is the (signed) entry itself."""
        await self._request("DELETE", f"{_PREFIX}/entry", body=entry.to_json())

    # -- listings ----------------------------------------------------------------------------

    async def available_servers(self) -> list[Entry]:
        """Servers with free sessions, most room first; ``NoAvailableServersError`` when none."""
        return parse_entries(await self._request("GET", f"{_PREFIX}/available_servers"))

    async def all_servers(self) -> list[Entry]:
        """Every server entry; ``NoAvailableServersError`` when none."""
        return parse_entries(await self._request("GET", f"{_PREFIX}/all_servers"))

    async def entries(self) -> list[PubKey]:
        """Keys of every client entry."""
        return parse_pubkeys(await self._request("GET", f"{_PREFIX}/entries"))

    async def visor_entries(self) -> list[PubKey]:
        """Keys of client entries registered as visors ([2024] discoveries only)."""
        return parse_pubkeys(await self._request("GET", f"{_PREFIX}/visorEntries"))

    async def health(self) -> dict[str, Any]:
        """The ``/health`` document."""
        payload = await self._request("GET", "/health")
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise EntryDecodeError(f"health: invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise EntryDecodeError("health: expected an object")
        return obj


def _message_of(payload: bytes) -> str:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    if isinstance(obj, dict) and isinstance(obj.get("message"), str):
        return str(obj["message"])
    return ""
