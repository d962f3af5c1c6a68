"""Route hops and path edges (``pkg/routing/route.go``), as the route finder and setup use them.

* :class:`Hop` — one transport crossed by a route: ``{"TpID","From","To"}`` in JSON (Go field
  names, no tags) and the ``routing.Hop`` gob struct (:data:`skywire.wire.gob_types.HOP`).
* :class:`PathEdges` — the (source, destination) pair a route is asked for; its text form is
  the two 66-hex keys joined by ``:``, used as JSON object keys by the route finder.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skywire.cipher import PUBKEY_LEN, CipherError, PubKey
from skywire.wire.errors import WireError

__all__ = ["Hop", "PathEdges", "RouteFormatError", "RouteQueryError"]


class RouteFormatError(WireError):
    """A hop or a path-edges text is malformed."""


class RouteQueryError(Exception):
    """A route finder refused a query, or could not be asked (the base of its client's
    errors, so that a router catches exactly these)."""


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop of a route: transport ``tp_id`` from ``src`` to ``dst``."""

    tp_id: uuid.UUID
    src: PubKey
    dst: PubKey

    def to_json(self) -> dict[str, str]:
        return {"TpID": str(self.tp_id), "From": self.src.hex(), "To": self.dst.hex()}

    @classmethod
    def from_json(cls, obj: Any) -> Hop:
        if not isinstance(obj, Mapping):
            raise RouteFormatError("hop: expected an object")
        try:
            tp, src, dst = obj["TpID"], obj["From"], obj["To"]
        except KeyError as exc:
            raise RouteFormatError(f"hop: missing {exc.args[0]}") from exc
        if not all(isinstance(v, str) for v in (tp, src, dst)):
            raise RouteFormatError("hop: expected strings")
        try:
            return cls(uuid.UUID(tp), PubKey.from_hex(src), PubKey.from_hex(dst))
        except (ValueError, CipherError) as exc:
            raise RouteFormatError(f"hop: {exc}") from exc

    def to_gob(self) -> dict[str, Any]:
        """The value for :data:`skywire.wire.gob_types.HOP`."""
        return {"TpID": self.tp_id, "From": self.src, "To": self.dst}

    @classmethod
    def from_gob(cls, value: Mapping[str, Any]) -> Hop:
        return cls(value["TpID"], value["From"], value["To"])

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} @ {self.tp_id}"


@dataclass(frozen=True, slots=True)
class PathEdges:
    """The two edges of a requested path, source first."""

    src: PubKey
    dst: PubKey

    def text(self) -> str:
        return f"{self.src.hex()}:{self.dst.hex()}"

    def __str__(self) -> str:
        return self.text()

    def reverse(self) -> PathEdges:
        return PathEdges(self.dst, self.src)

    @classmethod
    def parse(cls, text: str) -> PathEdges:
        """Parse ``<66 hex>:<66 hex>`` (each key must be a valid point or the null key)."""
        n = 2 * PUBKEY_LEN
        if len(text) != 2 * n + 1 or text[n] != ":":
            raise RouteFormatError(f"path edges {text[:160]!r}: expected '<pk>:<pk>'")
        try:
            return cls(PubKey.from_hex(text[:n]), PubKey.from_hex(text[n + 1 :]))
        except CipherError as exc:
            raise RouteFormatError(f"path edges: {exc}") from exc
