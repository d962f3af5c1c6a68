"""``skywire cli visor app …`` against a stand-in control API on 127.0.0.1 (aiohttp in a thread):
the routes and bodies the commands send, and what they print."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

from skywire.cli import app_cmds

STATUS = {
    "name": "skychat",
    "state": "running",
    "pid": 4242,
    "started_at": 1.0,
    "uptime": 3723.0,
    "restarts": 2,
    "last_error": "exited with code 1\nRuntimeError: boom",
    "exit_code": 1,
    "port": 1,
    "auto_start": True,
    "backoff": 1.0,
}


class ControlAPI:
    """Answers the five app routes and records each request as (method, path, query, body)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.addr = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.seen.append((request.method, request.path, dict(request.query), body))
        name = request.match_info.get("name", "")
        if name == "nope":
            return web.json_response({"error": "unknown app 'nope'"}, status=404)
        if request.path == "/apps":
            return web.json_response(
                [
                    STATUS,
                    {
                        **STATUS,
                        "name": "skysocks",
                        "state": "stopped",
                        "pid": None,
                        "uptime": 0,
                        "last_error": None,
                    },
                ]
            )
        if request.path.endswith("/logs"):
            n = int(request.query.get("n", "0"))
            return web.json_response({"lines": [f"t stdout: line {i}" for i in range(n)]})
        return web.json_response({**STATUS, "name": name})

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/apps", self._handle)
        app.router.add_post("/apps/{name}/start", self._handle)
        app.router.add_post("/apps/{name}/stop", self._handle)
        app.router.add_post("/apps/{name}/autostart", self._handle)
        app.router.add_get("/apps/{name}/logs", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(runner, sock).start()
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> ControlAPI:
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),))
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def api() -> Iterator[ControlAPI]:
    with ControlAPI() as server:
        yield server


def cli() -> typer.Typer:
    visor_app = typer.Typer()
    visor_app.command("info")(lambda: None)  # a sibling, as in ``cli visor``
    app_cmds.register(visor_app)
    return visor_app


def run(*args: str) -> Any:
    return CliRunner().invoke(cli(), ["app", *args], env={"COLUMNS": "200"})


def test_ls_prints_a_table_and_json(api: ControlAPI) -> None:
    res = run("ls", "--rpc", api.addr)
    assert res.exit_code == 0, res.output
    assert "skychat" in res.output and "skysocks" in res.output
    assert "1h02m03s" in res.output and "RuntimeError: boom" in res.output
    res = run("ls", "--rpc", api.addr, "--json")
    assert json.loads(res.output)[0] == STATUS
    assert [s[:2] for s in api.seen] == [("GET", "/apps"), ("GET", "/apps")]


def test_start_stop_autostart_send_the_routes(api: ControlAPI) -> None:
    assert run("start", "skychat", "--rpc", api.addr).exit_code == 0
    assert run("stop", "skychat", "--rpc", api.addr).exit_code == 0
    assert run("autostart", "skychat", "off", "--rpc", api.addr).exit_code == 0
    res = run("autostart", "vpn client", "on", "--rpc", api.addr, "--json")
    assert res.exit_code == 0 and json.loads(res.output)["name"] == "vpn client"
    assert [(m, p, b) for m, p, _, b in api.seen] == [
        ("POST", "/apps/skychat/start", None),
        ("POST", "/apps/skychat/stop", None),
        ("POST", "/apps/skychat/autostart", {"on": False}),
        ("POST", "/apps/vpn client/autostart", {"on": True}),
    ]
    assert run("autostart", "skychat", "maybe", "--rpc", api.addr).exit_code == 2


def test_logs_asks_for_n_lines_and_prints_them(api: ControlAPI) -> None:
    res = run("logs", "skychat", "-n", "3", "--rpc", api.addr)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["t stdout: line 0", "t stdout: line 1", "t stdout: line 2"]
    assert api.seen == [("GET", "/apps/skychat/logs", {"n": "3"}, None)]


def test_errors_are_reported(api: ControlAPI) -> None:
    res = run("start", "nope", "--rpc", api.addr)
    assert res.exit_code == 1 and "unknown app 'nope'" in res.output
    assert run("ls", "--rpc", "not-an-address").exit_code == 2


def test_app_path_escapes_the_name() -> None:
    assert app_cmds.app_path("a/b c", "start") == "/apps/a%2Fb%20c/start"
