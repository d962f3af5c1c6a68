"""The router: forwards packets by rule, owns the route groups, dials and accepts routes.

* **Data plane** (spec §3.4). The router is the transport manager's packet handler. A packet's
  route ID names a rule in this visor's :class:`~skywire.routing.table.RoutingTable`:
  Forward / IntermediaryForward rules rewrite the route ID to ``next_route_id`` and write the
  packet to transport ``next_tp_id`` (a Close is forwarded, then its rule deleted); a Consume
  rule hands the packet to its route group. Every use refreshes the rule's activity and a GC
  task removes expired rules every ``gc_interval`` seconds (closing the route group of an
  expired Consume rule).
* **Control plane.** :meth:`Router.dial_routes` asks the route finder for a forward and a
  reverse path, asks a setup node to set the route up (:class:`SetupClient`), installs the
  edge rules it gets back and runs the route handshake. A failed setup that names an
  intermediary, or a handshake that never completes, excludes those intermediaries from the
  next attempt. Setup nodes reach this visor's ``RPCGateway`` on dmsg port 136
  (:class:`~skywire.router.gateway.Gateway`), only from the trusted setup node keys.
* **Apps** :meth:`Router.listen` on a route port and accept :class:`RouteGroup` s.
* **Teardown.** The router notes the transport each rule's packets arrive on; when a transport
  goes away (the transport manager says so) the routes that crossed it are torn down at once
  (:mod:`skywire.router.breakage`), on this visor and, through Close packets, at both ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any

from skywire.cipher import PubKey
from skywire.dmsg.client import Client
from skywire.router.breakage import EdgePair, assess, pair_hints
from skywire.router.config import (
    DEFAULT_KEEP_ALIVE,
    EPHEMERAL_PORTS,
    RouteDialError,
    RouteFinderClient,
    RouterConfig,
)
from skywire.router.gateway import GATEWAY_PORT, Gateway
from skywire.router.paths import HopMemory, check_chain, consume_matches, first_allowed
from skywire.router.route_group import (
    RouteClosedError,
    RouteGroup,
    RouteHandshakeError,
)
from skywire.router.setup_client import (
    BidirectionalRoute,
    EdgeRules,
    FailureCode,
    RouteSetupError,
    RoutingFailure,
    SetupClient,
    pks_in_text,
)
from skywire.router.stats import RouterStats, SetupOutcome
from skywire.routing.packet import CloseCode, PacketType
from skywire.routing.route import Hop, PathEdges, RouteQueryError
from skywire.routing.rule import (
    ConsumeRule,
    ForwardRule,
    IntermediaryForwardRule,
    RouteDescriptor,
    Rule,
)
from skywire.routing.table import RoutingTable, RoutingTableError
from skywire.transport.manager import ManagedTransport, TransportError, TransportManager
from skywire.wire.tasks import TaskTree, TaskTreeClosedError

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "EPHEMERAL_PORTS",
    "RouteDialError",
    "RouteFinderClient",
    "RouteListener",
    "Router",
    "RouterConfig",
    "RouterStats",
]

log = logging.getLogger(__name__)


class RouteListener:
    """Incoming route groups on one route port."""

    def __init__(self, router: Router, port: int, backlog: int) -> None:
        self.router = router
        self.port = port
        self._queue: asyncio.Queue[RouteGroup | None] = asyncio.Queue(backlog)
        self.closed = False

    def _offer(self, rg: RouteGroup) -> bool:
        if self.closed or self._queue.full():
            return False
        self._queue.put_nowait(rg)
        return True

    async def accept(self) -> RouteGroup:
        """The next route group; ``RouteClosedError`` once the listener is closed."""
        if self.closed and self._queue.empty():
            raise RouteClosedError(f"route listener on port {self.port} closed")
        rg = await self._queue.get()
        if rg is None:
            self._queue.put_nowait(None)
            raise RouteClosedError(f"route listener on port {self.port} closed")
        return rg

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.router._listeners.pop(self.port, None)
        pending: list[RouteGroup] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                pending.append(item)
        self._queue.put_nowait(None)
        for rg in pending:
            await rg.abort()

    async def __aenter__(self) -> RouteListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Router:
    """``async with Router(tm, dmsg, rf=…, config=…) as router:``."""

    def __init__(
        self,
        tm: TransportManager,
        dmsg: Client | None = None,
        *,
        rf: RouteFinderClient | None = None,
        config: RouterConfig | None = None,
        setup: SetupClient | None = None,
    ) -> None:
        self.tm = tm
        self.sk = tm.sk
        self.pk = tm.pk
        self.dmsg = dmsg
        self.rf = rf
        self.config = config or RouterConfig()
        if setup is None and dmsg is not None:
            setup = SetupClient(
                dmsg.dial, self.config.setup_nodes, timeout=self.config.setup_timeout
            )
        self.setup = setup
        self.table = RoutingTable()
        self.failed_hops = HopMemory(self.config.failed_hop_memory)
        self.stats = RouterStats()
        self.gateway: Gateway | None = None
        self._loop = asyncio.get_running_loop()
        self._groups: dict[int, RouteGroup] = {}
        # the transport each rule's packets were last seen arriving on, by rule key
        self._arrives_on: dict[int, uuid.UUID] = {}
        self._listeners: dict[int, RouteListener] = {}
        self._pending_ports: set[int] = set()
        self._next_ephemeral = EPHEMERAL_PORTS.start
        self._tasks = TaskTree("router", log)
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self._tasks.start()
        self.tm.packet_handler = self.handle_packet
        self.tm.on_lost = self.transport_lost
        self._spawn(self._gc_loop(), "router-gc")
        if self.dmsg is not None and self.config.serve_gateway:
            listener = await self.dmsg.listen(GATEWAY_PORT)
            self.gateway = Gateway(self, listener, lambda: self.config.setup_nodes)
            self.gateway.start()

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every route group (Close packets out, no wait), the gateway and the tasks."""
        if self._closed:
            return
        self._closed = True
        if self.gateway is not None:
            await self.gateway.close()
        for listener in list(self._listeners.values()):
            await listener.close()
        for rg in list(self._groups.values()):
            await rg.abort()
        await self._tasks.close()
        if self.tm.packet_handler == self.handle_packet:
            self.tm.packet_handler = None
        if self.tm.on_lost == self.transport_lost:
            self.tm.on_lost = None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` under the router (dropped, with a log line, once it has closed)."""
        try:
            self._tasks.spawn(coro, name)
        except TaskTreeClosedError:
            log.debug("router closed: %s not started", name)

    @property
    def route_groups(self) -> list[RouteGroup]:
        return list(self._groups.values())

    def listening_ports(self) -> list[int]:
        """The routing ports that accept route groups."""
        return sorted(self._listeners)

    @property
    def task_count(self) -> int:
        """Tasks the router owns (route groups' timer tasks included)."""
        timers = sum(1 for g in self._groups.values() if g.timers_running)
        return len(self._tasks.live()) + timers

    # ------------------------------------------------------------------ data plane
    async def handle_packet(
        self, tp: ManagedTransport, ptype_value: int, route_id: int, payload: bytes
    ) -> None:
        """The transport manager's packet handler."""
        try:
            ptype = PacketType(ptype_value)
        except ValueError:
            self.stats.dropped += 1
            return
        if ptype.transport_level or route_id == 0:
            return
        now = self._loop.time()
        try:
            rule = self.table.rule(route_id, now)
        except RoutingTableError as exc:
            self.stats.dropped += 1
            log.debug("%s from %s dropped: %s", ptype.go_name, tp.id, exc)
            return
        self._arrives_on[route_id] = tp.id
        if isinstance(rule, ConsumeRule):
            rg = self._groups.get(route_id)
            if rg is None:
                self.stats.dropped += 1
                if ptype is PacketType.CLOSE:
                    self._del_rules([route_id])
                return
            self.stats.delivered += 1
            await rg.handle_packet(ptype, payload)
            return
        nxt = self.tm.get(rule.next_tp_id)
        if nxt is None or nxt.closed:
            self.stats.dropped += 1
            log.debug("no transport %s for route %d", rule.next_tp_id, route_id)
        else:
            try:
                await nxt.write_packet(ptype, rule.next_route_id, payload)
                self.stats.forwarded += 1
            except TransportError as exc:
                self.stats.dropped += 1
                log.info("forwarding on %s failed: %s", nxt.id, exc)
        if ptype is PacketType.CLOSE:
            self._del_rules([route_id])
        else:
            with contextlib.suppress(RoutingTableError):
                self.table.update_activity(route_id, now)

    async def _send_along(self, fwd: ForwardRule, ptype: PacketType, payload: bytes) -> None:
        tp = self.tm.get(fwd.next_tp_id)
        if tp is None or tp.closed:
            raise RouteClosedError(f"transport {fwd.next_tp_id} is gone")
        try:
            await tp.write_packet(ptype, fwd.next_route_id, payload)
        except TransportError as exc:
            raise RouteClosedError(str(exc)) from exc
        with contextlib.suppress(RoutingTableError):
            self.table.update_activity(fwd.key_route_id, self._loop.time())

    def _del_rules(self, keys: list[int]) -> None:
        self.table.del_rules(keys)
        for key in keys:
            self._arrives_on.pop(key, None)

    def transport_lost(self, tp: ManagedTransport) -> None:
        """The transport manager's word that ``tp`` went away: tear down what crossed it."""
        if self._closed:
            return
        found = assess(
            tp.id,
            (EdgePair(g.fwd, g.cons) for g in self._groups.values()),
            self.table.all_rules(self._loop.time()),
            self._arrives_on,
        )
        reason = f"transport {tp.id} ({tp.type}) to {tp.remote_pk} went away"
        if self.tm.get(tp.id) is None:  # not replaced at once: the peer may be gone
            self.failed_hops.remember({tp.remote_pk}, self._loop.time())
        for key in found.groups:
            rg = self._groups.get(key)
            if rg is not None:
                self.stats.routes_broken += 1
                self._spawn(rg.break_route(reason), f"route-broken-{key}")
        for rule in found.pass_on:
            self.stats.routes_broken += 1
            self._spawn(self._pass_on_break(rule), f"route-broken-{rule.key_route_id}")
        if found.remove:
            log.info("%s: %d passing rules removed", reason, len(found.remove))
        self._del_rules(found.remove)

    async def _pass_on_break(self, rule: IntermediaryForwardRule) -> None:
        nxt = self.tm.get(rule.next_tp_id)
        if nxt is None or nxt.closed:
            return
        with contextlib.suppress(TransportError):
            await nxt.write_packet(
                PacketType.CLOSE, rule.next_route_id, bytes([CloseCode.PATH_BROKEN])
            )

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.gc_interval)
            self.collect_garbage()

    def collect_garbage(self) -> list[Rule]:
        """Remove expired rules now; close the route groups of expired Consume rules."""
        expired = self.table.collect_garbage(self._loop.time())
        for key in [k for k in self._arrives_on if k not in self.table]:
            del self._arrives_on[key]
        for rule in expired:
            if isinstance(rule, ConsumeRule):
                rg = self._groups.get(rule.key_route_id)
                if rg is not None:
                    log.info("route %s expired", rg.desc)
                    self._spawn(rg.abort(), "route-expired")
        return expired

    # ------------------------------------------------------------------ route groups
    def _install_edge(self, edge: EdgeRules, *, initiator: bool) -> RouteGroup:
        now = self._loop.time()
        self.table.save_rule(edge.forward, now)
        self.table.save_rule(edge.reverse, now)
        rg = RouteGroup(
            sk=self.sk,
            fwd=edge.forward,
            cons=edge.reverse,
            initiator=initiator,
            send=self._send_along,
            on_closed=self._group_closed,
            config=self.config.group_config(),
        )
        self._groups[edge.reverse.key_route_id] = rg
        return rg

    def _group_closed(self, rg: RouteGroup) -> None:
        self._del_rules([rg.fwd.key_route_id, rg.cons.key_route_id])
        if self._groups.get(rg.cons.key_route_id) is rg:
            del self._groups[rg.cons.key_route_id]

    def _ports_in_use(self) -> set[int]:
        return (
            {g.local_port for g in self._groups.values()}
            | self._pending_ports
            | set(self._listeners)
        )

    def _ephemeral_port(self) -> int:
        used = self._ports_in_use()
        span = len(EPHEMERAL_PORTS)
        for i in range(span):
            port = EPHEMERAL_PORTS.start + (self._next_ephemeral - EPHEMERAL_PORTS.start + i) % span
            if port not in used:
                self._next_ephemeral = port + 1 if port + 1 < EPHEMERAL_PORTS.stop else 49152
                return port
        raise RouteDialError("no free ephemeral route port")

    async def listen(self, port: int) -> RouteListener:
        """Accept routes to ``port``."""
        if port in self._listeners:
            raise ValueError(f"route port {port} is already taken")
        listener = RouteListener(self, port, self.config.accept_backlog)
        self._listeners[port] = listener
        return listener

    # ------------------------------------------------------------------ gateway backend
    def reserve_ids(self, n: int) -> list[int]:
        return self.table.reserve_keys(n)

    def add_intermediary_rules(self, rules: list[Rule]) -> None:
        now = self._loop.time()
        for rule in rules:
            self.table.save_rule(rule, now)
        for key, tp_id in pair_hints(rules, self._peer_of).items():
            self._arrives_on.setdefault(key, tp_id)

    def _peer_of(self, tp_id: uuid.UUID) -> PubKey | None:
        tp = self.tm.get(tp_id)
        return None if tp is None else tp.remote_pk

    async def add_edge_rules(self, rules: EdgeRules) -> None:
        """Responder edge: save the rules, make the group, accept it after the handshake."""
        desc = rules.forward.desc
        if desc.src_pk != self.pk or not consume_matches(rules.reverse, desc):
            raise RoutingFailure(FailureCode.ADD_RULES, "edge rules are not for this visor")
        listener = self._listeners.get(desc.src_port)
        if listener is None or listener.closed:
            raise RoutingFailure(FailureCode.ADD_RULES, f"no app listens on port {desc.src_port}")
        rg = self._install_edge(rules, initiator=False)
        self._spawn(self._accept_group(rg, listener), f"route-accept-{desc}")

    async def _accept_group(self, rg: RouteGroup, listener: RouteListener) -> None:
        try:
            await rg.establish()
        except RouteHandshakeError as exc:
            log.info("incoming route %s: %s", rg.desc, exc)
            await rg.abort()
            return
        if not listener._offer(rg):
            await rg.abort()

    async def delete_rules(self, keys: list[int]) -> None:
        """Roll back rules (setup node extension); route groups owning them are aborted."""
        wanted = set(keys)
        for rg in list(self._groups.values()):
            if {rg.fwd.key_route_id, rg.cons.key_route_id} & wanted:
                await rg.abort()
        self._del_rules(keys)

    # ------------------------------------------------------------------ dialing
    async def dial_routes(
        self,
        remote: PubKey,
        local_port: int = 0,
        remote_port: int = 0,
        *,
        min_hops: int | None = None,
        max_hops: int | None = None,
    ) -> RouteGroup:
        """A route group to ``remote:remote_port`` (``local_port`` 0: an ephemeral port)."""
        if self.rf is None or self.setup is None:
            raise RouteDialError("no route finder or setup node configured")
        if not self.tm.transports:
            raise RouteDialError("no transports available")
        if remote == self.pk:
            raise RouteDialError("cannot dial a route to oneself")
        port = local_port or self._ephemeral_port()
        if local_port and local_port in {g.local_port for g in self._groups.values()}:
            raise RouteDialError(f"route port {local_port} is in use")
        self._pending_ports.add(port)
        self.stats.dials += 1
        try:
            return await self._dial(
                RouteDescriptor(self.pk, remote, port, remote_port),
                self.config.min_hops if min_hops is None else min_hops,
                self.config.max_hops if max_hops is None else max_hops,
            )
        except BaseException:
            self.stats.dial_failures += 1
            raise
        finally:
            self._pending_ports.discard(port)

    async def dial_source_route(
        self,
        remote: PubKey,
        remote_port: int,
        forward: Sequence[Hop],
        reverse: Sequence[Hop],
        *,
        local_port: int = 0,
    ) -> RouteGroup:
        """A route group to ``remote:remote_port`` over exactly the hops given, both ways (the
        route finder is not asked). The hops must chain from this visor to ``remote`` and
        back; the setup node installs them as they are."""
        if self.setup is None:
            raise RouteDialError("no route setup node configured")
        if remote == self.pk:
            raise RouteDialError("cannot dial a route to oneself")
        check_chain(forward, self.pk, remote, "forward")
        check_chain(reverse, remote, self.pk, "reverse")
        port = local_port or self._ephemeral_port()
        self._pending_ports.add(port)
        self.stats.dials += 1
        desc = RouteDescriptor(self.pk, remote, port, remote_port)
        route = BidirectionalRoute(
            desc, int(self.config.keep_alive * 1e9), tuple(forward), tuple(reverse)
        )
        try:
            return await self._setup_and_establish(route)
        except (RouteSetupError, RouteHandshakeError) as exc:
            self.stats.dial_failures += 1
            raise RouteDialError(f"source route to {remote}:{remote_port}: {exc}") from exc
        except BaseException:
            self.stats.dial_failures += 1
            raise
        finally:
            self._pending_ports.discard(port)

    async def _setup_and_establish(self, route: BidirectionalRoute) -> RouteGroup:
        """Ask the setup node for ``route``, install this edge, run the route handshake."""
        assert self.setup is not None
        desc = route.desc
        started, outcome = self._loop.time(), SetupOutcome.ERROR
        try:
            try:
                edge = await self.setup.dial_route_group(route)
            except RouteSetupError:
                outcome = SetupOutcome.SETUP_FAILURE
                raise
            if edge.forward.desc != desc or not consume_matches(edge.reverse, desc):
                outcome = SetupOutcome.BAD_ANSWER
                raise RouteDialError("setup node answered with rules for another route")
            rg = self._install_edge(edge, initiator=True)
            rg.route = route
            try:
                await rg.establish()
            except RouteHandshakeError:
                outcome = SetupOutcome.HANDSHAKE_FAILURE
                await rg.abort()
                raise
            outcome = SetupOutcome.SUCCESS
            return rg
        finally:
            self.stats.setup_done(outcome, self._loop.time() - started)

    async def _dial(self, desc: RouteDescriptor, min_hops: int, max_hops: int) -> RouteGroup:
        assert self.setup is not None
        excluded: set[PubKey] = set()
        errors: list[str] = []
        keep_alive_ns = int(self.config.keep_alive * 1e9)
        for _ in range(max(self.config.setup_attempts, 1)):
            try:
                fwd, rev = await self._find_paths(desc.dst_pk, min_hops, max_hops, excluded)
            except RouteDialError as exc:
                if not errors:
                    raise
                errors.append(str(exc))
                break
            route = BidirectionalRoute(desc, keep_alive_ns, tuple(fwd), tuple(rev))
            try:
                return await self._setup_and_establish(route)
            except RouteSetupError as exc:
                named = set(pks_in_text(str(exc))) & route.intermediaries()
                self._exclude(excluded, named)
                errors.append(str(exc))
                log.info("route setup to %s failed: %s", desc.dst_pk, exc)
            except RouteHandshakeError as exc:
                self._exclude(excluded, route.intermediaries())
                errors.append(str(exc))
                log.info("route to %s: %s", desc.dst_pk, exc)
        raise RouteDialError(f"no route to {desc.dst_pk}:{desc.dst_port}: " + " | ".join(errors))

    def _exclude(self, excluded: set[PubKey], pks: set[PubKey]) -> None:
        self.failed_hops.remember(pks, self._loop.time())
        for pk in pks - excluded:
            excluded.add(pk)
            self.stats.excluded.append(pk)

    async def _find_paths(
        self, remote: PubKey, min_hops: int, max_hops: int, excluded: set[PubKey]
    ) -> tuple[list[Hop], list[Hop]]:
        assert self.rf is not None
        fwd_key, rev_key = PathEdges(self.pk, remote), PathEdges(remote, self.pk)
        deadline = self._loop.time() + self.config.rf_retry_total
        while True:
            try:
                found = await self.rf.find_routes(
                    [fwd_key, rev_key],
                    min_hops=min_hops,
                    max_hops=max_hops,
                    num_routes=self.config.route_candidates,
                )
            except (RouteQueryError, OSError, TimeoutError) as exc:
                problem = f"route finder: {exc}"
            else:
                avoid = self.failed_hops.avoid(self._loop.time())
                fwd = first_allowed(found.get(fwd_key, []), excluded, avoid)
                rev = first_allowed(found.get(rev_key, []), excluded, avoid)
                if fwd is not None and rev is not None:
                    return fwd, rev
                raise RouteDialError(
                    f"no route to {remote}: every route found crosses an "
                    f"excluded visor ({', '.join(map(str, excluded))})"
                )
            if self._loop.time() + self.config.rf_retry_interval > deadline:
                raise RouteDialError(f"no route to {remote}: {problem}")
            await asyncio.sleep(self.config.rf_retry_interval)
