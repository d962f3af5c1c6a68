"""Sans-I/O cores of route groups and route setup: the route handshake, keep-alive/ping timers,
setup statistics, stale-connection classification — time passed in, no sockets, no sleeps."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from skywire.cipher import KeyPair
from skywire.router.route_group import RouteHandshake, RouteTimers, TimerAction
from skywire.router.setup_client import BidirectionalRoute, pks_in_text
from skywire.routing.packet import Capability, Handshake, make_handshake, parse_handshake
from skywire.routing.route import Hop
from skywire.routing.rule import RouteDescriptor
from skywire.services.rsn.pool import HopDialError, is_stale_connection_error
from skywire.services.rsn.stats import FailureClass, SetupStats, percentile
from skywire.wire.netrpc import RPCConnectionShutdown, RPCServerError

PEER = Handshake(encrypt=True, capabilities=Capability.NONE, legacy=False)


def test_initiator_sends_at_once_and_retransmits_until_answered() -> None:
    hs = RouteHandshake(initiator=True, encrypt=True, now=0.0, timeout=10, retransmit=1)
    (payload,) = hs.packets_to_send()
    # [2026] form: encryption flag, then the capability bitmap little-endian (0: legacy types)
    assert payload == b"\x01\x00\x00"
    assert parse_handshake(make_handshake(0, True, Capability.NONE)).encrypt
    assert hs.get_timer() == 1.0
    hs.handle_timer(1.0)
    assert hs.packets_to_send() == [payload]
    assert hs.get_timer() == 2.0
    hs.handle_timer(1.5)  # early: nothing
    assert hs.packets_to_send() == []
    hs.receive(PEER, 2.2)
    assert hs.done and hs.encrypted and hs.get_timer() is None
    assert hs.sent == 2


def test_missing_handshake_fails_instead_of_downgrading() -> None:
    hs = RouteHandshake(initiator=True, encrypt=True, now=0.0, timeout=3, retransmit=1)
    hs.packets_to_send()
    for t in (1.0, 2.0):
        hs.handle_timer(t)
    assert len(hs.packets_to_send()) == 2
    hs.handle_timer(3.0)
    assert hs.failed and not hs.done and not hs.encrypted
    assert hs.packets_to_send() == []
    hs.receive(PEER, 3.1)  # too late: stays failed
    assert hs.failed and not hs.done


def test_responder_answers_every_handshake() -> None:
    hs = RouteHandshake(initiator=False, encrypt=True, now=0.0, timeout=10)
    assert hs.packets_to_send() == [] and hs.get_timer() == 10.0
    hs.receive(PEER, 0.5)
    assert hs.done and len(hs.packets_to_send()) == 1
    hs.receive(PEER, 1.5)  # the initiator retransmitted: ours was lost, answer again
    assert len(hs.packets_to_send()) == 1


def test_plaintext_when_either_side_declines() -> None:
    hs = RouteHandshake(initiator=True, encrypt=True, now=0.0)
    hs.receive(Handshake(encrypt=False, capabilities=Capability.NONE, legacy=True), 0.1)
    assert hs.done and not hs.encrypted
    hs2 = RouteHandshake(initiator=False, encrypt=False, now=0.0)
    hs2.receive(PEER, 0.1)
    assert hs2.done and not hs2.encrypted and hs2.packets_to_send() == [b"\x00\x00\x00"]


def test_timers_keepalive_only_when_idle_and_pings_on_schedule() -> None:
    t = RouteTimers(keep_alive_interval=15, ping_interval=0, now=0.0)
    assert t.get_timer() == 15
    t.on_sent(10.0)  # data went out: the keep-alive moves
    assert t.get_timer() == 25
    assert t.handle_timer(24.9) == []
    assert t.handle_timer(25.0) == [TimerAction.KEEP_ALIVE]
    assert t.get_timer() == 40
    p = RouteTimers(keep_alive_interval=15, ping_interval=3, now=0.0)
    assert p.get_timer() == 3
    assert p.handle_timer(3.0) == [TimerAction.PING]
    assert p.get_timer() == 6  # the ping counts as traffic: no keep-alive needed
    with pytest.raises(ValueError):
        RouteTimers(0, 3, 0.0)


def test_stats_rates_classes_and_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == 4.0
    s = SetupStats()
    for i in range(98):
        s.started()
        s.succeeded(0.001 * (i + 1))
    s.started()
    s.failed(FailureClass.ID_RESERVATION, 0.5, "connection is shut down")
    s.started()
    s.failed(FailureClass.CONTEXT_DEADLINE, 30.0, "deadline")
    snap = s.snapshot()
    assert snap["requests"] == 100 and snap["successes"] == 98 and snap["failures"] == 2
    assert snap["success_rate"] == 0.98 and snap["in_flight"] == 0
    assert snap["failures_by_class"]["id_reservation"] == 1
    assert snap["failures_by_class"]["context_deadline"] == 1
    assert snap["latency_ms"]["p50"] == 50.0 and snap["latency_ms"]["max"] == 30000.0


def test_stale_connection_errors_are_recognised() -> None:
    pk = KeyPair.generate().pk
    assert is_stale_connection_error(RPCConnectionShutdown())
    assert is_stale_connection_error(EOFError())
    assert is_stale_connection_error(asyncio.IncompleteReadError(b"", 7))
    assert is_stale_connection_error(ConnectionResetError("reset"))
    assert is_stale_connection_error(OSError("use of closed network connection"))
    assert not is_stale_connection_error(RPCServerError("failure code 4 (connection closed)"))
    assert not is_stale_connection_error(TimeoutError())
    assert not is_stale_connection_error(HopDialError(pk, EOFError(), 1))
    assert not is_stale_connection_error(ValueError("bad rule"))


def test_route_checks_and_named_keys() -> None:
    a, b, c = (KeyPair.generate().pk for _ in range(3))
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    desc = RouteDescriptor(a, b, 49152, 3)
    good = BidirectionalRoute(
        desc, 1, (Hop(t1, a, c), Hop(t2, c, b)), (Hop(t2, b, c), Hop(t1, c, a))
    )
    good.check()
    assert good.intermediaries() == {c}
    for fwd, rev in [
        ((), good.reverse),
        ((Hop(t1, c, b),), good.reverse),
        (good.forward, (Hop(t2, b, c),)),
        ((Hop(t1, a, c), Hop(t2, a, b)), good.reverse),
    ]:
        with pytest.raises(ValueError):
            BidirectionalRoute(desc, 1, fwd, rev).check()
    text = f"failure code 4 (reserve route IDs on {c.hex()}: dmsg error 202 - x; {c.hex()})"
    assert pks_in_text(text) == [c]
    assert pks_in_text("no key here 02zz") == []
