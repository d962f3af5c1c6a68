"""The [2026] churn-tolerance rules of route setup (spec §4.4), each with its own fault injector,
and a churn run: 100 route setups on a 6-visor network with 202s on hop dials, killed pooled
connections and an intermediary restarted, every failure classified in ``/stats``."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from skywire.cipher import PubKey
from skywire.dmsg.errors import DmsgError, ErrorCode
from skywire.dmsg.http import fetch
from skywire.router import RouteDialError
from skywire.routing.packet import PacketType
from skywire.wire.stream import ByteStream
from tests.integration.test_router import RouteNet

pytestmark = pytest.mark.timeout(60)

Dial = Callable[[PubKey, int], Awaitable[ByteStream]]


class KillableStream:
    """A dialled stream that can die silently: writes fail, reads never return again — the
    connection is only found dead when it is used (as after a dropped dmsg session)."""

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.dead = False

    async def read(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.read(max_bytes)
        if self.dead:
            await asyncio.Event().wait()
        return data

    async def readexactly(self, n: int) -> bytes:
        return await self.inner.readexactly(n)

    async def write(self, data: bytes) -> None:
        if self.dead:
            raise ConnectionResetError("connection reset by peer")
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()


class Faults:
    """Wraps the setup node's dial: per-PK scripted failures, counting every attempt; every
    stream it hands out can be killed silently."""

    def __init__(self) -> None:
        self.attempts: Counter[PubKey] = Counter()
        self.script: dict[PubKey, Callable[[int], Awaitable[None]]] = {}
        self.any_dial: Callable[[PubKey, int], Awaitable[None]] | None = None
        self.streams: dict[PubKey, list[KillableStream]] = {}

    def kill(self, pk: PubKey) -> int:
        n = 0
        for stream in self.streams.get(pk, []):
            if not stream.dead:
                stream.dead = True
                n += 1
        return n

    def wrap(self, dial: Dial) -> Dial:
        async def wrapped(pk: PubKey, port: int) -> ByteStream:
            self.attempts[pk] += 1
            if self.any_dial is not None:
                await self.any_dial(pk, self.attempts[pk])
            step = self.script.get(pk)
            if step is not None:
                await step(self.attempts[pk])
            stream = KillableStream(await dial(pk, port))
            self.streams.setdefault(pk, []).append(stream)
            return stream

        return wrapped


def fail_202(times: int) -> Callable[[int], Awaitable[None]]:
    async def step(attempt: int) -> None:
        if attempt <= times:
            raise DmsgError(ErrorCode.CANNOT_CONNECT_TO_DELEGATED, "injected")

    return step


LINE = [(0, 1), (1, 2), (2, 3)]
# 0─1─3 (2 hops) is preferred over 0─2─4─3 (3 hops)
DETOUR = [(0, 1), (1, 3), (0, 2), (2, 4), (4, 3)]


async def test_hop_dial_202_is_retried_with_fresh_dials() -> None:
    faults = Faults()
    async with RouteNet(4, LINE, rsn_dial_wrapper=faults.wrap) as net:
        hop = net.nodes[2].pk
        faults.script[hop] = fail_202(2)
        listener = await net.nodes[3].router.listen(5)
        rg = await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        peer = await listener.accept()
        assert faults.attempts[hop] == 3  # two 202s, then the third full dial got through
        stats = net.rsn_node.stats.snapshot()
        assert stats["retries"]["dial_202"] == 2 and stats["failures"] == 0
        await rg.close()
        await peer.wait_closed()


async def test_hop_dial_202_gives_up_after_three_attempts() -> None:
    faults = Faults()
    async with RouteNet(4, LINE, rsn_dial_wrapper=faults.wrap, setup_attempts=1) as net:
        hop = net.nodes[1].pk
        faults.script[hop] = fail_202(100)
        await net.nodes[3].router.listen(5)
        with pytest.raises(RouteDialError, match=hop.hex()):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        assert faults.attempts[hop] == 3
        stats = net.rsn_node.stats.snapshot()
        assert stats["failures_by_class"]["id_reservation"] == 1
        assert net.rule_counts() == [0, 0, 0, 0]


async def test_a_hop_that_just_failed_every_attempt_gets_one_try_for_a_while() -> None:
    """The set-ups that meet a dead visor right after one paid the whole backoff for it fail
    at once (one attempt each) and so are re-planned at once; when it answers again, it gets
    the full retries again."""
    faults = Faults()
    async with RouteNet(4, LINE, rsn_dial_wrapper=faults.wrap, setup_attempts=1) as net:
        hop = net.nodes[1].pk
        faults.script[hop] = fail_202(4)
        await net.nodes[3].router.listen(5)
        with pytest.raises(RouteDialError, match=hop.hex()):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        assert faults.attempts[hop] == 3
        assert net.rsn_node.pool.recently_unreachable(hop)
        with pytest.raises(RouteDialError, match=r"attempts: 1\b"):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        assert faults.attempts[hop] == 4
        assert net.rsn_node.stats.dial_retries == 2  # only the first set-up retried
        # the fifth attempt gets through: the visor is forgiven at once
        rg = await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        assert faults.attempts[hop] == 5
        assert not net.rsn_node.pool.recently_unreachable(hop)
        await rg.close()


async def test_non_retryable_dial_error_returns_at_once() -> None:
    faults = Faults()

    async def refuse(attempt: int) -> None:
        raise DmsgError(ErrorCode.REQ_NO_LISTENER, "injected")

    async with RouteNet(4, LINE, rsn_dial_wrapper=faults.wrap, setup_attempts=1) as net:
        hop = net.nodes[2].pk
        faults.script[hop] = refuse
        await net.nodes[3].router.listen(5)
        with pytest.raises(RouteDialError, match="306"):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        assert faults.attempts[hop] == 1
        assert net.rsn_node.stats.dial_retries == 0


async def test_cancellation_during_dial_backoff_returns_at_once() -> None:
    faults = Faults()
    first = asyncio.Event()

    async def step(attempt: int) -> None:
        first.set()
        raise DmsgError(ErrorCode.CANNOT_CONNECT_TO_DELEGATED, "injected")

    async with RouteNet(
        2, [(0, 1)], rsn_dial_wrapper=faults.wrap, rsn_kwargs={"dial_backoff": 3600}
    ) as net:
        hop = net.nodes[1].pk
        faults.script[hop] = step
        pool = net.rsn_node.pool
        assert pool is not None
        call = asyncio.ensure_future(pool.call(hop, "ReserveIDs", 1, None, None))
        await first.wait()
        call.cancel()
        async with asyncio.timeout(1):
            with pytest.raises(asyncio.CancelledError):
                await call
        assert faults.attempts[hop] == 1


async def test_one_hops_failure_does_not_cancel_the_others() -> None:
    faults = Faults()
    failed = asyncio.Event()

    async def fail_now(attempt: int) -> None:
        failed.set()
        raise DmsgError(ErrorCode.REQ_NO_LISTENER, "injected")

    async def after_failure(attempt: int) -> None:
        await failed.wait()  # still in flight when its sibling fails

    async with RouteNet(4, LINE, rsn_dial_wrapper=faults.wrap, setup_attempts=1) as net:
        faults.script[net.nodes[1].pk] = fail_now
        faults.script[net.nodes[2].pk] = after_failure
        await net.nodes[3].router.listen(5)
        with pytest.raises(RouteDialError, match=net.nodes[1].pk.hex()):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        # visor 2's reservation ran to completion after visor 1 had failed
        assert net.nodes[2].router.table.last_reserved == 2


async def test_each_hop_call_is_bounded_by_its_own_deadline() -> None:
    faults = Faults()

    async def hang(attempt: int) -> None:
        await asyncio.Event().wait()

    async with RouteNet(
        4,
        LINE,
        rsn_dial_wrapper=faults.wrap,
        rsn_kwargs={"call_timeout": 0.3, "request_timeout": 30},
        setup_attempts=1,
    ) as net:
        faults.script[net.nodes[2].pk] = hang
        await net.nodes[3].router.listen(5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(RouteDialError, match=net.nodes[2].pk.hex()):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        assert loop.time() - t0 < 5
        assert net.rsn_node.stats.failures["id_reservation"] == 1


async def test_intermediary_that_broke_id_reservation_is_excluded_on_retry() -> None:
    faults = Faults()

    async def refuse(attempt: int) -> None:
        raise DmsgError(ErrorCode.REQ_NO_LISTENER, "injected")

    async with RouteNet(5, DETOUR, rsn_dial_wrapper=faults.wrap) as net:
        bad = net.nodes[1].pk
        faults.script[bad] = refuse
        listener = await net.nodes[3].router.listen(5)
        rg = await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        peer = await listener.accept()
        assert rg.route is not None
        assert rg.route.intermediaries() == {net.nodes[2].pk, net.nodes[4].pk}
        assert net.nodes[0].router.stats.excluded == [bad]
        assert faults.attempts[bad] == 1
        await rg.write(b"ok")
        assert await peer.readexactly(2) == b"ok"
        await rg.close()
        await peer.wait_closed()
        assert net.rule_counts() == [0, 0, 0, 0, 0]


async def test_dials_after_a_hop_failure_do_not_pay_for_it_again() -> None:
    faults = Faults()

    async def refuse(attempt: int) -> None:
        raise DmsgError(ErrorCode.REQ_NO_LISTENER, "injected")

    async with RouteNet(5, DETOUR, rsn_dial_wrapper=faults.wrap) as net:
        bad = net.nodes[1].pk
        faults.script[bad] = refuse
        listener = await net.nodes[3].router.listen(5)
        router = net.nodes[0].router
        for _ in range(5):
            rg = await router.dial_routes(net.nodes[3].pk, 0, 5)
            peer = await listener.accept()
            assert rg.route is not None and bad not in rg.route.intermediaries()
            await rg.close()
            await peer.wait_closed()
        assert faults.attempts[bad] == 1  # only the first dial met it
        assert router.stats.setup_failures == 1
        # once the memory has expired, the preferred path is tried again
        router.failed_hops.forget(bad)
        faults.script.pop(bad)
        rg = await router.dial_routes(net.nodes[3].pk, 0, 5)
        peer = await listener.accept()
        assert rg.route is not None and rg.route.intermediaries() == {bad}
        await rg.close()
        await peer.wait_closed()


async def test_intermediaries_of_a_route_whose_handshake_failed_are_excluded() -> None:
    async with RouteNet(5, DETOUR, handshake_timeout=0.5, handshake_retransmit=0.1) as net:
        black_hole = net.nodes[1]
        inner = black_hole.tm.packet_handler
        assert inner is not None

        async def drop_handshakes(tp: Any, ptype: int, rid: int, payload: bytes) -> None:
            if ptype != PacketType.HANDSHAKE:
                await inner(tp, ptype, rid, payload)

        black_hole.tm.packet_handler = drop_handshakes
        listener = await net.nodes[3].router.listen(5)
        rg = await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
        peer = await listener.accept()
        assert rg.route is not None and black_hole.pk not in rg.route.intermediaries()
        assert net.nodes[0].router.stats.handshake_failures == 1
        assert net.nodes[0].router.stats.excluded == [black_hole.pk]
        await peer.write(b"ok")
        assert await rg.readexactly(2) == b"ok"
        await rg.close()
        await peer.wait_closed()
        # the failed attempt's rules were removed too (Close along what worked, then GC)
        assert net.rule_counts()[0] == 0 and net.rule_counts()[3] == 0


async def test_failed_intermediary_install_is_rolled_back() -> None:
    async with RouteNet(5, [(0, 1), (1, 2), (2, 3), (3, 4)], setup_attempts=1) as net:
        victim = net.nodes[3].router

        def refuse(rules: Any) -> None:
            raise ValueError("injected install failure")

        victim.add_intermediary_rules = refuse  # type: ignore[method-assign]
        await net.nodes[4].router.listen(5)
        with pytest.raises(RouteDialError, match="injected install failure"):
            await net.nodes[0].router.dial_routes(net.nodes[4].pk, 0, 5)
        # visors 1 and 2 had their intermediary rules installed: rolled back
        assert net.rule_counts() == [0, 0, 0, 0, 0]
        assert net.rsn_node.stats.failures["intermediary_rules"] == 1


async def test_dead_pooled_connection_is_redialled_once_on_use() -> None:
    faults = Faults()
    async with RouteNet(4, LINE, rsn_dial_wrapper=faults.wrap) as net:
        listener = await net.nodes[3].router.listen(5)
        pool = net.rsn_node.pool
        assert pool is not None

        async def one_route() -> None:
            rg = await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5)
            peer = await listener.accept()
            await rg.close()
            await peer.wait_closed()

        await one_route()
        hops = [n.pk for n in net.nodes]
        before = {pk: pool.clients[pk].client for pk in hops}
        for pk in hops:
            assert faults.kill(pk) == 1
        await one_route()  # every pooled connection was a corpse: found on use, re-dialled
        assert net.rsn_node.stats.stale_redials == 4
        assert all(pool.clients[pk].client is not before[pk] for pk in hops)
        assert all(faults.attempts[pk] == 2 for pk in hops)
        assert net.rsn_node.stats.failures.total() == 0

        # A hop that is really gone still fails, after exactly one re-dial.
        faults.kill(net.nodes[2].pk)
        await net.nodes[2].router.close()
        with pytest.raises(RouteDialError, match=net.nodes[2].pk.hex()):
            await net.nodes[0].router.dial_routes(net.nodes[3].pk, 0, 5, min_hops=3)
        assert net.rsn_node.stats.stale_redials == 5
        assert faults.attempts[net.nodes[2].pk] == 3
        assert net.rsn_node.stats.failures["id_reservation"] >= 1


RING = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 3), (1, 4)]


async def churn_run(setups: int, seed: int = 7, *, verbose: bool = True) -> dict[str, Any]:
    """``setups`` route setups between random visor pairs under injected churn; returns the
    setup node's ``/stats`` (fetched over dmsghttp)."""
    rnd = random.Random(seed)
    faults = Faults()

    async def flaky(pk: PubKey, attempt: int) -> None:
        if rnd.random() < 0.08:
            raise DmsgError(ErrorCode.CANNOT_CONNECT_TO_DELEGATED, "injected churn")

    faults.any_dial = flaky
    async with RouteNet(6, RING, rsn_dial_wrapper=faults.wrap, handshake_timeout=3.0) as net:
        listeners = [await n.router.listen(9) for n in net.nodes]
        ok = 0
        errors: list[str] = []
        for i in range(setups):
            if i and i % 10 == 0:
                for node in net.nodes:
                    if rnd.random() < 0.5:
                        faults.kill(node.pk)
            if i == setups // 2:
                restarted = await net.restart_router(rnd.choice([1, 4]))
                listeners[
                    net.nodes.index(next(n for n in net.nodes if n.router is restarted))
                ] = await restarted.listen(9)
            src, dst = rnd.sample(range(6), 2)
            try:
                rg = await net.nodes[src].router.dial_routes(
                    net.nodes[dst].pk, 0, 9, min_hops=rnd.choice([1, 2])
                )
            except RouteDialError as exc:
                errors.append(str(exc))
                continue
            peer = await listeners[dst].accept()
            await rg.write(b"ping %d" % i)
            assert await peer.readexactly(len(b"ping %d" % i)) == b"ping %d" % i
            await rg.close()
            await peer.wait_closed()
            ok += 1
        client = net.nodes[0].dmsg
        rsn_pk = net.rsn_node.pk
        assert rsn_pk is not None
        resp = await fetch(client.dial, f"dmsg://{rsn_pk.hex()}:80/stats")
        assert resp.status_code == 200
        stats: dict[str, Any] = json.loads(resp.content)
        if verbose:
            print(
                f"\nchurn run: {ok}/{setups} dials succeeded ({ok / setups:.1%}); setup node: "
                f"{stats['successes']}/{stats['requests']} setups "
                f"(success rate {stats['success_rate']:.2%}), "
                f"failures {stats['failures_by_class']}, retries {stats['retries']}, "
                f"latency ms {stats['latency_ms']}"
            )
        stats["dial_success_rate"] = ok / setups
        stats["dial_errors"] = errors
        assert net.rule_counts() == [0] * 6
        return stats


async def test_churn_run_100_setups() -> None:
    stats = await churn_run(100)
    assert stats["dial_success_rate"] >= 0.99, stats["dial_errors"]
    by_class = stats["failures_by_class"]
    assert sum(by_class.values()) == stats["failures"]
    assert by_class["unknown"] == 0
    assert stats["retries"]["dial_202"] > 0
    assert stats["retries"]["stale_connection"] > 0
