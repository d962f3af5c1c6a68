"""The log ring: bounded whatever is logged, never a torn line, level and count filters."""

from __future__ import annotations

import logging
import re
import threading
import zlib

import pytest

from skywire.debug import (
    DebugParamError,
    LogRing,
    RingHandler,
    default_ring,
    install_ring_handler,
)
from skywire.debug.ring import cut_marker

THREADS = 8
PER_THREAD = 125_000  # 1,000,000 lines in all
CYCLE = 1000  # each thread writes its CYCLE distinct messages in turn
CAPACITY = 5_000
MAX_LINE = 256
LINE = re.compile(r"T(\d) (\d{3}) ")


def written(tid: int, k: int) -> str:
    """Thread ``tid``'s ``k``-th message (of CYCLE): its fields, a body of varying length (too
    long for the ring every 100th), and the CRC-32 of all that."""
    body = ("x" * 600) if k % 100 == 99 else chr(97 + k % 26) * (k % 50)
    head = f"T{tid} {k:03d} {body}"
    return f"{head} {zlib.crc32(head.encode()):08x}"


def stored(text: str, max_line: int) -> str:
    """What the ring keeps of ``text``: itself, or cut to ``max_line`` with the marker."""
    if len(text) <= max_line:
        return text
    removed = len(text) - max_line + len(cut_marker(len(text)))
    return text[: len(text) - removed] + cut_marker(removed)


MESSAGES = [[written(tid, k) for k in range(CYCLE)] for tid in range(THREADS)]
VALID = {stored(m, MAX_LINE) for per_thread in MESSAGES for m in per_thread}


def check_line(line: str) -> tuple[int, int]:
    """Assert ``line`` is exactly one written line (as stored) and return (thread, k)."""
    assert line in VALID, f"torn line: {line[:80]!r}"
    m = LINE.match(line)
    assert m
    return int(m.group(1)), int(m.group(2))


def test_a_million_lines_from_eight_threads_stay_bounded_and_whole() -> None:
    ring = LogRing(capacity=CAPACITY, max_line=MAX_LINE)
    handler = RingHandler(ring, fmt="%(message)s")
    start = threading.Barrier(THREADS + 1)
    finished = threading.Event()
    read_checks = [0]
    errors: list[BaseException] = []

    def writer(tid: int) -> None:
        # one record per thread, refilled per line: the cost is the handler's, not LogRecord's
        record = logging.LogRecord("ring-test", logging.INFO, __file__, 0, "", None, None)
        messages = MESSAGES[tid]
        start.wait()
        for seq in range(PER_THREAD):
            record.msg = messages[seq % CYCLE]
            handler.handle(record)

    def reader() -> None:
        try:
            start.wait()
            # every millisecond: the reader checks, the writers do the work
            while not finished.wait(0.001):
                for line in ring.lines(100):
                    check_line(line)
                    read_checks[0] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(tid,)) for tid in range(THREADS)]
    watcher = threading.Thread(target=reader)
    for t in [*threads, watcher]:
        t.start()
    for t in threads:
        t.join()
    finished.set()
    watcher.join()

    assert not errors, errors[0]
    assert read_checks[0] > 0  # the reader checked lines while the writers ran
    assert ring.written == THREADS * PER_THREAD
    assert len(ring) == CAPACITY
    lines = ring.lines()
    assert len(lines) == CAPACITY
    # memory is bounded by construction: capacity lines of at most max_line characters
    assert all(len(line) <= MAX_LINE for line in lines)
    assert sum(len(line) for line in lines) <= CAPACITY * MAX_LINE
    assert any(line.endswith(" chars cut]") for line in lines)
    # the ring drops the oldest lines of all, so what it keeps of each thread is that thread's
    # newest lines, in order, none lost or doubled: consecutive messages of its cycle
    last: dict[int, int] = {}
    for line in lines:
        tid, k = check_line(line)
        if tid in last:
            assert k == (last[tid] + 1) % CYCLE, f"thread {tid}: {last[tid]} then {k}"
        last[tid] = k
    # the thread that wrote last ends on its final message
    assert lines[-1] == stored(
        MESSAGES[check_line(lines[-1])[0]][(PER_THREAD - 1) % CYCLE], MAX_LINE
    )


def test_newest_n_lines_oldest_first_and_level_filter() -> None:
    ring = LogRing(capacity=5)
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.INFO]
    for i, level in enumerate(levels):
        ring.append(f"line {i}", level, 1000.0 + i)
    assert ring.lines() == [f"line {i}" for i in range(5)]
    assert ring.lines(2) == ["line 3", "line 4"]
    assert ring.lines(0) == []
    assert ring.lines(50) == ring.lines()
    assert ring.lines(level=logging.WARNING) == ["line 2", "line 3"]
    assert ring.lines(1, level=logging.INFO) == ["line 4"]
    assert ring.lines(level=logging.CRITICAL) == []
    entry = ring.entries(1)[0]
    assert (entry.text, entry.level, entry.time) == ("line 4", logging.INFO, 1004.0)
    ring.append("line 5", logging.CRITICAL, 1005.0)  # full: the oldest goes
    assert ring.lines() == [f"line {i}" for i in range(1, 6)]
    assert ring.written == 6 and len(ring) == 5
    ring.clear()
    assert ring.lines() == [] and ring.written == 6


def test_a_long_line_is_cut_with_a_marker_to_max_line() -> None:
    ring = LogRing(capacity=3, max_line=100)
    ring.append("a" * 100, logging.INFO, 0.0)
    ring.append("b" * 101, logging.INFO, 0.0)
    ring.append("c" * 100_000, logging.INFO, 0.0)
    exact, cut, huge = ring.lines()
    assert exact == "a" * 100
    assert len(cut) <= 100 and cut.startswith("b" * 50)
    kept = cut[: cut.index(" …[")]
    assert cut == kept + cut_marker(101 - len(kept))
    kept = huge[: huge.index(" …[")]
    assert len(huge) <= 100 and huge == kept + cut_marker(100_000 - len(kept))
    assert kept == "c" * len(kept)


@pytest.mark.parametrize(("capacity", "max_line"), [(0, 4096), (-1, 4096), (10, 63), (10, 0)])
def test_bad_sizes_are_refused(capacity: int, max_line: int) -> None:
    with pytest.raises(DebugParamError):
        LogRing(capacity, max_line)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        LogRing().lines(-1)


def test_handler_formats_records_and_keeps_their_level_and_time() -> None:
    ring = LogRing(capacity=10)
    logger = logging.getLogger("skywire.test.debug.ring.format")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = install_ring_handler(logger, logging.INFO, ring=ring)
    try:
        logger.debug("not kept: below the handler's level")
        logger.warning("kept %d", 42)
        (entry,) = ring.entries()
        assert entry.text.endswith("WARNING skywire.test.debug.ring.format: kept 42")
        assert entry.level == logging.WARNING and entry.time > 0
        # a second install is the same handler, its level moved
        again = install_ring_handler(logger, logging.DEBUG, ring=ring)
        assert again is handler and handler.level == logging.DEBUG
        assert [h for h in logger.handlers if isinstance(h, RingHandler)] == [handler]
        logger.debug("now kept")
        assert ring.lines(1)[0].endswith("now kept")
    finally:
        logger.removeHandler(handler)


def test_default_ring_is_one_ring() -> None:
    assert default_ring() is default_ring()
    assert default_ring().capacity == 10_000 and default_ring().max_line == 4096
