"""The visor's setup RPC (``RPCGateway`` on dmsg port 136), served only to trusted setup nodes.

Methods (Go net/rpc, gob codec; names and argument types as upstream):

==========================  ===========================  ===================================
``ReserveIDs``              ``uint8 → []RouteID``        reserve n route IDs
``AddIntermediaryRules``    ``[]Rule → bool``            save each rule
``AddEdgeRules``            ``EdgeRules → bool``         responder edge: save the two rules,
                                                         make the route group, hand it to
                                                         the app listening on the port
``DeleteRules``             ``[]RouteID → bool``         extension: roll back a partly set-up
                                                         route (a Go visor answers "can't
                                                         find method"; its rules then expire)
==========================  ===========================  ===================================

Errors are ``routing.Failure`` texts (``failure code N (msg)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from skywire.cipher import PubKey
from skywire.router.setup_client import EdgeRules, FailureCode, RoutingFailure
from skywire.routing.rule import Rule, RuleError, parse_rule
from skywire.wire.gob import GoBool, GoUint8
from skywire.wire.gob_types import EDGE_RULES, ROUTE_IDS, RULES
from skywire.wire.netrpc import RPCMethod, RPCServer
from skywire.wire.stream import ByteStream, Listener
from skywire.wire.tasks import serve_each

__all__ = ["GATEWAY_PORT", "GATEWAY_SERVICE", "Gateway", "GatewayBackend", "gateway_server"]

log = logging.getLogger(__name__)

GATEWAY_PORT = 136
GATEWAY_SERVICE = "RPCGateway"


class GatewayBackend(Protocol):
    """What the gateway asks of the router."""

    def reserve_ids(self, n: int) -> list[int]: ...

    def add_intermediary_rules(self, rules: list[Rule]) -> None: ...

    async def add_edge_rules(self, rules: EdgeRules) -> None: ...

    async def delete_rules(self, keys: list[int]) -> None: ...


def gateway_server(backend: GatewayBackend) -> RPCServer:
    """An :class:`RPCServer` with ``RPCGateway`` bound to ``backend``."""

    async def reserve_ids(n: Any) -> list[int]:
        try:
            return backend.reserve_ids(int(n))
        except Exception as exc:
            raise RoutingFailure(FailureCode.RESERVE_RT_IDS, str(exc)) from exc

    async def add_intermediary_rules(raw: Any) -> bool:
        try:
            rules = [parse_rule(bytes(r)) for r in raw or ()]
            backend.add_intermediary_rules(rules)
        except (RuleError, ValueError) as exc:
            raise RoutingFailure(FailureCode.ADD_RULES, str(exc)) from exc
        return True

    async def add_edge_rules(raw: Any) -> bool:
        try:
            rules = EdgeRules.from_gob(raw)
        except RuleError as exc:
            raise RoutingFailure(FailureCode.ADD_RULES, str(exc)) from exc
        try:
            await backend.add_edge_rules(rules)
        except RoutingFailure:
            raise
        except Exception as exc:
            raise RoutingFailure(FailureCode.ADD_RULES, str(exc)) from exc
        return True

    async def delete_rules(raw: Any) -> bool:
        await backend.delete_rules([int(k) for k in raw or ()])
        return True

    server = RPCServer()
    server.register(
        GATEWAY_SERVICE,
        {
            "ReserveIDs": RPCMethod(reserve_ids, GoUint8, ROUTE_IDS),
            "AddIntermediaryRules": RPCMethod(add_intermediary_rules, RULES, GoBool),
            "AddEdgeRules": RPCMethod(add_edge_rules, EDGE_RULES, GoBool),
            "DeleteRules": RPCMethod(delete_rules, ROUTE_IDS, GoBool),
        },
    )
    return server


def _remote_pk(stream: ByteStream) -> PubKey | None:
    addr = getattr(stream, "remote_addr", None)
    pk = getattr(addr, "pk", None)
    return pk if isinstance(pk, PubKey) else None


class Gateway:
    """Accepts setup-node connections on a listener and serves ``RPCGateway`` on each.

    Connections from keys outside ``trusted`` are closed unanswered. The gateway owns one task
    per connection plus its accept task; :meth:`close` cancels and awaits them all.
    """

    def __init__(
        self,
        backend: GatewayBackend,
        listener: Listener,
        trusted: Iterable[PubKey] | Callable[[], Iterable[PubKey]],
    ) -> None:
        self._server = gateway_server(backend)
        self._listener = listener
        self._trusted = trusted
        self._accept_task: asyncio.Task[None] | None = None
        self.refused = 0

    def trusted(self) -> set[PubKey]:
        src = self._trusted
        return set(src() if callable(src) else src)

    def start(self) -> None:
        self._accept_task = asyncio.get_running_loop().create_task(
            self._accept_loop(), name="router-gateway"
        )

    async def _accept_loop(self) -> None:
        # one task per trusted connection, cancelled and awaited when the loop ends
        await serve_each(self._next_trusted, self._serve, what="setup RPC", logger=log)

    async def _next_trusted(self) -> ByteStream:
        while True:
            stream = await self._listener.accept()
            pk = _remote_pk(stream)
            if pk is not None and pk in self.trusted():
                return stream
            self.refused += 1
            log.info("setup RPC from untrusted %s refused", pk)
            with contextlib.suppress(ConnectionError, OSError):
                await stream.close()

    async def _serve(self, stream: ByteStream) -> None:
        try:
            await self._server.serve(stream)
        except (ConnectionError, OSError) as exc:
            log.debug("setup RPC connection ended: %s", exc)

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._listener.close()
        task, self._accept_task = self._accept_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
