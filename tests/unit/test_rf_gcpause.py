"""The route finder's bulk work runs with the cyclic collector paused, and only then."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator

from skywire.cipher import KeyPair
from skywire.services.rf.gcpause import collector_paused
from skywire.services.rf.graph import Graph, TransportInfo


def test_the_graph_is_built_with_collection_paused_and_resumed_after() -> None:
    keys = [KeyPair.generate().pk for _ in range(3)]
    seen: list[bool] = []

    def transports() -> Iterator[TransportInfo]:
        for a, b in ((0, 1), (1, 2)):
            seen.append(gc.isenabled())
            yield TransportInfo(uuid.uuid4(), (keys[a], keys[b]), "stcpr", 1.0)

    assert gc.isenabled()
    graph = Graph.build(transports())
    assert graph.transport_count == 2
    assert seen == [False, False]
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads_resume_when_the_last_ends() -> None:
    entered = threading.Barrier(2)
    first_left = threading.Event()
    during: list[bool] = []

    def first() -> None:
        with collector_paused():
            entered.wait()
        first_left.set()

    def second() -> None:
        with collector_paused():
            entered.wait()
            first_left.wait(10)
            during.append(gc.isenabled())  # the first pause ended, this one still holds

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert during == [False]
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_that_was_off_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
