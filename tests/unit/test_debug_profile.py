"""The sampling profiler: folded stacks naming the hot function, the loop running meanwhile."""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections import Counter

import pytest

from skywire.debug import DebugParamError, ProfilerBusyError, sample_profile

FRAME = re.compile(r"^\S.* \(.+:\d+\)$")


def parse_folded(text: str) -> list[tuple[list[str], int]]:
    """Parse folded stacks (``root;…;leaf count`` a line), asserting the format."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        assert stack and count.isdigit() and int(count) > 0, f"not a folded line: {line!r}"
        frames = stack.split(";")
        for frame in frames:
            assert FRAME.match(frame), f"not a 'function (file:line)' frame: {frame!r}"
        stacks.append((frames, int(count)))
    return stacks


def spin_the_profiled_loop() -> float:
    total = 0.0
    for i in range(20_000):
        total += math.sqrt(i)
    return total


async def burn_cpu_for_the_profiler(done: asyncio.Event) -> None:
    while not done.is_set():
        spin_the_profiled_loop()
        await asyncio.sleep(0)


async def test_a_busy_coroutine_is_the_hot_function_and_the_loop_runs_on() -> None:
    done = asyncio.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    burner = asyncio.create_task(burn_cpu_for_the_profiler(done))
    counter = asyncio.create_task(ticker())
    try:
        folded = await sample_profile(0.5, hz=200)
    finally:
        done.set()
        await asyncio.gather(burner, counter)
    assert ticks > 0  # other tasks ran while the samples were taken

    stacks = parse_folded(folded)
    samples = sum(n for _, n in stacks)
    assert samples > 0
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        leaves[frames[-1].split(" (")[0]] += n
        # root first: the loop's machinery is above the coroutine
        if any("burn_cpu_for_the_profiler" in f for f in frames):
            names = [f.split(" (")[0] for f in frames]
            assert names.index("burn_cpu_for_the_profiler") < len(names) - 1
    hot, _ = leaves.most_common(1)[0]
    assert hot == "spin_the_profiled_loop", leaves.most_common(5)
    assert any(
        f.startswith("spin_the_profiled_loop (") and "test_debug_profile.py:" in f
        for frames, _ in stacks
        for f in frames
    )


@pytest.mark.parametrize("seconds", [0, -1, 60.5, 3600, math.nan, math.inf])
async def test_seconds_out_of_range_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        await sample_profile(seconds)


@pytest.mark.parametrize("hz", [0, -5, 1001])
async def test_hz_out_of_range_is_refused(hz: int) -> None:
    with pytest.raises(DebugParamError, match="hz"):
        await sample_profile(1, hz)


async def test_one_profile_at_a_time() -> None:
    first = asyncio.create_task(sample_profile(0.2))
    await asyncio.sleep(0)  # the first holds the profiler now
    with pytest.raises(ProfilerBusyError):
        await sample_profile(0.2)
    parse_folded(await first)
    # the first is over, so the profiler is free again
    parse_folded(await sample_profile(0.05))


async def test_a_cancelled_profile_stops_its_thread() -> None:
    task = asyncio.create_task(sample_profile(60))
    await asyncio.sleep(0)
    sampler = next(t for t in threading.enumerate() if t.name == "skywire-debug-profiler")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(sampler.join, 10)
    assert not sampler.is_alive()
    parse_folded(await sample_profile(0.05))  # and the profiler is free again
