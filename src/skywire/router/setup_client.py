"""Route setup messages and the visor's client of the route setup node (spec §4.1–4.2).

* :class:`BidirectionalRoute` — what a visor asks the setup node for
  (``SetupRPCGateway.DialRouteGroup`` argument), with the upstream validity checks.
* :class:`EdgeRules` — the two rules of one edge of a route plus the route descriptor as the
  setup node sends them (``DialRouteGroup`` reply, ``RPCGateway.AddEdgeRules`` argument).
  ``desc`` is the descriptor seen from the *other* edge; the Forward rule carries
  ``desc.invert()`` (this edge as source) and, from an upstream setup node (``GenerateRules``),
  the Consume rule carries ``desc`` itself: a Go visor finds its route group by it.
* :class:`RoutingFailure` — a handler error rendered ``failure code N (msg)``.
* :class:`SetupClient` — dials a setup node on dmsg port 36 and calls ``DialRouteGroup``,
  trying each configured setup node in turn (rotating after a failure).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skywire.cipher import PubKey
from skywire.routing.route import Hop
from skywire.routing.rule import (
    ConsumeRule,
    ForwardRule,
    RouteDescriptor,
    Rule,
    RuleError,
    parse_rule,
)
from skywire.wire.gob_types import BIDIRECTIONAL_ROUTE, EDGE_RULES
from skywire.wire.netrpc import RPCClient, RPCServerError
from skywire.wire.stream import ByteStream

__all__ = [
    "DIAL_ROUTE_GROUP",
    "SETUP_PORT",
    "SETUP_TIMEOUT",
    "BidirectionalRoute",
    "EdgeRules",
    "FailureCode",
    "RouteSetupError",
    "RoutingFailure",
    "SetupClient",
    "pks_in_text",
]

log = logging.getLogger(__name__)

SETUP_PORT = 36
"""dmsg port of the route setup node."""
SETUP_TIMEOUT = 30.0
"""Bound of one DialRouteGroup request (the RSN's per-request deadline)."""
DIAL_ROUTE_GROUP = "SetupRPCGateway.DialRouteGroup"

Dial = Callable[[PubKey, int], Awaitable[ByteStream]]


class FailureCode(enum.IntEnum):
    UNKNOWN = 0
    ADD_RULES = 1
    CREATE_ROUTES = 2
    ROUTES_CREATED = 3
    RESERVE_RT_IDS = 4


class RoutingFailure(Exception):
    """``routing.Failure``: the text a setup handler answers with."""

    def __init__(self, code: FailureCode, msg: str) -> None:
        super().__init__(f"failure code {int(code)} ({msg})")
        self.code = code
        self.msg = msg


class RouteSetupError(ConnectionError):
    """The setup node could not be reached or refused the route."""


_PK_RE = re.compile(r"\b0[23][0-9a-f]{64}\b")


def pks_in_text(text: str) -> list[PubKey]:
    """Public keys named in an error text (66-hex compressed keys), in order of appearance."""
    out: list[PubKey] = []
    for m in _PK_RE.finditer(text.lower()):
        try:
            pk = PubKey.from_hex(m.group(0))
        except Exception:  # not a curve point
            continue
        if pk not in out:
            out.append(pk)
    return out


@dataclass(frozen=True)
class EdgeRules:
    desc: RouteDescriptor
    forward: ForwardRule
    reverse: ConsumeRule

    def to_gob(self) -> dict[str, Any]:
        return {
            "Desc": self.desc.to_bytes(),
            "Forward": self.forward.to_bytes(),
            "Reverse": self.reverse.to_bytes(),
        }

    @classmethod
    def from_gob(cls, value: Mapping[str, Any]) -> EdgeRules:
        try:
            desc = RouteDescriptor.from_bytes(bytes(value["Desc"]))
            fwd: Rule = parse_rule(bytes(value["Forward"]))
            rev: Rule = parse_rule(bytes(value["Reverse"]))
        except (KeyError, RuleError, ValueError) as exc:
            raise RuleError(f"edge rules: {exc}") from exc
        if not isinstance(fwd, ForwardRule):
            raise RuleError(f"edge rules: forward rule is {fwd.rule_type.go_name}")
        if not isinstance(rev, ConsumeRule):
            raise RuleError(f"edge rules: reverse rule is {rev.rule_type.go_name}")
        return cls(desc, fwd, rev)


@dataclass(frozen=True)
class BidirectionalRoute:
    desc: RouteDescriptor
    keep_alive: int
    """Nanoseconds (Go ``time.Duration``)."""
    forward: tuple[Hop, ...]
    reverse: tuple[Hop, ...]

    def check(self) -> None:
        """Upstream ``BidirectionalRoute.Check``: raise ``ValueError`` when malformed."""
        if not self.forward or not self.reverse:
            raise ValueError("empty path")
        src, dst = self.desc.src_pk, self.desc.dst_pk
        if self.forward[0].src != src or self.reverse[-1].dst != src:
            raise ValueError("source edge mismatch")
        if self.reverse[0].src != dst or self.forward[-1].dst != dst:
            raise ValueError("destination edge mismatch")
        for path in (self.forward, self.reverse):
            for a, b in itertools.pairwise(path):
                if a.dst != b.src:
                    raise ValueError("hops are not contiguous")

    def intermediaries(self) -> set[PubKey]:
        """Visors of the route other than its two edges."""
        edges = {self.desc.src_pk, self.desc.dst_pk}
        return {h.dst for h in (*self.forward, *self.reverse)} - edges

    def to_gob(self) -> dict[str, Any]:
        return {
            "Desc": self.desc.to_bytes(),
            "KeepAlive": self.keep_alive,
            "Forward": [h.to_gob() for h in self.forward],
            "Reverse": [h.to_gob() for h in self.reverse],
        }

    @classmethod
    def from_gob(cls, value: Mapping[str, Any]) -> BidirectionalRoute:
        try:
            desc = RouteDescriptor.from_bytes(bytes(value["Desc"]))
            return cls(
                desc,
                int(value["KeepAlive"]),
                tuple(Hop.from_gob(h) for h in value["Forward"] or ()),
                tuple(Hop.from_gob(h) for h in value["Reverse"] or ()),
            )
        except (KeyError, RuleError, TypeError) as exc:
            raise ValueError(f"bidirectional route: {exc}") from exc


class SetupClient:
    """The visor's side of route setup: ``dial_route_group(route) → EdgeRules``."""

    def __init__(
        self, dial: Dial, setup_nodes: Iterable[PubKey], *, timeout: float = SETUP_TIMEOUT
    ) -> None:
        self._dial = dial
        self.setup_nodes = list(setup_nodes)
        self.timeout = timeout
        self._next = 0

    async def dial_route_group(self, route: BidirectionalRoute) -> EdgeRules:
        """Ask a setup node for ``route``.

        A setup node that cannot be reached is skipped (the next one is tried and becomes the
        first choice of later calls); one that answers with an error ends the attempt with
        :class:`RouteSetupError` carrying its text.
        """
        if not self.setup_nodes:
            raise RouteSetupError("no route setup node configured")
        errors: list[str] = []
        n = len(self.setup_nodes)
        for i in range(n):
            idx = (self._next + i) % n
            pk = self.setup_nodes[idx]
            try:
                async with asyncio.timeout(self.timeout):
                    stream = await self._dial(pk, SETUP_PORT)
                    async with RPCClient(stream) as client:
                        reply = await client.call(
                            DIAL_ROUTE_GROUP, route.to_gob(), BIDIRECTIONAL_ROUTE, EDGE_RULES
                        )
            except RPCServerError as exc:
                raise RouteSetupError(f"setup node {pk}: {exc.message}") from exc
            except TimeoutError as exc:
                raise RouteSetupError(
                    f"setup node {pk}: no answer within {self.timeout:g}s"
                ) from exc
            except Exception as exc:
                # dmsg dial errors (DmsgError …) share no base class with the others
                errors.append(f"{pk}: {exc}")
                self._next = (idx + 1) % n
                continue
            try:
                return EdgeRules.from_gob(reply)
            except RuleError as exc:
                raise RouteSetupError(f"setup node {pk}: bad edge rules: {exc}") from exc
        raise RouteSetupError("failed to dial a setup node: " + "; ".join(errors))


def hops_text(hops: Sequence[Hop]) -> str:
    return " -> ".join([str(hops[0].src), *(str(h.dst) for h in hops)]) if hops else "(none)"
