"""Debugging a running process from the outside: its recent log, its asyncio tasks, a CPU
profile of its event loop and its heap, served on ``/debug/*`` to whitelisted dmsg keys.

* :mod:`.ring`: :class:`LogRing`, the newest log lines in memory, fed by :class:`RingHandler`.
* :mod:`.tasks`: :func:`dump_tasks` / :func:`snapshot_tasks`, every live task and its await chain.
* :mod:`.profile`: :func:`sample_profile`, a sampling profiler returning folded stacks.
* :mod:`.memory`: tracemalloc on demand (``start``, ``stop``, ``is_tracing``, ``top``).
* :mod:`.mount`: :func:`mount_debug` puts the routes on an aiohttp app behind a key gate.

This package uses nothing of ours but :mod:`skywire.cipher`, so every layer may mount it.
"""

from __future__ import annotations

from skywire.debug import memory
from skywire.debug.errors import DebugError, DebugParamError, ProfilerBusyError
from skywire.debug.mount import Gate, caller_key, mount_debug, parse_level, whitelist_gate
from skywire.debug.profile import sample_profile
from skywire.debug.ring import (
    LogLine,
    LogRing,
    RingHandler,
    default_ring,
    install_ring_handler,
)
from skywire.debug.tasks import (
    StackFrame,
    TaskInfo,
    dump_tasks,
    install_task_clock,
    snapshot_tasks,
    task_clock_installed,
)

__all__ = [
    "DebugError",
    "DebugParamError",
    "Gate",
    "LogLine",
    "LogRing",
    "ProfilerBusyError",
    "RingHandler",
    "StackFrame",
    "TaskInfo",
    "caller_key",
    "default_ring",
    "dump_tasks",
    "install_ring_handler",
    "install_task_clock",
    "memory",
    "mount_debug",
    "parse_level",
    "sample_profile",
    "snapshot_tasks",
    "task_clock_installed",
    "whitelist_gate",
]
