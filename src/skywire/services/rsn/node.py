"""The route setup node (RSN): ``SetupRPCGateway.DialRouteGroup`` on dmsg port 36.

The legacy algorithm of spec §4.3, with the [2026] churn-tolerance rules of §4.4:

1. Count the route IDs each visor needs (``path[0].From`` and every ``hop.To`` of both paths)
   and call ``RPCGateway.ReserveIDs`` on every visor concurrently (dmsg port 136).
2. Build the rules: a Forward rule for each path's source, IntermediaryForward rules for the
   visors in between, a Consume rule for each path's destination.
3. Push the intermediary rules concurrently, then ``AddEdgeRules`` to the destination, and
   answer the requester with its own edge rules.

Churn rules (each exercised by a fault-injecting test):

* hop dials and pooled connections follow :mod:`skywire.services.rsn.pool`: dmsg error 202 is
  retried with backoff (but a visor that just failed every attempt gets one try for a few
  seconds), and a pooled connection that turns out dead is re-dialled once;
* one hop's failure never cancels the other hops' in-flight calls; each call has its own
  deadline;
* a route that fails after rules were pushed is rolled back (``RPCGateway.DeleteRules``);
* errors name the failing hop's key, so the requester can exclude that intermediary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from skywire.cipher import PubKey
from skywire.dmsg.client import Client
from skywire.dmsg.http import DEFAULT_HTTP_PORT, HTTPServer
from skywire.router.setup_client import (
    DIAL_ROUTE_GROUP,
    SETUP_PORT,
    BidirectionalRoute,
    EdgeRules,
    FailureCode,
    RoutingFailure,
)
from skywire.routing.route import Hop
from skywire.routing.rule import (
    ConsumeRule,
    ForwardRule,
    IntermediaryForwardRule,
    RouteDescriptor,
    Rule,
)
from skywire.services.rsn.api import make_app
from skywire.services.rsn.pool import (
    CALL_TIMEOUT,
    DIAL_ATTEMPTS,
    DIAL_BACKOFF,
    POOL_TTL,
    Dial,
    HopDialError,
    HopPool,
)
from skywire.services.rsn.stats import FailureClass, SetupStats
from skywire.wire.gob import GoBool, GoUint8
from skywire.wire.gob_types import BIDIRECTIONAL_ROUTE, EDGE_RULES, ROUTE_IDS, RULES
from skywire.wire.netrpc import (
    RPCMethod,
    RPCServer,
)
from skywire.wire.stream import ByteStream
from skywire.wire.tasks import serve_each

__all__ = ["HopDialError", "HopPool", "SetupFailure", "SetupNode"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0
ROLLBACK_TIMEOUT = 5.0


class SetupFailure(Exception):
    """A setup failed, with the class ``/stats`` counts it under."""

    def __init__(
        self, cls: FailureClass, message: str, code: FailureCode, unreachable: PubKey | None = None
    ) -> None:
        super().__init__(message)
        self.cls = cls
        self.code = code
        self.unreachable = unreachable
        """A visor that could not even be dialled (no rollback is tried there)."""


def _needed_ids(route: BidirectionalRoute) -> Counter[PubKey]:
    counts: Counter[PubKey] = Counter()
    for path in (route.forward, route.reverse):
        counts[path[0].src] += 1
        for hop in path:
            counts[hop.dst] += 1
    return counts


@dataclass
class _PathRules:
    first: ForwardRule
    intermediary: list[tuple[PubKey, Rule]]
    consume: ConsumeRule


def _path_rules(
    path: Sequence[Hop], desc: RouteDescriptor, keep_alive: int, ids: dict[PubKey, deque[int]]
) -> _PathRules:
    rid = ids[path[0].src].popleft()
    first: ForwardRule | None = None
    inter: list[tuple[PubKey, Rule]] = []
    for i, hop in enumerate(path):
        nxt = ids[hop.dst].popleft()
        if i == 0:
            first = ForwardRule(keep_alive, rid, nxt, hop.tp_id, desc)
        else:
            inter.append((hop.src, IntermediaryForwardRule(keep_alive, rid, nxt, hop.tp_id)))
        rid = nxt
    assert first is not None
    # As upstream GenerateRules: the Forward rule and the Consume rule at the path's end both
    # carry the path's own descriptor. A Go visor looks its route group up by the Consume
    # rule's descriptor, which must therefore equal its EdgeRules.Desc (src = the far edge).
    return _PathRules(first, inter, ConsumeRule(keep_alive, rid, desc))


def _err_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class SetupNode:
    """``async with SetupNode(dmsg_client) as rsn:`` serves route setup until closed."""

    def __init__(
        self,
        dmsg: Client | None,
        *,
        dial: Dial | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        call_timeout: float = CALL_TIMEOUT,
        dial_attempts: int = DIAL_ATTEMPTS,
        dial_backoff: float = DIAL_BACKOFF,
        pool_ttl: float = POOL_TTL,
        rollback_timeout: float = ROLLBACK_TIMEOUT,
        http_port: int | None = DEFAULT_HTTP_PORT,
    ) -> None:
        self.dmsg = dmsg
        if dial is None:
            if dmsg is None:
                raise ValueError("a dmsg client or a dial function is needed")
            dial = dmsg.dial
        self.stats = SetupStats()
        self.request_timeout = request_timeout
        self.rollback_timeout = rollback_timeout
        self.http_port = http_port
        self._dial = dial
        self._pool_args: dict[str, Any] = {
            "attempts": dial_attempts,
            "backoff": dial_backoff,
            "call_timeout": call_timeout,
            "ttl": pool_ttl,
        }
        self.pool: HopPool | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._http: HTTPServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pk(self) -> PubKey | None:
        return self.dmsg.pk if self.dmsg is not None else None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pool = HopPool(self._dial, stats=self.stats, **self._pool_args)
        await self.pool.start()
        if self.dmsg is not None:
            self._listener = await self.dmsg.listen(SETUP_PORT)
            self._accept_task = self._loop.create_task(self._accept_loop(), name="rsn-accept")
            if self.http_port is not None:
                http_listener = await self.dmsg.listen(self.http_port)
                self._http = HTTPServer(make_app(self.stats), http_listener)
                await self._http.start()

    async def __aenter__(self) -> SetupNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._listener is not None:
            await self._listener.close()
        task, self._accept_task = self._accept_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        if self.pool is not None:
            await self.pool.close()

    async def _accept_loop(self) -> None:
        assert self._listener is not None
        # one task per setup request connection, cancelled and awaited when the loop ends
        await serve_each(self._listener.accept, self._serve, what="setup request", logger=log)

    async def _serve(self, stream: ByteStream) -> None:
        requester = getattr(getattr(stream, "remote_addr", None), "pk", None)
        server = self.rpc_server(requester if isinstance(requester, PubKey) else None)
        try:
            await server.serve(stream)
        except (ConnectionError, OSError) as exc:
            log.debug("setup request connection ended: %s", exc)

    def rpc_server(self, requester: PubKey | None) -> RPCServer:
        """``SetupRPCGateway`` for one connection from ``requester``."""

        async def dial_route_group(arg: Any) -> dict[str, Any]:
            try:
                route = BidirectionalRoute.from_gob(arg)
            except ValueError as exc:
                self.stats.started()
                self.stats.failed(FailureClass.INVALID_ROUTE, 0.0, str(exc))
                raise RoutingFailure(FailureCode.CREATE_ROUTES, str(exc)) from exc
            edge = await self.dial_route_group(route, requester)
            return edge.to_gob()

        server = RPCServer()
        server.register(
            DIAL_ROUTE_GROUP.split(".")[0],
            {"DialRouteGroup": RPCMethod(dial_route_group, BIDIRECTIONAL_ROUTE, EDGE_RULES)},
        )
        return server

    # ------------------------------------------------------------------ the algorithm
    async def dial_route_group(
        self, route: BidirectionalRoute, requester: PubKey | None = None
    ) -> EdgeRules:
        """Set ``route`` up; the requester's edge rules, or :class:`RoutingFailure`."""
        assert self.pool is not None, "start() the setup node first"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self.stats.started()
        installed: dict[PubKey, list[int]] = {}
        try:
            try:
                async with asyncio.timeout(self.request_timeout):
                    edge = await self._setup(route, requester, installed)
            except TimeoutError as exc:
                raise SetupFailure(
                    FailureClass.CONTEXT_DEADLINE,
                    f"context deadline exceeded ({self.request_timeout:g}s)",
                    FailureCode.CREATE_ROUTES,
                ) from exc
        except SetupFailure as exc:
            if exc.unreachable is not None:
                installed.pop(exc.unreachable, None)
            if installed:
                await self._rollback(installed)
            self.stats.failed(exc.cls, loop.time() - t0, str(exc))
            log.info("route setup failed [%s]: %s", exc.cls.value, exc)
            raise RoutingFailure(exc.code, str(exc)) from exc
        except BaseException as exc:
            if installed:
                with contextlib.suppress(Exception):
                    await self._rollback(installed)
            self.stats.failed(FailureClass.UNKNOWN, loop.time() - t0, _err_text(exc))
            if isinstance(exc, Exception):
                raise RoutingFailure(FailureCode.UNKNOWN, _err_text(exc)) from exc
            raise
        self.stats.succeeded(loop.time() - t0)
        return edge

    async def _setup(
        self,
        route: BidirectionalRoute,
        requester: PubKey | None,
        installed: dict[PubKey, list[int]],
    ) -> EdgeRules:
        pool = self.pool
        assert pool is not None
        try:
            route.check()
        except ValueError as exc:
            raise SetupFailure(
                FailureClass.INVALID_ROUTE, f"invalid route: {exc}", FailureCode.CREATE_ROUTES
            ) from exc
        desc = route.desc
        if requester is not None and requester != desc.src_pk:
            raise SetupFailure(
                FailureClass.INVALID_ROUTE,
                f"requester {requester} is not the route's source {desc.src_pk}",
                FailureCode.CREATE_ROUTES,
            )

        # 1. Reserve route IDs on every visor; no call cancels another.
        counts = _needed_ids(route)
        pks = list(counts)
        results = await asyncio.gather(
            *(pool.call(pk, "ReserveIDs", counts[pk], GoUint8, ROUTE_IDS) for pk in pks),
            return_exceptions=True,
        )
        ids: dict[PubKey, deque[int]] = {}
        for pk, res in zip(pks, results, strict=True):
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                if isinstance(res, TimeoutError):
                    cls = FailureClass.CONTEXT_DEADLINE
                elif pk == desc.src_pk:
                    cls = FailureClass.SOURCE_UNREACHABLE
                else:
                    cls = FailureClass.ID_RESERVATION
                raise SetupFailure(
                    cls, f"reserve route IDs on {pk}: {_err_text(res)}", FailureCode.RESERVE_RT_IDS
                )
            got = [int(x) for x in res]
            if len(got) != counts[pk]:
                raise SetupFailure(
                    FailureClass.ID_RESERVATION,
                    f"reserve route IDs on {pk}: asked {counts[pk]}, got {len(got)}",
                    FailureCode.RESERVE_RT_IDS,
                )
            ids[pk] = deque(got)

        # 2. Rules.
        ka = route.keep_alive
        fwd = _path_rules(route.forward, desc, ka, ids)
        rev = _path_rules(route.reverse, desc.invert(), ka, ids)
        by_pk: dict[PubKey, list[Rule]] = {}
        for pk, rule in (*fwd.intermediary, *rev.intermediary):
            by_pk.setdefault(pk, []).append(rule)

        # 3. Intermediary rules, concurrently; one failure cancels nothing.
        for pk, rules in by_pk.items():
            installed.setdefault(pk, []).extend(r.key_route_id for r in rules)
        pk_list = list(by_pk)
        raw = {pk: [r.to_bytes() for r in rules] for pk, rules in by_pk.items()}
        results = await asyncio.gather(
            *(pool.call(pk, "AddIntermediaryRules", raw[pk], RULES, GoBool) for pk in pk_list),
            return_exceptions=True,
        )
        for pk, res in zip(pk_list, results, strict=True):
            if isinstance(res, BaseException):
                if isinstance(res, asyncio.CancelledError):
                    raise res
                cls = (
                    FailureClass.CONTEXT_DEADLINE
                    if isinstance(res, TimeoutError)
                    else FailureClass.INTERMEDIARY_RULES
                )
                raise SetupFailure(
                    cls,
                    f"add intermediary rules on {pk}: {_err_text(res)}",
                    FailureCode.ADD_RULES,
                    pk if isinstance(res, HopDialError) else None,
                )

        # 4. The destination's edge rules (its route group is made there).
        dst_edge = EdgeRules(desc, rev.first, fwd.consume)
        dst = desc.dst_pk
        installed.setdefault(dst, []).extend([rev.first.key_route_id, fwd.consume.key_route_id])
        try:
            await pool.call(dst, "AddEdgeRules", dst_edge.to_gob(), EDGE_RULES, GoBool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            cls = (
                FailureClass.CONTEXT_DEADLINE
                if isinstance(exc, TimeoutError)
                else FailureClass.DESTINATION_RULES
            )
            raise SetupFailure(
                cls,
                f"add edge rules on {dst}: {_err_text(exc)}",
                FailureCode.ADD_RULES,
                dst if isinstance(exc, HopDialError) else None,
            ) from exc

        # 5. The requester's edge rules.
        return EdgeRules(desc.invert(), fwd.first, rev.consume)

    async def _rollback(self, installed: dict[PubKey, list[int]]) -> None:
        """Remove pushed rules (best effort, bounded)."""
        pool = self.pool
        assert pool is not None
        self.stats.rollbacks += 1

        async def one(pk: PubKey, keys: list[int]) -> None:
            try:
                async with asyncio.timeout(self.rollback_timeout):
                    await pool.call(pk, "DeleteRules", keys, ROUTE_IDS, GoBool)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("rollback on %s failed (its rules will expire): %s", pk, exc)

        await asyncio.gather(*(one(pk, keys) for pk, keys in installed.items()))
