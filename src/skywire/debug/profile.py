"""A sampling CPU profiler of the event loop thread, for ``/debug/profile``.

:func:`sample_profile` starts one helper thread that, ``hz`` times a second for ``seconds``,
reads the loop thread's current frame and walks it to the root; the loop keeps running
meanwhile (the await only waits for the thread's result). The stacks are counted and returned
in the folded ("collapsed") format that speedscope and ``flamegraph.pl`` open: one line per
distinct stack, ``root;…;leaf count``, each frame ``function (file:line)`` with the line where
the function begins, so that a function is one node of the flame graph however many of its
lines ran. Samples taken while the loop waits for I/O end in the selector's ``select``: the
idle share of the loop.

The sampler needs the GIL to look, and a thread waiting for the GIL gets it at the holder's next
release: a blocking call such as ``select``, or the forced switch after
``sys.getswitchinterval()`` (5 ms by default). Work done in bursts shorter than that would all
be charged to the ``select`` that follows it; so while sampling, the switch interval is lowered
to :data:`SWITCH_INTERVAL` (and put back after), which bounds that skew to 0.2 ms.

One profile runs at a time (:class:`ProfilerBusyError` otherwise), as with Go's pprof.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Final

from skywire.debug.errors import DebugParamError, ProfilerBusyError
from skywire.debug.frames import code_label

__all__ = [
    "DEFAULT_HZ",
    "MAX_HZ",
    "MAX_SECONDS",
    "fold",
    "sample_profile",
    "sample_thread",
]

MAX_SECONDS: Final = 60.0
DEFAULT_HZ: Final = 100
MAX_HZ: Final = 1000
MAX_DEPTH: Final = 256
"""Frames kept per sample, counted from the leaf; deeper stacks lose their root end."""
SWITCH_INTERVAL: Final = 0.0002
"""The GIL switch interval while sampling (seconds; Python's default is 0.005)."""

# ``sys._current_frames`` is documented standard library API ("for internal and specialised
# purposes"); the underscore does not make it private (the architecture test allows it by name).
_current_frames: Callable[[], dict[int, FrameType]] = sys._current_frames

_busy = threading.Lock()

Stack = tuple[CodeType, ...]


def check_args(seconds: float, hz: int) -> None:
    """Raise :class:`DebugParamError` unless ``0 < seconds <= MAX_SECONDS`` and
    ``1 <= hz <= MAX_HZ``."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise DebugParamError(
            f"seconds must be more than 0 and at most {MAX_SECONDS:g}, not {seconds!r}"
        )
    if isinstance(hz, bool) or not isinstance(hz, int) or not 1 <= hz <= MAX_HZ:
        raise DebugParamError(f"hz must be a whole number from 1 to {MAX_HZ}, not {hz!r}")


def _stack_of(frame: FrameType | None) -> Stack:
    codes: list[CodeType] = []
    while frame is not None and len(codes) < MAX_DEPTH:
        codes.append(frame.f_code)
        frame = frame.f_back
    codes.reverse()
    return tuple(codes)


def sample_thread(
    thread_id: int, seconds: float, hz: int, stop: threading.Event | None = None
) -> Counter[Stack]:
    """Sample thread ``thread_id``'s stack ``hz`` times a second for ``seconds`` (or until
    ``stop`` is set, or the thread ends) and count the stacks, root first. Blocking: run it on
    a thread other than the sampled one."""
    check_args(seconds, hz)
    halt = stop if stop is not None else threading.Event()
    interval = 1.0 / hz
    counts: Counter[Stack] = Counter()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
    try:
        start = time.monotonic()
        deadline = start + seconds
        due = start
        while True:
            due += interval
            now = time.monotonic()
            if due < now:  # fell behind (the GIL was busy): sample now, skip the missed ticks
                due = now
            if due > deadline or halt.wait(due - now):
                break
            frame = _current_frames().get(thread_id)
            if frame is None:
                break
            counts[_stack_of(frame)] += 1
            del frame
    finally:
        sys.setswitchinterval(switch)
    return counts


def fold(counts: Counter[Stack]) -> str:
    """``root;…;leaf count`` lines, the most frequent stack first."""
    labels: dict[CodeType, str] = {}

    def label(code: CodeType) -> str:
        text = labels.get(code)
        if text is None:
            text = labels[code] = code_label(code).replace(";", ",")
        return text

    lines = [(";".join(label(code) for code in stack), n) for stack, n in counts.items() if stack]
    lines.sort(key=lambda item: (-item[1], item[0]))
    return "".join(f"{stack} {n}\n" for stack, n in lines)


async def sample_profile(seconds: float, hz: int = DEFAULT_HZ) -> str:
    """Profile the thread running this event loop for ``seconds`` (0 < s ≤ 60) at ``hz``
    samples a second; return the folded stacks. The loop runs on while the samples are taken.

    Raises :class:`DebugParamError` (a ``ValueError``) for arguments out of range and
    :class:`ProfilerBusyError` while another profile is being taken.
    """
    check_args(seconds, hz)
    if not _busy.acquire(blocking=False):
        raise ProfilerBusyError("a CPU profile is already being taken; try again when it ends")
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Counter[Stack]] = loop.create_future()
    stop = threading.Event()
    target = threading.get_ident()

    def deliver(counts: Counter[Stack] | None, exc: BaseException | None) -> None:
        if result.done():
            return
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(counts if counts is not None else Counter())

    def run() -> None:
        counts: Counter[Stack] | None = None
        error: BaseException | None = None
        try:
            counts = sample_thread(target, seconds, hz, stop)
        except Exception as exc:  # handed to the awaiting coroutine, which raises it
            error = exc
        finally:
            _busy.release()
        # RuntimeError: the loop closed while we sampled, so nobody is waiting
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(deliver, counts, error)

    thread = threading.Thread(target=run, name="skywire-debug-profiler", daemon=True)
    try:
        thread.start()
    except BaseException:
        _busy.release()
        raise
    try:
        counts = await result
    finally:
        stop.set()
    return fold(counts)
