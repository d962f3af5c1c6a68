"""The route finder's graph and path search (sans-I/O).

The graph is built once from the transport discovery's entries (:meth:`Graph.build`) and then
queried many times; the service rebuilds it on an interval rather than per query.

**Ranking.** Two orders are offered:

* *hop count* (upstream ``GetRoute``): every hop costs 1; paths in discovery order within a
  hop count.
* *latency-weighted* (upstream ``GetRouteWeighted``, the service default): a path costs the sum
  over its hops of the hop's measured latency — or :attr:`Weights.unmeasured_penalty_ms` when
  the transport has no measurement — plus the per-transport-type penalty (stcpr/squicr 0,
  sudph 25, stcp 50, wt/ws 150, webrtc 300, dmsg 400 ms; skycoin/skywire PR #3983). Routes
  with no measurement at all therefore fall back to hop-count order.

Both honour ``min_hops ≤ hops ≤ max_hops`` and never repeat a visor; one transport is used per
visor pair (the cheapest; in hop-count mode the first listed).

**Search.** Upstream gathers a bounded BFS candidate pool and sorts it. Here the candidates are
enumerated directly in cost order, which yields the exact ``count`` cheapest simple paths
without materialising a pool: a best-first search over path prefixes, guided by a lower bound on
the remaining cost that comes from a *lazy reverse Dijkstra* from the destination. The reverse
search is advanced only while its radius is behind the forward prefixes (the two meet in the
middle); a node the reverse search has not settled yet is bounded by the reverse frontier's
radius, and ``min_hops`` adds ``(hops still needed) × (cheapest edge)``. All bounds are
admissible, so complete paths leave the queue cheapest first. A cap on prefix expansions
(:data:`DEFAULT_MAX_EXPANSIONS`) bounds the work of pathological queries (e.g. a large
``min_hops``); when it trips, the paths found so far are returned.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple, Protocol

from skywire.cipher import PubKey
from skywire.routing.route import Hop, RouteQueryError
from skywire.services.rf.gcpause import collector_paused

__all__ = [
    "DEFAULT_MAX_EXPANSIONS",
    "DEFAULT_MAX_HOPS",
    "DEFAULT_ROUTE_COUNT",
    "MAX_ROUTE_COUNT",
    "TYPE_PENALTY_MS",
    "UNMEASURED_PENALTY_MS",
    "BadRequestError",
    "FoundRoute",
    "Graph",
    "NoRouteError",
    "RouteFinderError",
    "RouteNotFoundError",
    "StaticTransportSource",
    "TransportInfo",
    "TransportNotFoundError",
    "TransportSource",
    "Weights",
]

UNMEASURED_PENALTY_MS = 1000.0
"""Cost of a hop whose transport has no latency measurement (upstream ``HopLatencyPenaltyMS``
is UNVERIFIED; 1000 ms is the visor-side re-ranking's value for an unknown hop, PR #2782)."""

TYPE_PENALTY_MS: Mapping[str, float] = MappingProxyType(
    {
        "stcpr": 0.0,
        "squicr": 0.0,
        "sudph": 25.0,
        "stcp": 50.0,
        "wt": 150.0,
        "ws": 150.0,
        "webrtc": 300.0,
        "dmsg": 400.0,
    }
)
"""Per-hop penalty by transport type (skycoin/skywire PR #3983)."""

DEFAULT_ROUTE_COUNT = 5
"""Paths returned per requested edge pair ([2024] service: ``maxNumberOfRoutes = 5``)."""
MAX_ROUTE_COUNT = 20
DEFAULT_MAX_HOPS = 50
"""Used when a request leaves ``MaxHops`` at 0 (the [2024] visor always sends 50)."""
DEFAULT_MAX_EXPANSIONS = 20_000


class RouteFinderError(RouteQueryError):
    """A refusal of the route finder; ``code`` is the HTTP status it is answered with."""

    code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(RouteFinderError):
    code = 400


class TransportNotFoundError(RouteFinderError):
    """The source visor has no transport (upstream ``ErrTransportNotFound``)."""

    code = 404

    def __init__(self, message: str = "transport not found") -> None:
        super().__init__(message)


class NoRouteError(RouteFinderError):
    """The source or destination is not in the graph (upstream ``ErrNoRoute``)."""

    code = 404

    def __init__(self, message: str = "no route to destination") -> None:
        super().__init__(message)


class RouteNotFoundError(RouteFinderError):
    """No path within the hop bounds (upstream ``ErrRouteNotFound``)."""

    code = 404

    def __init__(self, message: str = "route not found") -> None:
        super().__init__(message)


class TransportInfo(NamedTuple):
    """What the route finder needs of a transport discovery entry (a named tuple: a rebuild
    makes 500,000 of them: 0.19 s where a frozen dataclass took 0.42 s)."""

    id: uuid.UUID
    edges: tuple[PubKey, PubKey]
    type: str
    latency_ms: float | None = None
    """Measured latency ([2026] TPD overlay); ``None`` when unmeasured."""


class TransportSource(Protocol):
    """Where the graph comes from (the TPD store or client, or a fixed list in tests).

    ``version`` is an int that changes whenever what :meth:`all_transports` returns may have
    changed (equal versions: equal transports, no rebuild needed), or None when the source
    cannot tell (every refresh rebuilds)."""

    @property
    def version(self) -> int | None: ...

    async def all_transports(self) -> list[TransportInfo]: ...


class StaticTransportSource:
    """A :class:`TransportSource` over a list that the caller may replace or mutate."""

    version: int | None = None  # the list may change under it unannounced

    def __init__(self, transports: Iterable[TransportInfo] = ()) -> None:
        self.transports = list(transports)
        self.calls = 0

    async def all_transports(self) -> list[TransportInfo]:
        self.calls += 1
        return list(self.transports)


@dataclass(frozen=True)
class Weights:
    """Cost model of the latency-weighted order."""

    unmeasured_penalty_ms: float = UNMEASURED_PENALTY_MS
    type_penalty_ms: Mapping[str, float] = field(default_factory=lambda: TYPE_PENALTY_MS)
    unknown_type_penalty_ms: float = TYPE_PENALTY_MS["dmsg"]
    """Penalty of a type missing from :attr:`type_penalty_ms` (the highest listed)."""

    def edge_cost(self, tp: TransportInfo) -> float:
        latency = tp.latency_ms
        if latency is None or latency != latency or latency < 0:  # None, NaN, negative
            base = self.unmeasured_penalty_ms
        else:
            base = float(latency)
        return base + self.type_penalty_ms.get(tp.type, self.unknown_type_penalty_ms)


@dataclass(frozen=True, slots=True)
class FoundRoute:
    hops: tuple[Hop, ...]
    cost: float
    """The ranking cost: ms in the weighted order, hops in the hop-count order."""
    latency_ms: float | None
    """Sum of the hops' measured latencies; ``None`` if any hop is unmeasured."""


# Adjacency entry: (neighbour index, cost, transport index). Tuples of atoms only, so that the
# garbage collector stops tracking them: a full collection then skips the 100k-edge adjacency.
_Adj = tuple[tuple[tuple[int, float, int], ...], ...]
# A path prefix as a linked list: (node, transport index of the hop into node, parent).
_Chain = tuple[int, int, "_Chain | None"]

_INF = float("inf")


class Graph:
    """An immutable snapshot of the transport graph with precomputed adjacency."""

    def __init__(
        self,
        pks: list[bytes],
        index: dict[bytes, int],
        tp_ids: list[int],
        tp_latency: list[float | None],
        adj_weighted: _Adj,
        hop_choice: dict[tuple[int, int], int],
        weights: Weights,
        w_min: float | None = None,
    ) -> None:
        # Plain bytes/ints/floats only (no PubKey/UUID objects): the collector does not track
        # them, so a full collection does not have to walk a 50,000-transport graph.
        self._pks = pks
        self._index = index
        self._tp_ids = tp_ids
        self._tp_latency = tp_latency
        self._adj_w = adj_weighted
        # The hop-count order's adjacency is the weighted one with every cost 1 and, for the
        # pairs listed in ``hop_choice``, the first listed transport instead of the cheapest;
        # it is made on the first hop-count query (most graphs never see one).
        self._hop_choice = hop_choice
        self._adj_h: _Adj | None = None
        if w_min is None:  # the cheapest edge's cost (the builder knows it already)
            w_min = min((c for row in adj_weighted for _, c, _ in row), default=0.0)
        self._w_min = w_min
        self.weights = weights

    @classmethod
    def build(cls, transports: Iterable[TransportInfo], weights: Weights | None = None) -> Graph:
        with collector_paused():
            return cls._build(transports, weights if weights is not None else Weights())

    @classmethod
    def _build(cls, transports: Iterable[TransportInfo], weights: Weights) -> Graph:
        pks: list[bytes] = []
        index: dict[bytes, int] = {}
        tp_ids: list[int] = []
        tp_latency: list[float | None] = []
        # unordered pair -> [weighted cost, weighted transport, hop-order transport]
        pairs: dict[tuple[int, int], list[float | int]] = {}
        seen: set[int] = set()
        edge_cost = weights.edge_cost
        for tp in transports:
            tid = tp.id.int
            if tid in seen:
                continue
            seen.add(tid)
            edge_a, edge_b = tp.edges
            raw = edge_a.raw
            a = index.get(raw)
            if a is None:
                a = index[raw] = len(pks)
                pks.append(raw)
            raw = edge_b.raw
            b = index.get(raw)
            if b is None:
                b = index[raw] = len(pks)
                pks.append(raw)
            if a == b:  # a self-transport is listed in TPD but is no hop
                continue
            ti = len(tp_ids)
            tp_ids.append(tid)
            lat = tp.latency_ms
            tp_latency.append(None if lat is None else float(lat))
            cost = edge_cost(tp)
            key = (a, b) if a < b else (b, a)
            cur = pairs.get(key)
            if cur is None:
                pairs[key] = [cost, ti, ti]
            elif cost < cur[0]:
                cur[0], cur[1] = cost, ti
        rows_w: list[list[tuple[int, float, int]]] = [[] for _ in pks]
        hop_choice: dict[tuple[int, int], int] = {}
        for (a, b), (cost, wti, hti) in pairs.items():
            c, wt = float(cost), int(wti)
            rows_w[a].append((b, c, wt))
            rows_w[b].append((a, c, wt))
            if hti != wti:
                hop_choice[(a, b)] = int(hti)
        adj_w = tuple(tuple(row) for row in rows_w)
        w_min = min((float(v[0]) for v in pairs.values()), default=0.0)
        return cls(pks, index, tp_ids, tp_latency, adj_w, hop_choice, weights, w_min)

    def _hop_adjacency(self) -> _Adj:
        adj = self._adj_h
        if adj is None:
            choice = self._hop_choice
            adj = self._adj_h = tuple(
                tuple((n, 1.0, choice.get((a, n) if a < n else (n, a), ti)) for n, _, ti in row)
                for a, row in enumerate(self._adj_w)
            )
        return adj

    @property
    def node_count(self) -> int:
        return len(self._pks)

    @property
    def transport_count(self) -> int:
        """Transports usable as hops (self-transports and repeated IDs left out)."""
        return len(self._tp_ids)

    def __contains__(self, pk: object) -> bool:
        return isinstance(pk, PubKey) and pk.raw in self._index

    def degree(self, pk: PubKey) -> int:
        """Distinct neighbours of ``pk`` (0 if unknown)."""
        i = self._index.get(pk.raw)
        return 0 if i is None else len(self._adj_w[i])

    def find_routes(
        self,
        src: PubKey,
        dst: PubKey,
        *,
        min_hops: int = 0,
        max_hops: int = DEFAULT_MAX_HOPS,
        count: int = DEFAULT_ROUTE_COUNT,
        weighted: bool = True,
        max_expansions: int = DEFAULT_MAX_EXPANSIONS,
    ) -> list[FoundRoute]:
        """The ``count`` best simple paths from ``src`` to ``dst``, best first.

        ``src == dst`` asks for cycles through other visors (the "ping route"). Raises
        :class:`TransportNotFoundError` when ``src`` has no transport, :class:`NoRouteError`
        when ``dst`` is not in the graph and :class:`RouteNotFoundError` when no path fits.
        """
        s = self._index.get(src.raw)
        if s is None:
            raise TransportNotFoundError()
        d = self._index.get(dst.raw)
        if d is None:
            raise NoRouteError()
        if count <= 0 or max_hops < 1 or max_hops < min_hops:
            raise RouteNotFoundError()
        adj = self._adj_w if weighted else self._hop_adjacency()
        w_min = self._w_min if weighted else 1.0
        found = _k_best_paths(adj, s, d, max(min_hops, 1), max_hops, count, max_expansions, w_min)
        if not found:
            raise RouteNotFoundError()
        return [self._route(cost, chain) for cost, chain in found]

    def _route(self, cost: float, chain: _Chain) -> FoundRoute:
        steps: list[tuple[int, int]] = []
        link: _Chain | None = chain
        while link is not None and link[2] is not None:
            steps.append((link[0], link[1]))
            link = link[2]
        steps.reverse()
        hops: list[Hop] = []
        latency: float | None = 0.0
        prev = link[0] if link is not None else chain[0]
        for node, ti in steps:
            tp_id = uuid.UUID(int=self._tp_ids[ti])
            hops.append(Hop(tp_id, PubKey(self._pks[prev]), PubKey(self._pks[node])))
            if latency is not None:
                hop_latency = self._tp_latency[ti]
                latency = None if hop_latency is None else latency + hop_latency
            prev = node
        return FoundRoute(tuple(hops), cost, latency)


def _k_best_paths(
    adj: _Adj,
    src: int,
    dst: int,
    min_hops: int,
    max_hops: int,
    count: int,
    max_expansions: int,
    w_min: float,
) -> list[tuple[float, _Chain]]:
    heappush = heapq.heappush
    heappop = heapq.heappop

    # Lazy reverse Dijkstra from dst: settled distances and the frontier heap.
    rdist: dict[int, float] = {}
    rtent: dict[int, float] = {dst: 0.0}
    rheap: list[tuple[float, int]] = [(0.0, dst)]

    def frontier() -> float:
        """A lower bound on the distance to dst of every node not yet settled."""
        while rheap and rheap[0][1] in rdist:
            heappop(rheap)
        return rheap[0][0] if rheap else _INF

    def settle_one() -> None:
        dd, u = heappop(rheap)
        rdist[u] = dd
        for v, c, _ in adj[u]:
            nd = dd + c
            if v not in rdist and nd < rtent.get(v, _INF):
                rtent[v] = nd
                heappush(rheap, (nd, v))

    def bound(node: int, hops: int) -> float:
        hv = rdist.get(node)
        if hv is None:
            hv = frontier()
        need = min_hops - hops
        if need > 1 and need * w_min > hv:
            return need * w_min
        return hv

    results: list[tuple[float, _Chain]] = []
    root: _Chain = (src, -1, None)
    seq = 0
    # entries: (f, -g, seq, g, hops, chain); complete paths carry hops with chain[0] == dst
    fheap: list[tuple[float, float, int, float, int, _Chain]] = [(0.0, 0.0, 0, 0.0, 0, root)]
    expansions = 0
    while fheap:
        top = fheap[0]
        node = top[5][0]
        g = top[3]
        if node not in rdist and (node != dst or top[4] == 0):
            fr = frontier()
            if fr <= g and fr != _INF and len(rdist) <= expansions + 8:
                settle_one()  # the reverse search lags the forward one: advance it
                continue
        f, _, _, g, hops, chain = heappop(fheap)
        if node == dst and hops > 0:
            results.append((g, chain))
            if len(results) >= count:
                break
            continue
        lb = bound(node, hops)
        if lb == _INF:
            continue  # dst is unreachable from here
        nf = g + lb
        if nf > f + 1e-9 * (1.0 + f):
            seq += 1
            heappush(fheap, (nf, -g, seq, g, hops, chain))  # the bound rose: requeue
            continue
        expansions += 1
        if expansions > max_expansions:
            break
        if hops >= max_hops:
            continue
        nh = hops + 1
        only_dst = nh == max_hops
        for v, c, ti in adj[node]:
            ng = g + c
            if v == dst:
                if nh >= min_hops:
                    seq += 1
                    heappush(fheap, (ng, -ng, seq, ng, nh, (v, ti, chain)))
                continue
            if only_dst:
                continue
            link: _Chain | None = chain
            while link is not None:
                if link[0] == v:
                    break
                link = link[2]
            else:
                hv = bound(v, nh)
                if hv != _INF:
                    seq += 1
                    heappush(fheap, (ng + hv, -ng, seq, ng, nh, (v, ti, chain)))
    return results
