"""Errors of the debug endpoints: each carries the HTTP status a caller of ``/debug/*`` gets."""

from __future__ import annotations

__all__ = ["DebugError", "DebugParamError", "ProfilerBusyError"]


class DebugError(Exception):
    """A debug request that cannot be served; ``status`` is the HTTP answer."""

    status: int = 500


class DebugParamError(DebugError, ValueError):
    """A parameter out of range or malformed (seconds, hz, lines, level, frames…)."""

    status = 400


class ProfilerBusyError(DebugError):
    """A CPU profile is already being taken; one runs at a time, as in Go's pprof."""

    status = 409
