"""On-demand heap tracing with ``tracemalloc``, for ``/debug/memory``.

Tracing costs memory and time on every allocation, so it is off until :func:`start`; :func:`top`
then lists the allocation sites holding the most memory, with the traced totals, and
:func:`stop` ends tracing and frees the traces. Only allocations made while tracing are seen.
"""

from __future__ import annotations

import linecache
import tracemalloc
from typing import Final

from skywire.debug.errors import DebugParamError
from skywire.debug.frames import short_path

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_TOP",
    "MAX_FRAMES",
    "MAX_TOP",
    "is_tracing",
    "start",
    "stop",
    "top",
]

DEFAULT_FRAMES: Final = 1
MAX_FRAMES: Final = 100
DEFAULT_TOP: Final = 25
MAX_TOP: Final = 1000

NOT_TRACING: Final = (
    "tracemalloc is not tracing, so there are no allocations to show.\n"
    "Start it with skywire.debug.memory.start() (over HTTP: GET /debug/memory?start=1), let the "
    "process run, then ask again. Tracing slows every allocation: stop it when done "
    "(GET /debug/memory?stop=1).\n"
)

# allocations that belong to the tracing and importing machinery, not to the program
_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, linecache.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def start(frames: int = DEFAULT_FRAMES) -> None:
    """Trace allocations, keeping ``frames`` frames of stack each (1 to 100). Tracing already
    on is left as it is, with the depth it was started with."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_FRAMES:
        raise DebugParamError(
            f"frames must be a whole number from 1 to {MAX_FRAMES}, not {frames!r}"
        )
    tracemalloc.start(frames)


def stop() -> None:
    """Stop tracing and free the traces (nothing happens when not tracing)."""
    tracemalloc.stop()


def is_tracing() -> bool:
    """Whether allocations are being traced."""
    return tracemalloc.is_tracing()


def size(n: float) -> str:
    """``n`` bytes in B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def top(n: int = DEFAULT_TOP, *, stacks: bool = False) -> str:
    """The ``n`` allocation sites holding the most traced memory, largest first, after the
    traced current and peak totals. Sites are source lines; with ``stacks``, whole stacks (as
    deep as :func:`start` was asked to keep). When not tracing: how to start."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TOP:
        raise DebugParamError(f"top must be a whole number from 1 to {MAX_TOP}, not {n!r}")
    if not tracemalloc.is_tracing():
        return NOT_TRACING
    try:
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
    except RuntimeError:  # stopped meanwhile, from another thread
        return NOT_TRACING
    depth = tracemalloc.get_traceback_limit()
    current, peak = tracemalloc.get_traced_memory()
    stats = snapshot.statistics("traceback" if stacks else "lineno")
    shown = stats[:n]
    out = [
        f"tracemalloc: tracing {depth} frame{'s' if depth != 1 else ''} per allocation; "
        f"traced now {size(current)}, peak {size(peak)} "
        f"(tracemalloc itself uses {size(tracemalloc.get_tracemalloc_memory())})",
        f"top {len(shown)} of {len(stats)} allocation {'stacks' if stacks else 'sites'} by size:",
    ]
    for rank, stat in enumerate(shown, 1):
        frame = stat.traceback[-1]  # the allocating line: tracemalloc lists oldest first
        out.append(
            f"#{rank} {short_path(frame.filename)}:{frame.lineno}: {size(stat.size)} "
            f"in {stat.count} block{'s' if stat.count != 1 else ''}"
        )
        # a stack is printed root first, down to the allocating line
        for place in stat.traceback if stacks else stat.traceback[-1:]:
            code = linecache.getline(place.filename, place.lineno).strip()
            if stacks:
                out.append(f"    {short_path(place.filename)}:{place.lineno}")
                if code:
                    out.append(f"        {code}")
            elif code:
                out.append(f"    {code}")
    return "\n".join(out) + "\n"
