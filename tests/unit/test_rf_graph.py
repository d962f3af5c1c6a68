"""Route finder ranking: latency-weighted and hop-count orders, hop bounds, no repeated visor."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywire.cipher import PubKey
from skywire.services.rf.graph import (
    TYPE_PENALTY_MS,
    UNMEASURED_PENALTY_MS,
    FoundRoute,
    Graph,
    NoRouteError,
    RouteNotFoundError,
    TransportInfo,
    TransportNotFoundError,
    Weights,
)


def pk(i: int) -> PubKey:
    return PubKey(b"\x02" + i.to_bytes(32, "big"))


_ids = itertools.count(1)


def tp(a: int, b: int, latency: float | None = None, kind: str = "stcpr") -> TransportInfo:
    return TransportInfo(uuid.UUID(int=next(_ids)), (pk(a), pk(b)), kind, latency)


def visors(route: FoundRoute) -> list[int]:
    path = [route.hops[0].src] + [h.dst for h in route.hops]
    return [int.from_bytes(p.raw[1:], "big") for p in path]


def check_route(graph_tps: list[TransportInfo], route: FoundRoute) -> None:
    by_id = {t.id: t for t in graph_tps}
    for prev, hop in itertools.pairwise(route.hops):
        assert prev.dst == hop.src
    for hop in route.hops:
        assert {hop.src, hop.dst} == set(by_id[hop.tp_id].edges)


def test_three_hops_at_300_ms_beat_two_hops_at_800_ms() -> None:
    tps = [
        tp(1, 2, 400), tp(2, 9, 400),  # 2 hops, 800 ms
        tp(1, 3, 100), tp(3, 4, 100), tp(4, 9, 100),  # 3 hops, 300 ms
    ]  # fmt: skip
    graph = Graph.build(tps)
    weighted = graph.find_routes(pk(1), pk(9))
    assert [visors(r) for r in weighted] == [[1, 3, 4, 9], [1, 2, 9]]
    assert [r.cost for r in weighted] == [300.0, 800.0]
    assert [r.latency_ms for r in weighted] == [300.0, 800.0]
    by_hops = graph.find_routes(pk(1), pk(9), weighted=False)
    assert [visors(r) for r in by_hops] == [[1, 2, 9], [1, 3, 4, 9]]
    assert [r.cost for r in by_hops] == [2.0, 3.0]
    for r in weighted + by_hops:
        check_route(tps, r)


def test_an_unmeasured_hop_loses_to_an_equal_measured_one() -> None:
    tps = [tp(1, 2, None), tp(2, 9, 100), tp(1, 3, 100), tp(3, 9, 100)]
    routes = Graph.build(tps).find_routes(pk(1), pk(9))
    assert [visors(r) for r in routes] == [[1, 3, 9], [1, 2, 9]]
    assert routes[1].cost == UNMEASURED_PENALTY_MS + 100
    assert routes[1].latency_ms is None


def test_unmeasured_graph_falls_back_to_hop_count_order() -> None:
    tps = [tp(1, 2), tp(2, 3), tp(3, 9), tp(1, 4), tp(4, 9), tp(1, 9)]
    graph = Graph.build(tps)
    weighted = [visors(r) for r in graph.find_routes(pk(1), pk(9))]
    hops = [visors(r) for r in graph.find_routes(pk(1), pk(9), weighted=False)]
    assert weighted == hops == [[1, 9], [1, 4, 9], [1, 2, 3, 9]]


def test_transport_type_penalties() -> None:
    assert TYPE_PENALTY_MS["stcpr"] == 0 and TYPE_PENALTY_MS["dmsg"] == 400
    tps = [
        tp(1, 2, 10, "dmsg"), tp(2, 9, 10, "stcpr"),
        tp(1, 3, 10, "sudph"), tp(3, 9, 10, "stcp"),
        tp(1, 4, 300, "stcpr"), tp(4, 9, 90, "stcpr"),
    ]  # fmt: skip
    routes = Graph.build(tps).find_routes(pk(1), pk(9))
    assert [(visors(r), r.cost) for r in routes] == [
        ([1, 3, 9], 10 + 25 + 10 + 50),
        ([1, 4, 9], 390),
        ([1, 2, 9], 10 + 400 + 10),
    ]
    custom = Weights(type_penalty_ms={"dmsg": 0.0}, unknown_type_penalty_ms=1000.0)
    cheap_dmsg = Graph.build(tps, custom).find_routes(pk(1), pk(9))
    assert visors(cheap_dmsg[0]) == [1, 2, 9]


def test_cheapest_parallel_transport_is_used_and_self_transports_ignored() -> None:
    slow, fast, first = tp(1, 2, 500), tp(2, 1, 5), tp(1, 2, 900)
    tps = [first, slow, fast, tp(1, 1, 0)]
    graph = Graph.build(tps)
    assert graph.transport_count == 3
    assert graph.find_routes(pk(1), pk(2))[0].hops[0].tp_id == fast.id
    assert graph.find_routes(pk(1), pk(2), weighted=False)[0].hops[0].tp_id == first.id
    assert len(graph.find_routes(pk(1), pk(2))) == 1  # one transport per visor pair


def test_min_and_max_hops_are_honoured() -> None:
    tps = [tp(1, 9, 1), tp(1, 2, 1), tp(2, 9, 1), tp(2, 3, 1), tp(3, 9, 1)]
    graph = Graph.build(tps)
    assert [len(r.hops) for r in graph.find_routes(pk(1), pk(9))] == [1, 2, 3]
    assert [len(r.hops) for r in graph.find_routes(pk(1), pk(9), min_hops=2)] == [2, 3]
    assert [len(r.hops) for r in graph.find_routes(pk(1), pk(9), min_hops=3)] == [3]
    assert [len(r.hops) for r in graph.find_routes(pk(1), pk(9), max_hops=2)] == [1, 2]
    with pytest.raises(RouteNotFoundError):
        graph.find_routes(pk(1), pk(9), min_hops=4)
    with pytest.raises(RouteNotFoundError):
        graph.find_routes(pk(1), pk(9), min_hops=3, max_hops=2)
    assert len(graph.find_routes(pk(1), pk(9), count=2)) == 2


def test_no_visor_is_repeated() -> None:
    # a cheap loop 2-3-4-2 must not be used to pad a path up to min_hops
    tps = [tp(1, 2, 1), tp(2, 3, 1), tp(3, 4, 1), tp(4, 2, 1), tp(2, 9, 1)]
    graph = Graph.build(tps)
    routes = graph.find_routes(pk(1), pk(9), count=10)
    assert [visors(r) for r in routes] == [[1, 2, 9]]
    with pytest.raises(RouteNotFoundError):
        graph.find_routes(pk(1), pk(9), min_hops=3)


def test_errors() -> None:
    graph = Graph.build([tp(1, 2, 1), tp(3, 4, 1)])
    with pytest.raises(TransportNotFoundError) as info:
        graph.find_routes(pk(7), pk(1))
    assert (str(info.value), info.value.code) == ("transport not found", 404)
    with pytest.raises(NoRouteError, match="no route to destination"):
        graph.find_routes(pk(1), pk(7))
    with pytest.raises(RouteNotFoundError, match="route not found"):
        graph.find_routes(pk(1), pk(4))


def test_route_to_self_is_a_cycle_through_other_visors() -> None:
    graph = Graph.build([tp(1, 2, 10), tp(2, 3, 10), tp(3, 1, 10)])
    routes = graph.find_routes(pk(1), pk(1), max_hops=2)
    assert [visors(r) for r in routes] == [[1, 2, 1], [1, 3, 1]]
    longer = graph.find_routes(pk(1), pk(1), min_hops=3)
    assert sorted(visors(r) for r in longer) == [[1, 2, 3, 1], [1, 3, 2, 1]]


# -- property: the results are exactly the cheapest simple paths ----------------------------


def brute_force(
    n: int, edges: dict[tuple[int, int], float], src: int, dst: int, lo: int, hi: int
) -> Iterator[tuple[float, list[int]]]:
    adj: dict[int, list[tuple[int, float]]] = {i: [] for i in range(n)}
    for (a, b), c in edges.items():
        adj[a].append((b, c))
        adj[b].append((a, c))

    def walk(path: list[int], cost: float) -> Iterator[tuple[float, list[int]]]:
        hops = len(path) - 1
        if hops >= hi:
            return
        for v, c in adj[path[-1]]:
            if v == dst:
                if hops + 1 >= lo:
                    yield cost + c, [*path, v]
            elif v not in path:
                yield from walk([*path, v], cost + c)

    yield from walk([src], 0.0)


graphs = st.integers(3, 8).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.dictionaries(
            st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
            st.one_of(st.none(), st.integers(0, 500)),
            max_size=n * 3,
        ),
        st.integers(0, n - 1),
        st.integers(0, n - 1),
        st.integers(0, 4),
        st.integers(1, 6),
        st.integers(1, 6),
        st.booleans(),
    )
)


@settings(max_examples=300, deadline=None)
@given(graphs)
def test_results_are_the_cheapest_simple_paths(
    case: tuple[int, dict[tuple[int, int], int | None], int, int, int, int, int, bool],
) -> None:
    n, latencies, src, dst, lo, hi, count, weighted = case
    tps = [tp(a, b, lat) for (a, b), lat in latencies.items()]
    graph = Graph.build(tps)
    weights = Weights()
    costs = {
        e: (weights.edge_cost(t) if weighted else 1.0) for e, t in zip(latencies, tps, strict=True)
    }
    expected = sorted(c for c, _ in brute_force(n, costs, src, dst, max(lo, 1), hi))[:count]
    try:
        routes = graph.find_routes(
            pk(src), pk(dst), min_hops=lo, max_hops=hi, count=count, weighted=weighted
        )
    except (TransportNotFoundError, NoRouteError, RouteNotFoundError):
        routes = []
    assert [r.cost for r in routes] == pytest.approx(expected)
    for r in routes:
        check_route(tps, r)
        path = visors(r)
        assert path[0] == src and path[-1] == dst
        inner = path[:-1] if src == dst else path
        assert len(set(inner)) == len(inner)  # no repeated visor
        assert max(lo, 1) <= len(r.hops) <= hi
