"""Resource baselines for the hostile suite: after an attack, tasks, fds and heap come back.

    async with baseline():          # after an honest warm-up
        ...the attack, and honest users served...

or ``b = Baseline(); b.capture(); ...; await b.settled()``. ``capture`` records the number of
asyncio tasks, the process's open fds and the Python heap (tracemalloc's traced size after
``gc.collect()``; tracing starts there if it was off, and stops again when done). ``settled``
polls, bounded by ``within`` seconds, until each is back within its tolerance, and otherwise
fails naming the resource and by how much it is over. Nothing here sleeps to synchronise: the
poll waits for a condition other components reach on their own timers (sockets closing,
tasks ending).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["FD_SLACK", "HEAP_SLACK", "SETTLE_WITHIN", "Baseline", "Usage", "baseline"]

FD_SLACK = 2
"""Open fds allowed above the baseline (one loopback connection: its two ends)."""
HEAP_SLACK = 2 << 20
"""Bytes of traced Python heap allowed above the baseline (what stays after the attacks here is
0.05-0.3 MiB: pytest's captured log records, the bounded key cache in ``cipher.py``)."""
SETTLE_WITHIN = 10.0
"""Seconds allowed for everything to come back."""
_POLL = 0.02


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def traced_heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@dataclass(frozen=True, slots=True)
class Usage:
    tasks: int
    fds: int
    heap: int


class Baseline:
    """One capture and the wait for things to come back to it.

    ``extra_tasks``: tasks allowed above the baseline (0: exactly as many, or fewer).
    """

    def __init__(
        self,
        *,
        extra_tasks: int = 0,
        fd_slack: int = FD_SLACK,
        heap_slack: int = HEAP_SLACK,
        within: float = SETTLE_WITHIN,
    ) -> None:
        self.extra_tasks = extra_tasks
        self.fd_slack = fd_slack
        self.heap_slack = heap_slack
        self.within = within
        self.before: Usage | None = None
        self.after: Usage | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._started_tracing = False

    def capture(self) -> Usage:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started_tracing = True
        self._tasks = asyncio.all_tasks()
        self.before = Usage(len(self._tasks), open_fds(), traced_heap())
        return self.before

    def discard(self) -> None:
        """Stop tracing if :meth:`capture` started it (``settled`` does this itself)."""
        if self._started_tracing:
            tracemalloc.stop()
            self._started_tracing = False

    async def settled(self) -> Usage:
        """Wait (bounded) until tasks, fds and heap are back within tolerance; the usage seen
        then. Fails with what did not come back."""
        before = self.before
        assert before is not None, "capture() first"
        try:
            deadline = time.monotonic() + self.within
            while True:
                now = Usage(len(asyncio.all_tasks()), open_fds(), 0)
                if now.tasks <= before.tasks + self.extra_tasks and (
                    now.fds <= before.fds + self.fd_slack
                ):
                    now = Usage(now.tasks, now.fds, traced_heap())
                    if now.heap <= before.heap + self.heap_slack:
                        self.after = now
                        return now
                if time.monotonic() >= deadline:
                    if now.heap == 0:
                        now = Usage(now.tasks, now.fds, traced_heap())
                    self.after = now
                    raise AssertionError(self._report(before, now))
                await asyncio.sleep(_POLL)  # a bounded poll for other components' timers
        finally:
            self.discard()

    def _report(self, before: Usage, now: Usage) -> str:
        over: list[str] = []
        if now.tasks > before.tasks + self.extra_tasks:
            new = sorted(
                f"{t.get_name()} ({t.get_coro()!r})" for t in asyncio.all_tasks() - self._tasks
            )
            over.append(
                f"tasks: {now.tasks} against {before.tasks} (+{now.tasks - before.tasks}, "
                f"{self.extra_tasks} allowed); new: {', '.join(new[:10])}"
            )
        if now.fds > before.fds + self.fd_slack:
            over.append(
                f"fds: {now.fds} against {before.fds} (+{now.fds - before.fds}, "
                f"{self.fd_slack} allowed)"
            )
        if now.heap > before.heap + self.heap_slack:
            over.append(
                f"heap: {now.heap} B against {before.heap} B "
                f"(+{(now.heap - before.heap) / (1 << 20):.2f} MiB, "
                f"{self.heap_slack / (1 << 20):g} MiB allowed)"
            )
        return f"not back to the baseline after {self.within:g} s: " + "; ".join(over)


@contextlib.asynccontextmanager
async def baseline(
    *,
    extra_tasks: int = 0,
    fd_slack: int = FD_SLACK,
    heap_slack: int = HEAP_SLACK,
    within: float = SETTLE_WITHIN,
) -> AsyncIterator[Baseline]:
    """``async with baseline() as b:`` captures on entry and, when the body ends without an
    error, waits for :meth:`Baseline.settled` on exit."""
    b = Baseline(extra_tasks=extra_tasks, fd_slack=fd_slack, heap_slack=heap_slack, within=within)
    b.capture()
    try:
        yield b
    except BaseException:
        b.discard()
        raise
    await b.settled()
