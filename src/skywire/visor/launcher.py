"""The app launcher: the visor's supervisor of app processes.

Every app of the ``launcher`` config block runs as its own OS process, so an app that raises,
hangs or leaks cannot stop the visor or another app. :class:`Launcher` is an async context
manager that owns one supervising task per running app (in a :class:`~skywire.wire.tasks.TaskTree`):

- each run gets a fresh 32-hex ``proc_key``, is registered with the app server, spawned with
  ``PROC_CONFIG`` (upstream's JSON, spec §9.1) in its environment and unregistered once it ended;
- stdout and stderr are read line by line, continuously, into a bounded per-app ring;
- an app that exits while it should run is restarted after an exponential :class:`Backoff`;
- stopping sends SIGTERM to the app's process group, then SIGKILL after ``stop_grace``.

States (:class:`AppState`) change in one place, :meth:`_App.to`, checked against ``TRANSITIONS``::

    stopped/errored --start--> starting --spawned--> running --stop--> stopping --> stopped
    starting --spawn failed--> errored
    running --exited, should run--> restarting --backoff over--> starting
    running --exited, gave up (or non-zero, restarts off)--> errored   (zero, restarts off: stopped)
    restarting --stop--> stopped
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from skywire.visor.app_values import (
    SUPERVISED,
    TRANSITIONS,
    AppServerLike,
    AppState,
    AppStateChanged,
    AppStatus,
    Backoff,
    LauncherError,
    UnknownAppError,
    default_command,
    describe_exit,
)
from skywire.visor.config import AppConfig
from skywire.wire.tasks import TaskTree

__all__ = [
    "TRANSITIONS",
    "AppServerLike",
    "AppState",
    "AppStateChanged",
    "AppStatus",
    "Backoff",
    "Launcher",
    "LauncherError",
    "UnknownAppError",
    "default_command",
    "describe_exit",
]

S = AppState
DEFAULT_BACKOFF = Backoff()

log = logging.getLogger(__name__)

STDERR_TAIL = 5
"""How many of a run's last stderr lines go into its ``last_error``."""
DRAIN_TIMEOUT = 5.0
"""Seconds the output readers may take to empty the pipes after the process ended."""


# ------------------------------------------------------------------------------ one app
@dataclass
class _App:
    """The launcher's record of one app; its state changes only in :meth:`to`."""

    config: AppConfig
    auto_start: bool
    logs: deque[str]
    state: AppState = AppState.STOPPED
    pid: int | None = None
    started_at: float | None = None
    started_mono: float | None = None
    restarts: int = 0
    failures: int = 0
    backoff: float = 0.0
    last_error: str | None = None
    exit_code: int | None = None
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def to(self, new: AppState) -> AppState:
        old = self.state
        assert new in TRANSITIONS[old], f"{self.config.name}: {old.value} -> {new.value}"
        self.state = new
        if new is not AppState.RUNNING:
            self.pid = None
        return old

    def status(self, now_mono: float) -> AppStatus:
        up = 0.0
        if self.state is AppState.RUNNING and self.started_mono is not None:
            up = max(0.0, now_mono - self.started_mono)
        return AppStatus(
            name=self.config.name,
            state=self.state,
            pid=self.pid,
            started_at=self.started_at,
            uptime=up,
            restarts=self.restarts,
            last_error=self.last_error,
            exit_code=self.exit_code,
            port=self.config.port,
            auto_start=self.auto_start,
            backoff=self.backoff,
        )


# ------------------------------------------------------------------------------ launcher
class Launcher:
    """``async with Launcher(apps, server=…, visor_pk=…, local_path=…) as launcher:`` starts the
    ``auto_start`` apps; leaving the block stops every app and awaits everything."""

    def __init__(
        self,
        apps: list[AppConfig],
        *,
        server: AppServerLike,
        visor_pk: str,
        local_path: str | Path,
        command: Callable[[AppConfig], list[str]] | None = None,
        bin_path: str | Path = "./apps",
        backoff: Backoff = DEFAULT_BACKOFF,
        stop_grace: float = 5.0,
        log_lines: int = 500,
        on_change: Callable[[AppStateChanged], None] | None = None,
        extra_env: Callable[[AppConfig], Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if stop_grace <= 0:
            raise ValueError(f"stop_grace {stop_grace} must be > 0")
        if log_lines < 1:
            raise ValueError(f"log_lines {log_lines} must be >= 1")
        names = [a.name for a in apps]
        if len(set(names)) != len(names) or "" in names:
            raise ValueError(f"app names must be unique and non-empty: {names}")
        self._apps = {
            a.name: _App(config=a, auto_start=a.auto_start, logs=deque(maxlen=log_lines))
            for a in apps
        }
        self._server = server
        self._visor_pk = str(visor_pk)
        self._local_path = Path(local_path)
        self._bin_path = Path(bin_path)
        self._command = command or (lambda app: default_command(app, self._bin_path))
        self._backoff = backoff
        self._stop_grace = stop_grace
        self._on_change = on_change
        self._extra_env = extra_env  # what the visor tells an app at each start (vpn-client)
        self._clock = clock
        self._mono = monotonic
        self._tree = TaskTree("launcher", log)
        self._changed = asyncio.Event()

    # -------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> Launcher:
        await self._tree.start()
        try:
            for app in list(self._apps.values()):
                if app.auto_start:
                    await self.start(app.config.name)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every app (SIGTERM, SIGKILL after the grace) and await all tasks; twice is
        harmless."""
        if self._tree.running:
            async with asyncio.TaskGroup() as tg:
                for name in self._apps:
                    tg.create_task(self.stop(name))
        await self._tree.close()

    # -------------------------------------------------------------- queries
    def names(self) -> list[str]:
        return list(self._apps)

    def apps(self) -> list[AppConfig]:
        """The app configs with the current in-memory ``auto_start`` flags (to persist)."""
        return [
            a.config.model_copy(update={"auto_start": a.auto_start}) for a in self._apps.values()
        ]

    def status(self, name: str) -> AppStatus:
        return self._app(name).status(self._mono())

    def statuses(self) -> list[AppStatus]:
        now = self._mono()
        return [a.status(now) for a in self._apps.values()]

    def logs(self, name: str, n: int = 100) -> list[str]:
        """The app's last ``n`` output lines, oldest first (``"<time> stdout|stderr: <line>"``)."""
        lines = self._app(name).logs
        return list(lines)[-n:] if n > 0 else []

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Wait until ``condition()`` holds, checked at every state change and output line of
        any app; raises ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._changed.wait()

    async def wait_for(
        self, name: str, predicate: Callable[[AppStatus], bool], timeout: float
    ) -> AppStatus:
        """Wait until ``predicate(status(name))`` holds; returns that status."""
        app = self._app(name)
        await self.wait_until(lambda: predicate(app.status(self._mono())), timeout)
        return app.status(self._mono())

    # -------------------------------------------------------------- control
    async def start(self, name: str) -> AppStatus:
        """Start the app (no-op if it is already supervised); returns once the first spawn was
        tried, with its status."""
        app = self._app(name)
        async with app.lock:
            if app.task is not None and not app.task.done():
                return app.status(self._mono())
            if not self._tree.running:
                raise LauncherError("the launcher is not running")
            app.stop_requested = asyncio.Event()
            app.failures = 0
            self._set(app, AppState.STARTING)
            task = app.task = self._tree.spawn(self._supervise(app), name=f"app {name}")
        while app.state is AppState.STARTING and not task.done():
            await self._changed.wait()
        return app.status(self._mono())

    async def stop(self, name: str) -> AppStatus:
        """Stop the app (SIGTERM, SIGKILL after ``stop_grace``) and wait until it ended."""
        app = self._app(name)
        async with app.lock:
            task = app.task
            if task is not None and not task.done():
                app.stop_requested.set()
                await asyncio.wait({task})
            app.task = None
        return app.status(self._mono())

    async def restart(self, name: str) -> AppStatus:
        await self.stop(name)
        return await self.start(name)

    def set_args(self, name: str, args: list[str]) -> AppStatus:
        """Change the app's arguments (its next run uses them; the caller persists the config)."""
        app = self._app(name)
        app.config = app.config.model_copy(update={"args": list(args)})
        self._notify()
        return app.status(self._mono())

    def set_autostart(self, name: str, on: bool) -> AppStatus:
        """Change the app's ``auto_start`` in memory (the caller persists the config)."""
        app = self._app(name)
        app.auto_start = on
        self._notify()
        return app.status(self._mono())

    # -------------------------------------------------------------- internals
    def _app(self, name: str) -> _App:
        try:
            return self._apps[name]
        except KeyError:
            raise UnknownAppError(name) from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _set(self, app: _App, new: AppState) -> None:
        old = app.to(new)
        log.info("app %s: %s -> %s", app.config.name, old.value, new.value)
        self._notify()
        if self._on_change is not None:
            event = AppStateChanged(app.config.name, old, new, app.status(self._mono()))
            try:
                self._on_change(event)
            except Exception:  # the listener's bug must not wedge the state machine
                log.exception("launcher on_change listener failed")

    async def _supervise(self, app: _App) -> None:
        """Run the app until it is stopped or given up; state is STARTING on entry."""
        try:
            while True:
                if app.state is not AppState.STARTING:
                    self._set(app, AppState.STARTING)
                ran_for = await self._run_once(app)
                if ran_for is None:  # could not spawn
                    self._set(app, AppState.ERRORED)
                    return
                if app.stop_requested.is_set():
                    self._set(app, AppState.STOPPED)
                    return
                if not self._should_restart(app, ran_for):
                    return
                self._set(app, AppState.RESTARTING)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(app.backoff):
                        await app.stop_requested.wait()
                if app.stop_requested.is_set():
                    self._set(app, AppState.STOPPED)
                    return
                app.restarts += 1
        finally:
            if app.state in SUPERVISED:  # cancelled (the launcher is closing)
                if app.state is AppState.RUNNING:
                    self._set(app, AppState.STOPPING)
                self._set(app, AppState.STOPPED)

    def _should_restart(self, app: _App, ran_for: float) -> bool:
        """Decide after an unrequested exit; sets ERRORED/STOPPED itself when not restarting."""
        code = app.exit_code if app.exit_code is not None else -1
        b = self._backoff
        if not b.enabled:
            self._set(app, AppState.STOPPED if code == 0 else AppState.ERRORED)
            return False
        if ran_for >= b.reset_after:
            app.failures = 0
        app.failures += 1
        if b.gives_up(app.failures):
            app.last_error = f"gave up after {app.failures - 1} restarts: {app.last_error}"
            self._set(app, AppState.ERRORED)
            return False
        app.backoff = b.delay(app.failures)
        return True

    def _proc_config(self, app: AppConfig, proc_key: str, argv: list[str]) -> dict[str, Any]:
        apps_dir = self._local_path / "apps"
        return {
            "app_name": app.name,
            "app_server_addr": self._server.address,
            "proc_key": proc_key,
            "proc_args": list(app.args),
            "proc_envs": [],
            "proc_work_dir": str(apps_dir / app.name),
            "visor_pk": self._visor_pk,
            "routing_port": app.port,
            "binary_loc": argv[0] if argv else "",
            "log_db_loc": str(apps_dir / f"{app.name}_log.db"),
            "log_store_path": str(apps_dir / app.name / "logs"),
        }

    def _prepare(self, cfg: AppConfig, proc_key: str) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and (created) work directory of one run."""
        argv = self._command(cfg)
        conf = self._proc_config(cfg, proc_key, argv)
        work_dir = Path(conf["proc_work_dir"])
        work_dir.mkdir(parents=True, exist_ok=True)
        extra = dict(self._extra_env(cfg)) if self._extra_env is not None else {}
        return argv, {**os.environ, **extra, "PROC_CONFIG": json.dumps(conf)}, work_dir

    async def _run_once(self, app: _App) -> float | None:
        """One run, from register to unregister. Returns how long the process ran, or ``None``
        if it could not be spawned (``last_error`` says why)."""
        cfg = app.config
        proc_key = secrets.token_hex(16)
        self._server.register(proc_key, cfg.name)
        try:
            try:
                argv, env, work_dir = self._prepare(cfg, proc_key)
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    cwd=work_dir,
                    start_new_session=True,
                )
            except (OSError, ValueError) as exc:
                app.last_error = f"cannot start {cfg.name}: {exc}"
                app.exit_code = None
                return None
            return await self._watch(app, proc)
        finally:
            await self._server.unregister(proc_key)

    async def _watch(self, app: _App, proc: asyncio.subprocess.Process) -> float:
        assert proc.stdout is not None and proc.stderr is not None
        app.pid, app.started_at, app.started_mono = proc.pid, self._clock(), self._mono()
        app.stderr_tail.clear()
        self._set(app, AppState.RUNNING)
        try:
            async with asyncio.TaskGroup() as tg:
                readers = {
                    tg.create_task(self._pump(app, proc.stdout, "stdout")),
                    tg.create_task(self._pump(app, proc.stderr, "stderr")),
                }
                exited = tg.create_task(proc.wait())
                stop = tg.create_task(app.stop_requested.wait())
                await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if not exited.done():
                    self._set(app, AppState.STOPPING)
                    await self._terminate(app, proc)
                await exited
                _signal_group(proc.pid, signal.SIGKILL)  # what the app left behind
                _, late = await asyncio.wait(readers, timeout=DRAIN_TIMEOUT)
                for task in late:
                    task.cancel()
        finally:
            if proc.returncode is None:  # cancelled: do not leave the process behind
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        ran_for = self._mono() - (app.started_mono or self._mono())
        code = proc.returncode if proc.returncode is not None else -1
        app.exit_code = code
        if not app.stop_requested.is_set() and code != 0:
            tail = "\n".join(app.stderr_tail)
            app.last_error = describe_exit(code) + (f"\n{tail}" if tail else "")
        return ran_for

    async def _terminate(self, app: _App, proc: asyncio.subprocess.Process) -> None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self._stop_grace):
                await proc.wait()
        except TimeoutError:
            app.last_error = f"did not stop within {self._stop_grace:g} s of SIGTERM: killed"
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def _pump(self, app: _App, reader: asyncio.StreamReader, stream: str) -> None:
        """Read one output stream line by line until EOF, into the app's ring."""
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line over the reader's limit: asyncio dropped it
                raw = b"[line too long, dropped]\n"
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self._clock()))
            app.logs.append(f"{stamp} {stream}: {text}")
            if stream == "stderr":
                app.stderr_tail.append(text)
            self._notify()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the app's process group (the app leads its own session); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
