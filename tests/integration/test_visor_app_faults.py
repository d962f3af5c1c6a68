"""Apps that misbehave under a real visor, and apps started and stopped many times.

* An app that raises at start, one that hangs (and ignores SIGTERM), and one that exits every
  second run beside skysocks on the same visor: skysocks keeps carrying requests across the
  visors, the visor keeps answering, and ``skywire cli visor app ls`` (the real command) shows
  each one's state, restarts and last error as they are.
* 50 start/stop cycles of every app (skysocks, skysocks-client, and skychat on both visors, all
  at once) leave no process, task, file descriptor, app-server session, route group or
  service-discovery entry behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from skywire.cipher import SecKey
from skywire.router import Router
from skywire.testnet.dmsgnet import LocalDmsgNetwork
from skywire.testnet.skynet import LocalSkywire
from skywire.visor.config import AppConfig, VisorConfig
from skywire.visor.launcher import AppState
from skywire.visor.visor import Visor
from tests.integration._skysocks import http_get, item_body, web_site
from tests.integration.test_launcher import children_of_me, open_fds

pytestmark = pytest.mark.timeout(240)

T = 60.0  # bound of every wait

SCRIPTS = {
    "raises.py": 'raise RuntimeError("boom at start")\n',
    "hang.py": """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("hanging", flush=True)
        while True:
            time.sleep(3600)
    """,
    "flaky.py": """
        import sys, time
        print("up for a second", flush=True)
        time.sleep(1.0)
        print("going away", file=sys.stderr, flush=True)
        sys.exit(3)
    """,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def skywire_app(name: str, port: int, *args: str) -> AppConfig:
    return AppConfig(name=name, binary="skywire", port=port, args=["app", name, *args])


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "skywire.cli",
        "cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def socks_ready(socks: int, site_port: int) -> None:
    """The client app answers once its process is up and its route dialled: ask until then."""
    async with asyncio.timeout(T):
        while True:
            try:
                assert await http_get(("127.0.0.1", socks), site_port, "/item/1") == item_body(1)
                return
            except (OSError, AssertionError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.2)  # the app process is starting or dialling


async def test_misbehaving_apps_leave_the_visor_and_skysocks_working(tmp_path: Path) -> None:
    keys = {"visor-0": SecKey.generate(), "visor-1": SecKey.generate()}
    keys["setup-node"] = SecKey.generate()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in SCRIPTS.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        path.chmod(0o755)
    socks = free_port()

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        cfg.launcher.bin_path = str(bin_dir)
        if i == 1:
            cfg.launcher.apps = [skywire_app("skysocks", 3)]
        else:
            server = keys["visor-1"].pubkey().hex()
            addr = f"127.0.0.1:{socks}"
            cfg.launcher.apps = [
                skywire_app("skysocks-client", 13, "--srv", server, "--addr", addr),
                AppConfig(name="raises", binary="raises.py", port=100),
                AppConfig(name="hang", binary="hang.py", port=101),
                AppConfig(name="flaky", binary="flaky.py", port=102),
            ]
        for app in cfg.launcher.apps:
            app.auto_start = True

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, configure=configure, keys=keys.__getitem__, apps=True) as sky,
        web_site() as site_port,
    ):
        a, b = sky.visors
        assert a.tm is not None and a.launcher is not None and a.rpc is not None
        await a.tm.save_transport(b.pk, "dmsg")
        launcher = a.launcher
        await socks_ready(socks, site_port)

        def faults_shown() -> bool:
            raises, flaky = launcher.status("raises"), launcher.status("flaky")
            return raises.restarts >= 2 and flaky.restarts >= 2

        await launcher.wait_until(faults_shown, T)
        # meanwhile, and still: skysocks carries requests across the visors
        bodies = await asyncio.gather(
            *(http_get(("127.0.0.1", socks), site_port, f"/item/{n}") for n in range(30))
        )
        assert bodies == [item_body(n) for n in range(30)]

        rpc = ["--rpc", f"127.0.0.1:{a.rpc.port}"]
        code, out, err = await cli("visor", "app", "ls", "--json", *rpc)
        assert code == 0, err
        rows = {row["name"]: row for row in json.loads(out)}
        assert rows["skysocks-client"]["state"] == "running"
        assert rows["skysocks-client"]["restarts"] == 0
        assert rows["hang"]["state"] == "running" and rows["hang"]["restarts"] == 0
        assert rows["raises"]["state"] in ("restarting", "running")
        assert rows["raises"]["restarts"] >= 2
        assert "boom at start" in rows["raises"]["last_error"]
        assert rows["flaky"]["restarts"] >= 2
        assert "exited with code 3" in rows["flaky"]["last_error"]
        code, table, _ = await cli("visor", "app", "ls", *rpc)
        assert code == 0
        for name in ("skysocks-client", "raises", "hang", "flaky"):
            assert name in table

        # the hanging app ignores SIGTERM: stopping it takes SIGKILL, and it is gone
        pid = rows["hang"]["pid"]
        code, out, err = await cli("visor", "app", "stop", "hang", "--json", *rpc)
        assert code == 0, err
        assert json.loads(out)["state"] == "stopped"
        assert pid not in children_of_me()
        code, out, _ = await cli("visor", "info", "--json", *rpc)
        assert code == 0 and json.loads(out)["pk"] == a.pk.hex()
        assert await http_get(("127.0.0.1", socks), site_port, "/item/99") == item_body(99)
    assert children_of_me() == []


def report_ready(visor: Visor, name: str, listens: bool) -> Callable[[], bool]:
    assert visor.app_server is not None
    server = visor.app_server

    def ready() -> bool:
        rep = server.report(name)
        return rep.connected and (not listens or bool(rep.listening))

    return ready


async def test_start_stop_cycles_of_every_app_leave_nothing_behind(tmp_path: Path) -> None:
    keys = {"visor-0": SecKey.generate(), "visor-1": SecKey.generate()}
    keys["setup-node"] = SecKey.generate()
    server_pk = keys["visor-1"].pubkey().hex()

    def configure(i: int, cfg: VisorConfig) -> None:
        cfg.local_path = str(tmp_path / f"visor-{i}")
        chat = skywire_app("skychat", 1, "--addr", f"127.0.0.1:{free_port()}")
        if i == 1:
            cfg.launcher.apps = [skywire_app("skysocks", 3), chat]
        else:
            socks = f"127.0.0.1:{free_port()}"
            client = skywire_app("skysocks-client", 13, "--srv", server_pk, "--addr", socks)
            cfg.launcher.apps = [client, chat]

    async with (
        LocalDmsgNetwork(servers=1) as dnet,
        LocalSkywire(dnet, visors=2, configure=configure, keys=keys.__getitem__, apps=True) as sky,
    ):
        a, b = sky.visors
        assert a.tm is not None and a.router is not None and b.router is not None
        await a.tm.save_transport(b.pk, "dmsg")
        routers = (a.router, b.router)
        plan = [(a, "skysocks-client", False), (a, "skychat", True)]
        plan += [(b, "skysocks", True), (b, "skychat", True)]

        async def up_and_down(visor: Visor, name: str, listens: bool) -> None:
            assert visor.launcher is not None and visor.app_server is not None
            await visor.launcher.start(name)
            await visor.app_server.wait_until(report_ready(visor, name, listens), T)
            await visor.launcher.stop(name)

        # one full run of each first: pools (HTTP keep-alive to the services) are warm
        for visor, name, listens in plan:
            await up_and_down(visor, name, listens)
        await settle(routers, [0, 0])
        groups = [len(r.route_groups) for r in routers]

        async def cycles(visor: Visor, name: str, listens: bool, first: int) -> None:
            launcher, server = visor.launcher, visor.app_server
            assert launcher is not None and server is not None
            for i in range(first, first + 25):
                st = await launcher.start(name)
                assert st.state is AppState.RUNNING, (name, i, st.last_error)
                if i % 10 == 9:  # now and then, all the way up: connected and listening
                    await server.wait_until(report_ready(visor, name, listens), T)
                st = await launcher.stop(name)
                assert st.state is AppState.STOPPED, (name, i, st.last_error)

        async def batch(first: int) -> tuple[set[asyncio.Task[object]], int]:
            async with asyncio.TaskGroup() as tg:
                for visor, name, listens in plan:
                    tg.create_task(cycles(visor, name, listens, first))
            assert children_of_me() == []
            for visor, name, _ in plan:
                assert visor.app_server is not None and visor.launcher is not None
                assert not visor.app_server.report(name).connected
                assert visor.launcher.status(name).restarts == 0
            assert a.app_server is not None and b.app_server is not None
            assert a.app_server.task_count() == 0 and b.app_server.task_count() == 0
            ann = b.announcer
            assert ann is not None
            await ann.wait_until(lambda: not ann.registered(), T)
            await settle(routers, groups)
            return asyncio.all_tasks(), open_fds()

        # 25 cycles of every app, then 25 more: the services' pools (the setup node's
        # connections to the visors, HTTP keep-alive) settle in the first batch; an app run
        # that left anything behind would add 25 of it in the second
        middle, fds = await batch(0)
        await batch(25)
        # streams closed by one end (setup-node RPCs, relayed dmsg streams, HTTP keep-alive)
        # end at the other a moment later: wait, bounded, for the counts; a leak never comes back
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(T):
                while len(asyncio.all_tasks()) - len(middle) >= 10 or open_fds() - fds >= 10:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)  # the far ends of closed streams closing
        after, fds_after = asyncio.all_tasks(), open_fds()
        new = sorted(f"{t.get_name()} {t.get_coro()!r}" for t in after - middle)
        assert len(after) - len(middle) < 10, new
        assert fds_after - fds < 10


async def settle(routers: tuple[Router, Router], groups: list[int]) -> None:
    """Until each router holds ``groups`` route groups: a route group closed by one side
    ends on the other a round trip later."""
    async with asyncio.timeout(T):
        while [len(r.route_groups) for r in routers] != groups:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the close crosses the network


async def test_apps_end_when_their_visor_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the visor process: its app processes (their own sessions, so the signal does
    not reach them) see the control connection end and exit, freeing their ports."""
    from skywire.visor.rpc import RPCClient, RPCClientError

    async with LocalDmsgNetwork(servers=1) as dnet, LocalSkywire(dnet, visors=0) as sky:
        cfg = sky.config()
        cfg.local_path = str(tmp_path / "visor")
        cfg.cli_addr = f"127.0.0.1:{free_port()}"
        page = free_port()
        cfg.launcher.apps = [skywire_app("skychat", 1, "--addr", f"127.0.0.1:{page}")]
        cfg.launcher.apps[0].auto_start = True
        path = tmp_path / "visor.json"
        cfg.save(path)
        visor = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "skywire.cli", "visor", "-c", str(path), "--log-level", "warning",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            rpc = RPCClient(cfg.cli_addr, timeout=5)
            pid = None
            async with asyncio.timeout(T):
                while pid is None:
                    with contextlib.suppress(RPCClientError):
                        rows = await rpc.call("GET", "/apps")
                        if rows and rows[0]["state"] == "running":
                            pid = rows[0]["pid"]
                    if pid is None:
                        await asyncio.sleep(0.1)  # another process: the visor is starting
            async with asyncio.timeout(T):  # the app up: its page answers
                while True:
                    try:
                        _, w = await asyncio.open_connection("127.0.0.1", page)
                        w.close()
                        break
                    except OSError:
                        await asyncio.sleep(0.1)  # another process: the app is starting
            visor.kill()
            await visor.wait()
            async with asyncio.timeout(T):
                while _state(pid) != "Z":  # noqa: ASYNC110 - gone, or a zombie of init's
                    await asyncio.sleep(0.05)  # another process: the app exiting
        finally:
            if visor.returncode is None:
                visor.kill()
                await visor.wait()


def _state(pid: int) -> str:
    """The process's state letter ("Z" once it is gone too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
