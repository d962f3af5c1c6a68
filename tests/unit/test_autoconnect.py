"""Public autoconnect decisions, driven loop-free with a clock passed in: which public visors
to dial and over what, given the listing, the live transports and how dials ended."""

from __future__ import annotations

import pytest

from skywire.cipher import PubKey, SecKey
from skywire.visor.autoconnect import (
    AutoconnectConfig,
    Autoconnector,
    Dial,
    LiveTransport,
)

ME = SecKey.generate().pubkey()
PUBLIC = [SecKey.generate().pubkey() for _ in range(5)]
P0, P1, P2, P3, P4 = PUBLIC


def core(max_conns: int = 3, retry_after: float = 60.0) -> Autoconnector:
    return Autoconnector(ME, AutoconnectConfig(max_conns=max_conns, retry_after=retry_after))


def live(*pairs: tuple[PubKey, str]) -> list[LiveTransport]:
    return [LiveTransport(pk, t) for pk, t in pairs]


def test_nothing_listed_nothing_dialed() -> None:
    c = core()
    c.update_transports([], 0.0)
    assert c.next_dials(0.0) == []
    assert c.missing() == 3


def test_first_round_dials_stcpr_to_max_conns_in_listing_order() -> None:
    c = core()
    c.update_public(PUBLIC)
    assert c.next_dials(0.0) == [Dial(P0, "stcpr"), Dial(P1, "stcpr"), Dial(P2, "stcpr")]
    assert c.in_flight == {P0, P1, P2}
    assert c.missing() == 0
    assert c.next_dials(0.0) == []  # dials under way count as kept


def test_self_and_duplicates_in_listing_ignored() -> None:
    c = core()
    c.update_public([ME, P0, P0, P1])
    assert c.public == [P0, P1]
    assert [d.pk for d in c.next_dials(0.0)] == [P0, P1]


def test_success_keeps_and_stops_dialing() -> None:
    c = core(max_conns=2)
    c.update_public(PUBLIC)
    dials = c.next_dials(0.0)
    for d in dials:
        c.dial_succeeded(d, 1.0)
    assert c.connected == {P0, P1}
    c.update_transports(live((P0, "stcpr"), (P1, "stcpr")), 2.0)
    assert c.next_dials(2.0) == []


def test_stcpr_failure_falls_back_to_sudph_for_the_same_key() -> None:
    c = core(max_conns=1)
    c.update_public(PUBLIC)
    (d,) = c.next_dials(0.0)
    assert d == Dial(P0, "stcpr")
    c.dial_failed(d, 1.0)
    assert c.next_dials(1.0) == [Dial(P0, "sudph")]


def test_key_whose_every_type_failed_is_skipped_until_retry_after() -> None:
    c = core(max_conns=1, retry_after=30.0)
    c.update_public([P0, P1])
    c.dial_failed(c.next_dials(0.0)[0], 1.0)  # P0 stcpr
    c.dial_failed(c.next_dials(1.0)[0], 2.0)  # P0 sudph
    assert c.next_dials(2.0) == [Dial(P1, "stcpr")]  # the next key, at once
    c.dial_failed(Dial(P1, "stcpr"), 3.0)
    c.dial_failed(c.next_dials(3.0)[0], 3.0)  # P1 sudph
    assert c.next_dials(31.99) == []  # both skipped
    assert c.next_dials(32.0) == [Dial(P0, "stcpr")]  # P0 failed at 2.0: due again


def test_only_configured_types_and_never_dmsg() -> None:
    c = Autoconnector(ME, AutoconnectConfig(max_conns=1, types=("stcpr",)))
    c.update_public([P0, P1])
    c.dial_failed(c.next_dials(0.0)[0], 0.0)
    assert c.next_dials(0.0) == [Dial(P1, "stcpr")]  # no sudph: straight to the next key
    for bad in (("dmsg",), ("stcpr", "dmsg"), (), ("stcpr", "stcpr"), ("stcp",)):
        with pytest.raises(ValueError):
            AutoconnectConfig(types=bad)
    for kwargs in ({"max_conns": 0}, {"interval": 0.0}, {"dial_timeout": -1.0}):
        with pytest.raises(ValueError):
            AutoconnectConfig(**kwargs)  # type: ignore[arg-type]


def test_dmsg_transport_to_a_public_visor_does_not_count() -> None:
    c = core(max_conns=1)
    c.update_public([P0])
    c.update_transports(live((P0, "dmsg")), 0.0)
    assert c.connected == frozenset()
    assert c.next_dials(0.0) == [Dial(P0, "stcpr")]


def test_transports_dialed_by_others_count_and_non_public_ones_do_not() -> None:
    c = core(max_conns=2)
    c.update_public([P0, P1, P2])
    other = SecKey.generate().pubkey()
    c.update_transports(live((P1, "sudph"), (other, "stcpr")), 0.0)
    assert c.connected == {P1}
    assert c.next_dials(0.0) == [Dial(P0, "stcpr")]


def test_dead_transport_is_replaced_by_another_public_visor_first() -> None:
    c = core(max_conns=2)
    c.update_public([P0, P1, P2])
    for d in c.next_dials(0.0):
        c.dial_succeeded(d, 0.0)
    c.update_transports(live((P0, "stcpr"), (P1, "stcpr")), 0.0)
    # P0 dies; its entry is still listed (a killed visor does not delete it)
    c.update_transports(live((P1, "stcpr")), 5.0)
    assert c.connected == {P1}
    assert c.next_dials(5.0) == [Dial(P2, "stcpr")]  # the spare one, not the dead one


def test_lost_key_is_redialed_when_nothing_else_is_listed() -> None:
    c = core(max_conns=2)
    c.update_public([P0, P1])
    c.update_transports(live((P0, "stcpr"), (P1, "stcpr")), 0.0)
    c.update_transports(live((P1, "stcpr")), 5.0)
    assert c.next_dials(5.0) == [Dial(P0, "stcpr")]  # last in order, but still tried


def test_key_leaving_the_listing_drops_its_attempt_and_stops_counting() -> None:
    c = core(max_conns=2)
    c.update_public([P0, P1])
    d0, d1 = c.next_dials(0.0)
    c.dial_failed(d0, 1.0)  # P0 waits for its sudph turn
    c.update_public([P1, P2])  # P0 closed: its entry deleted
    assert c.next_dials(1.0) == [Dial(P2, "stcpr")]
    c.dial_succeeded(d1, 1.0)
    c.update_transports(live((P1, "stcpr"), (P2, "stcpr")), 2.0)
    c.update_public([P2, P3])
    c.update_transports(live((P1, "stcpr"), (P2, "stcpr")), 3.0)
    assert c.connected == {P2}  # P1 is no longer a public visor
    assert c.next_dials(3.0) == [Dial(P3, "stcpr")]


def test_dial_ending_after_its_key_left_the_listing() -> None:
    c = core(max_conns=1)
    c.update_public([P0])
    (d,) = c.next_dials(0.0)
    c.update_public([P1])
    assert c.in_flight == {P0}  # still counted while under way
    assert c.next_dials(0.0) == []
    c.dial_succeeded(d, 1.0)
    assert c.connected == frozenset()
    assert c.next_dials(1.0) == [Dial(P1, "stcpr")]


def test_success_clears_failure_history() -> None:
    c = core(max_conns=1, retry_after=100.0)
    c.update_public([P0])
    c.dial_failed(c.next_dials(0.0)[0], 0.0)
    c.dial_failed(c.next_dials(0.0)[0], 0.0)
    assert c.next_dials(50.0) == []
    c.update_transports(live((P0, "stcpr")), 60.0)  # the public visor dialed us
    assert c.connected == {P0}
    c.update_transports([], 61.0)  # and went away again: lost, not failed
    assert c.next_dials(61.0) == [Dial(P0, "stcpr")]


def test_count_and_interval_come_from_the_transport_block() -> None:
    from skywire.visor.config import TransportConfig
    from skywire.visor.public import autoconnect_config

    assert autoconnect_config(TransportConfig()) == AutoconnectConfig()  # upstream's 3, 10 s
    block = TransportConfig.model_validate(
        {"autoconnect_count": 2, "autoconnect_interval": "1m30s"}
    )
    assert autoconnect_config(block) == AutoconnectConfig(max_conns=2, interval=90.0)
    assert "autoconnect_count" not in TransportConfig().model_dump()  # upstream's shape
    for bad in (
        {"autoconnect_count": 0},
        {"autoconnect_count": True},
        {"autoconnect_count": "2"},
        {"autoconnect_interval": "0s"},
        {"autoconnect_interval": "soon"},
        {"autoconnect_interval": 5},
    ):
        with pytest.raises(ValueError):
            autoconnect_config(TransportConfig.model_validate(bad))
