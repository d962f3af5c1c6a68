"""The task dump: names, states, ages and await chains of the live tasks of a loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Generator
from typing import Any

import pytest

from skywire.debug import (
    DebugParamError,
    dump_tasks,
    install_task_clock,
    snapshot_tasks,
    task_clock_installed,
)
from skywire.debug.tasks import TaskClock


async def parked_for_the_task_dump(gate: asyncio.Event) -> None:
    await gate.wait()


async def outer_caller(gate: asyncio.Event) -> None:
    await parked_for_the_task_dump(gate)


@pytest.fixture
async def gate() -> Any:
    event = asyncio.Event()
    yield event
    event.set()


def test_dump_without_a_running_loop_needs_one() -> None:
    with pytest.raises(RuntimeError):
        dump_tasks()


async def test_a_parked_task_shows_its_name_state_and_await_chain(gate: asyncio.Event) -> None:
    task = asyncio.create_task(outer_caller(gate), name="debug-probe-parked-7f3a")
    await asyncio.sleep(0)  # let it reach its await
    (info,) = [i for i in snapshot_tasks() if i.name == "debug-probe-parked-7f3a"]
    assert info.state == "pending"
    assert info.coro.startswith("outer_caller (")
    functions = [frame.function for frame in info.stack]
    # outermost first, down to where it waits now
    assert functions[:3] == ["outer_caller", "parked_for_the_task_dump", "Event.wait"]
    assert info.stack[1].code == "await gate.wait()"
    assert info.stack[1].file.endswith("test_debug_tasks.py")
    assert info.awaiting is not None  # a future, whose type name the dump gives
    current = asyncio.current_task()
    assert current is not None
    (me,) = [i for i in snapshot_tasks() if i.name == current.get_name()]
    assert me.state == "running"

    text = dump_tasks()
    assert "task 'debug-probe-parked-7f3a' pending" in text
    assert "parked_for_the_task_dump (" in text and "await gate.wait()" in text
    gate.set()
    await task
    assert not [x for x in dump_tasks().splitlines() if x.startswith("task 'debug-probe-parked")]


async def test_structured_dump_is_json(gate: asyncio.Event) -> None:
    task = asyncio.create_task(outer_caller(gate), name="debug-probe-json")
    await asyncio.sleep(0)
    doc = json.loads(json.dumps([i.to_dict() for i in snapshot_tasks()]))
    (entry,) = [d for d in doc if d["name"] == "debug-probe-json"]
    assert set(entry) == {"name", "state", "age", "age_exact", "coro", "stack", "awaiting"}
    assert entry["stack"][1]["function"] == "parked_for_the_task_dump"
    assert entry["stack"][1]["line"] > 0
    gate.set()
    await task


async def test_depth_limits_the_chain_and_is_checked(gate: asyncio.Event) -> None:
    task = asyncio.create_task(outer_caller(gate), name="debug-probe-depth")
    await asyncio.sleep(0)
    (info,) = [i for i in snapshot_tasks(depth=1) if i.name == "debug-probe-depth"]
    assert [f.function for f in info.stack] == ["outer_caller"]
    for bad in (0, -3, 201):
        with pytest.raises(DebugParamError):
            snapshot_tasks(depth=bad)
    gate.set()
    await task


async def test_a_cancelled_task_not_yet_run_is_cancelling(gate: asyncio.Event) -> None:
    task = asyncio.create_task(outer_caller(gate), name="debug-probe-cancel")
    await asyncio.sleep(0)
    task.cancel()
    (info,) = [i for i in snapshot_tasks() if i.name == "debug-probe-cancel"]
    assert info.state == "cancelling"
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_ages_are_exact_after_the_clock_and_marked_before(gate: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    before = asyncio.create_task(outer_caller(gate), name="debug-probe-before-clock")
    await asyncio.sleep(0)
    assert not task_clock_installed()
    text = dump_tasks()
    assert "The task clock is not installed" in text
    assert "task 'debug-probe-before-clock' pending, age ~" in text

    install_task_clock()
    assert task_clock_installed(loop)
    after = asyncio.create_task(outer_caller(gate), name="debug-probe-after-clock")
    await asyncio.sleep(0)
    infos = {i.name: i for i in snapshot_tasks()}
    assert not infos["debug-probe-before-clock"].age_exact
    assert infos["debug-probe-after-clock"].age_exact
    assert infos["debug-probe-after-clock"].age >= 0
    text = dump_tasks()
    assert "started before the task clock was installed" in text
    assert "task 'debug-probe-after-clock' pending, age ~" not in text
    gate.set()
    await asyncio.gather(before, after)


async def test_the_clock_wraps_the_factory_already_there_once(gate: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any]
    ) -> asyncio.Future[Any]:
        task = asyncio.Task(coro, loop=loop)
        made.append(task.get_name())
        return task

    loop.set_task_factory(factory)
    try:
        install_task_clock(loop)
        clock = loop.get_task_factory()
        assert isinstance(clock, TaskClock) and clock.previous is factory
        install_task_clock(loop)  # idempotent: not wrapped twice
        assert loop.get_task_factory() is clock
        task = asyncio.create_task(outer_caller(gate), name="debug-probe-wrapped")
        await asyncio.sleep(0)
        assert len(made) == 1  # the earlier factory made the task
        (info,) = [i for i in snapshot_tasks() if i.name == "debug-probe-wrapped"]
        assert info.age_exact
        gate.set()
        await task
    finally:
        loop.set_task_factory(None)
