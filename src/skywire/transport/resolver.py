"""What the ``stcpr`` and ``sudph`` carriers need of an address resolver (the Protocol), and the
values and errors that cross between them.

:class:`AddressResolver` is written here, at the transport layer; the HTTP/UDP client in
``services.ar`` provides the real thing and re-exports :class:`VisorData`, :class:`NoEntryError`
and :class:`VisorDataError` from here. Every call raises a :class:`ResolverError` (a refusal,
:class:`NoEntryError` for an unbound key, :class:`ResolverUnreachableError` when the resolver
cannot be asked), ``OSError`` or ``TimeoutError``: catch :data:`RESOLVER_ERRORS`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from skywire.cipher import PubKey
from skywire.transport.kcp import KCPEndpoint

__all__ = [
    "RESOLVER_ERRORS",
    "STCPR_REBIND_INTERVAL",
    "AddressResolver",
    "NoEntryError",
    "ResolverError",
    "ResolverUnreachableError",
    "SudphBinding",
    "VisorData",
    "VisorDataError",
    "string_list",
]

STCPR_REBIND_INTERVAL = 90.0
"""Seconds between a visor's stcpr re-binds (the resolver keeps a bind for longer)."""


class ResolverError(Exception):
    """Base of everything an address resolver (its client or its store) refuses with."""


class NoEntryError(ResolverError, KeyError):
    """No bind for this key and type (upstream ``no entry for this PK``)."""

    def __str__(self) -> str:
        return "no entry for this PK"


class VisorDataError(ResolverError, ValueError):
    """JSON that is not a valid :class:`VisorData` / local-addresses object."""


class ResolverUnreachableError(ResolverError, ConnectionError):
    """The resolver could not be asked (refused, reset, timed out); the message says why."""


RESOLVER_ERRORS: tuple[type[BaseException], ...] = (ResolverError, OSError, TimeoutError)
"""What an :class:`AddressResolver` call may raise."""


def string_list(value: Any, name: str) -> tuple[str, ...]:
    """A JSON array of strings (``null`` is empty) as a tuple, else :class:`VisorDataError`."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise VisorDataError(f"{name} must be an array of strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class VisorData:
    """What the resolver knows of a bound visor (upstream ``VisorData``).

    ``remote_addr`` is what the resolver saw: the public IP of the HTTP request for ``stcpr``,
    ``ip:port`` of the KCP bind for ``sudph``. ``port`` and ``addresses`` are what the visor
    declared (its listening port and local IPs). ``is_local`` is set only in answers, when the
    requester shares the bound visor's public IP.
    """

    remote_addr: str = ""
    port: str = ""
    addresses: tuple[str, ...] = field(default_factory=tuple)
    is_local: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"remote_addr": self.remote_addr}
        if self.is_local:
            out["is_local"] = True
        out["port"] = self.port
        out["addresses"] = list(self.addresses)
        return out

    def to_json(self) -> bytes:
        """Go's field order: ``remote_addr``, ``is_local`` (omitempty), ``port``, ``addresses``."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_dict(cls, obj: Any) -> VisorData:
        if not isinstance(obj, dict):
            raise VisorDataError("expected a JSON object")
        remote = obj.get("remote_addr", "")
        port = obj.get("port", "")
        is_local = obj.get("is_local", False)
        if not isinstance(remote, str) or not isinstance(port, str):
            raise VisorDataError("remote_addr and port must be strings")
        if not isinstance(is_local, bool):
            raise VisorDataError("is_local must be a boolean")
        return cls(remote, port, string_list(obj.get("addresses"), "addresses"), is_local)

    @classmethod
    def from_json(cls, data: bytes | str) -> VisorData:
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise VisorDataError(f"invalid JSON: {exc}") from exc
        return cls.from_dict(obj)


class SudphBinding(Protocol):
    """A live sudph bind at the resolver (heartbeats, hole-punch requests) until closed."""

    async def close(self) -> None: ...


class AddressResolver(Protocol):
    """The address resolver as the stcpr and sudph carriers use it."""

    async def resolve(self, tp_type: str, pk: PubKey) -> VisorData:
        """Where ``pk`` is reachable over ``tp_type``; :class:`NoEntryError` when unbound."""
        ...

    async def bind_stcpr(self, port: int | str, addresses: Sequence[str] = ()) -> None:
        """Bind our key to the public IP the resolver sees, with our stcpr port."""
        ...

    async def unbind_stcpr(self) -> None:
        """Remove our stcpr bind."""
        ...

    async def bind_sudph(
        self, endpoint: KCPEndpoint, addresses: Sequence[str] = ()
    ) -> SudphBinding:
        """Bind our key to ``endpoint``'s UDP address as the resolver sees it."""
        ...
