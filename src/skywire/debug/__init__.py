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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name is imported from its module when first used, so that a process wanting only the
# log ring (every command sets up logging) does not import aiohttp's server with the routes.
_WHERE = {
    "memory": "skywire.debug.memory",
    **dict.fromkeys(("DebugError", "DebugParamError", "ProfilerBusyError"), "skywire.debug.errors"),
    **dict.fromkeys(
        ("Gate", "caller_key", "mount_debug", "parse_level", "whitelist_gate"),
        "skywire.debug.mount",
    ),
    "sample_profile": "skywire.debug.profile",
    **dict.fromkeys(
        ("LogLine", "LogRing", "RingHandler", "default_ring", "install_ring_handler"),
        "skywire.debug.ring",
    ),
    **dict.fromkeys(
        (
            "StackFrame",
            "TaskInfo",
            "dump_tasks",
            "install_task_clock",
            "snapshot_tasks",
            "task_clock_installed",
        ),
        "skywire.debug.tasks",
    ),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'skywire.debug' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if name == "memory" else getattr(module, name)
    globals()[name] = value
    return value


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
