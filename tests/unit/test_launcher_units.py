"""The launcher's pure parts: backoff arithmetic, the state table, errors, argv, validation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from skywire.visor.config import AppConfig, default_apps
from skywire.visor.launcher import (
    TRANSITIONS,
    AppState,
    Backoff,
    Launcher,
    LauncherError,
    UnknownAppError,
    default_command,
    describe_exit,
)


def test_backoff_doubles_up_to_the_maximum() -> None:
    b = Backoff()
    assert [b.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert not b.gives_up(10_000)
    limited = Backoff(initial=0.5, factor=3, maximum=10, max_restarts=2)
    assert [limited.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]
    assert [limited.gives_up(n) for n in (1, 2, 3)] == [False, False, True]


@pytest.mark.parametrize(
    "kw",
    [
        {"initial": 0},
        {"initial": 2, "maximum": 1},
        {"factor": 0.5},
        {"reset_after": -1},
        {"max_restarts": -1},
    ],
)
def test_bad_backoff_is_rejected(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kw)  # type: ignore[arg-type]


def test_state_table() -> None:
    assert set(TRANSITIONS) == set(AppState)
    assert TRANSITIONS[AppState.STOPPED] == {AppState.STARTING}
    assert TRANSITIONS[AppState.STOPPING] == {AppState.STOPPED}
    assert AppState.RUNNING not in TRANSITIONS[AppState.RESTARTING]  # always through starting
    assert {s.value for s in AppState} == {
        "stopped", "starting", "running", "restarting", "errored", "stopping",
    }  # fmt: skip


def test_unknown_app_error() -> None:
    e = UnknownAppError("x")
    assert isinstance(e, LauncherError) and isinstance(e, LookupError)
    assert str(e) == "unknown app 'x'" and e.name == "x"


def test_default_command() -> None:
    chat = next(a for a in default_apps() if a.name == "skychat")
    assert default_command(chat) == [sys.executable, "-m", "skywire.cli", "app", "skychat",
                                     "--addr", ":8001"]  # fmt: skip
    other = AppConfig(name="x", binary="x-bin", args=["-v"])
    assert default_command(other, "/opt/apps") == [str(Path("/opt/apps") / "x-bin"), "-v"]


def test_describe_exit() -> None:
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-9) == "killed by signal SIGKILL"


class _Server:
    address = "127.0.0.1:5505"

    def register(self, proc_key: str, app_name: str) -> None: ...

    async def unregister(self, proc_key: str) -> None: ...


@pytest.mark.parametrize(
    "kw",
    [
        {"apps": [AppConfig(name="a"), AppConfig(name="a")]},
        {"apps": [AppConfig(name="")]},
        {"stop_grace": 0},
        {"log_lines": 0},
    ],
)
def test_bad_launcher_arguments(kw: dict[str, object], tmp_path: Path) -> None:
    args: dict[str, object] = {
        "apps": [],
        "server": _Server(),
        "visor_pk": "02",
        "local_path": tmp_path,
    }
    args.update(kw)
    with pytest.raises(ValueError):
        Launcher(**args)  # type: ignore[arg-type]


def test_statuses_before_start(tmp_path: Path) -> None:
    apps = default_apps()
    launcher = Launcher(apps, server=_Server(), visor_pk="02", local_path=tmp_path)
    st = launcher.status("skychat")
    assert st.state is AppState.STOPPED and st.pid is None and st.port == 1 and st.auto_start
    assert [s.name for s in launcher.statuses()] == [a.name for a in apps]
    assert launcher.logs("skychat") == []
