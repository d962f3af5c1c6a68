"""tracemalloc on demand: off until started, then the top allocation sites by size."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from skywire.debug import DebugParamError, memory


@pytest.fixture(autouse=True)
def not_tracing() -> Iterator[None]:
    """Each test starts with tracing off; tracing that was on before (PYTHONTRACEMALLOC) is
    put back afterwards, with its depth."""
    depth = tracemalloc.get_traceback_limit() if tracemalloc.is_tracing() else 0
    tracemalloc.stop()
    yield
    tracemalloc.stop()
    if depth:
        tracemalloc.start(depth)


def allocate_for_the_heap_view() -> list[bytearray]:
    return [bytearray(1000) for _ in range(3000)]  # the line top() must name


ALLOC_LINE = allocate_for_the_heap_view.__code__.co_firstlineno + 1


def test_top_says_how_to_start_when_not_tracing() -> None:
    assert not memory.is_tracing()
    text = memory.top()
    assert "not tracing" in text and "?start=1" in text


def test_top_names_the_allocating_line_after_start() -> None:
    memory.start()
    assert memory.is_tracing()
    held = allocate_for_the_heap_view()
    text = memory.top(10)
    head, sites = text.splitlines()[:2]
    assert head.startswith("tracemalloc: tracing 1 frame per allocation; traced now ")
    assert "peak" in head and sites.startswith("top ")
    assert f"test_debug_memory.py:{ALLOC_LINE}: " in text
    assert "return [bytearray(1000) for _ in range(3000)]" in text
    del held
    memory.stop()
    assert not memory.is_tracing()
    assert "not tracing" in memory.top()


def test_stacks_show_the_callers() -> None:
    memory.start(frames=5)
    held = allocate_for_the_heap_view()
    text = memory.top(5, stacks=True)
    assert "tracing 5 frames per allocation" in text
    block = text.split(f"test_debug_memory.py:{ALLOC_LINE}: ", 1)[1]
    assert "held = allocate_for_the_heap_view()" in block  # the caller, in the same stack
    del held


def test_start_twice_keeps_the_first_depth() -> None:
    memory.start(3)
    memory.start(7)
    assert tracemalloc.get_traceback_limit() == 3


@pytest.mark.parametrize("frames", [0, -1, 101, True])
def test_bad_frames_are_refused(frames: int) -> None:
    with pytest.raises(DebugParamError, match="frames"):
        memory.start(frames)
    assert not memory.is_tracing()


@pytest.mark.parametrize("n", [0, -1, 1001])
def test_bad_top_is_refused(n: int) -> None:
    with pytest.raises(DebugParamError, match="top"):
        memory.top(n)
