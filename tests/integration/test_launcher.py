"""The app launcher against real processes: small Python scripts run with this interpreter.

Nothing sleeps to synchronise: every wait is on the launcher's own change signal
(``wait_until`` / ``wait_for``), bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from skywire.visor.config import AppConfig
from skywire.visor.launcher import (
    AppState,
    AppStateChanged,
    AppStatus,
    Backoff,
    Launcher,
    LauncherError,
    UnknownAppError,
)
from tests.conftest import no_leaked_tasks

T = 20.0  # bound of every wait (a failing test fails, it does not hang)
PK = "02" + "ab" * 32

SCRIPTS = {
    # well-behaved: echoes its PROC_CONFIG and cwd, then runs until signalled
    "good": """
        import json, os, sys, time
        print("CONFIG " + os.environ["PROC_CONFIG"], flush=True)
        print("CWD " + os.getcwd(), flush=True)
        print("ready", flush=True)
        print("a warning", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    """,
    "raises": """
        raise RuntimeError("boom at start")
    """,
    # ignores SIGTERM: only SIGKILL ends it
    "hang": """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        while True:
            time.sleep(3600)
    """,
    "flaky": """
        import sys
        print("bye", file=sys.stderr)
        sys.exit(3)
    """,
    "done": """
        print("all done")
    """,
}


class StandInServer:
    """The app server's launcher-facing surface, recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    @property
    def address(self) -> str:
        return "127.0.0.1:5505"

    def register(self, proc_key: str, app_name: str) -> None:
        self.calls.append(("register", proc_key, app_name))

    async def unregister(self, proc_key: str) -> None:
        self.calls.append(("unregister", proc_key, ""))

    def runs(self) -> dict[str, list[str]]:
        """proc_key -> the calls made for it, in order."""
        out: dict[str, list[str]] = {}
        for what, key, _ in self.calls:
            out.setdefault(key, []).append(what)
        return out


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    d = tmp_path / "scripts"
    d.mkdir()
    for name, body in SCRIPTS.items():
        (d / f"{name}.py").write_text(textwrap.dedent(body))
    return d


def app(name: str, script: str | None = None, *, auto: bool = False, port: int = 0) -> AppConfig:
    return AppConfig(
        name=name, binary=script or name, args=["--x", name], auto_start=auto, port=port
    )


def make(
    scripts: Path,
    tmp_path: Path,
    apps: list[AppConfig],
    server: StandInServer,
    **kw: object,
) -> Launcher:
    def command(a: AppConfig) -> list[str]:
        return [sys.executable, str(scripts / f"{a.binary}.py"), *a.args]

    options: dict[str, object] = {"backoff": Backoff(initial=0.01, maximum=0.08), "stop_grace": 5.0}
    options.update(kw)
    return Launcher(
        apps,
        server=server,
        visor_pk=PK,
        local_path=tmp_path / "local",
        command=command,
        **options,  # type: ignore[arg-type]
    )


def has_line(launcher: Launcher, name: str, text: str) -> bool:
    return any(line.endswith(text) for line in launcher.logs(name, 1000))


def children_of_me() -> list[int]:
    """Live (or zombie) child processes of this test process, read from /proc."""
    me, kids = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me:
            kids.append(int(entry))
    return kids


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------------------ faults
async def test_misbehaving_apps_do_not_disturb_a_good_one(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    events: list[AppStateChanged] = []
    apps = [
        app("good", auto=True),
        app("raises", auto=True),
        app("hang", auto=True),
        app("flaky", auto=True),
    ]
    backoff = Backoff(initial=0.01, factor=2.0, maximum=0.08)
    async with make(
        scripts, tmp_path, apps, server, backoff=backoff, stop_grace=0.3, on_change=events.append
    ) as launcher:
        good = launcher.status("good")
        assert good.state is AppState.RUNNING and good.pid is not None

        # the app that raises at start: restarted with backoff, the traceback's last line kept
        st = await launcher.wait_for("raises", lambda s: s.restarts >= 2, T)
        assert st.last_error is not None
        assert st.last_error.splitlines()[0] == "exited with code 1"
        assert st.last_error.splitlines()[-1] == "RuntimeError: boom at start"

        # the app that exits at once, again and again: restarts counted, backoff grows to max
        st = await launcher.wait_for("flaky", lambda s: s.restarts >= 6, T)
        assert st.exit_code == 3
        assert st.last_error == "exited with code 3\nbye"
        waits = [
            e.status.backoff for e in events if e.name == "flaky" and e.new is AppState.RESTARTING
        ]
        assert waits[:6] == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]

        # the app that hangs (ignores SIGTERM) stays running; stop() kills it after the grace
        await launcher.wait_until(lambda: has_line(launcher, "hang", "stdout: ready"), T)
        hang = launcher.status("hang")
        assert hang.state is AppState.RUNNING and hang.restarts == 0
        st = await launcher.stop("hang")
        assert st.state is AppState.STOPPED and st.pid is None
        assert st.exit_code == -signal.SIGKILL
        assert st.last_error == "did not stop within 0.3 s of SIGTERM: killed"

        # the good app ran the whole time, in one process
        now = launcher.status("good")
        assert now.state is AppState.RUNNING
        assert now.pid == good.pid and now.restarts == 0 and now.last_error is None
        assert [(e.old, e.new) for e in events if e.name == "good"] == [
            (AppState.STOPPED, AppState.STARTING),
            (AppState.STARTING, AppState.RUNNING),
        ]
        assert has_line(launcher, "good", "stdout: ready")
    assert {s.state for s in launcher.statuses()} == {AppState.STOPPED}
    assert launcher.status("good").exit_code == -signal.SIGTERM
    assert children_of_me() == []


async def test_gives_up_after_max_restarts(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    backoff = Backoff(initial=0.01, maximum=0.02, max_restarts=2)
    async with make(scripts, tmp_path, [app("raises")], server, backoff=backoff) as launcher:
        await launcher.start("raises")
        st = await launcher.wait_for("raises", lambda s: s.state is AppState.ERRORED, T)
        assert st.restarts == 2
        assert st.last_error is not None
        assert st.last_error.startswith("gave up after 2 restarts: exited with code 1")
        # errored can be started again
        st = await launcher.start("raises")
        assert st.state in (AppState.RUNNING, AppState.RESTARTING, AppState.ERRORED)
    assert all(calls == ["register", "unregister"] for calls in server.runs().values())


async def test_without_restarts_nonzero_is_errored_zero_is_stopped(
    scripts: Path, tmp_path: Path
) -> None:
    server = StandInServer()
    apps = [app("flaky"), app("done")]
    async with make(scripts, tmp_path, apps, server, backoff=Backoff(enabled=False)) as launcher:
        await launcher.start("flaky")
        await launcher.start("done")
        st = await launcher.wait_for("flaky", lambda s: s.state is AppState.ERRORED, T)
        assert st.exit_code == 3 and st.restarts == 0
        st = await launcher.wait_for("done", lambda s: s.state is AppState.STOPPED, T)
        assert st.exit_code == 0 and st.last_error is None
        assert has_line(launcher, "done", "stdout: all done")


async def test_spawn_failure_is_errored(tmp_path: Path) -> None:
    server = StandInServer()
    launcher = Launcher(
        [AppConfig(name="ghost", binary="no-such-binary")],
        server=server,
        visor_pk=PK,
        local_path=tmp_path / "local",
        bin_path=tmp_path / "bin",
    )
    async with launcher:
        st = await launcher.start("ghost")
        assert st.state is AppState.ERRORED
        assert st.last_error is not None and st.last_error.startswith("cannot start ghost:")
    assert [c[0] for c in server.calls] == ["register", "unregister"]


# ------------------------------------------------------------------------------ what an app sees
async def test_proc_config_reaches_the_app(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    async with make(scripts, tmp_path, [app("good", port=7)], server) as launcher:
        st = await launcher.start("good")
        assert st.state is AppState.RUNNING
        await launcher.wait_until(lambda: has_line(launcher, "good", "stdout: ready"), T)
        lines = launcher.logs("good", 10)
    conf_line = next(line for line in lines if " stdout: CONFIG " in line)
    conf = json.loads(conf_line.split(" stdout: CONFIG ", 1)[1])
    assert set(conf) == {
        "app_name", "app_server_addr", "proc_key", "proc_args", "proc_envs", "proc_work_dir",
        "visor_pk", "routing_port", "binary_loc", "log_db_loc", "log_store_path",
    }  # fmt: skip
    work_dir = tmp_path / "local" / "apps" / "good"
    assert conf["app_name"] == "good"
    assert conf["app_server_addr"] == "127.0.0.1:5505"
    assert re.fullmatch(r"[0-9a-f]{32}", conf["proc_key"])
    assert server.calls[0] == ("register", conf["proc_key"], "good")
    assert conf["proc_args"] == ["--x", "good"]
    assert conf["proc_envs"] == []
    assert conf["proc_work_dir"] == str(work_dir)
    assert conf["visor_pk"] == PK
    assert conf["routing_port"] == 7
    assert conf["binary_loc"] == sys.executable
    assert work_dir.is_dir()
    assert any(line.endswith(f"stdout: CWD {work_dir}") for line in lines)


async def test_logs_are_stamped_bounded_and_ordered(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    async with make(scripts, tmp_path, [app("good")], server, log_lines=3) as launcher:
        await launcher.start("good")
        await launcher.wait_until(
            lambda: (
                has_line(launcher, "good", "stdout: ready")
                and has_line(launcher, "good", "stderr: a warning")
            ),
            T,
        )
        lines = launcher.logs("good", 100)
        assert len(lines) == 3  # the ring keeps the last log_lines
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (stdout|stderr): ", x) for x in lines)
        assert launcher.logs("good", 1) == lines[-1:]
        assert launcher.logs("good", 0) == []


async def test_register_and_unregister_once_per_run(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    async with make(scripts, tmp_path, [app("flaky"), app("good")], server) as launcher:
        await launcher.start("good")
        await launcher.start("flaky")
        await launcher.wait_for("flaky", lambda s: s.restarts >= 3, T)
        await launcher.restart("good")
    runs = server.runs()
    assert len(runs) >= 4 + 2  # flaky's runs and good's two
    assert all(calls == ["register", "unregister"] for calls in runs.values())
    names = [name for what, _, name in server.calls if what == "register"]
    assert names.count("good") == 2


# ------------------------------------------------------------------------------ control
async def test_control_calls(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    async with make(scripts, tmp_path, [app("good"), app("hang", auto=True)], server) as launcher:
        assert launcher.status("good").state is AppState.STOPPED
        first = await launcher.start("good")
        assert first.state is AppState.RUNNING and first.pid is not None
        again = await launcher.start("good")  # already running: no-op
        assert again.pid == first.pid
        moved = await launcher.restart("good")
        assert moved.state is AppState.RUNNING and moved.pid not in (None, first.pid)

        st = launcher.set_autostart("good", True)
        assert st.auto_start is True
        assert {a.name: a.auto_start for a in launcher.apps()} == {"good": True, "hang": True}
        st = launcher.set_autostart("hang", False)
        assert st.auto_start is False and st.state is AppState.RUNNING

        stopped = await launcher.stop("good")
        assert stopped.state is AppState.STOPPED
        assert (await launcher.stop("good")).state is AppState.STOPPED  # twice is harmless

        with pytest.raises(UnknownAppError) as info:
            await launcher.start("nope")
        assert isinstance(info.value, LookupError) and "nope" in str(info.value)
        for call in (launcher.status, launcher.logs):
            with pytest.raises(UnknownAppError):
                call("nope")  # type: ignore[operator]
        with pytest.raises(UnknownAppError):
            launcher.set_autostart("nope", True)
        statuses: list[AppStatus] = launcher.statuses()
        assert [s.name for s in statuses] == ["good", "hang"]
        assert statuses[1].to_json()["state"] == "running"
    with pytest.raises(LauncherError):
        await launcher.start("good")  # closed


async def test_start_stop_cycles_leave_nothing_behind(scripts: Path, tmp_path: Path) -> None:
    server = StandInServer()
    fds = open_fds()
    async with (
        no_leaked_tasks(),
        make(scripts, tmp_path, [app("good"), app("hang")], server, stop_grace=0.2) as launcher,
    ):
        for i in range(50):
            st = await launcher.start("good")
            assert st.state is AppState.RUNNING, i
            st = await launcher.stop("good")
            assert st.state is AppState.STOPPED, i
        await launcher.start("hang")  # left running: closing the launcher ends it
    assert children_of_me() == []
    assert open_fds() == fds
    runs = server.runs()
    assert len(runs) == 51
    assert all(calls == ["register", "unregister"] for calls in runs.values())
