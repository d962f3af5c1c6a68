"""The launcher's values: its errors, app states and their transitions, back-off, the status
of an app, the app server it needs, and how an app's command line and exit are described."""

from __future__ import annotations

import enum
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skywire.visor.config import AppConfig


# ------------------------------------------------------------------------------ errors
class LauncherError(Exception):
    """Base of the launcher's errors."""


class UnknownAppError(LauncherError, LookupError):
    """No app of that name in the launcher's config."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown app {name!r}")
        self.name = name

    def __str__(self) -> str:
        return f"unknown app {self.name!r}"


# ------------------------------------------------------------------------------ values
class AppState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    """Waiting out its backoff before the next run."""
    ERRORED = "errored"
    """Gave up: could not be spawned, too many restarts, or exited non-zero with restarts off."""
    STOPPING = "stopping"


S = AppState
TRANSITIONS: dict[AppState, frozenset[AppState]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.ERRORED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.ERRORED, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.RESTARTING, S.ERRORED, S.STOPPED}),
    S.RESTARTING: frozenset({S.STARTING, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
}
"""Every allowed state change; anything else is a bug and raises ``AssertionError``."""
SUPERVISED = frozenset({S.STARTING, S.RUNNING, S.RESTARTING, S.STOPPING})


@dataclass(frozen=True)
class Backoff:
    """When to restart an app that exited while it should run: ``initial`` seconds after the
    first exit, ×``factor`` after each further one, at most ``maximum``; the count starts over
    after a run that lasted ``reset_after`` seconds. ``max_restarts`` consecutive failures make
    it give up (``None``: never). With ``enabled=False`` nothing is restarted."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0
    reset_after: float = 60.0
    max_restarts: int | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"backoff: need 0 < initial ({self.initial}) <= maximum")
        if self.factor < 1:
            raise ValueError(f"backoff: factor {self.factor} < 1")
        if self.reset_after < 0:
            raise ValueError(f"backoff: reset_after {self.reset_after} < 0")
        if self.max_restarts is not None and self.max_restarts < 0:
            raise ValueError(f"backoff: max_restarts {self.max_restarts} < 0")

    def delay(self, failures: int) -> float:
        """Seconds to wait before the restart that follows ``failures`` (≥ 1) consecutive
        failures."""
        return min(self.maximum, self.initial * self.factor ** max(0, failures - 1))

    def gives_up(self, failures: int) -> bool:
        return self.max_restarts is not None and failures > self.max_restarts


@dataclass(frozen=True)
class AppStatus:
    name: str
    state: AppState
    pid: int | None
    started_at: float | None
    """Wall-clock start of the current (or last) run, seconds since the epoch."""
    uptime: float
    """Seconds the current run has lasted (0 when not running)."""
    restarts: int
    last_error: str | None
    exit_code: int | None
    """Of the last run; negative: killed by that signal (asyncio's convention)."""
    port: int
    auto_start: bool
    backoff: float
    """The delay of the current (or last) wait in ``restarting``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": self.pid,
            "started_at": self.started_at,
            "uptime": self.uptime,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "exit_code": self.exit_code,
            "port": self.port,
            "auto_start": self.auto_start,
            "backoff": self.backoff,
        }


@dataclass(frozen=True)
class AppStateChanged:
    """An app went from ``old`` to ``new`` (passed to the launcher's ``on_change``)."""

    name: str
    old: AppState
    new: AppState
    status: AppStatus


class AppServerLike(Protocol):
    """What the launcher needs of the app server (``skywire.visor.appserver.AppServer``)."""

    @property
    def address(self) -> str: ...

    def register(self, proc_key: str, app_name: str) -> None: ...

    async def unregister(self, proc_key: str) -> None: ...


def default_command(app: AppConfig, bin_path: str | Path = "./apps") -> list[str]:
    """``skywire`` apps run as ``python -m skywire.cli <args>`` (this interpreter); any other
    binary is looked up in ``bin_path``."""
    if app.binary in ("skywire", ""):
        return [sys.executable, "-m", "skywire.cli", *app.args]
    return [str(Path(bin_path) / app.binary), *app.args]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"
