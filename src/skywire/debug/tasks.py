"""The task dump: every live asyncio task of a loop, with its state, age and await chain.

:func:`snapshot_tasks` returns one frozen :class:`TaskInfo` per task (``to_dict()`` gives the
JSON form); :func:`dump_tasks` formats them as text. Neither prints anything.

A task's age needs its creation time, which asyncio does not keep: :func:`install_task_clock`
puts a task factory on the loop (wrapping whatever factory was there) that stamps each new task
with ``loop.time()``. A task created before that is stamped when a dump first sees it, and its
age is marked as a lower bound (``age_exact`` false, ``~`` in the text).

The stack of a suspended task is its await chain: the coroutine the task runs, the one that
awaits, and so on down to the innermost ``await``, where it waits now.
"""

from __future__ import annotations

import asyncio
import linecache
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any, Final
from weakref import WeakKeyDictionary

from skywire.debug.errors import DebugParamError
from skywire.debug.frames import code_label, short_path

__all__ = [
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "StackFrame",
    "TaskClock",
    "TaskInfo",
    "dump_tasks",
    "install_task_clock",
    "snapshot_tasks",
    "task_clock_installed",
]

DEFAULT_DEPTH: Final = 20
MAX_DEPTH: Final = 200

# task -> (stamp in loop.time(), stamped at creation?)
_stamps: WeakKeyDictionary[asyncio.Future[Any], tuple[float, bool]] = WeakKeyDictionary()


class TaskClock:
    """The task factory of :func:`install_task_clock`: makes the task as the factory it
    replaced would (or as asyncio does when there was none), then stamps it."""

    def __init__(self, previous: Callable[..., asyncio.Future[Any]] | None) -> None:
        self.previous: Final = previous

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, /, **kwargs: Any
    ) -> asyncio.Future[Any]:
        task: asyncio.Future[Any]
        if self.previous is None:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        else:
            task = self.previous(loop, coro, **kwargs)
        _stamps[task] = (loop.time(), True)
        return task


def install_task_clock(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Stamp every task created on ``loop`` (default: the running loop) from now on with its
    creation time. A second call changes nothing."""
    target = loop if loop is not None else asyncio.get_running_loop()
    current = target.get_task_factory()
    if isinstance(current, TaskClock):
        return
    target.set_task_factory(TaskClock(current))


def task_clock_installed(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Whether :func:`install_task_clock` has been called on ``loop`` (default: running)."""
    target = loop if loop is not None else asyncio.get_running_loop()
    return isinstance(target.get_task_factory(), TaskClock)


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One step of a task's await chain: the function, where it is now, and that source line."""

    function: str
    file: str
    line: int
    code: str

    def label(self) -> str:
        return f"{self.function} ({self.file}:{self.line})"

    def to_dict(self) -> dict[str, object]:
        return {"function": self.function, "file": self.file, "line": self.line, "code": self.code}


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A live task as a dump sees it.

    ``state`` is ``running`` (the task taking the dump), ``cancelling`` (a cancellation is
    pending) or ``pending``. ``age`` is in seconds: since creation when ``age_exact``, else since
    the first dump that saw the task. ``coro`` names the task's coroutine; ``stack`` is its await
    chain, outermost first; ``awaiting`` is what the innermost frame waits on when that is not a
    coroutine (a future, say), by type name.
    """

    name: str
    state: str
    age: float
    age_exact: bool
    coro: str
    stack: tuple[StackFrame, ...]
    awaiting: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "age": round(self.age, 3),
            "age_exact": self.age_exact,
            "coro": self.coro,
            "stack": [frame.to_dict() for frame in self.stack],
            "awaiting": self.awaiting,
        }


def _frame_and_next(obj: object) -> tuple[FrameType | None, CodeType | None, object]:
    """The frame, code and awaited object of a coroutine, generator or async generator."""
    for frame_attr, code_attr, next_attr in (
        ("cr_frame", "cr_code", "cr_await"),
        ("gi_frame", "gi_code", "gi_yieldfrom"),
        ("ag_frame", "ag_code", "ag_await"),
    ):
        if hasattr(obj, frame_attr):
            return getattr(obj, frame_attr), getattr(obj, code_attr, None), getattr(obj, next_attr)
    return None, None, None


def _stack_frame(frame: FrameType) -> StackFrame:
    code = frame.f_code
    line = frame.f_lineno or code.co_firstlineno  # None on some instructions (3.12+)
    source = linecache.getline(code.co_filename, line, frame.f_globals).strip()
    return StackFrame(code.co_qualname, short_path(code.co_filename), line, source)


# what ``await fut`` leaves in ``cr_await`` for the C future is its iterator: name the future
_AWAITED_NAMES: Final = {"FutureIter": "Future"}


def _await_chain(coro: object, depth: int) -> tuple[tuple[StackFrame, ...], str | None]:
    frames: list[StackFrame] = []
    current: object = coro
    while current is not None and len(frames) < depth:
        frame, code, awaited = _frame_and_next(current)
        if frame is None:
            if code is None:  # not a coroutine: a future or some other awaitable
                kind = type(current).__name__
                return tuple(frames), _AWAITED_NAMES.get(kind, kind)
            break  # a finished coroutine
        frames.append(_stack_frame(frame))
        current = awaited
    return tuple(frames), None


def _coro_name(coro: Coroutine[Any, Any, Any] | Any) -> str:
    code = _frame_and_next(coro)[1]
    if code is not None:
        return code_label(code)
    return getattr(coro, "__qualname__", type(coro).__name__)


def _state(task: asyncio.Task[Any], current: asyncio.Task[Any] | None) -> str:
    if task is current:
        return "running"
    if task.cancelling():
        return "cancelling"
    return "pending"


def snapshot_tasks(
    loop: asyncio.AbstractEventLoop | None = None, *, depth: int = DEFAULT_DEPTH
) -> list[TaskInfo]:
    """Every live task of ``loop`` (default: the running loop; call from its thread), oldest
    first, with at most ``depth`` frames of await chain each."""
    if not 1 <= depth <= MAX_DEPTH:
        raise DebugParamError(f"depth must be between 1 and {MAX_DEPTH}, not {depth}")
    target = loop if loop is not None else asyncio.get_running_loop()
    now = target.time()
    current = asyncio.current_task(target)
    infos: list[TaskInfo] = []
    for task in asyncio.all_tasks(target):
        stamp = _stamps.get(task)
        if stamp is None:
            stamp = _stamps[task] = (now, False)
        born, exact = stamp
        coro = task.get_coro()
        stack, awaiting = _await_chain(coro, depth)
        infos.append(
            TaskInfo(
                name=task.get_name(),
                state=_state(task, current),
                age=max(0.0, now - born),
                age_exact=exact,
                coro=_coro_name(coro),
                stack=stack,
                awaiting=awaiting,
            )
        )
    infos.sort(key=lambda info: (-info.age, info.name))
    return infos


def format_tasks(infos: list[TaskInfo], *, clock_installed: bool) -> str:
    """The text of :func:`dump_tasks` for ``infos``."""
    inexact = sum(not info.age_exact for info in infos)
    head = [f"{len(infos)} live asyncio task{'s' if len(infos) != 1 else ''}, oldest first."]
    if not clock_installed:
        head.append(
            "The task clock is not installed (install_task_clock): every age is a lower bound, "
            "counted from when a dump first saw the task, and marked ~."
        )
    elif inexact == 1:
        head.append(
            "1 task started before the task clock was installed: its age counts from when a "
            "dump first saw it, and is marked ~."
        )
    elif inexact:
        head.append(
            f"{inexact} tasks started before the task clock was installed: their ages count "
            "from when a dump first saw them, and are marked ~."
        )
    out = ["\n".join(head), ""]
    for info in infos:
        age = f"{'' if info.age_exact else '~'}{info.age:.1f}s"
        out.append(f"task {info.name!r} {info.state}, age {age}, coro {info.coro}")
        for frame in info.stack:
            out.append(f"    {frame.label()}")
            if frame.code:
                out.append(f"        {frame.code}")
        if info.awaiting is not None:
            out.append(f"    awaiting a {info.awaiting}")
        out.append("")
    return "\n".join(out)


def dump_tasks(loop: asyncio.AbstractEventLoop | None = None, *, depth: int = DEFAULT_DEPTH) -> str:
    """Every live task of ``loop`` (default: the running loop) as text: name, state, age,
    coroutine and await chain, oldest first."""
    target = loop if loop is not None else asyncio.get_running_loop()
    infos = snapshot_tasks(target, depth=depth)
    return format_tasks(infos, clock_installed=task_clock_installed(target))
