"""``skywire cli visor app …``: list, start, stop and read the logs of a running visor's apps.

Thin client of the visor's control API (``skywire.visor.rpc.RPCClient``); the routes::

    GET  /apps                      -> [status, …]
    POST /apps/{name}/start         -> status
    POST /apps/{name}/stop          -> status
    POST /apps/{name}/autostart     {"on": bool} -> status
    GET  /apps/{name}/logs?n=N      -> {"lines": [...]}

A status is ``AppStatus.to_json()`` of ``skywire.visor.launcher``. Hooked under ``cli visor`` by
``register(visor_app)``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app_app", "app_path", "register", "status_table"]

out = Console()
err = Console(stderr=True)

app_app = typer.Typer(help="Apps of a running visor.", no_args_is_help=True)

RpcOption = Annotated[
    str, typer.Option("--rpc", help="The visor's control address.", envvar="SKYWIRE_RPC")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[str, typer.Argument(help="The app's name (as in the visor config).")]


def app_path(name: str, action: str) -> str:
    """``/apps/<name>/<action>`` with the name escaped."""
    return f"/apps/{quote(name, safe='')}/{action}"


def call_visor(rpc: str, method: str, path: str, body: Any = None) -> Any:
    from skywire.visor.rpc import RPCClient, RPCClientError

    try:
        client = RPCClient(rpc)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --rpc {rpc!r} is not host:port")
        raise typer.Exit(2) from exc
    try:
        return asyncio.run(client.call(method, path, body))
    except RPCClientError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return "-"
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


STATE_STYLE = {
    "running": "green",
    "starting": "cyan",
    "restarting": "yellow",
    "stopping": "cyan",
    "errored": "red",
    "stopped": "dim",
}


def status_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="apps")
    for col in ("name", "state", "port", "auto", "pid", "uptime", "restarts", "last error"):
        table.add_column(
            col,
            justify="right" if col in ("port", "pid", "restarts") else "left",
            no_wrap=col != "last error",  # names are typed back: never cut; the error folds
            overflow="fold" if col == "last error" else "ellipsis",
        )
    for r in rows:
        state = str(r.get("state", "?"))
        style = STATE_STYLE.get(state, "")
        error = r.get("last_error") or ""
        table.add_row(
            str(r.get("name", "?")),
            f"[{style}]{state}[/{style}]" if style else state,
            str(r.get("port", "-")),
            "yes" if r.get("auto_start") else "no",
            str(r["pid"]) if r.get("pid") is not None else "-",
            _uptime(r.get("uptime")),
            str(r.get("restarts", 0)),
            error.splitlines()[-1] if error else "",
        )
    return table


def _print_status(row: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(row))
    else:
        out.print(status_table([row]))


@app_app.command("ls")
def app_ls(rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """List the visor's apps and their states."""
    rows = call_visor(rpc, "GET", "/apps")
    if as_json:
        out.print_json(json.dumps(rows))
    else:
        out.print(status_table(rows))


@app_app.command("start")
def app_start(
    name: NameArg, rpc: RpcOption = "localhost:3435", as_json: JsonOption = False
) -> None:
    """Start an app (no-op if it runs)."""
    _print_status(call_visor(rpc, "POST", app_path(name, "start")), as_json)


@app_app.command("stop")
def app_stop(name: NameArg, rpc: RpcOption = "localhost:3435", as_json: JsonOption = False) -> None:
    """Stop an app (SIGTERM, then SIGKILL after the grace)."""
    _print_status(call_visor(rpc, "POST", app_path(name, "stop")), as_json)


@app_app.command("autostart")
def app_autostart(
    name: NameArg,
    on: Annotated[str, typer.Argument(help="on or off.")],
    rpc: RpcOption = "localhost:3435",
    as_json: JsonOption = False,
) -> None:
    """Start the app with the visor (on) or not (off)."""
    flag = on.strip().lower()
    if flag not in ("on", "off", "true", "false", "yes", "no", "1", "0"):
        raise typer.BadParameter(f"{on!r}: say on or off", param_hint="ON")
    body = {"on": flag in ("on", "true", "yes", "1")}
    _print_status(call_visor(rpc, "POST", app_path(name, "autostart"), body), as_json)


@app_app.command("logs")
def app_logs(
    name: NameArg,
    n: Annotated[int, typer.Option("-n", "--lines", min=1, help="How many lines.")] = 100,
    rpc: RpcOption = "localhost:3435",
) -> None:
    """Print the app's last output lines (stdout and stderr, stamped)."""
    doc = call_visor(rpc, "GET", app_path(name, "logs") + f"?n={n}")
    lines = doc.get("lines", []) if isinstance(doc, dict) else []
    for line in lines:
        out.print(str(line), markup=False, highlight=False, soft_wrap=True)


def register(visor_app: typer.Typer) -> None:
    """Add ``app`` under ``skywire cli visor``."""
    visor_app.add_typer(app_app, name="app")
