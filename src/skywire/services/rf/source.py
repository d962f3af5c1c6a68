"""A :class:`~skywire.services.rf.graph.TransportSource` reading a transport discovery over HTTP.

It lists every transport with the public ``GET /all-transports`` (an array of entries
``{"t_id","edges","type","label",…}``). [2026] entries may carry a measured latency; its JSON
key is UNVERIFIED, so a numeric ``latency_ms`` or ``latency`` field (milliseconds) is used when
present and the transport counts as unmeasured otherwise. Entries that do not parse are skipped.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import aiohttp

from skywire.cipher import CipherError, PubKey
from skywire.services.httpclient import HTTPClientBase
from skywire.services.rf.graph import RouteFinderError, TransportInfo

__all__ = ["HttpTransportSource", "parse_transport_entries"]

log = logging.getLogger(__name__)


def _key(text: Any, keys: dict[str, PubKey]) -> PubKey:
    """``PubKey.from_hex`` with a cache: a visor on ten transports is checked once."""
    if not isinstance(text, str):
        raise TypeError("a key is a hex string")
    pk = keys.get(text)
    if pk is None:
        pk = PubKey.from_hex(text)
        keys[text] = pk
    return pk


def _entry(obj: Any, keys: dict[str, PubKey]) -> TransportInfo | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("entry"), dict):  # a SignedEntry
        obj = obj["entry"]
    try:
        tp_id = uuid.UUID(obj["t_id"])
        edges = obj["edges"]
        if not isinstance(edges, list) or len(edges) != 2:
            return None
        a, b = (_key(e, keys) for e in edges)
        tp_type = obj.get("type", "")
        if not isinstance(tp_type, str):
            return None
    except (KeyError, TypeError, ValueError, CipherError):
        return None
    latency: float | None = None
    for key in ("latency_ms", "latency"):
        value = obj.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            latency = float(value)
            break
    return TransportInfo(tp_id, (a, b), tp_type, latency)


def parse_transport_entries(body: bytes) -> list[TransportInfo]:
    """Entries of an ``/all-transports`` answer; malformed entries are skipped."""
    try:
        items = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RouteFinderError(f"transport discovery: invalid JSON: {exc}") from exc
    if not isinstance(items, list):
        raise RouteFinderError("transport discovery: expected an array of entries")
    keys: dict[str, PubKey] = {}
    out = [tp for tp in (_entry(item, keys) for item in items) if tp is not None]
    if len(out) != len(items):
        log.debug("skipped %d malformed transport entries", len(items) - len(out))
    return out


class HttpTransportSource(HTTPClientBase):
    """Reads ``<tpd_url>/all-transports`` on every :meth:`all_transports` call."""

    version: int | None = None  # the listing says nothing of what changed

    def __init__(
        self,
        tpd_url: str,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        base = tpd_url.rstrip("/")
        self.url = (base if "://" in base else f"http://{base}") + "/all-transports?latency=1"
        super().__init__(session, timeout)

    async def all_transports(self) -> list[TransportInfo]:
        """Every transport (raises :class:`RouteFinderError` for an answer other than 200,
        ``ServiceUnreachableError`` when transport discovery cannot be asked)."""
        got = await self.fetch("GET", self.url)
        if got.status != 200:
            text = got.body.decode("utf-8", "replace").strip()[:200]
            raise RouteFinderError(f"transport discovery answered {got.status}: {text}")
        return parse_transport_entries(got.body)
